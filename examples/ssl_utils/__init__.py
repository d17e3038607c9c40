"""The shared machinery of the examples: data, augmentations, networks, training and probes.

``train_ssl.py`` is the tutorial that uses it; ``experiments/`` the comparisons built on it.
"""

from .augment import AUGMENT, augment_1d, augment_cifar, augment_digits
from .common import (
    Progress,
    deterministic,
    hardware,
    lr_at,
    non_negative_float,
    positive,
    seed_everything,
    summarize_warnings,
)
from .data import Data, as_float, load, load_cifar10, load_digits, load_mnist1d, normalize
from .models import METHODS, Method, Siamese, available_losses, build_criterion, compute_loss, default_knob
from .train import baselines, embed, erank, evaluate_features, train, uniformity_gap

__all__ = [
    "AUGMENT",
    "Data",
    "METHODS",
    "Method",
    "Progress",
    "Siamese",
    "as_float",
    "augment_1d",
    "augment_cifar",
    "augment_digits",
    "available_losses",
    "baselines",
    "build_criterion",
    "compute_loss",
    "default_knob",
    "deterministic",
    "embed",
    "erank",
    "evaluate_features",
    "hardware",
    "load",
    "load_cifar10",
    "load_digits",
    "load_mnist1d",
    "lr_at",
    "non_negative_float",
    "normalize",
    "positive",
    "seed_everything",
    "summarize_warnings",
    "train",
    "uniformity_gap",
]
