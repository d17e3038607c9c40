"""Data sets, never downloaded: MNIST-1D (generated), scikit-learn's digits, a local CIFAR-10.

Each loader returns a :class:`Data` with the training and test inputs, labels and the
per-channel normalization applied after augmentation.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class Data:
    name: str
    x_train: torch.Tensor  # (N, C, L) or (N, C, H, W): float32, or uint8 for CIFAR-10
    y_train: np.ndarray
    x_test: torch.Tensor
    y_test: np.ndarray
    mean: torch.Tensor  # (C,) normalization applied after augmentation
    std: torch.Tensor


def load_mnist1d(cache_dir: str | os.PathLike | None = None) -> Data:
    """MNIST-1D (Greydanus & Kobak, "Scaling down deep learning", 2020): 4000 training and 1000 test
    signals of length 40, generated locally by the ``mnist1d`` package with its default arguments.

    The package's ``get_dataset`` downloads a pickle by default; its generator ``make_dataset`` does
    not, and is what is called here. The arrays are cached as ``mnist1d.npz`` in ``cache_dir`` (the
    system's temporary folder by default): generating them takes a few seconds.
    """
    path = Path(cache_dir or tempfile.gettempdir()) / "mnist1d.npz"
    if path.is_file():
        arrays = dict(np.load(path))
    else:
        from mnist1d.data import get_dataset_args, make_dataset

        state = np.random.get_state()  # make_dataset seeds numpy's global generator: restore it after
        made = make_dataset(get_dataset_args())
        np.random.set_state(state)
        arrays = {k: np.asarray(made[k]) for k in ("x", "y", "x_test", "y_test")}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    x_train = torch.from_numpy(arrays["x"].astype(np.float32)).unsqueeze(1)
    x_test = torch.from_numpy(arrays["x_test"].astype(np.float32)).unsqueeze(1)
    # make_dataset already standardizes the whole set to mean 0, standard deviation 1.
    return Data(
        "mnist1d",
        x_train,
        arrays["y"].astype(np.int64),
        x_test,
        arrays["y_test"].astype(np.int64),
        torch.zeros(1),
        torch.ones(1),
    )


def load_digits() -> Data:
    """scikit-learn's 8x8 digits (1797 images), a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = sk_load_digits()
    x = digits.images.astype(np.float32) / 16.0
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    x_train = torch.from_numpy(x_train).unsqueeze(1)
    mean, std = x_train.mean(), x_train.std()
    return Data(
        "digits", x_train, y_train, torch.from_numpy(x_test).unsqueeze(1), y_test, mean.reshape(1), std.reshape(1)
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    try:
        data, labels = batch[b"data"], batch[b"labels"]
    except (KeyError, TypeError):
        raise ValueError(
            f"{path.name}: not a CIFAR-10 python batch (expected a dict with b'data' and b'labels')"
        ) from None
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != data.shape[0]:
        raise ValueError(
            f"{path.name}: expected b'data' of shape (N, 3072) and N labels, got {data.shape} and {len(labels)} labels"
        )
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def load_cifar10(data_dir: str | os.PathLike) -> Data:
    """CIFAR-10 from a local copy of the python version (no download). The files are pickles:
    point ``data_dir`` only at a copy you trust."""
    root = Path(data_dir).expanduser()
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 not found in {root}: missing {', '.join(missing)}. Point --data-dir at the folder "
            "holding cifar-10-batches-py/ (the 'CIFAR-10 python version'); nothing is downloaded."
        )
    parts = [_read_cifar_batch(root / n) for n in names[:-1]]
    x_test, y_test = _read_cifar_batch(root / "test_batch")
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return Data(
        "cifar10",
        torch.from_numpy(x_train),
        y_train,
        torch.from_numpy(x_test),
        y_test,
        torch.tensor(CIFAR_MEAN),
        torch.tensor(CIFAR_STD),
    )


def load(name: str, data_dir=None, cache_dir=None) -> Data:
    if name == "mnist1d":
        return load_mnist1d(cache_dir)
    if name == "digits":
        return load_digits()
    return load_cifar10(data_dir)


def as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def normalize(x: torch.Tensor, data: Data) -> torch.Tensor:
    """Per-channel standardization of ``(N, C, ...)`` inputs."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - data.mean.to(x.device).view(shape)) / data.std.to(x.device).view(shape)
