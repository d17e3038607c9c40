#!/usr/bin/env python
"""A small-scale Table 1 on MNIST-1D: every self-supervised loss of matrixinfo with its authors'
recipe, the same encoder, augmentations and budget, several seeds; then an equal-budget sweep of
each loss's main knobs, and Matrix-SSL's gamma, mu and Taylor order (paper Tables 5 and 6).

Every finished run is appended at once to ``OUT/runs.jsonl`` (one JSON object a line), so an
interrupted run keeps what it did and a rerun skips what is there. ``report.py`` turns that file
into the tables and plots. Examples::

    python examples/experiments/run_table.py --out examples/results/mnist1d       # all parts
    python examples/experiments/run_table.py --part table --seeds 0 1 2 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for ssl_utils

from ssl_utils import METHODS, available_losses, baselines, default_knob, hardware, load, positive, train  # noqa: E402

import matrixinfo  # noqa: E402

# Matrix-SSL's own knobs (paper Tables 5 and 6): gamma weighs the alignment MCE, mu the MKL
# reference, order the Taylor expansion of the matrix logarithm.
MATRIX_SSL_ABLATION = [
    {"gamma": 0.0},
    {"gamma": 0.5},
    {"gamma": 2.0},
    {"mu": 0.5},
    {"mu": 2.0},
    {"order": 2},
    {"order": 3},
    {"order": 6},
]


def plan(args) -> list[dict]:
    """Every run of the requested parts: (part, loss, seed, lr, loss options)."""
    names = args.losses or [n for n in available_losses()]
    jobs = []
    if "table" in args.part:
        jobs += [
            {"part": "table", "name": n, "seed": s, "lr": args.lr, "options": {}} for s in args.seeds for n in names
        ]
    if "sweep" in args.part:
        for s in args.seeds:  # every seed of the table, so the sweep reports mean ± std like it
            for n in names:
                jobs += [{"part": "sweep", "name": n, "seed": s, "lr": args.lr * f, "options": {}} for f in (1 / 3, 3)]
                knob = default_knob(n, args.dim)
                if knob is not None:
                    jobs += [
                        {"part": "sweep", "name": n, "seed": s, "lr": args.lr, "options": {METHODS[n].knob: knob * f}}
                        for f in (0.5, 2)
                    ]
    if "ablation" in args.part:
        jobs += [
            {"part": "ablation", "name": "matrix-ssl", "seed": 0, "lr": args.lr, "options": o}
            for o in MATRIX_SSL_ABLATION
        ]
    return jobs


def key(job: dict) -> str:
    return json.dumps([job["part"], job["name"], job["seed"], round(job["lr"], 12), job["options"]], sort_keys=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="ssl_runs/table", help="output folder (default ssl_runs/table)")
    parser.add_argument(
        "--part", nargs="+", choices=["table", "sweep", "ablation"], default=["table", "sweep", "ablation"]
    )
    parser.add_argument("--losses", nargs="+", choices=available_losses(), metavar="LOSS")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=positive(int), default=3, help="epochs per run (default 3)")
    parser.add_argument("--batch-size", type=positive(int), default=256)
    parser.add_argument("--lr", type=positive(float), default=1e-2)
    parser.add_argument("--dim", type=positive(int), default=64)
    parser.add_argument("--knn-k", type=positive(int), default=20)
    parser.add_argument("--cache-dir", help="where the generated MNIST-1D arrays are cached")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small models on a shared CPU: one thread each is the fastest overall
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load("mnist1d", cache_dir=args.cache_dir)
    device = torch.device("cpu")
    runs_path = out / "runs.jsonl"
    done = set()
    if runs_path.is_file():
        done = {key(json.loads(line)) for line in runs_path.read_text().splitlines() if line.strip()}
    setting = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "dim": args.dim,
        "knn_k": args.knn_k,
        "dataset": "mnist1d",
        "hardware": hardware(),
        "torch": torch.__version__,
        "matrixinfo": matrixinfo.__version__,
        "python": platform.python_version(),
    }
    for seed in args.seeds:  # the untrained encoder and the raw input, once per seed
        job = {"part": "baseline", "name": "-", "seed": seed, "lr": 0.0, "options": {}}
        if key(job) not in done:
            _append(runs_path, {**job, **baselines(data, args.dim, seed, device, args.knn_k), **setting})
    for job in plan(args):
        if key(job) in done:
            continue
        start = time.perf_counter()
        r = train(
            job["name"],
            data,
            epochs=args.epochs,
            seed=job["seed"],
            batch_size=args.batch_size,
            lr=job["lr"],
            dim=args.dim,
            device=device,
            knn_k=args.knn_k,
            progress=False,
            loss_options=job["options"],
        )
        record = {
            **job,
            **{k: v for k, v in r.items() if k not in ("loss_name", "seed", "epochs", "dataset", "loss")},
            "train_loss": r["loss"],
            **setting,
            "wall_seconds": time.perf_counter() - start,
            "command": " ".join(sys.argv),
        }
        _append(runs_path, record)
        print(
            f"{job['part']} {job['name']} seed {job['seed']} lr {job['lr']:.2g} {job['options']}: "
            f"linear {100 * r['linear_probe']:.1f}% k-NN {100 * r['knn']:.1f}% "
            f"erank {r['effective_rank'][-1]:.1f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
