"""Cross-cutting tests for every loss class in ``matrixinfo.losses.__all__``
(built and called as ``loss_registry`` says): degenerate but valid batches,
input errors, mixed precision, output shape, module equals functional."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from loss_registry import REGISTRY, LossCase, llm_inputs, n_views, params

import matrixinfo.functional
import matrixinfo.losses

EMBEDDING_KINDS = ("pair", "views")


def test_every_public_loss_declares_how_it_is_built_and_called():
    """The registry is derived from the classes: check what each declares."""
    assert set(REGISTRY) == set(matrixinfo.losses.__all__)
    for name, cases in REGISTRY.items():
        cls = getattr(matrixinfo.losses, name)
        assert cases and all(c.cls_name == name for c in cases)
        assert cls.inputs in ("pair", "views", "llm"), name
        twin = getattr(matrixinfo.functional, cls.functional.__name__)
        assert twin is cls.functional, f"{name}.functional is not matrixinfo.functional.{twin.__name__}"
        for case in cases:
            module = case.build(8)
            assert isinstance(module, torch.nn.Module)
            inputs = cls.example_inputs(dim=8)
            assert len(inputs) == (3 if case.kind == "llm" else n_views(case))


def _views(case: LossCase, B: int, d: int, *, seed: int = 0, dtype=torch.float64, noise: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(B, d, generator=g, dtype=dtype)
    return [base + noise * torch.randn(B, d, generator=g, dtype=dtype) for _ in range(n_views(case))]


# --------------------------------------------------------------------------- #
# Degenerate but valid batches                                                 #
# --------------------------------------------------------------------------- #
def _collapsed(B, d, k):
    row = torch.linspace(-1.0, 2.0, d, dtype=torch.float64)
    return [row.expand(B, d).clone() for _ in range(k)]


def _wide(B, d, k):  # d > B
    g = torch.Generator().manual_seed(1)
    return [torch.randn(4, 12, generator=g, dtype=torch.float64) for _ in range(k)]


def _zero_row(B, d, k):
    g = torch.Generator().manual_seed(2)
    views = [torch.randn(B, d, generator=g, dtype=torch.float64) for _ in range(k)]
    for v in views:
        v[3] = 0.0
    return views


def _orthonormal(B, d, k):
    # Orthonormal rows: Z^T Z = I, every covariance-like matrix has exactly
    # repeated eigenvalues (where plain eigh autograd returns NaN).
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    return [q.clone() for _ in range(k)]


DEGENERATE = {
    "collapsed": _collapsed,
    "d_greater_than_B": _wide,
    "zero_row": _zero_row,
    "orthonormal_rows": _orthonormal,
}


@pytest.mark.parametrize("batch", sorted(DEGENERATE))
@pytest.mark.parametrize("case", params(kinds=EMBEDDING_KINDS))
def test_degenerate_batches_give_finite_values_and_gradients(case, batch):
    views = [v.requires_grad_() for v in DEGENERATE[batch](16, 8, n_views(case))]
    module = case.build(views[0].shape[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = case.call(module, views)
        grads = torch.autograd.grad(loss, views)
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    if case.taylor and runtime:
        # Outside the convergence radius the series may be meaningless, but it must say so.
        for w in runtime:
            assert case.functional in str(w.message) and "radius" in str(w.message), str(w.message)
        return
    assert not runtime, [str(w.message) for w in runtime]
    assert torch.isfinite(loss), f"{case.id} on {batch}: {loss}"
    for g in grads:
        assert torch.isfinite(g).all(), f"{case.id} on {batch}: non-finite gradient"


# --------------------------------------------------------------------------- #
# Input errors                                                                 #
# --------------------------------------------------------------------------- #
def _bad(case: LossCase, first: torch.Tensor, rest: torch.Tensor):
    return [first] + [rest] * (n_views(case) - 1)


BAD = {
    # name: (inputs from (first, rest), exception, what the message must show)
    "mismatched_shapes": (
        lambda: (torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 5, dtype=torch.float64)),
        ValueError,
        (r"(8, 4)", r"(8, 5)"),
    ),
    "one_dimensional": (
        lambda: (torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)),
        ValueError,
        (r"(8,)",),
    ),
    "single_sample": (
        lambda: (torch.randn(1, 4, dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64)),
        ValueError,
        (r"(1, 4)",),
    ),
    "integer_dtype": (
        lambda: (torch.ones(8, 4, dtype=torch.int64), torch.ones(8, 4, dtype=torch.int64)),
        TypeError,
        ("torch.int64",),
    ),
    "mismatched_devices": (
        lambda: (torch.empty(8, 4, device="meta", dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)),
        ValueError,
        ("meta", "cpu"),
    ),
}


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("case", params(kinds=EMBEDDING_KINDS))
def test_bad_inputs_raise_naming_the_loss_and_the_shapes(case, bad):
    if bad == "single_sample" and getattr(matrixinfo.losses, case.cls_name).min_batch == 1:
        pytest.skip("a per-sample mean accepts B = 1 (tests/test_reliability.py)")
    make, error, shown = BAD[bad]
    first, rest = make()
    module = case.build(4)
    pattern = re.escape(case.functional) + ".*" + ".*".join(re.escape(s) for s in shown)
    with pytest.raises(error, match=pattern):
        case.call(module, _bad(case, first, rest))
    with pytest.raises(error, match=pattern):
        case.call_functional(_bad(case, first, rest))


# --------------------------------------------------------------------------- #
# Mixed precision                                                              #
# --------------------------------------------------------------------------- #
# bfloat16 keeps 8 significant bits: the embeddings themselves carry relative
# errors of ~4e-3, which is what the 1e-2 bound on the loss allows for.
AUTOCAST_RTOL = 1e-2


def _embedding_inputs_under(case: LossCase, autocast: bool):
    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 16)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 32, generator=g)
    xs = [x + 0.5 * torch.randn(64, 32, generator=g) for _ in range(n_views(case))]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        zs = [layer(v) for v in xs]
        expected = torch.bfloat16 if autocast else torch.float32
        assert all(z.dtype == expected for z in zs)
        return case.call(case.build(16), zs)


def _llm_under(case: LossCase, autocast: bool):
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 20)
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(12, 8, generator=g)
    target = torch.randint(0, 20, (12,), generator=g)
    embedding = torch.randn(20, 6, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = layer(hidden)
        assert logits.dtype == (torch.bfloat16 if autocast else torch.float32)
        return case.call(case.build(), (logits, target, embedding))


@pytest.mark.parametrize("case", params())
def test_bfloat16_autocast_is_finite_and_close_to_float32(case):
    run = _llm_under if case.kind == "llm" else _embedding_inputs_under
    with warnings.catch_warnings():
        if case.taylor:
            warnings.simplefilter("ignore", RuntimeWarning)
        reference = run(case, autocast=False)
        mixed = run(case, autocast=True)
    assert torch.isfinite(mixed)
    assert reference.dtype == torch.float32
    mixed, reference = float(mixed.detach()), float(reference.detach())
    rel = abs(mixed - reference) / max(abs(reference), 1e-30)
    assert rel <= AUTOCAST_RTOL, f"{case.id}: bf16 {mixed} vs float32 {reference} (rel {rel:.2e})"


# --------------------------------------------------------------------------- #
# Output shape, module equals functional                                       #
# --------------------------------------------------------------------------- #
def _inputs(case: LossCase):
    if case.kind == "llm":
        return llm_inputs()
    return _views(case, 16, 6, seed=4)


@pytest.mark.parametrize("case", params())
def test_module_returns_a_0d_tensor(case):
    inputs = _inputs(case)
    with warnings.catch_warnings():
        if case.taylor:
            warnings.simplefilter("ignore", RuntimeWarning)
        out = case.call(case.build(6), inputs)
    assert isinstance(out, torch.Tensor) and out.shape == () and out.dtype == torch.float64
    assert math.isfinite(float(out))


@pytest.mark.parametrize("case", params())
def test_module_equals_functional(case):
    assert case.functional is not None
    inputs = _inputs(case)
    with warnings.catch_warnings():
        if case.taylor:
            warnings.simplefilter("ignore", RuntimeWarning)
        via_module = case.call(case.build(6), inputs)
        via_function = case.call_functional(inputs)
    torch.testing.assert_close(via_module, via_function, rtol=0, atol=0)
