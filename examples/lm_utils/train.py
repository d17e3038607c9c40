"""Training and evaluation of ``char_lm.py``'s model with cross-entropy or CE + MCE."""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for ssl_utils.common

from ssl_utils.common import Progress, deterministic, summarize_warnings  # noqa: E402
from ssl_utils.common import lr_at as _lr_at  # noqa: E402

from matrixinfo.functional import matrix_llm_loss  # noqa: E402
from matrixinfo.losses import MatrixLLMLoss  # noqa: E402
from matrixinfo.metrics import covariance_effective_rank  # noqa: E402

from .model import CharTransformer  # noqa: E402
from .text import VOCAB  # noqa: E402

LOSSES = ("ce", "ce+mce", "ce+mce-detached")


# The MCE method: "topk" with top_k=8, rank=8. Measured for this model's LM head
# (vocabulary 98, width 128), 1024 predicted characters, forward and backward on
# one thread: the exact method takes about 3.5 s, topk with the library's
# default top_k=32, rank=32 1.1-1.3 s, top_k=16, rank=16 0.26 s, top_k=8, rank=8
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


def lr_at(step: int, total: int, base: float) -> float:
    """Linear warm-up over the first 10% of the steps, then cosine decay to 10% of the peak."""
    return _lr_at(step, total, base, floor=0.1)


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


def train(
    loss: str,
    train_ids: torch.Tensor,
    val_ids: torch.Tensor,
    cfg: Config,
    *,
    seed: int,
    device: torch.device,
    progress: bool = True,
    return_model: bool = False,
) -> dict:
    """Train one model; returns held-out metrics, the training history and the timings."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    with deterministic(device):
        return _train(
            loss, train_ids, val_ids, cfg, seed=seed, device=device, progress=progress, return_model=return_model
        )


def _train(loss, train_ids, val_ids, cfg, *, seed, device, progress, return_model):
    torch.manual_seed(seed)
    model = CharTransformer(len(VOCAB), cfg.dim, cfg.layers, cfg.heads, cfg.context, cfg.tied).to(device)
    criterion = build_criterion(loss, cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    starts = batch_starts(train_ids.numel(), cfg, seed)
    train_ids_dev = train_ids.to(device)
    probe = _probe_windows(val_ids, cfg.context)  # a fixed slice of the held-out text for the curves

    history = [{"step": 0, "train_loss": None, "train_ce": None, "val_ce": evaluate(model, probe, cfg, device)["ce"]}]
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
            history.append(
                {
                    "step": step + 1,
                    "train_loss": run_loss / count,
                    "train_ce": run_ce / count,
                    "val_ce": evaluate(model, probe, cfg, device)["ce"],
                }
            )
            run_loss = run_ce = 0.0
            count = 0
    bar.close()

    tick = time.perf_counter()
    metrics = evaluate(model, val_ids, cfg, device, mce_tokens=cfg.val_mce_tokens) if not diverged else {}
    result = {
        "loss": loss,
        "seed": seed,
        "steps": cfg.steps,
        "diverged": diverged,
        "val_ce": metrics.get("ce", math.nan),
        "val_bits": metrics.get("ce", math.nan) / math.log(2),
        "val_acc": metrics.get("acc", math.nan),
        "val_mce": metrics.get("mce", math.nan),
        "val_mce_train_method": metrics.get("mce_train_method", math.nan),
        "val_chars": metrics.get("tokens", 0),
        "head_erank": head_effective_rank(model),
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - tick,
        "warnings": summarize_warnings(caught),
        "history": history,
    }
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
def evaluate(
    model: CharTransformer,
    ids: torch.Tensor,
    cfg: Config,
    device: torch.device,
    *,
    mce_tokens: int = 0,
    batch: int = 256,
) -> dict:
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
        y_all = ids[1 : n_windows * cfg.context + 1].view(n_windows, cfg.context)
    else:
        x_all, y_all = ids[:, :-1], ids[:, 1:]
    total = correct = 0
    nll = 0.0
    n = x_all.numel()
    keep = torch.linspace(0, n - 1, min(mce_tokens, n)).round().long() if mce_tokens else None
    kept_logits, kept_targets = [], []
    for s in range(0, x_all.shape[0], batch):
        x, y = x_all[s : s + batch].to(device), y_all[s : s + batch].to(device)
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
        out["mce_train_method"] = (
            matrix_llm_loss(logits, target, E, method=cfg.method, top_k=cfg.top_k, rank=cfg.rank).item() - ce
        )
    model.train(was_training)
    return out


def head_effective_rank(model: CharTransformer) -> float:
    """Effective rank (paper Def. 3.5) of the uncentered second moment of the
    l2-normalized LM-head rows, E^T E / n: 1 if the token embeddings collapse onto
    one direction, at most min(vocab, dim)."""
    E = F.normalize(model.head.weight.detach().double().cpu(), dim=1)
    return covariance_effective_rank(E, center=False) if bool(torch.isfinite(E).all()) else math.nan
