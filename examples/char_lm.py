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

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import platform
import shlex
import statistics
import sys
import sysconfig
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import matrixinfo
from matrixinfo.functional import matrix_llm_loss
from matrixinfo.losses import MatrixLLMLoss
from matrixinfo.metrics import covariance_effective_rank

LOSSES = ("ce", "ce+mce", "ce+mce-detached")
ABOUT = {
    "ce": "cross-entropy (`F.cross_entropy`)",
    "ce+mce": "cross-entropy + MCE (eq. 23), gradients to the logits and the LM head",
    "ce+mce-detached": "the same, no MCE gradient into the LM head (it shapes only the predictions)",
}

# --------------------------------------------------------------------------- #
# Text: the standard library's own source                                      #
# --------------------------------------------------------------------------- #
# Vocabulary: tab, newline, the 95 printable ASCII characters, and OTHER for
# everything else (non-ASCII letters in docstrings, form feeds, ...): 98 symbols.
VOCAB = ["\t", "\n", *map(chr, range(32, 127)), "<other>"]
OTHER = len(VOCAB) - 1
N_BLOCKS, VAL_EVERY = 40, 10  # 40 contiguous blocks, blocks 9, 19, 29, 39 held out


def stdlib_dir() -> Path:
    """The standard library's source folder of the running Python (``os.py`` lives there)."""
    candidates = [sysconfig.get_paths().get("stdlib"), os.path.dirname(os.__file__)]
    for c in candidates:
        if c and (Path(c) / "os.py").is_file():
            return Path(c)
    raise FileNotFoundError("could not find the Python standard library's source files (no os.py next to "
                            "sysconfig's 'stdlib' path or the os module); this Python may ship only bytecode")


@dataclass
class Corpus:
    text: str
    files: list[str]  # names of the files read, in order (relative to the standard library folder)
    python: str


def load_stdlib_text(chars: int) -> Corpus:
    """The first ``chars`` characters of the standard library's top-level ``*.py``
    files, in sorted file-name order, each followed by a blank line."""
    root = stdlib_dir()
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    parts, used, total = [], [], 0
    for path in files:
        if total >= chars:
            break
        text = path.read_text(encoding="utf-8", errors="replace") + "\n\n"
        parts.append(text)
        used.append(path.name)
        total += len(text)
    text = "".join(parts)[:chars]
    if len(text) < chars:
        raise ValueError(f"the standard library's top-level .py files hold {len(text)} characters, "
                         f"fewer than --chars {chars}")
    return Corpus(text, used, platform.python_version())


def encode(text: str) -> torch.Tensor:
    """Character ids (int64) in the 98-symbol vocabulary."""
    codes = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32).long()
    table = torch.full((128,), OTHER, dtype=torch.long)
    for i, ch in enumerate(VOCAB[:-1]):
        table[ord(ch)] = i
    return torch.where(codes < 128, table[codes.clamp(0, 127)], torch.full_like(codes, OTHER))


def decode(ids) -> str:
    return "".join(VOCAB[i] if i != OTHER else "\ufffd" for i in ids)


def split(ids: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation ids: ``N_BLOCKS`` contiguous blocks, every ``VAL_EVERY``-th held out.
    Each split is its blocks concatenated; windows never mix the two splits."""
    size = ids.numel() // N_BLOCKS
    if size < 2 * (context + 1):
        raise ValueError(f"{ids.numel()} characters make blocks of {size}: too short for a context of {context} "
                         f"(raise --chars to at least {N_BLOCKS * 2 * (context + 1)})")
    blocks = ids[:size * N_BLOCKS].view(N_BLOCKS, size)
    held_out = torch.arange(N_BLOCKS) % VAL_EVERY == VAL_EVERY - 1
    return blocks[~held_out].reshape(-1), blocks[held_out].reshape(-1)


# --------------------------------------------------------------------------- #
# Model: a small pre-norm causal Transformer                                   #
# --------------------------------------------------------------------------- #
class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp(self.norm2(x))


class CharTransformer(nn.Module):
    def __init__(self, vocab: int, dim: int, layers: int, heads: int, context: int, tied: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)  # its weight (vocab, dim) is the loss's embedding
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos(torch.arange(x.shape[1], device=x.device))
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))


# --------------------------------------------------------------------------- #
# Training                                                                     #
# --------------------------------------------------------------------------- #
# The MCE method: "topk" with top_k=8, rank=8. Measured for this model's LM head
# (vocabulary 98, width 128), 1024 predicted characters, forward and backward on
# one thread: the exact method takes about 3.5 s, the library's default topk
# (top_k=32, rank=32) 1.1-1.3 s, top_k=16, rank=16 0.26 s, top_k=8, rank=8
# 0.11 s, against 0.06 s for the model's whole training step with plain
# cross-entropy. Against the exact MCE in float64 on held-out predictions of a
# cross-entropy-trained model, the value is off by 0.10%, 0.66% and 1.5%
# respectively (the gradient with respect to the logits by 0.6%, 2.4%, 3.7%).
# --compare reports the gap again on its own runs.
@dataclass
class Config:
    steps: int = 400
    batch_size: int = 16
    context: int = 64
    dim: int = 128
    layers: int = 2
    heads: int = 4
    tied: bool = False
    lr: float = 3e-3
    weight_decay: float = 0.01
    mce_weight: float = 1.0
    method: str = "topk"
    top_k: int = 8
    rank: int = 8
    eval_every: int = 50
    val_mce_tokens: int = 1024


@contextlib.contextmanager
def deterministic(device: torch.device):
    """Deterministic kernels while training (errors on CPU if an op has none; a warning on GPUs), then restored."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def lr_at(step: int, total: int, base: float) -> float:
    """Linear warm-up over the first 10% of the steps, then cosine decay to 10% of the peak."""
    warm = max(1, total // 10)
    if step < warm:
        return base * (step + 1) / warm
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))))


def batch_starts(n: int, cfg: Config, seed: int) -> torch.Tensor:
    """(steps, batch) window starts in the training text: a function of the seed only,
    so that both losses see the same batches in the same order."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n - cfg.context - 1, (cfg.steps, cfg.batch_size), generator=g)


def windows(ids: torch.Tensor, starts: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = starts.unsqueeze(-1) + torch.arange(context + 1)
    chunk = ids[idx]
    return chunk[:, :-1], chunk[:, 1:]


def build_criterion(loss: str, cfg: Config):
    if loss == "ce":
        return lambda logits, target, embedding: F.cross_entropy(logits, target)
    return MatrixLLMLoss(mce_weight=cfg.mce_weight, method=cfg.method, top_k=cfg.top_k, rank=cfg.rank)


def train(loss: str, train_ids: torch.Tensor, val_ids: torch.Tensor, cfg: Config, *, seed: int,
          device: torch.device, progress: bool = True, return_model: bool = False) -> dict:
    """Train one model; returns held-out metrics, the training history and the timings."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    with deterministic(device):
        return _train(loss, train_ids, val_ids, cfg, seed=seed, device=device, progress=progress,
                      return_model=return_model)


def _train(loss, train_ids, val_ids, cfg, *, seed, device, progress, return_model):
    torch.manual_seed(seed)
    model = CharTransformer(len(VOCAB), cfg.dim, cfg.layers, cfg.heads, cfg.context, cfg.tied).to(device)
    criterion = build_criterion(loss, cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    starts = batch_starts(train_ids.numel(), cfg, seed)
    train_ids_dev = train_ids.to(device)
    probe = _probe_windows(val_ids, cfg.context)  # a fixed slice of the held-out text for the curves

    history = [{"step": 0, "train_loss": None, "train_ce": None,
                "val_ce": evaluate(model, probe, cfg, device)["ce"]}]
    caught: list[warnings.WarningMessage] = []
    diverged = None
    run_loss = run_ce = 0.0
    count = 0
    train_seconds = 0.0
    bar = Progress(cfg.steps, f"{loss} seed {seed}", progress)
    for step in range(cfg.steps):
        tick = time.perf_counter()
        x, y = (t.to(device) for t in windows(train_ids_dev, starts[step].to(device), cfg.context))
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg.steps, cfg.lr)
        logits = model(x).reshape(-1, len(VOCAB))
        target = y.reshape(-1)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            embedding = model.head.weight.detach() if loss == "ce+mce-detached" else model.head.weight
            value = criterion(logits, target, embedding)
        caught.extend(seen)
        if not torch.isfinite(value):
            diverged = f"non-finite loss ({value.item()}) at step {step + 1}"
            break
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        train_seconds += time.perf_counter() - tick
        run_loss += value.item()
        run_ce += F.cross_entropy(logits.detach(), target).item()
        count += 1
        bar.update(loss=run_loss / count)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            history.append({"step": step + 1, "train_loss": run_loss / count, "train_ce": run_ce / count,
                            "val_ce": evaluate(model, probe, cfg, device)["ce"]})
            run_loss = run_ce = 0.0
            count = 0
    bar.close()

    tick = time.perf_counter()
    metrics = evaluate(model, val_ids, cfg, device, mce_tokens=cfg.val_mce_tokens) if not diverged else {}
    result = {"loss": loss, "seed": seed, "steps": cfg.steps, "diverged": diverged,
              "val_ce": metrics.get("ce", math.nan), "val_bits": metrics.get("ce", math.nan) / math.log(2),
              "val_acc": metrics.get("acc", math.nan), "val_mce": metrics.get("mce", math.nan),
              "val_mce_train_method": metrics.get("mce_train_method", math.nan),
              "val_chars": metrics.get("tokens", 0), "head_erank": head_effective_rank(model),
              "train_seconds": train_seconds, "eval_seconds": time.perf_counter() - tick,
              "warnings": _summarize_warnings(caught), "history": history}
    if return_model:
        result["model"] = model
    return result


def _probe_windows(val_ids: torch.Tensor, context: int, chars: int = 16384) -> torch.Tensor:
    """An evenly spaced sample of held-out text (about ``chars`` characters) for the learning curves."""
    n_windows = (val_ids.numel() - 1) // context
    take = min(n_windows, max(1, chars // context))
    picks = torch.linspace(0, n_windows - 1, take).round().long()
    idx = (picks * context).unsqueeze(-1) + torch.arange(context + 1)
    return val_ids[idx]


@torch.no_grad()
def evaluate(model: CharTransformer, ids: torch.Tensor, cfg: Config, device: torch.device, *,
             mce_tokens: int = 0, batch: int = 256) -> dict:
    """Held-out cross-entropy (nats/char) and next-character accuracy (%) over
    non-overlapping windows of ``context`` characters (every character is
    predicted once, from 0 to ``context - 1`` characters of context); with
    ``mce_tokens``, the matrix cross-entropy on that many evenly spaced held-out
    characters, in float64, by the exact method (``mce``) and by the training
    method (``mce_train_method``).

    ``ids`` is a 1-d stream, or ``(windows, context + 1)`` rows."""
    was_training = model.training
    model.eval()
    if ids.ndim == 1:
        n_windows = (ids.numel() - 1) // cfg.context
        x_all = ids[: n_windows * cfg.context].view(n_windows, cfg.context)
        y_all = ids[1: n_windows * cfg.context + 1].view(n_windows, cfg.context)
    else:
        x_all, y_all = ids[:, :-1], ids[:, 1:]
    total = correct = 0
    nll = 0.0
    n = x_all.numel()
    keep = torch.linspace(0, n - 1, min(mce_tokens, n)).round().long() if mce_tokens else None
    kept_logits, kept_targets = [], []
    for s in range(0, x_all.shape[0], batch):
        x, y = x_all[s:s + batch].to(device), y_all[s:s + batch].to(device)
        logits = model(x).reshape(-1, len(VOCAB)).float()
        y = y.reshape(-1)
        nll += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
        total += y.numel()
        if keep is not None:
            local = keep[(keep >= s * cfg.context) & (keep < s * cfg.context + y.numel())] - s * cfg.context
            kept_logits.append(logits[local.to(device)].cpu())
            kept_targets.append(y[local.to(device)].cpu())
    out = {"ce": nll / total, "acc": 100.0 * correct / total, "tokens": total}
    if keep is not None:
        logits = torch.cat(kept_logits).double()
        target = torch.cat(kept_targets)
        E = model.head.weight.detach().cpu().double()
        ce = F.cross_entropy(logits, target).item()
        # matrix_llm_loss returns mean(CE + MCE): the MCE part is the difference.
        out["mce"] = matrix_llm_loss(logits, target, E, method="exact").item() - ce
        out["mce_train_method"] = matrix_llm_loss(logits, target, E, method=cfg.method, top_k=cfg.top_k,
                                                  rank=cfg.rank).item() - ce
    model.train(was_training)
    return out


def head_effective_rank(model: CharTransformer) -> float:
    """Effective rank (paper Def. 3.5) of the uncentered second moment of the
    l2-normalized LM-head rows, E^T E / n: 1 if the token embeddings collapse onto
    one direction, at most min(vocab, dim)."""
    E = F.normalize(model.head.weight.detach().double().cpu(), dim=1)
    return covariance_effective_rank(E, center=False) if bool(torch.isfinite(E).all()) else math.nan


def _summarize_warnings(caught) -> list[str]:
    counts: dict[str, int] = {}
    for w in caught:
        key = f"{w.category.__name__}: {w.message}"
        counts[key] = counts.get(key, 0) + 1
    return [f"{n} x {key}" for key, n in counts.items()]


class Progress:
    """A tqdm bar when tqdm is installed, otherwise a line every 10% of the steps."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.total, self.desc, self.enabled, self.done = total, desc, enabled, 0
        self.bar = None
        self.start = time.perf_counter()
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, desc=desc, unit="step", leave=True)

    def update(self, **postfix) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            if self.done % 10 == 0 or self.done == self.total:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()})
        elif self.enabled and (self.done % max(1, self.total // 10) == 0 or self.done == self.total):
            values = " ".join(f"{k} {v:.4g}" for k, v in postfix.items())
            print(f"{self.desc}: step {self.done}/{self.total}, {values}, "
                  f"{time.perf_counter() - self.start:.0f} s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- #
# Outputs                                                                      #
# --------------------------------------------------------------------------- #
def describe_corpus(corpus: Corpus, train_ids: torch.Tensor, val_ids: torch.Tensor) -> str:
    other = int((torch.cat([train_ids, val_ids]) == OTHER).sum())
    return (f"the first {len(corpus.text):,} characters of the standard library of Python {corpus.python} "
            f"({len(corpus.files)} top-level .py files in sorted order, {corpus.files[0]} to {corpus.files[-1]}; "
            f"{other:,} of them outside the vocabulary, read as <other>): {train_ids.numel():,} training and "
            f"{val_ids.numel():,} held-out characters ({N_BLOCKS} contiguous blocks, every {VAL_EVERY}th held out)")


def describe_setup(cfg: Config) -> str:
    params = sum(p.numel() for p in CharTransformer(len(VOCAB), cfg.dim, cfg.layers, cfg.heads, cfg.context,
                                                    cfg.tied).parameters())
    return (f"causal Transformer, {cfg.layers} layers, width {cfg.dim}, {cfg.heads} heads, context {cfg.context}, "
            f"{'tied' if cfg.tied else 'untied'} LM head, {params:,} parameters, vocabulary {len(VOCAB)}; "
            f"{cfg.steps} steps of batch {cfg.batch_size} x {cfg.context} characters, AdamW (lr {cfg.lr}, "
            f"weight decay {cfg.weight_decay}, 10% warm-up then cosine to lr/10), gradient clipping at 1")


def describe_mce(cfg: Config) -> str:
    how = (f'method="topk", top_k={cfg.top_k}, rank={cfg.rank}' if cfg.method == "topk"
           else 'method="exact"')
    return f"MatrixLLMLoss(mce_weight={cfg.mce_weight}, {how}) on the LM head's weight, every predicted character"


def print_result(r: dict) -> None:
    if r["diverged"]:
        print(f"training diverged: {r['diverged']}")
    for line in r["warnings"]:
        print(f"loss warnings: {line}")
    print(f"held-out cross-entropy: {r['val_ce']:.4f} nats/char ({r['val_bits']:.4f} bits/char) "
          f"on {r['val_chars']:,} characters")
    print(f"held-out next-character accuracy: {r['val_acc']:.2f}%")
    print(f"held-out matrix cross-entropy (exact, float64): {r['val_mce']:.4f} "
          f"(training method: {r['val_mce_train_method']:.4f})")
    print(f"effective rank of the normalized LM-head embeddings: {r['head_erank']:.1f} (of {len(VOCAB)})")


def run_single(args, cfg: Config, corpus: Corpus, train_ids, val_ids) -> dict:
    print(f"{args.loss}: {describe_setup(cfg)}, seed {args.seed}")
    if args.loss != "ce":
        print(f"loss: cross-entropy + {describe_mce(cfg)}"
              + (", no MCE gradient into the LM head" if args.loss == "ce+mce-detached" else ""))
    print(f"text: {describe_corpus(corpus, train_ids, val_ids)}")
    start = time.perf_counter()
    r = train(args.loss, train_ids, val_ids, cfg, seed=args.seed, device=args.device, progress=not args.no_progress)
    print_result(r)
    print(f"time: {time.perf_counter() - start:.1f} s (training {r['train_seconds']:.1f} s)")
    return r


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
        lines.append(f"- {loss} versus ce: {head} ({loss} minus ce: "
                     f"{', '.join(f'{d:+.4f}' for d in diffs)} nats/char, mean {statistics.mean(diffs):+.4f}; "
                     f"accuracy {acc} points).")
    return lines


def collapse_note(by_loss: dict[str, list[dict]]) -> list[str]:
    """A sentence when an MCE run's LM-head rows ended on (nearly) one direction."""
    collapsed = {loss: statistics.mean(r["head_erank"] for r in rs) for loss, rs in by_loss.items()
                 if loss != "ce" and rs and all(r["head_erank"] < 2 for r in rs)}
    if not collapsed:
        return []
    ce = f" (ce: {statistics.mean(r['head_erank'] for r in by_loss['ce']):.1f})" if by_loss.get("ce") else ""
    names = ", ".join(f"{loss} {erank:.1f}" for loss, erank in collapsed.items())
    return [f"The LM-head rows of {', '.join(collapsed)} collapsed onto nearly one direction: effective rank "
            f"{names} of {len(VOCAB)}{ce}. When every row is parallel, Q is rank one along every target's "
            "embedding and the MCE term sits at its floor (about 1, the trace of Q) whatever the predicted "
            "distribution: a minimizer of eq. 23's MCE that the gradient through the head can reach.", ""]


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
        ax.plot([p["step"] for p in h], [p["val_ce"] for p in h], color=COLORS[r["loss"]], alpha=0.8,
                label=f"{r['loss']} seed {r['seed']}", linestyle=["-", "--", ":", "-."][seeds.index(r["seed"]) % 4])
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
            runs.append(train(loss, train_ids, val_ids, cfg, seed=seed, device=args.device,
                              progress=not args.no_progress))
            r = runs[-1]
            print(f"{loss} seed {seed}: held-out {r['val_ce']:.4f} nats/char, accuracy {r['val_acc']:.2f}%, "
                  f"MCE {r['val_mce']:.4f}, training {r['train_seconds']:.1f} s", flush=True)
    wall = time.perf_counter() - start
    by_loss = {loss: [r for r in runs if r["loss"] == loss] for loss in args.losses}

    with open(out / "char_lm_curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["loss", "seed", "step", "train_loss", "train_ce", "val_ce_sample"])
        for r in runs:
            for p in r["history"]:
                writer.writerow([r["loss"], r["seed"], p["step"]] + [
                    "" if p[k] is None else f"{p[k]:.5f}" for k in ("train_loss", "train_ce", "val_ce")])
    plotted = plot_curves(runs, out / "char_lm_curves.png")

    table = ["| loss | what is trained | held-out CE (nats/char) | bits/char | next-char accuracy (%) | "
             "held-out MCE | head embedding erank | training s/run |",
             "|---|---|---|---|---|---|---|---|"]
    for loss, rs in by_loss.items():
        table.append(f"| {loss} | {ABOUT[loss]} | {_mean_std([r['val_ce'] for r in rs], 4)} | "
                     f"{_mean_std([r['val_bits'] for r in rs], 4)} | {_mean_std([r['val_acc'] for r in rs], 2)} | "
                     f"{_mean_std([r['val_mce'] for r in rs], 3)} | {_mean_std([r['head_erank'] for r in rs], 1)} | "
                     f"{statistics.mean(r['train_seconds'] for r in rs):.0f} |")
    per_run = ["| seed | loss | held-out CE (nats/char) | accuracy (%) | held-out MCE | head embedding erank | "
               f"training loss, mean of the last {cfg.eval_every} steps | seconds (training + evaluation) |",
               "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        last = r["history"][-1]["train_loss"]
        per_run.append(f"| {r['seed']} | {r['loss']} | {r['val_ce']:.4f} | {r['val_acc']:.2f} | {r['val_mce']:.4f} | "
                       f"{r['head_erank']:.1f} | {'-' if last is None else f'{last:.4f}'} | "
                       f"{r['train_seconds']:.0f} + {r['eval_seconds']:.0f} |")
    warned = {loss: sorted({w for r in rs for w in r["warnings"]}) for loss, rs in by_loss.items()}
    notes = [f"- {loss}: {'; '.join(ws)}" for loss, ws in warned.items() if ws] or ["- none"]
    diverged = [f"- {r['loss']} seed {r['seed']}: {r['diverged']}" for r in runs if r["diverged"]]
    gaps = [abs(r["val_mce_train_method"] - r["val_mce"]) / abs(r["val_mce"]) for r in runs
            if r["loss"] != "ce" and math.isfinite(r["val_mce"]) and r["val_mce"] != 0]
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
        *([f"On those held-out characters, the training method's MCE differs from the exact one by at most "
           f"{100 * max(gaps):.2f}% (every MCE run).", ""] if gaps else []),
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
    print(f"wrote {out / 'char_lm.md'}, {out / 'char_lm_curves.csv'}"
          + (f", {out / 'char_lm_curves.png'}" if plotted else ""))
    print(f"time: {wall:.1f} s")
    return runs


def _hardware() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            model = names[0]
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = torch.get_num_threads()
    return f"{cores}-core CPU ({model}), {threads} torch thread{'s' if threads > 1 else ''}"


# --------------------------------------------------------------------------- #
# Command line                                                                 #
# --------------------------------------------------------------------------- #
def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Config()
    parser = argparse.ArgumentParser(
        description="Train a character-level Transformer on the Python standard library's source with "
                    "cross-entropy or cross-entropy + matrix cross-entropy (Matrix-LLM, paper eq. 23).")
    parser.add_argument("--loss", choices=LOSSES, default="ce+mce", help="training loss (default ce+mce)")
    parser.add_argument("--steps", type=_positive(int), default=d.steps, help=f"optimizer steps (default {d.steps})")
    parser.add_argument("--batch-size", type=_positive(int), default=d.batch_size,
                        help=f"windows per batch (default {d.batch_size})")
    parser.add_argument("--context", type=_positive(int), default=d.context,
                        help=f"characters of context (default {d.context})")
    parser.add_argument("--dim", type=_positive(int), default=d.dim, help=f"model width (default {d.dim})")
    parser.add_argument("--layers", type=_positive(int), default=d.layers,
                        help=f"Transformer blocks (default {d.layers})")
    parser.add_argument("--heads", type=_positive(int), default=d.heads, help=f"attention heads (default {d.heads})")
    parser.add_argument("--tied", action="store_true", help="tie the LM head to the input embedding")
    parser.add_argument("--lr", type=_positive(float), default=d.lr, help=f"AdamW peak learning rate (default {d.lr})")
    parser.add_argument("--mce-weight", type=_non_negative_float, default=d.mce_weight,
                        help=f"weight of the MCE term for ce+mce (default {d.mce_weight}, as in eq. 23)")
    parser.add_argument("--method", choices=("topk", "exact"), default=d.method,
                        help=f"MatrixLLMLoss method for ce+mce (default {d.method})")
    parser.add_argument("--top-k", type=_positive(int), default=d.top_k,
                        help=f"top_k of the topk method (default {d.top_k})")
    parser.add_argument("--rank", type=int, default=d.rank, help=f"rank of the topk method (default {d.rank})")
    parser.add_argument("--chars", type=_positive(int), default=1_500_000,
                        help="characters of standard-library source to read (default 1500000)")
    parser.add_argument("--eval-every", type=_positive(int), default=d.eval_every,
                        help=f"steps between learning-curve points (default {d.eval_every})")
    parser.add_argument("--val-mce-tokens", type=_positive(int), default=d.val_mce_tokens,
                        help=f"held-out characters the MCE is measured on (default {d.val_mce_tokens})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialization and the batches (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=_positive(int), default=1,
                        help="CPU threads for torch (default 1: results are deterministic for a given thread count)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    compare = parser.add_argument_group("--compare")
    compare.add_argument("--compare", action="store_true",
                         help="train both losses for each of --seeds and write char_lm.md to --out")
    compare.add_argument("--losses", nargs="+", choices=LOSSES, metavar="LOSS",
                         help=f"losses to compare (default all: {' '.join(LOSSES)})")
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
    return Config(steps=args.steps, batch_size=args.batch_size, context=args.context, dim=args.dim,
                  layers=args.layers, heads=args.heads, tied=args.tied, lr=args.lr, mce_weight=args.mce_weight,
                  method=args.method, top_k=args.top_k, rank=args.rank, eval_every=args.eval_every,
                  val_mce_tokens=args.val_mce_tokens)


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
            raise SystemExit(f"error: {e}")
        if args.compare:
            return run_compare(args, cfg, corpus, train_ids, val_ids, argv)
        return run_single(args, cfg, corpus, train_ids, val_ids)
    finally:
        torch.set_num_threads(previous_threads)


if __name__ == "__main__":
    main()
