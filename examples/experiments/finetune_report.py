"""The report of ``finetune_lm.py``: the markdown table, the JSON and CSV rows, the plot."""

from __future__ import annotations

import json
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # ssl_utils, whatever the working folder
from ssl_utils.common import hardware  # noqa: E402


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def mce_options(args) -> dict:
    """The MatrixLLMLoss options of --method (the approximation's own parameters only)."""
    if args.method == "lanczos":
        return {"method": "lanczos", "steps": args.steps}
    if args.method in ("topk", "subspace"):
        return {"method": args.method, "top_k": args.top_k, "rank": args.rank}
    return {"method": args.method}


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
        f"Regenerate with (from the repository root; this run took {wall / 60:.0f} minutes on one shared thread):",
        "",
        "```",
        "python " + " ".join(["examples/finetune_lm.py"] + sys.argv[1:]),
        "```",
        "",
        (
            f"Hardware: {hardware()}, shared with other "
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
            "fixes the batches (shared by the rows). MCE: `MatrixLLMLoss("
            + ", ".join(f"{k}={v!r}" for k, v in mce_options(args).items())
            + ")` on the tied LM-head weight, every predicted word."
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
