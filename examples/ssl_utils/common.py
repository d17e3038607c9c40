"""Helpers shared by every example: hardware description, determinism, schedules, progress, argparse types.

Needs only torch (``char_lm.py`` uses it without scikit-learn); tqdm is used when installed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import time

import torch


def hardware() -> str:
    """The CPU model (``lscpu``'s model name, from /proc/cpuinfo), its cores and torch's thread count."""
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


def seed_everything(seed: int, device: torch.device) -> torch.Generator:
    """Seed torch and numpy; returns a generator for the data order and augmentations."""
    import numpy as np  # lazily: char_lm.py needs only torch

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


def lr_at(step: int, total: int, base: float, floor: float = 0.0) -> float:
    """Linear warm-up over the first 10% of the steps, then cosine decay to ``floor * base``."""
    warm = max(1, total // 10)
    if step < warm:
        return base * (step + 1) / warm
    cosine = 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    return base * (floor + (1 - floor) * cosine)


def summarize_warnings(caught) -> list[str]:
    """``["3 x RuntimeWarning: ...", ...]`` from a list of caught warnings, one line per distinct message."""
    counts: dict[str, int] = {}
    for w in caught:
        key = f"{w.category.__name__}: {w.message}"
        counts[key] = counts.get(key, 0) + 1
    return [f"{n} x {key}" for key, n in counts.items()]


class Progress:
    """A tqdm bar when tqdm is installed, otherwise a line every 10% of the steps."""

    def __init__(self, total: int, desc: str, enabled: bool, unit: str = "step"):
        self.total, self.desc, self.enabled, self.unit, self.done = total, desc, enabled, unit, 0
        self.bar = None
        self.start = time.perf_counter()
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, desc=desc, unit=unit, leave=True)

    def update(self, **postfix) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            if self.unit != "step" or self.done % 10 == 0 or self.done == self.total:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()})
        elif self.enabled and (self.done % max(1, self.total // 10) == 0 or self.done == self.total):
            values = " ".join(f"{k} {v:.4g}" for k, v in postfix.items())
            print(
                f"{self.desc}: {self.unit} {self.done}/{self.total}, {values}, "
                f"{time.perf_counter() - self.start:.0f} s",
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def positive(kind):
    """An argparse type: a positive ``kind`` (int or float), with a clear message otherwise."""

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


def non_negative_float(text: str) -> float:
    """An argparse type: a float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return value
