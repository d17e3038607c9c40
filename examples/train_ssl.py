#!/usr/bin/env python
"""Self-supervised pre-training with any matrixinfo loss, then frozen-feature evaluation.

A small, CPU-friendly analogue of the paper's experiments (sections 6.1 and 7). Read it top
to bottom: load a data set, train an encoder and projector with one self-supervised loss on
unlabeled augmented views, then probe the frozen encoder (a linear probe and a k-NN
classifier) beside the same encoder untrained and the raw input.

Examples::

    python examples/train_ssl.py                          # Matrix-SSL on MNIST-1D, under 3 minutes on 2 cores
    python examples/train_ssl.py --loss barlow-twins --out runs/bt
    python examples/train_ssl.py --dataset digits
    python examples/train_ssl.py --dataset cifar10 --data-dir ~/data --device cuda --epochs 200

Nothing is downloaded: ``mnist1d`` is generated locally by the ``mnist1d`` package,
``digits`` is bundled with scikit-learn, ``cifar10`` reads a local copy of the CIFAR-10
"python version" (pickles: only point ``--data-dir`` at a copy you trust). The shared
machinery is in ``ssl_utils/``; the comparisons of every loss in ``experiments/``.

Requires the ``examples`` extra: ``pip install "matrixinfo[examples]"``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ssl_utils, whatever the working folder

from ssl_utils import *  # noqa: E402,F403  (re-exported: the tests and embedding_ranks.py use them from here)
from ssl_utils import AUGMENT, METHODS, available_losses, baselines, hardware, load, positive, train  # noqa: E402

import matrixinfo  # noqa: E402

# The defaults of the main run, chosen so that it finishes in under 3 minutes on 2 CPU cores.
DEFAULTS = {
    "mnist1d": {"epochs": 80, "lr": 1e-2},
    "digits": {"epochs": 60, "lr": 3e-3},
    "cifar10": {"epochs": 200, "lr": 3e-3},
}


def write_history(history: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def plot_history(history: list[dict], path: Path, title: str) -> None:
    """Three panels over the epochs: training loss, effective rank, uniformity-MKL to I/d."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    fig = Figure(figsize=(15, 4))
    panels = [
        ("train_loss", "training loss"),
        ("erank_features", "effective rank of the test features"),
        ("uniformity_mkl", "uniformity-MKL of the projections (0 at I/d)"),
    ]
    for ax, (key, label) in zip(fig.subplots(1, 3), panels):
        points = [(h["epoch"], h[key]) for h in history if h[key] is not None]
        ax.plot(*zip(*points), marker=".")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(r: dict, base: dict, k: int) -> str:
    """The trained encoder, the same encoder untrained and the raw input, side by side."""
    rows = [
        ("trained encoder", r["linear_probe"], r["knn"]),
        ("same encoder, untrained", base["untrained_linear_probe"], base["untrained_knn"]),
        ("raw input", base["raw_linear_probe"], base["raw_knn"]),
    ]
    lines = [f"{'':24}  {'linear probe':>12}  {f'k-NN (k={k})':>12}"]
    lines += [f"{name:24}  {100 * lp:11.1f}%  {100 * kn:11.1f}%" for name, lp, kn in rows]
    gain = 100 * (r["linear_probe"] - base["untrained_linear_probe"])
    lines.append(f"gain of training on the linear probe: {gain:+.1f} points")
    erank = r["effective_rank"]
    lines.append(
        f"effective rank of the test features' covariance: {erank[0]:.1f} at init -> {erank[-1]:.1f} "
        f"after {len(erank) - 1} epochs (of {r['feature_dim']})"
    )
    return "\n".join(lines)


def run(args) -> dict:
    try:
        data = load(args.dataset, args.data_dir, args.cache_dir)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    out = Path(args.out or f"ssl_runs/{args.loss}-{data.name}-seed{args.seed}")
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"{args.loss} ({METHODS[args.loss].about}) on {data.name}: {len(data.y_train)} train / "
        f"{len(data.y_test)} test examples, {args.epochs} epochs, batch {args.batch_size}, seed {args.seed}"
    )
    start = time.perf_counter()
    r = train(
        args.loss,
        data,
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        dim=args.dim,
        device=args.device,
        knn_k=args.knn_k,
        progress=not args.no_progress,
    )
    base = baselines(data, args.dim, args.seed, args.device, args.knn_k)
    if r["diverged"]:
        print(f"training diverged: {r['diverged']}")
    for line in r["warnings"]:
        print(f"loss warnings: {line}")
    print(report(r, base, args.knn_k))

    write_history(r["history"], out / "history.csv")
    plot_history(r["history"], out / "history.png", f"{args.loss} on {data.name}, seed {args.seed}")
    config = {key: str(value) if isinstance(value, torch.device) else value for key, value in vars(args).items()}
    config.update(
        threads=torch.get_num_threads(), torch=torch.__version__, matrixinfo=matrixinfo.__version__, hardware=hardware()
    )
    results = {key: value for key, value in r.items() if key != "history"}
    results.update(base, config=config, total_seconds=time.perf_counter() - start)
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {out / 'results.json'}, {out / 'history.csv'}, {out / 'history.png'}")
    print(f"time: {results['total_seconds']:.1f} s (training {r['train_seconds']:.1f} s)")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = available_losses()
    parser = argparse.ArgumentParser(
        description="Self-supervised pre-training with a matrixinfo loss, then linear-probe and k-NN evaluation.",
        epilog="Losses: " + "; ".join(f"{n}: {METHODS[n].about}" for n in names),
    )
    parser.add_argument("--loss", choices=names, default="matrix-ssl", help="loss to train with (default matrix-ssl)")
    parser.add_argument(
        "--dataset",
        choices=sorted(AUGMENT),
        default="mnist1d",
        help="mnist1d (default, generated locally), digits (scikit-learn's 8x8 digits), "
        "or cifar10 (a local copy, see --data-dir)",
    )
    parser.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (or that folder itself)")
    parser.add_argument(
        "--cache-dir", help="where the generated MNIST-1D arrays are cached (default: the system's temporary folder)"
    )
    parser.add_argument("--epochs", type=positive(int), help="default: 80 on mnist1d, 60 on digits, 200 on cifar10")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the initialization, data order and augmentations (default 0)"
    )
    parser.add_argument("--batch-size", type=positive(int), default=256, help="default 256")
    parser.add_argument(
        "--lr", type=positive(float), help="AdamW peak learning rate (default 1e-2 on mnist1d, 3e-3 otherwise)"
    )
    parser.add_argument("--dim", type=positive(int), default=64, help="projector output dimension (default 64)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--knn-k", type=positive(int), default=20, help="neighbours of the k-NN probe (default 20)")
    parser.add_argument("--out", help="output folder (default ssl_runs/<loss>-<dataset>-seed<seed>)")
    parser.add_argument(
        "--threads", type=positive(int), help="CPU threads for torch and scikit-learn (default: torch's)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.dataset == "cifar10" and not args.data_dir:
        parser.error("--dataset cifar10 needs --data-dir (the folder with cifar-10-batches-py/; nothing is downloaded)")
    if args.data_dir and args.dataset != "cifar10":
        parser.error("--data-dir is only used with --dataset cifar10")
    try:
        args.device = torch.device(args.device)
    except RuntimeError as e:
        parser.error(f"--device {args.device!r}: {e}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available in this torch build or machine")
    for key, value in DEFAULTS[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    previous = torch.get_num_threads()
    with threadpool_limits(args.threads):  # caps scikit-learn's BLAS and OpenMP pools (None: unchanged)
        torch.set_num_threads(args.threads or previous)
        try:
            return run(args)
        finally:
            torch.set_num_threads(previous)


if __name__ == "__main__":
    main()
