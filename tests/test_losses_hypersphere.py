"""Alignment and uniformity losses (Wang & Isola, 2020) against an independent NumPy transcription
of the paper's definitions (explicit loops over rows and pairs, float64)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import matrixinfo.functional._hypersphere as hypersphere
from matrixinfo import MatrixInfoValueError
from matrixinfo.functional import alignment_loss, uniformity_loss
from matrixinfo.losses import AlignmentLoss, UniformityLoss
from matrixinfo.metrics import alignment, uniformity


def _unit(row: np.ndarray) -> np.ndarray:
    return row / math.sqrt(sum(v * v for v in row))


def oracle_alignment(x: np.ndarray, y: np.ndarray, alpha: float) -> float:
    # E_{(x, y) positive} ||f(x) - f(y)||_2^alpha, f on the unit sphere.
    total = 0.0
    for a, b in zip(x, y):
        diff = _unit(a) - _unit(b)
        total += math.sqrt(sum(v * v for v in diff)) ** alpha
    return total / len(x)


def oracle_uniformity(x: np.ndarray, t: float) -> float:
    # log E_{x, y distinct} exp(-t ||f(x) - f(y)||_2^2).
    units = [_unit(r) for r in x]
    terms = [
        math.exp(-t * sum(v * v for v in units[i] - units[j])) for i, j in itertools.combinations(range(len(x)), 2)
    ]
    return math.log(sum(terms) / len(terms))


def _data(B=12, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, d)) * rng.uniform(0.5, 3.0, (B, 1))  # rows of different lengths
    y = x + 0.6 * rng.standard_normal((B, d))
    return x, y


@pytest.mark.parametrize("alpha", [2.0, 1.0, 0.5, 3.0])
def test_alignment_matches_the_transcribed_definition(alpha):
    x, y = _data()
    got = alignment_loss(torch.from_numpy(x), torch.from_numpy(y), alpha=alpha)
    assert got.dtype == torch.float64 and got.shape == ()
    assert math.isclose(float(got), oracle_alignment(x, y, alpha), rel_tol=1e-10)
    assert math.isclose(
        float(AlignmentLoss(alpha=alpha)(torch.from_numpy(x), torch.from_numpy(y))),
        oracle_alignment(x, y, alpha),
        rel_tol=1e-10,
    )


@pytest.mark.parametrize("t", [2.0, 0.5, 10.0])
def test_uniformity_matches_the_transcribed_definition(t):
    x, y = _data(B=15)
    got = uniformity_loss(torch.from_numpy(x), t=t)
    assert math.isclose(float(got), oracle_uniformity(x, t), rel_tol=1e-10)
    both = UniformityLoss(t=t)(torch.from_numpy(x), torch.from_numpy(y))  # the authors' (u(x) + u(y)) / 2
    assert math.isclose(float(both), (oracle_uniformity(x, t) + oracle_uniformity(y, t)) / 2, rel_tol=1e-10)


def test_uniformity_blocks_give_the_same_value(monkeypatch):
    # A block of 3 rows: the upper triangle is summed across several blocks (and the last one short).
    x, _ = _data(B=20, d=4, seed=3)
    monkeypatch.setattr(hypersphere, "PAIR_BLOCK_BYTES", 8 * 20 * 3)
    assert math.isclose(float(uniformity_loss(torch.from_numpy(x))), oracle_uniformity(x, 2.0), rel_tol=1e-10)


def test_the_oracles_can_fail():
    x, y = _data()
    assert not math.isclose(oracle_alignment(x, y, 2.0), oracle_alignment(x, x[::-1], 2.0), rel_tol=1e-3)
    assert not math.isclose(oracle_uniformity(x, 2.0), oracle_uniformity(x[[0] * 6 + [1] * 6], 2.0), rel_tol=1e-3)


def test_known_values():
    e = torch.eye(3, dtype=torch.float64)
    assert float(alignment_loss(e, e.roll(1, dims=0))) == pytest.approx(2.0, rel=1e-14)  # orthogonal: distance^2 = 2
    assert float(uniformity_loss(e)) == pytest.approx(-4.0, rel=1e-14)  # every pair at distance^2 = 2
    same = torch.ones(4, 3, dtype=torch.float64)
    assert float(uniformity_loss(same)) == pytest.approx(0.0, abs=1e-14)  # collapse: the maximum


def test_gradients_match_finite_differences():
    x, y = (torch.from_numpy(a).requires_grad_(True) for a in _data(B=6, d=3))
    assert torch.autograd.gradcheck(lambda a, b: alignment_loss(a, b, alpha=1.5), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: uniformity_loss(a, b, t=2.0), (x, y))


@pytest.mark.parametrize("alpha", [2.0, 1.0, 0.5])
def test_degenerate_batches_have_finite_gradients(alpha):
    z = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    alignment_loss(z, z.detach().clone(), alpha=alpha).backward()  # every pair aligned: distance 0
    assert torch.isfinite(z.grad).all() and float(z.grad.abs().max()) == 0.0
    collapsed = torch.ones(8, 4, dtype=torch.float64, requires_grad=True)
    uniformity_loss(collapsed).backward()
    assert torch.isfinite(collapsed.grad).all()


def test_a_large_scale_stays_finite():
    x, _ = _data(B=10)
    value = float(uniformity_loss(torch.from_numpy(x), t=2000.0))  # every exp term underflows float64
    assert math.isfinite(value) and value < -100


def test_the_metrics_share_the_maths():
    x, y = _data(B=17, d=6, seed=5)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    assert math.isclose(alignment(tx, ty, alpha=1.5), float(alignment_loss(tx, ty, alpha=1.5)), rel_tol=1e-12)
    assert math.isclose(uniformity(tx, t=3.0), float(uniformity_loss(tx, t=3.0)), rel_tol=1e-12)


def test_float32_is_close_to_the_oracle():
    x, y = _data()
    got = alignment_loss(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    assert got.dtype == torch.float32
    assert math.isclose(float(got), oracle_alignment(x, y, 2.0), rel_tol=1e-5)
    assert math.isclose(float(uniformity_loss(torch.from_numpy(x).float())), oracle_uniformity(x, 2.0), rel_tol=1e-5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: alignment_loss(torch.ones(3, 2), torch.ones(3, 2), alpha=0.0), r"alignment_loss: expected alpha"),
        (lambda: uniformity_loss(torch.ones(3, 2), t=-1.0), r"uniformity_loss: expected t"),
        (lambda: uniformity_loss(), r"uniformity_loss: expected at least one view of shape \(B, d\), got none"),
        (
            lambda: uniformity_loss(torch.ones(1, 2)),
            r"uniformity_loss: expected views\[0\] to have shape \(B, d\) with B >= 2",
        ),
        (
            lambda: alignment_loss(torch.ones(3, 2), torch.ones(4, 2)),
            r"alignment_loss: expected inputs of the same shape",
        ),
        (lambda: AlignmentLoss(alpha=-2), r"AlignmentLoss: expected alpha"),
        (lambda: UniformityLoss(t=0), r"UniformityLoss: expected t"),
    ],
)
def test_bad_arguments_raise_before_any_work(call, message):
    with pytest.raises(MatrixInfoValueError, match=message):
        call()
