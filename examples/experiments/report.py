#!/usr/bin/env python
"""Tables and plots from the runs that ``run_table.py`` appended to ``runs.jsonl``.

Writes, beside ``runs.jsonl``: ``tables.rst`` (included by the documentation's results page),
``summary.json`` (every number of the tables), ``erank.png`` (effective rank over training per
loss, paper section 6.1) and ``uniformity.png`` (uniformity-MKL to I/d against effective rank).
Example::

    python examples/experiments/report.py examples/results/mnist1d
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for ssl_utils

from ssl_utils import METHODS  # noqa: E402

PHENOMENON_C = ["matrix-ssl", "barlow-twins", "simclr", "mec"]  # the paper's Table 1 ordering, best first


def load_runs(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines() if line.strip()]


def mean_std(values: list[float], scale: float = 100.0) -> str:
    values = [scale * v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "diverged"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _rst_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + rows:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return lines + [""]


def _row(label: str, about: str, rs: list[dict]) -> list[str]:
    return [
        label,
        about,
        mean_std([r["linear_probe"] for r in rs]),
        mean_std([r["knn"] for r in rs]),
        mean_std([r["effective_rank"][-1] for r in rs], 1.0),
        str(len(rs)),
    ]


def summarize(runs: list[dict]) -> dict:
    """Every cell of every table, as the strings the documentation shows."""
    table = [r for r in runs if r["part"] == "table"]
    base = [r for r in runs if r["part"] == "baseline"]
    names = list(dict.fromkeys(r["name"] for r in table))
    by_loss = {n: [r for r in table if r["name"] == n] for n in names}
    rows = [_row(n, METHODS[n].about, rs) for n, rs in by_loss.items()]
    rows.sort(key=lambda row: -float(row[2].split(" ")[0]) if row[2] != "diverged" else math.inf)
    rows.append(
        [
            "*untrained encoder*",
            "baseline",
            mean_std([b["untrained_linear_probe"] for b in base]),
            mean_std([b["untrained_knn"] for b in base]),
            mean_std([b["untrained_effective_rank"] for b in base], 1.0),
            str(len(base)),
        ]
    )
    rows.append(
        [
            "*raw input*",
            "baseline",
            mean_std([b["raw_linear_probe"] for b in base[:1]]),
            mean_std([b["raw_knn"] for b in base[:1]]),
            "-",
            "1",
        ]
    )
    sweep_rows = []
    for n in names:
        swept = [r for r in runs if r["part"] == "sweep" and r["name"] == n]
        seeds = {r["seed"] for r in swept}
        recipe = [r for r in by_loss[n] if r["seed"] in seeds]
        if swept and recipe:
            sweep_rows.append(_row(n, "recipe", recipe))
        settings: dict[str, list[dict]] = {}
        for r in swept:  # one row per setting, mean ± std over its seeds
            what = ", ".join(f"{k} = {v:.3g}" for k, v in r["options"].items()) or f"lr = {r['lr']:.2g}"
            settings.setdefault(what, []).append(r)
        sweep_rows += [_row(n, what, rs) for what, rs in settings.items()]
    ablation_rows = [
        _row(
            "matrix-ssl",
            "recipe (gamma = 1, mu = 1, order 4)",
            [r for r in by_loss.get("matrix-ssl", []) if r["seed"] == 0],
        )
    ]
    ablation_rows += [
        _row("matrix-ssl", ", ".join(f"{k} = {v:g}" for k, v in r["options"].items()), [r])
        for r in runs
        if r["part"] == "ablation"
    ]
    rank_rows = []
    for n, rs in by_loss.items():  # phenomenon (a): the effective rank over training, mean over seeds
        curve = [statistics.mean(p) for p in zip(*(r["effective_rank"] for r in rs))]
        trend = "rose" if curve[-1] > curve[0] else "fell"
        rank_rows.append([n, " → ".join(f"{v:.1f}" for v in curve), trend])
    means = {n: statistics.mean(r["linear_probe"] for r in rs) for n, rs in by_loss.items()}
    order_c = sorted([n for n in PHENOMENON_C if n in means], key=means.get, reverse=True)
    return {
        "table": rows,
        "sweep": sweep_rows,
        "ablation": ablation_rows,
        "ordering": order_c,
        "ranks": rank_rows,
        "uniformity": _uniformity_correlation(table),
        "setting": _setting(runs),
    }


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = float(rank)
    return ranks


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (no ties expected in these real-valued measurements)."""
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


def _uniformity_correlation(table: list[dict]) -> dict:
    """Phenomenon (d): across every epoch of every table run, uniformity-MKL (0 at I/d) against the
    effective rank of the projections; and the share of runs whose MKL and rank moved in opposite
    directions from initialization to the end (MKL down and rank up, or MKL up and rank down)."""
    points = [
        (h["uniformity_mkl"], h["erank_projections"])
        for r in table
        for h in r["history"]
        if math.isfinite(h["uniformity_mkl"]) and math.isfinite(h["erank_projections"])
    ]
    opposite = [
        (r["history"][-1]["uniformity_mkl"] - r["history"][0]["uniformity_mkl"])
        * (r["history"][-1]["erank_projections"] - r["history"][0]["erank_projections"])
        < 0
        for r in table
    ]
    return {
        "spearman": f"{spearman(*zip(*points)):.2f}",
        "points": str(len(points)),
        "opposite": f"{sum(opposite)} of {len(opposite)}",
    }


def _setting(runs: list[dict]) -> dict:
    first = next(r for r in runs if r["part"] != "baseline")
    seconds = sum(r.get("wall_seconds", 0.0) for r in runs)
    return {k: str(first[k]) for k in ("epochs", "batch_size", "dim", "knn_k", "hardware", "torch", "python")} | {
        "command": first["command"].split(" --part")[0].split(" --seeds")[0],
        "minutes": f"{seconds / 60:.0f}",
        "runs": str(len(runs)),
    }


def render(summary: dict) -> str:
    header = ["loss", "recipe", "linear probe (%)", "k-NN (%)", "effective rank", "runs"]
    s = summary["setting"]
    text = [
        ".. This file is written by examples/experiments/report.py: do not edit it by hand.",
        "",
        f"Command: ``{s['command']}``; then ``python examples/experiments/report.py`` on its folder. "
        f"{s['runs']} runs (baselines included), {s['minutes']} minutes of run time summed over them, on a shared "
        f"{s['hardware']}, "
        f"torch {s['torch']}, Python {s['python']}. Each run: {s['epochs']} epochs of batch "
        f"{s['batch_size']}, projector dimension {s['dim']}, k-NN with k = {s['knn_k']}.",
        "",
        ".. _results-table1:",
        "",
        "Table 1 at small scale",
        "~~~~~~~~~~~~~~~~~~~~~~",
        "",
    ]
    text += _rst_table(header, summary["table"])
    text += [
        ".. _results-sweep:",
        "",
        "Equal-budget sweep (every seed of the table)",
        "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
        "",
    ]
    text += _rst_table(header[:2] + header[2:], summary["sweep"])
    text += [
        ".. _results-ablation:",
        "",
        "Matrix-SSL's gamma, mu and Taylor order (seed 0)",
        "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
        "",
    ]
    text += _rst_table(header, summary["ablation"])
    text += [
        ".. _results-ranks:",
        "",
        "Effective rank over training (mean over seeds, epoch 0 is the initialization)",
        "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
        "",
    ]
    text += _rst_table(["loss", "effective rank of the test features, per epoch", "from init to end"], summary["ranks"])
    u = summary["uniformity"]
    text += [
        f"Ordering by mean linear probe among {', '.join(PHENOMENON_C)}: "
        f"{' > '.join(summary['ordering'])} (paper Table 1: {' > '.join(PHENOMENON_C)}).",
        "",
        f"Uniformity-MKL against effective rank of the projections: Spearman {u['spearman']} over "
        f"{u['points']} (run, epoch) points; MKL and rank moved in opposite directions in {u['opposite']} "
        "table runs.",
        "",
    ]
    return "\n".join(text)


def plot(runs: list[dict], folder: Path) -> None:
    from matplotlib.figure import Figure

    table = [r for r in runs if r["part"] == "table"]
    names = list(dict.fromkeys(r["name"] for r in table))
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    for i, n in enumerate(names):
        curves = [r["effective_rank"] for r in table if r["name"] == n]
        ax.plot(
            [statistics.mean(p) for p in zip(*curves)], label=n, linestyle="-" if i < 10 else "--", color=f"C{i % 10}"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("effective rank of the test features (mean over seeds)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "erank.png", dpi=100)

    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for i, n in enumerate(names):
        pts = [(h["uniformity_mkl"], h["erank_projections"]) for r in table if r["name"] == n for h in r["history"]]
        ax.scatter(*zip(*pts), s=6, label=n, color=f"C{i % 10}", marker="o" if i < 10 else "x")
    ax.set_xscale("log")
    ax.set_xlabel("uniformity-MKL of the normalized projections (0 at I/d)")
    ax.set_ylabel("effective rank of the projections")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "uniformity.png", dpi=100)


def main(argv: list[str] | None = None) -> None:
    folder = Path((argv or sys.argv[1:] or ["ssl_runs/table"])[0])
    runs = load_runs(folder)
    summary = summarize(runs)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    (folder / "tables.rst").write_text(render(summary))
    plot(runs, folder)
    print(render(summary))


if __name__ == "__main__":
    main()
