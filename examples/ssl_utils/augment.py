"""Augmentations, batched in torch on the data's device, driven by one ``torch.Generator``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(g: torch.Generator, n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def _warp(x: torch.Tensor, theta: torch.Tensor, padding_mode: str) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def _segment_mask(n: int, length: int, low: int, high: int, p: float, g, dev) -> torch.Tensor:
    """(n, length) booleans: with probability p, a random run of low..high-1 positions."""
    size = torch.randint(low, high, (n,), generator=g, device=dev)
    start = (torch.rand(n, generator=g, device=dev) * (length - size + 1)).long()
    pos = torch.arange(length, device=dev).view(1, length)
    inside = (pos >= start[:, None]) & (pos < (start + size)[:, None])
    return inside & (torch.rand(n, 1, generator=g, device=dev) < p)


def augment_1d(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """For ``(N, 1, L)`` standardized signals: a slight time warp (a smooth sine displacement of up to
    4% of the length), random shift (up to 10% of the length) and zoom (0.9-1.1), amplitude scaling
    (0.8-1.2), Gaussian noise (0.1) and cutout (p = 0.5, 3-8 samples set to 0)."""
    n, length, dev = x.shape[0], x.shape[-1], x.device
    u = torch.linspace(-1 + 1 / length, 1 - 1 / length, length, device=dev).view(1, length)
    zoom = _uniform(g, n, 0.9, 1.1, dev).view(n, 1)
    shift = _uniform(g, n, -0.2, 0.2, dev).view(n, 1)
    amp = _uniform(g, n, -0.08, 0.08, dev).view(n, 1)
    phase = _uniform(g, n, 0, 2 * math.pi, dev).view(n, 1)
    src = zoom * u + shift + amp * torch.sin(math.pi * u + phase)  # where each output sample reads from
    grid = torch.stack([src, torch.zeros_like(src)], -1).unsqueeze(1)  # (N, 1, L, 2) for a (N, C, 1, L) image
    x = F.grid_sample(x.unsqueeze(2), grid, mode="bilinear", padding_mode="border", align_corners=False).squeeze(2)
    x = x * _uniform(g, n, 0.8, 1.2, dev).view(n, 1, 1)
    x = x + 0.1 * torch.randn(x.shape, generator=g, device=dev)
    return x.masked_fill(_segment_mask(n, length, 3, 9, 0.5, g, dev)[:, None], 0.0)


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
    rows = _segment_mask(n, x.shape[-2], 2, 5, 1.0, g, dev)
    cols = _segment_mask(n, x.shape[-1], 2, 5, 1.0, g, dev)
    erase = (rows[:, :, None] & cols[:, None, :]) & (torch.rand(n, 1, 1, generator=g, device=dev) < 0.5)
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
    y = (x * _uniform(g, n, 0.6, 1.4, dev).view(n, 1, 1, 1)).clamp(0, 1)
    mean = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * _uniform(g, n, 0.6, 1.4, dev).view(n, 1, 1, 1) + mean).clamp(0, 1)
    gray = _gray(y)
    y = ((y - gray) * _uniform(g, n, 0.6, 1.4, dev).view(n, 1, 1, 1) + gray).clamp(0, 1)
    # Hue: rotate the chroma (I, Q) plane of YIQ by up to 0.1 of a turn.
    yiq = torch.einsum("ij,njhw->nihw", _RGB_TO_YIQ.to(dev), y)
    turn = 2 * math.pi * _uniform(g, n, -0.1, 0.1, dev).view(n, 1, 1)
    i_, q_ = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack(
        [yiq[:, 0], i_ * torch.cos(turn) - q_ * torch.sin(turn), i_ * torch.sin(turn) + q_ * torch.cos(turn)], 1
    )
    y = torch.einsum("ij,njhw->nihw", _YIQ_TO_RGB.to(dev), yiq).clamp(0, 1)
    x = torch.where(jitter, y, x)
    grayscale = (torch.rand(n, generator=g, device=dev) < 0.2).view(n, 1, 1, 1)
    return torch.where(grayscale, _gray(x).expand_as(x), x)


AUGMENT = {"mnist1d": augment_1d, "digits": augment_digits, "cifar10": augment_cifar}
