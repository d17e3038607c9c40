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
import json
import math
import pathlib
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from tiny_lm import TinyCausalLM, batches, build_corpus, evaluate

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


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


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
        (f"ce+mce w={w:g}", MatrixLLMLoss(mce_weight=w, method=args.method, top_k=args.top_k, rank=args.rank))
        for w in args.weights
    ]
    configs += [
        (
            f"ce+mce w={w:g} detached",
            MatrixLLMLoss(mce_weight=w, method=args.method, top_k=args.top_k, rank=args.rank, detach_embedding=True),
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


def report(args, corpus, rows, configs, out, wall, t_pre) -> None:
    names = [c for c, _ in configs]
    summary = {}
    for name in names:
        runs = [r for r in rows if r["config"] == name]
        summary[name] = {k: mean_std([r[k] for r in runs]) for k in rows[0] if k.startswith(("ft_", "pre_"))}
    ce = {r["seed"]: r["ft_ce"] for r in rows if r["config"] == "ce"}
    lines = [
        "# Fine-tuning a pre-trained word-level LM: cross-entropy versus CE + MCE (eq. 23)",
        "",
        "Regenerate with (from the repository root, about 35 minutes on one shared thread):",
        "",
        "```",
        "python " + " ".join(["examples/finetune_lm.py"] + sys.argv[1:]),
        "```",
        "",
        (
            f"Hardware: {cpu_name()} CPU, {args.threads} torch thread(s), shared with other "
            f"jobs; torch {torch.__version__}, Python {platform.python_version()}. Wall time {wall / 60:.1f} min "
            f"(pre-training {t_pre / 60:.1f} min)."
        ),
        "",
        f"Text: {corpus.info}. Vocabulary: {len(corpus.vocab)} words (lower-cased words, numbers and punctuation).",
        "",
        (
            f"Model: tied-head causal Transformer (2 layers, width {args.dim}, context {args.context}). Pre-training: "
            f"{args.pretrain_steps} steps of 32 windows, cross-entropy. Fine-tuning, the same for every row: "
            f"{args.ft_steps} steps of 16 windows from {len(corpus.ft_train):,} in-domain words, "
            "AdamW lr 1e-3; each seed "
            f"fixes the batches (shared by the rows). MCE: `MatrixLLMLoss(method={args.method!r}, top_k={args.top_k}, "
            f"rank={args.rank})` on the tied LM-head weight, every predicted word."
        ),
        "",
        (
            f"Held-out: {len(corpus.ft_heldout):,} words of the new domain (`ft`) "
            f"and {len(corpus.pre_heldout):,} of the "
            "old one (`pre`), up to 400 windows each; plain cross-entropy (nats/word), perplexity, next-word accuracy. "
            "`q_y`: mean probability of the target; `e_y^T Q e_y`: mean of sum_j q_j cos^2(e_j, e_y), the probability "
            "mass weighted by embedding similarity to the target (what MCE rewards); erank: effective rank of "
            "E^T E / n over the normalized head rows. Mean ± std over seeds " + ", ".join(map(str, args.seeds)) + "."
        ),
        "",
        "| fine-tuning | ft CE | ft perplexity | ft accuracy (%) | ft q_y | ft e_y^T Q e_y | head erank | pre CE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ["pre-trained (no fine-tuning)"] + names:
        runs = [r for r in rows if r["config"] == name]
        s = {k: mean_std([r[k] for r in runs]) for k in rows[0] if k.startswith(("ft_", "pre_"))}
        lines.append(
            f"| {name} | {s['ft_ce'][0]:.4f} ± {s['ft_ce'][1]:.4f} "
            f"| {s['ft_ppl'][0]:.1f} ± {s['ft_ppl'][1]:.1f} "
            f"| {s['ft_acc'][0]:.2f} ± {s['ft_acc'][1]:.2f} | {s['ft_q_y'][0]:.4f} | {s['ft_eQe'][0]:.4f} "
            f"| {s['ft_erank'][0]:.1f} ± {s['ft_erank'][1]:.1f} | {s['pre_ce'][0]:.4f} |"
        )
    lines += [
        "",
        (
            "Per seed, held-out CE on the new domain minus the CE-only fine-tune of the same seed "
            "(negative: MCE helped):"
        ),
        "",
    ]
    for name in names[1:]:
        diffs = [r["ft_ce"] - ce[r["seed"]] for r in rows if r["config"] == name]
        lines.append(
            f"- {name}: "
            + ", ".join(f"{d:+.4f}" for d in diffs)
            + f" (mean {statistics.mean(diffs):+.4f}; better in {sum(d < 0 for d in diffs)} of {len(diffs)})"
        )
    (out / "finetune_lm.md").write_text("\n".join(lines) + "\n")
    (out / "finetune_lm.json").write_text(json.dumps({"args": vars(args), "summary": summary}, indent=1))
    plot(args, rows, names, out)
    print("\n".join(lines))


def plot(args, rows, names, out) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    weights = [0.0] + list(args.weights)
    xs = sorted(set(weights) | set(args.detached))
    attached = ["ce"] + [f"ce+mce w={w:g}" for w in args.weights]
    for ax, key, label in zip(
        axes,
        ["ft_ce", "ft_acc", "ft_erank"],
        ["held-out CE, new domain (nats/word)", "next-word accuracy (%)", "head effective rank"],
    ):
        ms = [mean_std([r[key] for r in rows if r["config"] == n]) for n in attached]
        ax.errorbar(
            [xs.index(w) for w in weights],
            [m for m, _ in ms],
            yerr=[s for _, s in ms],
            marker="o",
            capsize=3,
            label="gradient into the head",
        )
        for w in args.detached:
            m, s = mean_std([r[key] for r in rows if r["config"] == f"ce+mce w={w:g} detached"])
            ax.errorbar(
                [xs.index(w)],
                [m],
                yerr=[s],
                marker="s",
                color="C1",
                capsize=3,
                linestyle="none",
                label="detach_embedding=True",
            )
        ax.set_xticks(range(len(xs)), [f"{w:g}" for w in xs])
        ax.set_xlabel("MCE weight (0 = CE only)")
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "finetune_lm.png", dpi=110)


if __name__ == "__main__":
    main()
