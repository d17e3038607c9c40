#!/usr/bin/env python
"""Self-supervised pre-training with any matrixinfo loss, then frozen-feature evaluation.

A small, CPU-friendly analogue of the paper's experiments (sections 6.1 and 7):
an encoder and a projector are trained with one self-supervised loss on
unlabeled augmented views; the frozen encoder is then evaluated by a linear
probe (logistic regression on standardized features) and a k-NN classifier
(cosine), and the effective rank of the test features' covariance is tracked
after every epoch (the rank-increasing phenomenon of section 6.1).

Examples::

    python examples/train_ssl.py                          # Matrix-SSL on digits, about a minute on 2 cores
    python examples/train_ssl.py --loss barlow-twins --epochs 100
    python examples/train_ssl.py --dataset cifar10 --data-dir ~/data --device cuda --epochs 200
    python examples/train_ssl.py --compare --out examples/results   # every loss, 3 seeds

Datasets are never downloaded: ``digits`` is the 8x8 handwritten-digits set
bundled with scikit-learn; ``cifar10`` reads a local copy of the CIFAR-10
"python version" (``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``).
Those files are Python pickles: only point ``--data-dir`` at a copy you trust.

Requires the ``examples`` extra: ``pip install "matrixinfo[examples]"``
(scikit-learn, tqdm, matplotlib).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import math
import os
import pickle
import platform
import shlex
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import matrixinfo
from matrixinfo import losses
from matrixinfo.functional import byol_loss
from matrixinfo.metrics import covariance_effective_rank

# --------------------------------------------------------------------------- #
# Loss registry                                                                #
# --------------------------------------------------------------------------- #
# How each loss is trained:
#   "ema"       online network (encoder, projector, predictor) against an EMA
#               teacher (encoder, projector) run under no_grad; the loss is
#               symmetrized over the two view pairs, 0.5 * (L(p1, t2) + L(p2, t1)),
#               as the Matrix-SSL, MEC and BYOL authors do.
#   "stopgrad"  SimSiam: one network with a predictor, the other branch detached.
#   "joint"     one network for both views, L(z1, z2).
#   "multiview" EMP-SSL: L(z_1, ..., z_n) over n views of each image.


@dataclass(frozen=True)
class Method:
    cls: str  # the class in matrixinfo.losses, built with its defaults (the authors' settings)
    scheme: str  # "ema", "stopgrad", "joint" or "multiview", see above
    about: str
    views: int = 2
    # Weight of an added alignment term, BYOL's 2 - 2 cos(z1, z2), for the pure
    # uniformity losses (TCR, uniformity-MCE): the "uniformity + alignment"
    # recipe of Wang & Isola that the paper's section 5.2 generalizes. 50 is a
    # round number, not tuned.
    align: float = 0.0


METHODS = {
    "matrix-ssl": Method("MatrixSSLLoss", "ema", "Matrix-SSL (eq. 22), EMA teacher + predictor"),
    "mec": Method("MECLoss", "ema", "MEC (eq. 8), EMA teacher + predictor, lam warm-up over 10 epochs"),
    "byol": Method("BYOLLoss", "ema", "BYOL (eq. 3), EMA teacher + predictor"),
    "simsiam": Method("NegativeCosineSimilarityLoss", "stopgrad", "SimSiam (eq. 2), stop-gradient + predictor"),
    "barlow-twins": Method("BarlowTwinsLoss", "joint", "Barlow Twins (eq. 4)"),
    "vicreg": Method("VICRegLoss", "joint", "VICReg (eq. 5)"),
    "simclr": Method("SimCLRLoss", "joint", "SimCLR's NT-Xent (eq. 1)"),
    "spectral": Method("SpectralContrastiveLoss", "joint", "spectral contrastive loss"),
    "corinfomax": Method("CorInfoMaxLoss", "joint", "CorInfoMax (eq. 7)"),
    "tcr": Method("TCRLoss", "joint", "TCR (eq. 6) + 50 x alignment", align=50.0),
    "uniformity-mce": Method("UniformityMCELoss", "joint", "uniformity-MCE (eq. 16) + 50 x alignment", align=50.0),
    "emp-ssl": Method("EMPSSLLoss", "multiview", "EMP-SSL (TCR + invariance), 4 views", views=4),
}


def available_losses() -> list[str]:
    """CLI names whose loss class this matrixinfo provides."""
    return [name for name, m in METHODS.items() if m.cls in losses.__all__]


def build_criterion(name: str, dim: int) -> nn.Module:
    cls = getattr(losses, METHODS[name].cls)
    return cls(dim) if METHODS[name].cls == "CorInfoMaxLoss" else cls()  # it keeps d x d running estimates


def mec_lam_scale(epoch: int) -> float:
    """MEC's documented warm-up: lam starts at lam/8 and rises linearly to lam over 10 epochs."""
    return min(1.0, 1 / 8 + (1 - 1 / 8) * epoch / 10)


# --------------------------------------------------------------------------- #
# Data                                                                         #
# --------------------------------------------------------------------------- #
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class Data:
    name: str
    x_train: torch.Tensor  # (N, C, H, W), float32 in [0, 1] (digits) or uint8 (CIFAR-10)
    y_train: np.ndarray
    x_test: torch.Tensor
    y_test: np.ndarray
    mean: torch.Tensor  # (C,) normalization applied after augmentation
    std: torch.Tensor


def load_digits() -> Data:
    """scikit-learn's 8x8 digits (1797 images), a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = sk_load_digits()
    x = digits.images.astype(np.float32) / 16.0
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, stratify=digits.target, random_state=0)
    x_train = torch.from_numpy(x_train).unsqueeze(1)
    mean, std = x_train.mean(), x_train.std()
    return Data("digits", x_train, y_train, torch.from_numpy(x_test).unsqueeze(1), y_test,
                mean.reshape(1), std.reshape(1))


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    try:
        data, labels = batch[b"data"], batch[b"labels"]
    except (KeyError, TypeError):
        raise ValueError(
            f"{path.name}: not a CIFAR-10 python batch (expected a dict with b'data' and b'labels')") from None
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != data.shape[0]:
        raise ValueError(f"{path.name}: expected b'data' of shape (N, 3072) and N labels, "
                         f"got {data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def load_cifar10(data_dir: str | os.PathLike) -> Data:
    """CIFAR-10 from a local copy of the python version (no download)."""
    root = Path(data_dir).expanduser()
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 not found in {root}: missing {', '.join(missing)}. Point --data-dir at the folder "
            "holding cifar-10-batches-py/ (the 'CIFAR-10 python version'); nothing is downloaded.")
    parts = [_read_cifar_batch(root / n) for n in names[:-1]]
    x_test, y_test = _read_cifar_batch(root / "test_batch")
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return Data("cifar10", torch.from_numpy(x_train), y_train, torch.from_numpy(x_test), y_test,
                torch.tensor(CIFAR_MEAN), torch.tensor(CIFAR_STD))


def as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def normalize(x: torch.Tensor, data: Data) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    return (x - data.mean.to(x.device).view(shape)) / data.std.to(x.device).view(shape)


# --------------------------------------------------------------------------- #
# Augmentations, batched in torch on the data's device                         #
# --------------------------------------------------------------------------- #
def _uniform(g: torch.Generator, n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def _warp(x: torch.Tensor, theta: torch.Tensor, padding_mode: str) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def augment_digits(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random affine (rotation up to 15 degrees, zoom 0.85-1.15, shift up to 0.8 px),
    intensity scaling, Gaussian noise and random erasing on ``(N, 1, 8, 8)`` images in [0, 1]."""
    n, dev = x.shape[0], x.device
    angle = _uniform(g, n, -math.pi / 12, math.pi / 12, dev)
    zoom = _uniform(g, n, 0.85, 1.15, dev)
    shift = _uniform(g, 2 * n, -0.2, 0.2, dev).view(n, 2)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    x = _warp(x, theta, "zeros")
    x = x * _uniform(g, n, 0.6, 1.2, dev).view(n, 1, 1, 1)
    x = (x + 0.1 * torch.randn(x.shape, generator=g, device=dev)).clamp_(0.0, 1.0)
    # Random erasing (p = 0.5) of a 2-4 x 2-4 pixel rectangle.
    h, w = x.shape[-2:]
    size = torch.randint(2, 5, (2, n), generator=g, device=dev)
    top = (torch.rand(n, generator=g, device=dev) * (h - size[0] + 1)).long()
    left = (torch.rand(n, generator=g, device=dev) * (w - size[1] + 1)).long()
    rows = torch.arange(h, device=dev).view(1, h)
    cols = torch.arange(w, device=dev).view(1, w)
    in_rows = (rows >= top[:, None]) & (rows < (top + size[0])[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + size[1])[:, None])
    erase = (in_rows[:, :, None] & in_cols[:, None, :]) & (torch.rand(n, 1, 1, generator=g, device=dev) < 0.5)
    return x.masked_fill(erase[:, None], 0.0)


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def augment_cifar(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random resized crop (area 0.2-1, aspect 3/4-4/3), horizontal flip, color jitter
    (brightness, contrast, saturation 0.4, hue 0.1; p = 0.8) and grayscale (p = 0.2)
    on ``(N, 3, 32, 32)`` images in [0, 1]."""
    n, dev = x.shape[0], x.device
    area = _uniform(g, n, 0.2, 1.0, dev)
    ratio = torch.exp(_uniform(g, n, math.log(3 / 4), math.log(4 / 3), dev))
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (2 * torch.rand(n, generator=g, device=dev) - 1) * (1 - w)
    cy = (2 * torch.rand(n, generator=g, device=dev) - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=g, device=dev) < 0.5, -1.0, 1.0)
    zero = torch.zeros_like(w)
    theta = torch.stack([torch.stack([w * flip, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)
    x = _warp(x, theta, "reflection")

    jitter = (torch.rand(n, generator=g, device=dev) < 0.8).view(n, 1, 1, 1)
    y = x * _uniform(g, n, 0.6, 1.4, dev).view(n, 1, 1, 1)
    y = y.clamp(0, 1)
    mean = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * _uniform(g, n, 0.6, 1.4, dev).view(n, 1, 1, 1) + mean).clamp(0, 1)
    gray = _gray(y)
    y = ((y - gray) * _uniform(g, n, 0.6, 1.4, dev).view(n, 1, 1, 1) + gray).clamp(0, 1)
    # Hue: rotate the chroma (I, Q) plane of YIQ by up to 0.1 of a turn.
    yiq = torch.einsum("ij,njhw->nihw", _RGB_TO_YIQ.to(dev), y)
    turn = 2 * math.pi * _uniform(g, n, -0.1, 0.1, dev).view(n, 1, 1)
    i_, q_ = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], i_ * torch.cos(turn) - q_ * torch.sin(turn),
                       i_ * torch.sin(turn) + q_ * torch.cos(turn)], 1)
    y = torch.einsum("ij,njhw->nihw", _YIQ_TO_RGB.to(dev), yiq).clamp(0, 1)
    x = torch.where(jitter, y, x)
    grayscale = (torch.rand(n, generator=g, device=dev) < 0.2).view(n, 1, 1, 1)
    return torch.where(grayscale, _gray(x).expand_as(x), x)


AUGMENT = {"digits": augment_digits, "cifar10": augment_cifar}


# --------------------------------------------------------------------------- #
# Networks                                                                     #
# --------------------------------------------------------------------------- #
def mlp(sizes: list[int], last_bn: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(nn.Linear(a, b, bias=last and not last_bn))
        if not last or last_bn:
            layers.append(nn.BatchNorm1d(b))
        if not last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def encoder(dataset: str) -> tuple[nn.Module, int]:
    """The backbone whose frozen features are evaluated, and its output width."""
    if dataset == "digits":
        return nn.Sequential(nn.Flatten(), mlp([64, 512, 256], last_bn=True), nn.ReLU(inplace=True)), 256

    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    convs = block(3, 32, 1) + block(32, 64, 2) + block(64, 128, 2) + block(128, 256, 2)
    return nn.Sequential(*convs, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 256


class Siamese(nn.Module):
    """Encoder + projector, a predictor for the ema and stopgrad schemes, an EMA teacher for ema."""

    def __init__(self, dataset: str, dim: int, scheme: str):
        super().__init__()
        self.backbone, width = encoder(dataset)
        self.projector = mlp([width, 512, dim])
        self.predictor = mlp([dim, max(16, dim // 4), dim]) if scheme in ("ema", "stopgrad") else None
        self.teacher = None
        if scheme == "ema":
            self.teacher = copy.deepcopy(nn.Sequential(self.backbone, self.projector))
            self.teacher.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))

    def online_parameters(self):
        return [p for name, p in self.named_parameters() if not name.startswith("teacher.")]

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        online = nn.Sequential(self.backbone, self.projector)
        for t, o in zip(self.teacher.parameters(), online.parameters()):
            t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
        for t, o in zip(self.teacher.buffers(), online.buffers()):
            t.copy_(o)


def compute_loss(model: Siamese, criterion: nn.Module, method: Method, views: list[torch.Tensor]) -> torch.Tensor:
    if method.scheme == "ema":
        p1, p2 = (model.predictor(model(v)) for v in views)
        with torch.no_grad():
            t1, t2 = (model.teacher(v) for v in views)
        return 0.5 * (criterion(p1, t2) + criterion(p2, t1))
    if method.scheme == "stopgrad":
        z1, z2 = (model(v) for v in views)
        p1, p2 = model.predictor(z1), model.predictor(z2)
        return 0.5 * (criterion(p1, z2.detach()) + criterion(p2, z1.detach()))
    zs = [model(v) for v in views]
    loss = criterion(*zs)
    if method.align:
        loss = loss + method.align * byol_loss(*zs)
    return loss


# --------------------------------------------------------------------------- #
# Evaluation                                                                   #
# --------------------------------------------------------------------------- #
@torch.no_grad()
def embed(model: Siamese, x: torch.Tensor, data: Data, device: torch.device, batch: int = 1024):
    """Frozen backbone features and projector outputs, model in eval mode."""
    was_training = model.training
    model.eval()
    feats, projs = [], []
    for start in range(0, x.shape[0], batch):
        xb = normalize(as_float(x[start:start + batch].to(device)), data)
        f = model.backbone(xb)
        feats.append(f.cpu())
        projs.append(model.projector(f).cpu())
    model.train(was_training)
    return torch.cat(feats), torch.cat(projs)


def erank(z: torch.Tensor) -> float:
    """Covariance effective rank (the sigma^2 convention of paper Prop. 3.6); NaN for non-finite embeddings."""
    return covariance_effective_rank(z) if bool(torch.isfinite(z).all()) else float("nan")


def linear_probe(f_train, y_train, f_test, y_test) -> float:
    """Logistic regression on standardized frozen features; test accuracy in %."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ConvergenceWarning on a diverged run is not news
        clf.fit(f_train, y_train)
    return 100.0 * clf.score(f_test, y_test)


def knn_accuracy(f_train, y_train, f_test, y_test, k: int) -> float:
    """k-NN majority vote with cosine distance; test accuracy in %."""
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=min(k, len(y_train)), metric="cosine")
    return 100.0 * clf.fit(f_train, y_train).score(f_test, y_test)


def evaluate_features(f_train, y_train, f_test, y_test, k: int) -> dict:
    f_train, f_test = f_train.double().numpy(), f_test.double().numpy()
    if not (np.isfinite(f_train).all() and np.isfinite(f_test).all()):
        return {"linear_probe": float("nan"), "knn": float("nan")}
    return {"linear_probe": linear_probe(f_train, y_train, f_test, y_test),
            "knn": knn_accuracy(f_train, y_train, f_test, y_test, k)}


# --------------------------------------------------------------------------- #
# Training                                                                     #
# --------------------------------------------------------------------------- #
def seed_everything(seed: int, device: torch.device) -> torch.Generator:
    """Seed torch and numpy; returns the generator of the data order and augmentations."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


@contextlib.contextmanager
def deterministic(device: torch.device):
    """Deterministic kernels while training (errors on CPU if an op has none; a warning on GPUs), then restored."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = benchmark


def lr_at(step: int, total: int, base: float) -> float:
    """Linear warm-up over the first 10% of the steps, then cosine decay to 0."""
    warm = max(1, total // 10)
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def ema_momentum(step: int, total: int, base: float = 0.996) -> float:
    """BYOL's schedule, also the Matrix-SSL and MEC authors': base -> 1 along a cosine."""
    return 1 - (1 - base) * (math.cos(math.pi * step / total) + 1) / 2


def train(loss_name: str, data: Data, *, epochs: int, seed: int, batch_size: int, lr: float, dim: int,
          device: torch.device, knn_k: int = 20, progress: bool = True, return_model: bool = False) -> dict:
    """Pre-train with one loss and evaluate; returns the metrics, the per-epoch history
    and, with ``return_model``, the trained model."""
    with deterministic(device):
        return _train(loss_name, data, epochs=epochs, seed=seed, batch_size=batch_size, lr=lr, dim=dim,
                      device=device, knn_k=knn_k, progress=progress, return_model=return_model)


def _train(loss_name, data, *, epochs, seed, batch_size, lr, dim, device, knn_k, progress, return_model):
    method = METHODS[loss_name]
    g = seed_everything(seed, device)
    model = Siamese(data.name, dim, method.scheme).to(device)
    criterion = build_criterion(loss_name, dim).to(device)
    optimizer = torch.optim.AdamW(model.online_parameters(), lr=lr, weight_decay=1e-4)
    augment = AUGMENT[data.name]
    x_train = data.x_train.to(device)
    n = x_train.shape[0]
    batch_size = min(batch_size, n)
    steps_per_epoch = n // batch_size
    total = epochs * steps_per_epoch

    def rank_point(epoch, loss_value):
        f, z = embed(model, data.x_test, data, device)
        return {"epoch": epoch, "train_loss": loss_value, "erank_features": erank(f), "erank_projections": erank(z)}

    history = [rank_point(0, None)]  # the initialization: no training loss yet
    caught: list[warnings.WarningMessage] = []
    diverged = None
    start = time.perf_counter()
    bar = _tqdm(range(1, epochs + 1), disable=not progress, desc=loss_name, unit="epoch", leave=True)
    step = 0
    for epoch in bar:
        if loss_name == "mec":
            criterion.lam_scale = mec_lam_scale(epoch - 1)
        order = torch.randperm(n, generator=g, device=device)
        running = 0.0
        for i in range(steps_per_epoch):
            x = as_float(x_train[order[i * batch_size:(i + 1) * batch_size]])
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
        history.append(rank_point(epoch, running / steps_per_epoch))
        bar.set_postfix(loss=f"{history[-1]['train_loss']:.4g}", erank=f"{history[-1]['erank_features']:.1f}")
    bar.close()
    train_seconds = time.perf_counter() - start

    f_train, _ = embed(model, data.x_train, data, device)
    f_test, _ = embed(model, data.x_test, data, device)
    result = {"loss": loss_name, "seed": seed, "epochs": epochs, "dataset": data.name,
              **evaluate_features(f_train, data.y_train, f_test, data.y_test, knn_k),
              "erank_init": history[0]["erank_features"], "erank_final": history[-1]["erank_features"],
              "feature_dim": f_test.shape[1], "train_seconds": train_seconds,
              "seconds": time.perf_counter() - start, "diverged": diverged,
              "warnings": _summarize_warnings(caught), "history": history}
    if diverged:
        result.update(linear_probe=float("nan"), knn=float("nan"))
    if return_model:
        result["model"] = model
    return result


def _summarize_warnings(caught) -> list[str]:
    counts: dict[str, int] = {}
    for w in caught:
        key = f"{w.category.__name__}: {w.message}"
        counts[key] = counts.get(key, 0) + 1
    return [f"{n} x {key}" for key, n in counts.items()]


def _tqdm(iterable, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


# --------------------------------------------------------------------------- #
# Outputs                                                                      #
# --------------------------------------------------------------------------- #
def write_history(history: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def plot_ranks(curves: dict[str, list[dict]], path: Path, title: str, keys: dict[str, str]) -> None:
    """One panel per ``keys`` entry (history key -> axis label), one line per curve."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    fig = Figure(figsize=(6.4 * len(keys), 4.2))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    colors = [f"C{i}" for i in range(10)] + ["black", "navy"]
    for ax, (key, label) in zip(axes, keys.items()):
        for i, (name, history) in enumerate(curves.items()):
            ax.plot([h["epoch"] for h in history], [h[key] for h in history], marker=".", label=name,
                    color=colors[i % len(colors)], linestyle="-" if i < 10 else "--")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=2 if len(curves) > 6 else 1)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def print_result(r: dict, k: int) -> None:
    if r["diverged"]:
        print(f"training diverged: {r['diverged']}")
    for line in r["warnings"]:
        print(f"loss warnings: {line}")
    print(f"linear probe accuracy: {r['linear_probe']:.2f}%")
    print(f"k-NN accuracy (k={k}, cosine): {r['knn']:.2f}%")
    print(f"effective rank of the test features' covariance: {r['erank_init']:.1f} at init -> "
          f"{r['erank_final']:.1f} after {r['history'][-1]['epoch']} epochs (of {r['feature_dim']})")


def run_single(args, data: Data) -> dict:
    out = Path(args.out or f"ssl_runs/{args.loss}-{data.name}-seed{args.seed}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.loss} ({METHODS[args.loss].about}) on {data.name}: {len(data.y_train)} train / "
          f"{len(data.y_test)} test images, {args.epochs} epochs, batch {args.batch_size}, seed {args.seed}")
    r = train(args.loss, data, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr,
              dim=args.dim, device=args.device, knn_k=args.knn_k, progress=not args.no_progress)
    print_result(r, args.knn_k)
    write_history(r["history"], out / "effective_rank.csv")
    plot_ranks({args.loss: r["history"]}, out / "effective_rank.png",
               f"{args.loss} on {data.name}: covariance effective rank of the test embeddings (paper sec. 6.1)",
               {"erank_features": f"encoder features (of {r['feature_dim']})",
                "erank_projections": f"projector outputs (of {args.dim})"})
    settings = {"batch_size": args.batch_size, "lr": args.lr, "dim": args.dim, "knn_k": args.knn_k,
                "device": str(args.device), "threads": torch.get_num_threads(),
                "torch": torch.__version__, "matrixinfo": matrixinfo.__version__}
    with open(out / "results.json", "w") as f:
        json.dump({**{key: value for key, value in r.items() if key != "history"}, "settings": settings}, f, indent=2)
    print(f"wrote {out / 'effective_rank.csv'}, {out / 'effective_rank.png'}, {out / 'results.json'}")
    print(f"time: {r['seconds']:.1f} s (training {r['train_seconds']:.1f} s)")
    return r


# --------------------------------------------------------------------------- #
# --compare: every loss, several seeds, one markdown table                     #
# --------------------------------------------------------------------------- #
def _finite(values) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _mean_std(values: list[float]) -> str:
    values = _finite(values)
    if not values:
        return "diverged"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _baselines(data: Data, args) -> dict[str, list[dict]]:
    """Raw pixels and a randomly initialized (untrained) encoder, for scale."""
    def pixels(x):
        return normalize(as_float(x), data).flatten(1)

    baselines = {"raw pixels (no network)": [
        evaluate_features(pixels(data.x_train), data.y_train, pixels(data.x_test), data.y_test, args.knn_k)]}
    random_init = []
    for seed in args.seeds:
        seed_everything(seed, args.device)
        model = Siamese(data.name, args.dim, "joint").to(args.device)
        f_train, _ = embed(model, data.x_train, data, args.device)
        f_test, _ = embed(model, data.x_test, data, args.device)
        random_init.append({**evaluate_features(f_train, data.y_train, f_test, data.y_test, args.knn_k),
                            "erank_final": erank(f_test)})
    baselines["random init (untrained encoder)"] = random_init
    return baselines


def _best(by_loss: dict[str, list[dict]], key: str) -> str:
    means = {n: statistics.mean(v) for n, rs in by_loss.items() if (v := _finite(r[key] for r in rs))}
    if not means:
        return "none (every run diverged)"
    name = max(means, key=means.get)
    return f"**{name}** ({means[name]:.1f}%)"


def run_compare(args, data: Data, argv: list[str]) -> list[dict]:
    out = Path(args.out or "ssl_runs/compare")
    out.mkdir(parents=True, exist_ok=True)
    names = args.losses or available_losses()
    runs = []
    bar = _tqdm([(n, s) for n in names for s in args.seeds], disable=args.no_progress, desc="compare", unit="run")
    for name, seed in bar:
        bar.set_postfix(loss=name, seed=seed)
        runs.append(train(name, data, epochs=args.epochs, seed=seed, batch_size=args.batch_size, lr=args.lr,
                          dim=args.dim, device=args.device, knn_k=args.knn_k, progress=False))
    bar.close()
    by_loss = {n: [r for r in runs if r["loss"] == n] for n in names}
    feature_dim = runs[0]["feature_dim"]

    with open(out / "compare.csv", "w", newline="") as f:
        keys = ["loss", "seed", "epochs", "linear_probe", "knn", "erank_init", "erank_final", "seconds", "diverged"]
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(runs)

    curves = {}
    for n, rs in by_loss.items():
        complete = [r["history"] for r in rs if not r["diverged"]]
        if complete:
            curves[n] = [{"epoch": points[0]["epoch"],
                          "erank_features": statistics.mean(p["erank_features"] for p in points)}
                         for points in zip(*complete)]
    plot_ranks(curves, out / "compare_erank.png",
               f"{data.name}: covariance effective rank of the test features, mean over seeds",
               {"erank_features": f"effective rank (of {feature_dim})"})

    header = "| loss | what is trained | linear probe (%) | k-NN (%) | effective rank | seconds |"
    table = [header, "|---|---|---|---|---|---|"]
    for n, rs in by_loss.items():
        diverged = sum(1 for r in rs if r["diverged"])
        note = f" ({diverged} of {len(rs)} runs diverged)" if diverged else ""
        table.append(f"| {n} | {METHODS[n].about}{note} | {_mean_std([r['linear_probe'] for r in rs])} | "
                     f"{_mean_std([r['knn'] for r in rs])} | {_mean_std([r['erank_final'] for r in rs])} | "
                     f"{statistics.mean(r['seconds'] for r in rs):.1f} |")
    for label, rs in _baselines(data, args).items():
        rank = _mean_std([r["erank_final"] for r in rs]) if "erank_final" in rs[0] else "-"
        table.append(f"| *{label}* | baseline | {_mean_std([r['linear_probe'] for r in rs])} | "
                     f"{_mean_std([r['knn'] for r in rs])} | {rank} | - |")
    warned = {n: sorted({w for r in rs for w in r["warnings"]}) for n, rs in by_loss.items()}
    notes = [f"- {n}: {'; '.join(ws)}" for n, ws in warned.items() if ws] or ["- none"]

    text = [
        f"# Self-supervised losses on {data.name}: a small-scale analogue of the paper's Table 1",
        "",
        "Regenerate with (from the repository root):",
        "",
        "```",
        shlex.join(["python", "examples/train_ssl.py", *argv]),
        "```",
        "",
        f"Hardware: {_hardware()}; torch {torch.__version__}, matrixinfo {matrixinfo.__version__}, "
        f"Python {platform.python_version()}. Total time {sum(r['seconds'] for r in runs) / 60:.1f} min.",
        "",
        f"Every loss gets the same budget: {args.epochs} epochs of batch {args.batch_size} on "
        f"{len(data.y_train)} training images, AdamW with peak lr {args.lr}, projector dimension {args.dim}, seeds "
        f"{', '.join(map(str, args.seeds))}. Accuracies are on the {len(data.y_test)} held-out test images, from the "
        f"frozen {feature_dim}-d encoder features: a logistic-regression linear probe on standardized features and "
        f"a k-NN classifier (k = {args.knn_k}, cosine). Effective rank: of the covariance of the test features "
        f"(at most {feature_dim}) after the last epoch. Mean ± standard deviation over seeds; seconds per run "
        "(training, the per-epoch rank evaluation and the probes).",
        "",
        *table,
        "",
        f"Best mean linear probe: {_best(by_loss, 'linear_probe')}; best mean k-NN: {_best(by_loss, 'knn')}.",
        "",
        "Warnings raised by the losses during training (the Taylor-radius check runs on the first step of each "
        "epoch):",
        "",
        *notes,
        "",
        "The effective rank over training, averaged over seeds, is plotted in `compare_erank.png`; per-run numbers "
        "are in `compare.csv`.",
        "",
    ]
    (out / "compare.md").write_text("\n".join(text))
    print("\n".join(table))
    print(f"wrote {out / 'compare.md'}, {out / 'compare.csv'}, {out / 'compare_erank.png'}")
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
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = available_losses()
    parser = argparse.ArgumentParser(
        description="Self-supervised pre-training with a matrixinfo loss, then linear-probe and k-NN evaluation.",
        epilog="Losses: " + "; ".join(f"{n}: {METHODS[n].about}" for n in names),
    )
    parser.add_argument("--loss", choices=names, default="matrix-ssl", help="loss to train with (default matrix-ssl)")
    parser.add_argument("--dataset", choices=sorted(AUGMENT), default="digits",
                        help="digits: scikit-learn's bundled 8x8 digits; cifar10: a local copy, see --data-dir")
    parser.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (or that folder itself)")
    parser.add_argument("--epochs", type=_positive(int), help="default: 60, or 25 with --compare")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initialization, data order and "
                                                             "augmentations (default 0)")
    parser.add_argument("--batch-size", type=_positive(int), default=128, help="default 128")
    parser.add_argument("--lr", type=_positive(float), default=3e-3, help="AdamW peak learning rate (default 3e-3)")
    parser.add_argument("--dim", type=_positive(int), default=64, help="projector output dimension (default 64)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--knn-k", type=_positive(int), default=20, help="neighbours of the k-NN probe (default 20)")
    parser.add_argument("--out", help="output folder (default ssl_runs/<loss>-<dataset>-seed<seed>, "
                                      "or ssl_runs/compare with --compare)")
    parser.add_argument("--threads", type=_positive(int),
                        help="CPU threads for torch and scikit-learn (default: 1 for digits, whose small "
                             "matrices gain nothing from more; torch's default for cifar10)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    compare = parser.add_argument_group("--compare")
    compare.add_argument("--compare", action="store_true", help="train every loss over several seeds, write compare.md")
    compare.add_argument("--losses", nargs="+", choices=names, metavar="LOSS", help="losses to compare (default all)")
    compare.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds to compare (default 0 1 2)")
    args = parser.parse_args(argv)

    if args.dataset == "cifar10" and not args.data_dir:
        parser.error("--dataset cifar10 needs --data-dir (the folder with cifar-10-batches-py/; nothing is downloaded)")
    if args.data_dir and args.dataset != "cifar10":
        parser.error("--data-dir is only used with --dataset cifar10")
    if args.losses and not args.compare:
        parser.error("--losses is only used with --compare (use --loss for a single run)")
    try:
        args.device = torch.device(args.device)
    except RuntimeError as e:
        parser.error(f"--device {args.device!r}: {e}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available in this torch build or machine")
    if args.epochs is None:
        args.epochs = 25 if args.compare else 60
    if args.threads is None and args.dataset == "digits":
        args.threads = 1
    return args


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def main(argv: list[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    previous_threads = torch.get_num_threads()
    # threadpool_limits caps scikit-learn's BLAS and OpenMP pools (None: unchanged).
    with threadpool_limits(args.threads):
        torch.set_num_threads(args.threads or previous_threads)
        try:
            try:
                data = load_digits() if args.dataset == "digits" else load_cifar10(args.data_dir)
            except (FileNotFoundError, ValueError) as e:
                raise SystemExit(f"error: {e}")
            if args.compare:
                return run_compare(args, data, argv)
            return run_single(args, data)
        finally:
            torch.set_num_threads(previous_threads)


if __name__ == "__main__":
    main()
