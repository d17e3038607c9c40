"""The training loop, frozen-feature embedding and the evaluation probes (linear and k-NN)."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch

from matrixinfo.functional import uniformity_mce_loss, uniformity_mkl_loss
from matrixinfo.metrics import covariance_effective_rank

from .augment import AUGMENT
from .common import Progress, deterministic, lr_at, seed_everything, summarize_warnings
from .data import Data, as_float, normalize
from .models import METHODS, Siamese, build_criterion, compute_loss, mec_lam_scale


@torch.no_grad()
def embed(model: Siamese, x: torch.Tensor, data: Data, device: torch.device, batch: int = 1024):
    """Frozen backbone features and projector outputs, model in eval mode."""
    was_training = model.training
    model.eval()
    feats, projs = [], []
    for start in range(0, x.shape[0], batch):
        f = model.backbone(normalize(as_float(x[start : start + batch].to(device)), data))
        feats.append(f.cpu())
        projs.append(model.projector(f).cpu())
    model.train(was_training)
    return torch.cat(feats), torch.cat(projs)


def erank(z: torch.Tensor) -> float:
    """Covariance effective rank (the sigma^2 convention of paper Prop. 3.6); NaN for non-finite embeddings."""
    return covariance_effective_rank(z) if bool(torch.isfinite(z).all()) else float("nan")


def uniformity_gap(z: torch.Tensor) -> tuple[float, float]:
    """Uniformity-MCE and -MKL (eqs. 16, 17, lam = 1/d) of l2-normalized embeddings, in float64: how far
    their (1/B) Z^T Z is from I/d (the MKL is 0 there)."""
    if not bool(torch.isfinite(z).all()):
        return float("nan"), float("nan")
    z = torch.nn.functional.normalize(z.double(), dim=1)
    return float(uniformity_mce_loss(z)), float(uniformity_mkl_loss(z))


def evaluate_features(f_train, y_train, f_test, y_test, k: int) -> dict:
    """Linear probe (logistic regression on standardized features) and k-NN (majority of k, cosine)
    test accuracies, as fractions in [0, 1]; NaN for non-finite features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f_train, f_test = np.asarray(f_train, dtype=np.float64), np.asarray(f_test, dtype=np.float64)
    if not (np.isfinite(f_train).all() and np.isfinite(f_test).all()):
        return {"linear_probe": float("nan"), "knn": float("nan")}
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ConvergenceWarning on a diverged run is not news
        probe.fit(f_train, y_train)
    knn = KNeighborsClassifier(n_neighbors=min(k, len(y_train)), metric="cosine").fit(f_train, y_train)
    return {"linear_probe": float(probe.score(f_test, y_test)), "knn": float(knn.score(f_test, y_test))}


def baselines(data: Data, dim: int, seed: int, device: torch.device, k: int) -> dict:
    """The same encoder untrained (initialized from ``seed``) and the raw input, probed the same way."""
    seed_everything(seed, device)
    model = Siamese(data.name, dim, "joint").to(device)
    f_train, _ = embed(model, data.x_train, data, device)
    f_test, _ = embed(model, data.x_test, data, device)
    untrained = evaluate_features(f_train, data.y_train, f_test, data.y_test, k)

    def raw(x):
        return normalize(as_float(x), data).flatten(1)

    raw_scores = evaluate_features(raw(data.x_train), data.y_train, raw(data.x_test), data.y_test, k)
    return {
        "untrained_linear_probe": untrained["linear_probe"],
        "untrained_knn": untrained["knn"],
        "untrained_effective_rank": erank(f_test),
        "raw_linear_probe": raw_scores["linear_probe"],
        "raw_knn": raw_scores["knn"],
    }


def train(
    loss_name: str,
    data: Data,
    *,
    epochs: int,
    seed: int,
    batch_size: int,
    lr: float,
    dim: int,
    device: torch.device,
    knn_k: int = 20,
    progress: bool = True,
    return_model: bool = False,
    loss_options: dict | None = None,
) -> dict:
    """Pre-train with one loss and evaluate; returns the metrics, the per-epoch history
    and, with ``return_model``, the trained model. ``loss_options`` override the loss's defaults."""
    with deterministic(device):
        return _train(
            loss_name,
            data,
            epochs=epochs,
            seed=seed,
            batch_size=batch_size,
            lr=lr,
            dim=dim,
            device=device,
            knn_k=knn_k,
            progress=progress,
            return_model=return_model,
            loss_options=dict(loss_options or {}),
        )


def ema_momentum(step: int, total: int, base: float = 0.996) -> float:
    """BYOL's schedule, also the Matrix-SSL and MEC authors': base -> 1 along a cosine."""
    return 1 - (1 - base) * (math.cos(math.pi * step / total) + 1) / 2


def _train(loss_name, data, *, epochs, seed, batch_size, lr, dim, device, knn_k, progress, return_model, loss_options):
    method = METHODS[loss_name]
    g = seed_everything(seed, device)
    model = Siamese(data.name, dim, method.scheme).to(device)
    criterion = build_criterion(loss_name, dim, **loss_options).to(device)
    optimizer = torch.optim.AdamW(model.online_parameters(), lr=lr, weight_decay=1e-4)
    augment = AUGMENT[data.name]
    x_train = data.x_train.to(device)
    n = x_train.shape[0]
    batch_size = min(batch_size, n)
    steps_per_epoch = n // batch_size
    total = epochs * steps_per_epoch

    def point(epoch, loss_value):
        f, z = embed(model, data.x_test, data, device)
        mce, mkl = uniformity_gap(z)
        return {
            "epoch": epoch,
            "train_loss": loss_value,
            "erank_features": erank(f),
            "erank_projections": erank(z),
            "uniformity_mce": mce,
            "uniformity_mkl": mkl,
        }

    history = [point(0, None)]  # the initialization: no training loss yet
    caught: list[warnings.WarningMessage] = []
    diverged = None
    start = time.perf_counter()
    bar = Progress(epochs, loss_name, progress, unit="epoch")
    step = 0
    for epoch in range(1, epochs + 1):
        if loss_name == "mec":
            criterion.lam_scale = mec_lam_scale(epoch - 1, epochs)
        order = torch.randperm(n, generator=g, device=device)
        running = 0.0
        for i in range(steps_per_epoch):
            x = as_float(x_train[order[i * batch_size : (i + 1) * batch_size]])
            views = [normalize(augment(x, g), data) for _ in range(method.views)]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, lr)
            if hasattr(criterion, "check_radius"):
                # The Taylor-radius check reads the spectrum back to the host: once an epoch is enough.
                criterion.check_radius = i == 0
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                loss = compute_loss(model, criterion, method, views)
            caught.extend(seen)
            if not torch.isfinite(loss):
                diverged = f"non-finite loss ({loss.item()}) at epoch {epoch}, step {i + 1}"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if model.teacher is not None:
                model.update_teacher(ema_momentum(step, total))
            running += loss.item()
        if diverged:
            break
        history.append(point(epoch, running / steps_per_epoch))
        bar.update(loss=history[-1]["train_loss"], erank=history[-1]["erank_features"])
    bar.close()
    train_seconds = time.perf_counter() - start

    f_train, _ = embed(model, data.x_train, data, device)
    f_test, _ = embed(model, data.x_test, data, device)
    result = {
        "loss_name": loss_name,
        "seed": seed,
        "epochs": epochs,
        "dataset": data.name,
        **evaluate_features(f_train, data.y_train, f_test, data.y_test, knn_k),
        "effective_rank": [h["erank_features"] for h in history],
        "loss": [h["train_loss"] for h in history[1:]],
        "feature_dim": f_test.shape[1],
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - start,
        "diverged": diverged,
        "warnings": summarize_warnings(caught),
        "history": history,
    }
    if diverged:
        result.update(linear_probe=float("nan"), knn=float("nan"))
    if return_model:
        result["model"] = model
    return result
