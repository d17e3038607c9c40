#!/usr/bin/env python
"""``char_lm.py --compare``: the three losses over several seeds, one markdown table, learning curves."""

from __future__ import annotations

import csv
import math
import platform
import shlex
import statistics
import time
from pathlib import Path

import torch
from lm_utils import ABOUT, VOCAB, Config, Corpus, describe_corpus, describe_mce, describe_setup, train
from ssl_utils.common import hardware as _hardware

import matrixinfo


def _mean_std(values, digits: int) -> str:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return "diverged"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def verdicts(by_loss: dict[str, list[dict]]) -> list[str]:
    """For each MCE variant: does it beat cross-entropy on held-out cross-entropy, seed by seed?"""
    if "ce" not in by_loss:
        return []
    lines = []
    for loss, rs in by_loss.items():
        if loss == "ce":
            continue
        pairs = list(zip(by_loss["ce"], rs))
        diffs = [b["val_ce"] - a["val_ce"] for a, b in pairs]
        if not diffs or not all(math.isfinite(d) for d in diffs):
            lines.append(f"- {loss} versus ce: no verdict, a run diverged.")
            continue
        acc = ", ".join(f"{b['val_acc'] - a['val_acc']:+.2f}" for a, b in pairs)
        n = len(diffs)
        where = "the seed" if n == 1 else ("both seeds" if n == 2 else f"all {n} seeds")
        if all(d < 0 for d in diffs):
            head = f"**{loss} wins**: lower held-out cross-entropy than ce in {where}"
        elif all(d > 0 for d in diffs):
            head = f"**ce wins**: {loss} has a higher held-out cross-entropy in {where}"
        else:
            head = f"**no consistent winner** between {loss} and ce over {n} seeds"
        lines.append(
            f"- {loss} versus ce: {head} ({loss} minus ce: "
            f"{', '.join(f'{d:+.4f}' for d in diffs)} nats/char, mean {statistics.mean(diffs):+.4f}; "
            f"accuracy {acc} points)."
        )
    return lines


def collapse_note(by_loss: dict[str, list[dict]]) -> list[str]:
    """A sentence when an MCE run's LM-head rows ended on (nearly) one direction."""
    collapsed = {
        loss: statistics.mean(r["head_erank"] for r in rs)
        for loss, rs in by_loss.items()
        if loss != "ce" and rs and all(r["head_erank"] < 2 for r in rs)
    }
    if not collapsed:
        return []
    ce = f" (ce: {statistics.mean(r['head_erank'] for r in by_loss['ce']):.1f})" if by_loss.get("ce") else ""
    names = ", ".join(f"{loss} {erank:.1f}" for loss, erank in collapsed.items())
    return [
        f"The LM-head rows of {', '.join(collapsed)} collapsed onto nearly one direction: effective rank "
        f"{names} of {len(VOCAB)}{ce}. When every row is parallel, Q is rank one along every target's "
        "embedding and the MCE term sits at its floor (about 1, the trace of Q) whatever the predicted "
        "distribution: a minimizer of eq. 23's MCE that the gradient through the head can reach.",
        "",
    ]


COLORS = {"ce": "C0", "ce+mce": "C3", "ce+mce-detached": "C2"}


def plot_curves(runs: list[dict], path: Path) -> bool:
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
    except ImportError:
        return False
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    seeds = sorted({r["seed"] for r in runs})
    for r in runs:
        h = [p for p in r["history"] if p["val_ce"] is not None]
        ax.plot(
            [p["step"] for p in h],
            [p["val_ce"] for p in h],
            color=COLORS[r["loss"]],
            alpha=0.8,
            label=f"{r['loss']} seed {r['seed']}",
            linestyle=["-", "--", ":", "-."][seeds.index(r["seed"]) % 4],
        )
    ax.set_xlabel("step")
    ax.set_ylabel("held-out cross-entropy (nats/char)")
    ax.set_title("held-out cross-entropy on a fixed 16K-character sample", fontsize=10)
    ax.set_ylim(top=min(ax.get_ylim()[1], 3.5))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def run_compare(args, cfg: Config, corpus: Corpus, train_ids, val_ids, argv: list[str]) -> list[dict]:
    out = Path(args.out or "char_lm_runs")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = []
    for seed in args.seeds:
        for loss in args.losses:
            runs.append(
                train(loss, train_ids, val_ids, cfg, seed=seed, device=args.device, progress=not args.no_progress)
            )
            r = runs[-1]
            print(
                f"{loss} seed {seed}: held-out {r['val_ce']:.4f} nats/char, accuracy {r['val_acc']:.2f}%, "
                f"MCE {r['val_mce']:.4f}, training {r['train_seconds']:.1f} s",
                flush=True,
            )
    wall = time.perf_counter() - start
    by_loss = {loss: [r for r in runs if r["loss"] == loss] for loss in args.losses}

    with open(out / "char_lm_curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["loss", "seed", "step", "train_loss", "train_ce", "val_ce_sample"])
        for r in runs:
            for p in r["history"]:
                writer.writerow(
                    [r["loss"], r["seed"], p["step"]]
                    + ["" if p[k] is None else f"{p[k]:.5f}" for k in ("train_loss", "train_ce", "val_ce")]
                )
    plotted = plot_curves(runs, out / "char_lm_curves.png")

    table = [
        "| loss | what is trained | held-out CE (nats/char) | bits/char | next-char accuracy (%) | "
        "held-out MCE | head embedding erank | training s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for loss, rs in by_loss.items():
        table.append(
            f"| {loss} | {ABOUT[loss]} | {_mean_std([r['val_ce'] for r in rs], 4)} | "
            f"{_mean_std([r['val_bits'] for r in rs], 4)} | {_mean_std([r['val_acc'] for r in rs], 2)} | "
            f"{_mean_std([r['val_mce'] for r in rs], 3)} | {_mean_std([r['head_erank'] for r in rs], 1)} | "
            f"{statistics.mean(r['train_seconds'] for r in rs):.0f} |"
        )
    per_run = [
        "| seed | loss | held-out CE (nats/char) | accuracy (%) | held-out MCE | head embedding erank | "
        f"training loss, mean of the last {cfg.eval_every} steps | seconds (training + evaluation) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        last = r["history"][-1]["train_loss"]
        per_run.append(
            f"| {r['seed']} | {r['loss']} | {r['val_ce']:.4f} | {r['val_acc']:.2f} | {r['val_mce']:.4f} | "
            f"{r['head_erank']:.1f} | {'-' if last is None else f'{last:.4f}'} | "
            f"{r['train_seconds']:.0f} + {r['eval_seconds']:.0f} |"
        )
    warned = {loss: sorted({w for r in rs for w in r["warnings"]}) for loss, rs in by_loss.items()}
    notes = [f"- {loss}: {'; '.join(ws)}" for loss, ws in warned.items() if ws] or ["- none"]
    diverged = [f"- {r['loss']} seed {r['seed']}: {r['diverged']}" for r in runs if r["diverged"]]
    gaps = [
        abs(r["val_mce_train_method"] - r["val_mce"]) / abs(r["val_mce"])
        for r in runs
        if r["loss"] != "ce" and math.isfinite(r["val_mce"]) and r["val_mce"] != 0
    ]
    n_chars = runs[0]["val_chars"]
    uses_mce = any(loss != "ce" for loss in args.losses)

    text = [
        "# Character-level language model: cross-entropy versus cross-entropy + matrix cross-entropy",
        "",
        "Regenerate with (from the repository root):",
        "",
        "```",
        shlex.join(["python", "examples/char_lm.py", *argv]),
        "```",
        "",
        f"Hardware: {_hardware()}; torch {torch.__version__}, matrixinfo {matrixinfo.__version__}, "
        f"Python {platform.python_version()}. Wall time of the whole comparison: {wall / 60:.1f} min.",
        "",
        f"Text: {describe_corpus(corpus, train_ids, val_ids)}.",
        "",
        f"Model and budget, the same for every loss: {describe_setup(cfg)}. Each seed fixes the initialization "
        "and the batches, shared by the losses.",
        "",
        *([f"MCE: {describe_mce(cfg)} (paper appendix B, eq. 23).", ""] if uses_mce else []),
        f"Held-out numbers are on all {n_chars:,} held-out characters (non-overlapping windows of {cfg.context}, "
        "each character predicted once): **plain cross-entropy for every model** (the MCE term is a training "
        "regularizer), in nats and bits per character, and next-character accuracy. Held-out MCE: the "
        f"matrix cross-entropy term alone (eps = 1e-6), on {cfg.val_mce_tokens} evenly spaced held-out characters, "
        "by the exact method in float64, for every model. Head embedding erank: the effective rank of "
        "E^T E / n over the l2-normalized LM-head rows (1 = every token on one direction, at most "
        f"{len(VOCAB)}). Mean ± standard deviation over seeds {', '.join(map(str, args.seeds))}; training "
        "seconds per run exclude evaluation.",
        "",
        *table,
        "",
        *verdicts(by_loss),
        "",
        *collapse_note(by_loss),
        "Per run:",
        "",
        *per_run,
        "",
        *(
            [
                f"On those held-out characters, the training method's MCE differs from the exact one by at most "
                f"{100 * max(gaps):.2f}% (every MCE run).",
                "",
            ]
            if gaps
            else []
        ),
        "Warnings raised by the losses during training:",
        "",
        *notes,
        "",
        *(["Diverged runs:", "", *diverged, ""] if diverged else []),
        "Learning curves (held-out cross-entropy on a fixed 16K-character sample every "
        f"{cfg.eval_every} steps, training loss and training cross-entropy) are in `char_lm_curves.csv`"
        + (" and `char_lm_curves.png`." if plotted else "."),
        "",
    ]
    (out / "char_lm.md").write_text("\n".join(text))
    print("\n".join(table))
    print("\n".join(verdicts(by_loss)))
    print(
        f"wrote {out / 'char_lm.md'}, {out / 'char_lm_curves.csv'}"
        + (f", {out / 'char_lm_curves.png'}" if plotted else "")
    )
    print(f"time: {wall:.1f} s")
    return runs
