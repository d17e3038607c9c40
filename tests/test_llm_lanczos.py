"""Matrix-LLM ``method="lanczos"`` (the default): Gauss quadrature from the target's embedding.

Oracles: ``method="exact"`` (eigh of the full ``(N, d, d)`` matrices, itself
checked against SciPy's ``logm`` in test_losses_llm.py), the SciPy float64
oracle of that file, and finite differences (``gradcheck``). The quadrature and
its Krylov gradient are exact once the Krylov space is invariant (``steps >= d``
or ``steps > n``), which the first tests use; the last ones check the accuracy
stated in the docstring where it is approximate.
"""

from __future__ import annotations

import pytest
import torch
from test_losses_llm import oracle

import matrixinfo
from matrixinfo.functional import matrix_llm_loss
from matrixinfo.losses import MatrixLLMLoss

RTOL64 = 1e-10
# Gradients of a loss whose terms reach ~14 (-log eps) summed over tokens: relative to the gradient's norm.
GRAD_RTOL64 = 1e-8


def inputs(N, n, d, *, scale=1.0, seed=0, norms=True):
    """Logits of standard deviation ``scale``, uniformly random targets, an embedding whose rows have norms 0.3-3."""
    g = torch.Generator().manual_seed(seed)
    E = torch.randn(n, d, generator=g, dtype=torch.float64)
    if norms:
        E = E * torch.empty(n, 1, dtype=torch.float64).uniform_(0.3, 3.0, generator=g)
    logits = scale * torch.randn(N, n, generator=g, dtype=torch.float64)
    target = torch.randint(0, n, (N,), generator=g)
    return logits, target, E


def value_and_grads(logits, target, E, **kw):
    lg = logits.clone().requires_grad_(True)
    em = E.clone().requires_grad_(True)
    v = matrix_llm_loss(lg, target, em, **kw)
    v.backward()
    return v.detach(), lg.grad, em.grad


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(
    ("N", "n", "d", "steps"),
    [(6, 40, 5, 5), (6, 40, 5, 9), (5, 4, 8, 5), (7, 300, 12, 12)],
    ids=["steps=d", "steps>d", "n<d-breakdown", "larger"],
)
def test_exact_once_the_krylov_space_is_invariant(N, n, d, steps):
    logits, target, E = inputs(N, n, d, seed=N + n)
    target[1] = -100
    exact = value_and_grads(logits, target, E, method="exact")
    got = value_and_grads(logits, target, E, method="lanczos", steps=steps)
    assert abs(got[0] - exact[0]) < RTOL64 * abs(exact[0])
    assert abs(got[0].item() - oracle(logits, target, E)) < RTOL64 * abs(got[0].item())
    assert rel(got[1], exact[1]) < GRAD_RTOL64
    assert rel(got[2], exact[2]) < GRAD_RTOL64


def test_gradient_passes_gradcheck_where_exact():
    logits, target, E = inputs(3, 7, 3, seed=3)
    logits.requires_grad_(True)
    E.requires_grad_(True)

    def f(lg, em):
        return matrix_llm_loss(lg, target, em, method="lanczos", steps=3)

    assert torch.autograd.gradcheck(f, (logits, E))


def test_rows_below_the_norm_floor_follow_normalize():
    # F.normalize divides by max(||e||, 1e-12): a zero row stays zero, a tiny one is scaled by 1e12.
    logits, target, E = inputs(4, 9, 3, seed=4)
    E[2] = 0.0
    E[5] = 1e-14 * E[5]
    target[0] = 6
    exact = value_and_grads(logits, target, E, method="exact")
    got = value_and_grads(logits, target, E, method="lanczos", steps=3)
    assert abs(got[0] - exact[0]) < RTOL64 * abs(exact[0])
    assert rel(got[1], exact[1]) < GRAD_RTOL64
    assert torch.allclose(got[2], exact[2], rtol=1e-8, atol=1e-10 * exact[2].abs().max().item())


def test_target_with_a_zero_embedding_is_finite():
    logits, target, E = inputs(3, 9, 4, seed=5)
    E[target[0]] = 0.0
    v, g_logits, g_E = value_and_grads(logits, target, E, method="lanczos", steps=4)
    exact = value_and_grads(logits, target, E, method="exact")
    assert abs(v - exact[0]) < RTOL64 * abs(exact[0])
    assert torch.isfinite(g_logits).all() and torch.isfinite(g_E).all()


def test_flat_softmax_accuracy_as_documented():
    # The docstring's table, first row (n = 2048, d = 64, logits of standard deviation 1,
    # isotropic unit-scale embedding): measured 1.2e-6 / 1.6e-4 / 8.0e-3 with the default steps=4.
    logits, target, E = inputs(8, 2048, 64, seed=6, norms=False)
    exact = value_and_grads(logits, target, E, method="exact")
    got = value_and_grads(logits, target, E)
    assert abs(got[0] - exact[0]) < 1e-5 * abs(exact[0])
    assert rel(got[1], exact[1]) < 1e-3
    assert rel(got[2], exact[2]) < 2e-2
    # More steps converge (steps=8: 3e-9 / 3e-6 / 3e-5 there).
    more = value_and_grads(logits, target, E, steps=8)
    assert rel(more[2], exact[2]) < rel(got[2], exact[2]) / 10


def test_float32_matches_float64():
    logits, target, E = inputs(16, 500, 32, seed=7)
    ref = value_and_grads(logits, target, E)
    got = value_and_grads(logits.float(), target, E.float())
    assert got[0].dtype == torch.float32
    assert abs(got[0].double() - ref[0]) < 1e-5 * abs(ref[0])
    # Gradients: one float32 rounding per product of the Krylov recurrence, amplified by 1/theta_min.
    assert rel(got[1].double(), ref[1]) < 1e-4
    assert rel(got[2].double(), ref[2]) < 1e-4


def test_detach_embedding_stops_the_mce_gradient():
    logits, target, E = inputs(4, 30, 5, seed=8)
    logits.requires_grad_(True)
    E.requires_grad_(True)
    matrix_llm_loss(logits, target, E, detach_embedding=True).backward()
    assert E.grad is None or not E.grad.any()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_non_finite_input_is_nan_without_error():
    logits, target, E = inputs(4, 30, 5, seed=9)
    for bad in ("logits", "embedding"):
        lg, em = logits.clone(), E.clone()
        (lg if bad == "logits" else em)[1, 2] = float("nan")
        assert torch.isnan(matrix_llm_loss(lg, target, em))
        em = E.clone()
        em[3, 0] = float("inf")
        assert torch.isnan(matrix_llm_loss(logits, target, em))


def test_second_derivative_is_refused():
    logits, target, E = inputs(3, 12, 4, seed=10)
    logits.requires_grad_(True)
    (g,) = torch.autograd.grad(matrix_llm_loss(logits, target, E), logits, create_graph=True)
    with pytest.raises(matrixinfo.MatrixInfoSecondDerivativeError, match="method='lanczos'"):
        g.sum().backward()


def test_steps_is_checked_and_passed_by_the_module():
    logits, target, E = inputs(3, 12, 4, seed=11)
    with pytest.raises(ValueError, match="matrix_llm_loss: expected steps"):
        matrix_llm_loss(logits, target, E, steps=0)
    with pytest.raises(ValueError, match="MatrixLLMLoss: expected steps"):
        MatrixLLMLoss(steps=0)
    module = MatrixLLMLoss(steps=2)
    assert torch.equal(module(logits, target, E), matrix_llm_loss(logits, target, E, steps=2))
    assert not torch.equal(module(logits, target, E), matrix_llm_loss(logits, target, E, steps=1))


def test_no_per_token_d_by_d_tensor():
    # Every tensor the forward and backward create stays below N * d * d elements (the exact path's size).
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    Largest.numel = max(Largest.numel, t.numel())
            return out

    N, n, d = 8, 40, 16
    logits, target, E = inputs(N, n, d, seed=12)
    logits.requires_grad_(True)
    E.requires_grad_(True)
    with Largest():
        matrix_llm_loss(logits, target, E).backward()
    assert 0 < Largest.numel < N * d * d
    with Largest():  # the oracle does form them: the probe sees (N, d, d)
        matrix_llm_loss(logits, target, E, method="exact").backward()
    assert Largest.numel >= N * d * d


@pytest.mark.parametrize("steps", [3, 4, 6])
def test_backward_rank_truncation_is_below_the_krylov_error(monkeypatch, steps):
    # The embedding's direct gradient keeps 3 eigenpairs of the per-token steps x steps matrix;
    # keeping all of them (the untruncated Krylov gradient) differs by less than 1e-3 of its norm.
    from matrixinfo.functional import _llm_lanczos

    logits, target, E = inputs(8, 1000, 48, seed=13, norms=False)
    truncated = value_and_grads(logits, target, E, steps=steps)
    monkeypatch.setattr(_llm_lanczos, "_BACKWARD_RANK", steps)
    full = value_and_grads(logits, target, E, steps=steps)
    assert torch.equal(truncated[0], full[0]) and torch.equal(truncated[1], full[1])
    assert rel(truncated[2], full[2]) < 1e-3
    exact = value_and_grads(logits, target, E, method="exact")
    assert rel(truncated[2], full[2]) < rel(full[2], exact[2])


def test_compiles_and_matches_eager():
    logits, target, E = inputs(6, 30, 5, seed=14)
    target[2] = -100
    criterion = MatrixLLMLoss(steps=3)
    eager = value_and_grads(logits, target, E, steps=3)
    compiled = torch.compile(criterion, backend="aot_eager")
    lg, em = logits.clone().requires_grad_(True), E.clone().requires_grad_(True)
    value = compiled(lg, target, em)
    value.backward()
    assert abs(value.detach() - eager[0]) < RTOL64 * abs(eager[0])
    assert rel(lg.grad, eager[1]) < GRAD_RTOL64 and rel(em.grad, eager[2]) < GRAD_RTOL64
