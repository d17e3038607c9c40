#!/usr/bin/env python
"""A character-level language model trained with cross-entropy, or with the
Matrix-LLM loss (cross-entropy + matrix cross-entropy, paper appendix B, eq. 23).

The text is the Python standard library's own source code, found at run time
(every Python install ships it): the top-level ``*.py`` files of the standard
library folder, in sorted order, concatenated up to ``--chars`` characters.
Nothing is downloaded. The text is cut into 40 contiguous blocks; every tenth
block is held out for validation, so no training window overlaps a validation
window.

The model is a small causal Transformer (pre-norm, ``--layers`` blocks of
``--heads``-head attention and a 4x MLP) over a fixed 98-symbol vocabulary:
printable ASCII, newline, tab and one symbol for every other character. Its LM
head is untied by default (``--tied`` shares it with the input embedding); the
head's weight is the token embedding the matrix cross-entropy is computed on.

Losses (``--loss``):

* ``ce``: cross-entropy;
* ``ce+mce``: :class:`matrixinfo.losses.MatrixLLMLoss`, cross-entropy + matrix
  cross-entropy over the l2-normalized LM-head rows, gradients flowing to the
  logits and to the head, as eq. 23 reads;
* ``ce+mce-detached``: the same value, but the MCE term sees a detached copy of
  the head's weight: it shapes the predicted distributions only, and the head
  is trained by the cross-entropy term alone.

Every loss gets the same budget: the same seed (hence the same initialization),
the same batches in the same order, the same optimizer and schedule, the same
number of steps. What is compared on the held-out text is plain cross-entropy
(nats and bits per character) and next-character accuracy, for every model: the
matrix cross-entropy is a training regularizer. Its value on held-out text is
reported too, with the effective rank of the LM head's normalized rows.

Examples::

    python examples/char_lm.py                 # CE + MCE, about a minute and a half on a 2-core CPU
    python examples/char_lm.py --loss ce
    python examples/char_lm.py --compare --out examples/results   # 3 losses x 2 seeds, char_lm.md

Needs only torch and matrixinfo; tqdm (progress bars) and matplotlib (the
``--compare`` plot) are used when installed (the ``examples`` extra).
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # lm_utils and ssl_utils, whatever the working folder
sys.path.insert(0, str(Path(__file__).resolve().parent / "experiments"))

from lm_utils import *  # noqa: E402,F403  (re-exported: the tests use them from here)
from lm_utils import (  # noqa: E402
    LOSSES,
    VOCAB,
    Config,
    Corpus,
    describe_corpus,
    describe_mce,
    describe_setup,
    encode,
    load_stdlib_text,
    split,
    train,
)
from ssl_utils.common import non_negative_float as _non_negative_float  # noqa: E402
from ssl_utils.common import positive as _positive  # noqa: E402


def print_result(r: dict) -> None:
    if r["diverged"]:
        print(f"training diverged: {r['diverged']}")
    for line in r["warnings"]:
        print(f"loss warnings: {line}")
    print(
        f"held-out cross-entropy: {r['val_ce']:.4f} nats/char ({r['val_bits']:.4f} bits/char) "
        f"on {r['val_chars']:,} characters"
    )
    print(f"held-out next-character accuracy: {r['val_acc']:.2f}%")
    print(
        f"held-out matrix cross-entropy (exact, float64): {r['val_mce']:.4f} "
        f"(training method: {r['val_mce_train_method']:.4f})"
    )
    print(f"effective rank of the normalized LM-head embeddings: {r['head_erank']:.1f} (of {len(VOCAB)})")


def run_single(args, cfg: Config, corpus: Corpus, train_ids, val_ids) -> dict:
    print(f"{args.loss}: {describe_setup(cfg)}, seed {args.seed}")
    if args.loss != "ce":
        print(
            f"loss: cross-entropy + {describe_mce(cfg)}"
            + (", no MCE gradient into the LM head" if args.loss == "ce+mce-detached" else "")
        )
    print(f"text: {describe_corpus(corpus, train_ids, val_ids)}")
    start = time.perf_counter()
    r = train(args.loss, train_ids, val_ids, cfg, seed=args.seed, device=args.device, progress=not args.no_progress)
    print_result(r)
    print(f"time: {time.perf_counter() - start:.1f} s (training {r['train_seconds']:.1f} s)")
    return r


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Config()
    parser = argparse.ArgumentParser(
        description="Train a character-level Transformer on the Python standard library's source with "
        "cross-entropy or cross-entropy + matrix cross-entropy (Matrix-LLM, paper eq. 23)."
    )
    parser.add_argument("--loss", choices=LOSSES, default="ce+mce", help="training loss (default ce+mce)")
    parser.add_argument("--steps", type=_positive(int), default=d.steps, help=f"optimizer steps (default {d.steps})")
    parser.add_argument(
        "--batch-size", type=_positive(int), default=d.batch_size, help=f"windows per batch (default {d.batch_size})"
    )
    parser.add_argument(
        "--context", type=_positive(int), default=d.context, help=f"characters of context (default {d.context})"
    )
    parser.add_argument("--dim", type=_positive(int), default=d.dim, help=f"model width (default {d.dim})")
    parser.add_argument(
        "--layers", type=_positive(int), default=d.layers, help=f"Transformer blocks (default {d.layers})"
    )
    parser.add_argument("--heads", type=_positive(int), default=d.heads, help=f"attention heads (default {d.heads})")
    parser.add_argument("--tied", action="store_true", help="tie the LM head to the input embedding")
    parser.add_argument("--lr", type=_positive(float), default=d.lr, help=f"AdamW peak learning rate (default {d.lr})")
    parser.add_argument(
        "--mce-weight",
        type=_non_negative_float,
        default=d.mce_weight,
        help=f"weight of the MCE term for ce+mce (default {d.mce_weight}, as in eq. 23)",
    )
    parser.add_argument(
        "--method",
        choices=("topk", "exact"),
        default=d.method,
        help=f"MatrixLLMLoss method for ce+mce (default {d.method})",
    )
    parser.add_argument(
        "--top-k", type=_positive(int), default=d.top_k, help=f"top_k of the topk method (default {d.top_k})"
    )
    parser.add_argument("--rank", type=int, default=d.rank, help=f"rank of the topk method (default {d.rank})")
    parser.add_argument(
        "--chars",
        type=_positive(int),
        default=1_500_000,
        help="characters of standard-library source to read (default 1500000)",
    )
    parser.add_argument(
        "--eval-every",
        type=_positive(int),
        default=d.eval_every,
        help=f"steps between learning-curve points (default {d.eval_every})",
    )
    parser.add_argument(
        "--val-mce-tokens",
        type=_positive(int),
        default=d.val_mce_tokens,
        help=f"held-out characters the MCE is measured on (default {d.val_mce_tokens})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialization and the batches (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument(
        "--threads",
        type=_positive(int),
        default=1,
        help="CPU threads for torch (default 1: results are deterministic for a given thread count)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    compare = parser.add_argument_group("--compare")
    compare.add_argument(
        "--compare", action="store_true", help="train both losses for each of --seeds and write char_lm.md to --out"
    )
    compare.add_argument(
        "--losses",
        nargs="+",
        choices=LOSSES,
        metavar="LOSS",
        help=f"losses to compare (default all: {' '.join(LOSSES)})",
    )
    compare.add_argument("--seeds", nargs="+", type=int, help="seeds to compare (default 0 1)")
    compare.add_argument("--out", help="output folder of --compare (default char_lm_runs)")
    args = parser.parse_args(argv)

    if args.losses is not None and not args.compare:
        parser.error("--losses is only used with --compare (use --loss for a single run)")
    if args.seeds is not None and not args.compare:
        parser.error("--seeds is only used with --compare (use --seed for a single run)")
    if args.out is not None and not args.compare:
        parser.error("--out is only used with --compare")
    if args.dim % args.heads:
        parser.error(f"--dim {args.dim} must be a multiple of --heads {args.heads}")
    if args.rank < 0:
        parser.error(f"argument --rank: expected a non-negative integer, got {args.rank}")
    try:
        args.device = torch.device(args.device)
    except RuntimeError as e:
        parser.error(f"--device {args.device!r}: {e}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available in this torch build or machine")
    if args.seeds is None:
        args.seeds = [0, 1]
    if args.losses is None:
        args.losses = list(LOSSES)
    if len(set(args.losses)) != len(args.losses) or len(set(args.seeds)) != len(args.seeds):
        parser.error("--losses and --seeds must not repeat a value")
    return args


def config_from_args(args) -> Config:
    return Config(
        steps=args.steps,
        batch_size=args.batch_size,
        context=args.context,
        dim=args.dim,
        layers=args.layers,
        heads=args.heads,
        tied=args.tied,
        lr=args.lr,
        mce_weight=args.mce_weight,
        method=args.method,
        top_k=args.top_k,
        rank=args.rank,
        eval_every=args.eval_every,
        val_mce_tokens=args.val_mce_tokens,
    )


def main(argv: list[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    cfg = config_from_args(args)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        try:
            corpus = load_stdlib_text(args.chars)
            train_ids, val_ids = split(encode(corpus.text), cfg.context)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
        if args.compare:
            from char_lm_compare import run_compare

            return run_compare(args, cfg, corpus, train_ids, val_ids, argv)
        return run_single(args, cfg, corpus, train_ids, val_ids)
    finally:
        torch.set_num_threads(previous_threads)


if __name__ == "__main__":
    main()
