"""Fine-tuning a pre-trained causal LM with cross-entropy against CE + MCE
(paper appendix B, eq. 23, LM-head embeddings), on a shifted domain.

Pre-trains a tiny word-level Transformer (``tiny_lm.TinyCausalLM``, tied LM
head) with cross-entropy on the standard library's docstrings, except the
internet/mail/markup modules; then fine-tunes copies of it on a small sample of
those modules' docstrings with CE alone or with ``MatrixLLMLoss`` at several
weights, every seed with the same batches and budget, and evaluates held-out
cross-entropy, perplexity and accuracy on the new domain (and on the old one).

    python examples/finetune_lm.py --out examples/results/finetune_lm   # about 35 min, 1 thread
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from tiny_lm import TinyCausalLM, batches, build_corpus, evaluate

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "experiments"))
from finetune_report import mce_options, report  # noqa: E402  (the results table, JSON and plot)

from matrixinfo.losses import MatrixLLMLoss

FIELDS = ["ce", "ppl", "acc", "q_y", "eQe", "erank"]


def train(model, data, steps, batch, context, lr, seed, criterion=None, log=None):
    """AdamW with a linear warm-up (10%) and cosine decay; ``criterion`` is None
    for the model's own cross-entropy (``out.loss``), else a MatrixLLMLoss."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.55 + 0.45 * math.cos(math.pi * min(1.0, s / steps)))
    )
    it = batches(data, batch, context, g)
    for step in range(steps):
        x, labels = next(it)
        out = model(x, labels=labels)
        if criterion is None:
            loss = out.loss
        else:  # the Hugging Face step, with the loss swapped: shift, flatten, pass the tied head
            n = out.logits.shape[-1]
            loss = criterion(
                out.logits[:, :-1].reshape(-1, n), labels[:, 1:].reshape(-1), model.get_output_embeddings().weight
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log and (step + 1) % log == 0:
            print(f"  step {step + 1}/{steps} loss {loss.item():.4f}", flush=True)
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="finetune_lm_out")
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--context", type=int, default=32)
    p.add_argument("--pretrain-steps", type=int, default=1500)
    p.add_argument("--ft-steps", type=int, default=300)
    p.add_argument("--ft-tokens", type=int, default=60_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--weights", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0])
    p.add_argument(
        "--detached", type=float, nargs="*", default=[0.3], help="MCE weights also run with detach_embedding=True"
    )
    p.add_argument("--method", default="topk")
    p.add_argument("--top-k", type=int, default=16)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--steps", type=int, default=4, help="Lanczos steps of --method lanczos")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    corpus = build_corpus(args.vocab, args.ft_tokens)
    print(corpus.info, flush=True)
    torch.manual_seed(1234)
    base = TinyCausalLM(len(corpus.vocab), args.dim, context=args.context)
    print(f"pre-training {args.pretrain_steps} steps with cross-entropy", flush=True)
    train(base, corpus.pre_train, args.pretrain_steps, 32, args.context, 3e-3, 1234, log=250)
    t_pre = time.perf_counter() - t0
    configs = [("ce", None)] + [
        (f"ce+mce w={w:g}", MatrixLLMLoss(mce_weight=w, **mce_options(args))) for w in args.weights
    ]
    configs += [
        (
            f"ce+mce w={w:g} detached",
            MatrixLLMLoss(mce_weight=w, **mce_options(args), detach_embedding=True),
        )
        for w in args.detached
    ]
    rows = [
        {
            "seed": "-",
            "config": "pre-trained (no fine-tuning)",
            "seconds": 0.0,
            **{f"ft_{k}": v for k, v in evaluate(base, corpus.ft_heldout, args.context).items()},
            **{f"pre_{k}": v for k, v in evaluate(base, corpus.pre_heldout, args.context).items()},
        }
    ]
    print(rows[0], flush=True)
    csv_path = out / "finetune_lm.csv"
    for seed in args.seeds:
        for name, criterion in configs:
            t1 = time.perf_counter()
            model = train(copy.deepcopy(base), corpus.ft_train, args.ft_steps, 16, args.context, 1e-3, seed, criterion)
            row = {
                "seed": seed,
                "config": name,
                "seconds": time.perf_counter() - t1,
                **{f"ft_{k}": v for k, v in evaluate(model, corpus.ft_heldout, args.context).items()},
                **{f"pre_{k}": v for k, v in evaluate(model, corpus.pre_heldout, args.context).items()},
            }
            rows.append(row)
            print(
                f"seed {seed} {name}: held-out CE {row['ft_ce']:.4f} acc {row['ft_acc']:.2f} "
                f"erank {row['ft_erank']:.1f} ({row['seconds']:.0f} s)",
                flush=True,
            )
            with csv_path.open("w", newline="") as f:  # rewritten after every run: partial results survive
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
    report(args, corpus, rows, configs, out, time.perf_counter() - t0, t_pre)


if __name__ == "__main__":
    main()
