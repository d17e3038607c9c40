"""Autograd paths beyond the first derivative, for every public loss (as
``loss_registry`` builds them) and core function:

* second derivatives (``create_graph=True``): correct (``gradgradcheck``
  against finite differences of the first derivative, float64) or a
  :class:`matrixinfo.MatrixInfoSecondDerivativeError`, never a wrong number;
* no host read of a tensor value with ``check_radius=False`` (counted under a
  ``TorchDispatchMode``);
* ``torch.func.grad`` equal to autograd, and ``torch.func.vmap`` over a batch
  of inputs equal to a loop (what docs/numerics.rst says works under vmap);
* ``torch.compile(fullgraph=True)`` of the forward and backward.
"""

from __future__ import annotations

import inspect
import math
import warnings

import pytest
import torch
from loss_registry import LossCase, all_cases, llm_inputs, n_views, params
from torch.utils._python_dispatch import TorchDispatchMode

import matrixinfo
import matrixinfo.functional
import matrixinfo.losses

# --------------------------------------------------------------------------- #
# Inputs and calls                                                             #
# --------------------------------------------------------------------------- #
B, D = 12, 5  # the shapes of the issue's reproduction


def _has_check_radius(case: LossCase) -> bool:
    return "check_radius" in inspect.signature(getattr(matrixinfo.functional, case.functional)).parameters


def _options(case: LossCase) -> dict:
    return {"check_radius": False} if _has_check_radius(case) else {}


def _inputs(case: LossCase, *, seed: int = 0, batch: tuple = ()) -> list[torch.Tensor]:
    """Differentiable float64 inputs (views; or logits and embedding)."""
    g = torch.Generator().manual_seed(seed)
    if case.kind == "llm":
        logits, _, embedding = llm_inputs(seed=seed)
        if batch:
            logits = logits + 0.3 * torch.randn(*batch, *logits.shape, generator=g, dtype=torch.float64)
        return [logits, embedding]
    base = torch.randn(*batch, B, D, generator=g, dtype=torch.float64)
    return [base + 0.5 * torch.randn(*batch, B, D, generator=g, dtype=torch.float64) for _ in range(n_views(case))]


def _functional(case: LossCase, **overrides):
    """The loss as a function of the differentiable inputs."""
    opts = {**_options(case), **overrides}
    if case.kind == "llm":
        _, target, _ = llm_inputs()
        return lambda logits, embedding: case.call_functional((logits, target, embedding), **opts)
    return lambda *views: case.call_functional(views, **opts)


def _module(case: LossCase, **overrides):
    """The default-constructed module (only ``check_radius=False`` added) as a
    function of the differentiable inputs."""
    module = case.build(D, **{**_options(case), **overrides})
    if case.kind == "llm":
        _, target, _ = llm_inputs()
        return lambda logits, embedding: module(logits, target, embedding)
    return lambda *views: module(*views)


# --------------------------------------------------------------------------- #
# Second derivatives                                                           #
# --------------------------------------------------------------------------- #
def _gradgradcheck_or_refused(f, inputs) -> str:
    inputs = [x.detach().requires_grad_(True) for x in inputs]
    try:
        # Finite differences of the first derivative in float64 (step 1e-6): their
        # error is ~1e-9 here, so 1e-6 separates it from a wrong Hessian (the
        # defects found were 3% to 25x off).
        torch.autograd.gradgradcheck(f, tuple(inputs), atol=1e-6, rtol=1e-5)
    except matrixinfo.MatrixInfoSecondDerivativeError as err:
        assert "second derivatives" in str(err) and "exact" in str(err), str(err)
        return "refused"
    return "correct"


# Paths whose second derivatives are refused rather than computed; every other
# case must pass gradgradcheck.
REFUSED = {"MatrixLLMLoss", "MatrixLLMLoss[topk]", "MatrixLLMLoss[subspace]"}


def _hvp_error(f, inputs, seed: int) -> float:
    """Relative error of the autograd Hessian-vector product ``H v`` against
    central finite differences of the gradient along ``v`` (float64, step
    1e-5: truncation ~1e-10 and rounding ~1e-11 relative here)."""
    x = [t.detach().requires_grad_(True) for t in inputs]
    g = torch.Generator().manual_seed(seed)
    v = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in x]
    grads = torch.autograd.grad(f(*x), x, create_graph=True)
    hvp = torch.autograd.grad(grads, x, v)
    h = 1e-5

    def grad_at(sign):
        y = [(t + sign * h * w).detach().requires_grad_(True) for t, w in zip(x, v)]
        return torch.autograd.grad(f(*y), y)

    fd = [(a - b) / (2 * h) for a, b in zip(grad_at(1.0), grad_at(-1.0))]
    num = math.sqrt(sum(float((a - b).square().sum()) for a, b in zip(hvp, fd)))
    return num / math.sqrt(sum(float(b.square().sum()) for b in fd))


@pytest.mark.parametrize("case", params())
def test_second_derivatives_of_every_loss_are_correct_or_refused(case):
    # Hessian-vector products along random directions against finite
    # differences (the full gradgradcheck of every loss is too slow on 2
    # cores, and its fast mode's absolute tolerance hides the 2% error of the
    # old Taylor backward on these small values). The defects found were
    # 3e-4 (MEC here) to 25x off; 1e-7 leaves a margin of 1e3 over the
    # finite-difference error.
    f = _functional(case)
    try:
        errors = [_hvp_error(f, _inputs(case), seed) for seed in (0, 1)]
    except matrixinfo.MatrixInfoSecondDerivativeError as err:
        assert "second derivatives" in str(err) and "exact" in str(err), str(err)
        assert case.id in REFUSED
        return
    assert case.id not in REFUSED
    assert max(errors) < 1e-7, errors


def test_second_derivatives_of_matrix_ssl_loss_issue_reproduction():
    # The issue's reproduction: default MatrixSSLLoss (Taylor), z, p of shape (12, 5).
    g = torch.Generator().manual_seed(1)
    z = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(12, 5, generator=g, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the radius warning is not the point here
        assert torch.autograd.gradgradcheck(lambda x: matrixinfo.losses.MatrixSSLLoss()(x, p), (z,))


def _spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n + 2, generator=g, dtype=torch.float64)
    return X, X @ X.mT / (n + 2) + 0.3 * torch.eye(n, dtype=torch.float64)


def _core_cases():
    eye = lambda n: torch.eye(n, dtype=torch.float64)  # noqa: E731
    psd = lambda X: X @ X.mT / X.shape[-1] + 0.3 * eye(X.shape[-2])  # noqa: E731
    near = lambda X: eye(X.shape[-2]) + 0.05 * X @ X.mT / X.shape[-1]  # noqa: E731  # Taylor-friendly
    return {
        "matrix_log[eigh]": lambda X: matrixinfo.matrix_log(psd(X)),
        "matrix_log[taylor]": lambda X: matrixinfo.matrix_log(near(X), method="taylor", check_radius=False),
        "matrix_entropy": lambda X: matrixinfo.matrix_entropy(psd(X)),
        "von_neumann_entropy": lambda X: matrixinfo.von_neumann_entropy(psd(X)),
        "matrix_cross_entropy[eigh]": lambda X: matrixinfo.matrix_cross_entropy(psd(X), psd(X.flip(-1))),
        "matrix_cross_entropy[taylor]": lambda X: matrixinfo.matrix_cross_entropy(
            near(X), near(X.flip(-1)), method="taylor", check_radius=False
        ),
        "matrix_kl_divergence[eigh]": lambda X: matrixinfo.matrix_kl_divergence(psd(X), psd(X.flip(-1))),
        "matrix_kl_divergence[taylor]": lambda X: matrixinfo.matrix_kl_divergence(
            near(X), near(X.flip(-1)), method="taylor", check_radius=False
        ),
        "effective_rank": lambda X: matrixinfo.effective_rank(psd(X)),
        "sylvester_logdet[symmetric]": lambda X: matrixinfo.sylvester_logdet(X, scale=0.7),
        "sylvester_logdet[general]": lambda X: matrixinfo.sylvester_logdet(X, X.flip(-1) + X, scale=0.7),
    }


@pytest.mark.parametrize("name", sorted(_core_cases()))
def test_second_derivatives_of_core_functions_are_correct(name):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(4, 6, generator=g, dtype=torch.float64)
    assert _gradgradcheck_or_refused(_core_cases()[name], [X]) == "correct"


def test_refused_second_derivative_is_a_clear_library_error():
    logits, target, embedding = llm_inputs()
    logits.requires_grad_(True)
    loss = matrixinfo.functional.matrix_llm_loss(logits, target, embedding)
    (grad,) = torch.autograd.grad(loss, logits, create_graph=True)  # first derivative: fine
    with pytest.raises(matrixinfo.MatrixInfoSecondDerivativeError, match="matrix_llm_loss.*method='exact'"):
        torch.autograd.grad(grad.square().sum(), logits)
    assert issubclass(matrixinfo.MatrixInfoSecondDerivativeError, RuntimeError)


# --------------------------------------------------------------------------- #
# Host reads                                                                   #
# --------------------------------------------------------------------------- #
_HOST_READS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.item.default,
    torch.ops.aten.is_nonzero.default,
    torch.ops.aten.equal.default,
    torch.ops.aten.allclose.default,
}


class _CountHostReads(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _HOST_READS:
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


def test_host_read_counter_sees_the_reads_it_must_catch():
    x = torch.ones(3, dtype=torch.float64)
    with _CountHostReads() as counter:
        float(x.sum()), bool((x > 0).any()), x[0].item(), int(x.argmax())
    assert len(counter.reads) == 4


# Losses without a check_radius option that read the host by default, and why
# (docs/numerics.rst says the same); torch.compile skips these reads.
EXPECTED_READS = {
    "CorInfoMaxLoss": 2,  # the Cholesky status of each branch, for the eigenvalue fallback of its log-det
    "MatrixLLMLoss": 1,  # validation of the class indices of target (default method="lanczos")
    "MatrixLLMLoss[topk]": 1,  # validation of the class indices of target
    "MatrixLLMLoss[exact]": 1,  # validation of the class indices of target
    "MatrixLLMLoss[subspace]": 1,  # validation of the class indices of target
}


@pytest.mark.parametrize("case", params())
def test_no_host_read_with_check_radius_false(case):
    f = _module(case)
    inputs = [x.requires_grad_(True) for x in _inputs(case)]
    with _CountHostReads() as counter:
        f(*inputs).backward()
    assert len(counter.reads) == EXPECTED_READS.get(case.id, 0), f"{case.id}: host reads {counter.reads}"


def test_tcr_cholesky_failure_is_nan_without_host_read():
    # A non-finite batch makes the Cholesky factorization fail: NaN, not an exception, no read.
    z = torch.randn(6, 4, dtype=torch.float64)
    z[2, 1] = float("inf")
    with _CountHostReads() as counter:
        value = matrixinfo.losses.TCRLoss(check_radius=False)(z, z)
    assert counter.reads == []
    assert math.isnan(float(value))


# --------------------------------------------------------------------------- #
# torch.func                                                                   #
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("case", params())
def test_func_grad_equals_autograd(case):
    # A stateful module (CorInfoMaxLoss updates its running covariances in
    # place) cannot run under torch.func.grad, which refuses in-place updates
    # of captured tensors: its functional twin, which returns the new state, can.
    f = _functional(case) if case.returns_state else _module(case)
    inputs = _inputs(case, seed=5)
    argnums = tuple(range(len(inputs)))
    leaves = [x.detach().requires_grad_(True) for x in inputs]
    expected = torch.autograd.grad(f(*leaves), leaves)
    got = torch.func.grad(f, argnums=argnums)(*inputs)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


# Not under vmap, as docs/numerics.rst says: CorInfoMax's Cholesky fallback
# branches on a value (and its module updates a state).
NOT_VMAPPABLE = {"CorInfoMaxLoss"}
# Refused with the library's error: the subspace method's basis and jitter are per call.
VMAP_REFUSED = {"MatrixLLMLoss[subspace]"}


@pytest.mark.parametrize("case", params())
def test_vmap_equals_a_loop(case):
    f = _functional(case) if case.returns_state else _module(case)
    inputs = _inputs(case, seed=7, batch=(3,))
    if case.id in NOT_VMAPPABLE:
        with pytest.raises(RuntimeError, match="data-dependent control flow"):
            torch.func.vmap(f)(*inputs)
        return
    if case.id in VMAP_REFUSED:
        with pytest.raises(matrixinfo.MatrixInfoValueError, match="does not run under torch.func.vmap"):
            torch.func.vmap(f, in_dims=(0, None))(inputs[0], inputs[1])
        return
    if case.kind == "llm":
        got = torch.func.vmap(f, in_dims=(0, None))(inputs[0], inputs[1])
        expected = torch.stack([f(inputs[0][i], inputs[1]) for i in range(3)])
    else:
        got = torch.func.vmap(f)(*inputs)
        expected = torch.stack([f(*(x[i] for x in inputs)) for i in range(3)])
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- #
# torch.compile                                                                #
# --------------------------------------------------------------------------- #
def _default_cases() -> list:
    """One case per class: its default method (``check_radius=False`` added where it applies)."""
    out, seen = [], set()
    for case in all_cases():
        if case.cls_name in seen or not case.available:
            continue
        seen.add(case.cls_name)
        out.append(pytest.param(case, id=case.cls_name))
    return out


@pytest.mark.parametrize("case", _default_cases())
def test_default_loss_compiles_with_fullgraph(case):
    torch._dynamo.reset()
    module = case.build(D, **_options(case))
    inputs = _inputs(case, seed=9)
    if case.kind == "llm":
        _, target, _ = llm_inputs()
        call = lambda logits, embedding: module(logits, target, embedding)  # noqa: E731
    else:
        call = lambda *views: module(*views)  # noqa: E731
    compiled = torch.compile(call, fullgraph=True, backend="aot_eager")
    leaves = [x.detach().requires_grad_(True) for x in inputs]
    value = compiled(*leaves)
    grads = torch.autograd.grad(value, leaves)
    eager_leaves = [x.detach().requires_grad_(True) for x in inputs]
    module = case.build(D, **_options(case))  # afresh: CorInfoMaxLoss updated its state
    eager = call(*eager_leaves)
    torch.testing.assert_close(value, eager, rtol=1e-10, atol=1e-12)
    for g, e in zip(grads, torch.autograd.grad(eager, eager_leaves)):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12)


def test_vmap_refuses_the_radius_check():
    # What docs/numerics.rst says: with check_radius=True the Taylor path reads
    # the host, which vmap refuses; check_radius=False is the vmappable form.
    g = torch.Generator().manual_seed(2)
    z, p = torch.randn(2, 3, B, D, generator=g, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        torch.func.vmap(matrixinfo.losses.MatrixSSLLoss())(z, p)
    torch.func.vmap(matrixinfo.losses.MatrixSSLLoss(check_radius=False))(z, p)


def test_tcr_loss_with_all_defaults_compiles_with_fullgraph():
    # TCRLoss() as constructed by default (check_radius=True, exact Cholesky):
    # the Cholesky status is not read while torch.compile traces.
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(4)
    views = [torch.randn(B, D, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    compiled = torch.compile(matrixinfo.losses.TCRLoss(), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*views), matrixinfo.losses.TCRLoss()(*views), rtol=1e-10, atol=1e-12)
