"""Spectral building blocks: the precision policy, the eigenvalue floor, a matrix
logarithm with a Daleckii-Krein backward, and the Taylor (Mercator) series with
its radius check.

Private: the public, documented entry points live in :mod:`matrixinfo.core`.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch

from ._checks import check_not_meta, warn

__all__: list[str] = []

_HALF = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the work for a result dtype ``dtype``: half precision is
    raised to float32 (eigh, slogdet and cholesky have no float16/bfloat16
    kernels, and their accuracy would be useless anyway); float32 and float64
    are kept. A building block of :class:`precision`."""
    return torch.float32 if dtype in _HALF else dtype


@contextlib.contextmanager
def full_precision(device_type: str):
    """Autocast disabled on ``device_type``. A building block of :class:`precision`.

    Casting inputs to float32 is not enough under autocast: CPU bfloat16
    autocast turns ``x.float().T @ x.float()`` back into bfloat16
    (measured with torch 2.13), so the whole block must run with autocast off.
    """
    if device_type in ("cpu", "cuda"):
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    else:  # pragma: no cover - other backends have no autocast to disable
        yield


class precision:  # lower case: used like a function, ``with precision(x, y) as policy``
    """The precision policy of the package, the one mechanism every function uses.

    ``precision(*tensors)`` reads the tensors' dtypes (``None`` entries and
    non-tensors are skipped) and fixes:

    * ``result_dtype``: their promoted dtype (torch's type promotion: float32
      with float64 gives float64);
    * ``dtype``: the dtype of the work, ``result_dtype`` with float16 and
      bfloat16 raised to float32 (:func:`compute_dtype`).

    As a context manager it disables autocast on the first tensor's device for
    the whole block (:func:`full_precision`); :meth:`cast` moves tensors to
    ``dtype``. The matrix functions of :mod:`matrixinfo` return
    ``result_dtype`` (the :func:`spectral` decorator); losses and metrics
    return ``dtype`` (float32 for half-precision inputs, like PyTorch's own
    losses under autocast). The reasons are on the numerics page
    (``docs/numerics.rst``, "Dtypes and autocast").
    """

    def __init__(self, *tensors):
        tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
        self.result_dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors])
        self.dtype = compute_dtype(self.result_dtype)
        self.device_type = tensors[0].device.type
        self._block = None

    def cast(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The tensors in the dtype of the work."""
        return tuple(t.to(self.dtype) for t in tensors)

    def __enter__(self) -> precision:
        self._block = full_precision(self.device_type)
        self._block.__enter__()
        return self

    def __exit__(self, *exc) -> bool | None:
        block, self._block = self._block, None
        return block.__exit__(*exc)


def non_finite_guard(*tensors: torch.Tensor):
    """The non-finite policy of the package: NaN out, without a host read.

    ``tensors`` are ``(*, m, n)`` matrices with broadcastable batch
    dimensions. Returns ``bad``, a bool tensor over the broadcast batch shape
    that is true where any of the matrices holds a NaN or an infinity, and the
    tensors with those matrices replaced by ``eye(m, n)`` (a harmless input for
    every spectral routine, so that no LAPACK error and no warning is raised on
    them). Pass the result through :func:`nan_where`."""
    bad = None
    for t in tensors:
        b = ~torch.isfinite(t).all(-1).all(-1)
        bad = b if bad is None else bad | b
    cleaned = tuple(
        torch.where(bad[..., None, None], torch.eye(t.shape[-2], t.shape[-1], dtype=t.dtype, device=t.device), t)
        for t in tensors
    )
    return bad, cleaned


def nan_where(bad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` with NaN wherever ``bad`` (batch shape, a prefix of ``out``'s)."""
    mask = bad.reshape(bad.shape + (1,) * (out.ndim - bad.ndim))
    return torch.where(mask, torch.full((), float("nan"), dtype=out.dtype, device=out.device), out)


def spectral(fn):
    """Decorator: :class:`precision` applied to a matrix function. ``fn`` runs
    on copies of its tensor arguments in the dtype of the work, with autocast
    disabled, and its result is returned in the promoted input dtype. Matrices
    holding NaN or inf give NaN (:func:`non_finite_guard`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        check_not_meta(fn.__name__.lstrip("_"), "the input", tensors[0])
        policy = precision(*tensors)
        args = [a.to(policy.dtype) if isinstance(a, torch.Tensor) else a for a in args]
        where = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        bad, cleaned = non_finite_guard(*[args[i] for i in where])
        for i, t in zip(where, cleaned, strict=True):
            args[i] = t
        with policy:
            out = nan_where(bad, fn(*args, **kwargs))
        if policy.result_dtype != policy.dtype:
            out = out.to(policy.result_dtype)
        return out

    return wrapper


def symmetrize(A: torch.Tensor) -> torch.Tensor:
    return 0.5 * (A + A.mT)


def eigenvalue_floor(w: torch.Tensor) -> torch.Tensor:
    """The package's eigenvalue floor for eigenvalues ``w`` ``(*, n)`` of PSD
    matrices, per matrix (``(*, 1)``): the one definition, described on the
    numerics page (``docs/numerics.rst``, "Eigenvalue floors")."""
    n = w.shape[-1]
    info = torch.finfo(w.dtype)
    top = w.abs().amax(dim=-1, keepdim=True).clamp_min(math.sqrt(info.tiny))
    return n * info.eps * top


def raise_to_floor(w: torch.Tensor) -> torch.Tensor:
    """Eigenvalues ``w`` ``(*, n)`` raised to :func:`eigenvalue_floor`: what every
    logarithm of eigenvalues in the package takes."""
    return torch.maximum(w, eigenvalue_floor(w))


def _warn_if_not_psd(fn: str, w: torch.Tensor) -> None:
    """Warn when an input meant to be PSD has eigenvalues far below zero.

    ``eigh`` already synchronizes with the host to check for convergence
    errors, so this extra scalar read costs little."""
    top = w.abs().amax(dim=-1).clamp_min(torch.finfo(w.dtype).tiny)
    tol = math.sqrt(torch.finfo(w.dtype).eps)
    if bool((w.amin(dim=-1) < -tol * top).any()):
        worst = float((w.amin(dim=-1) / top).min())
        warn(
            f"{fn}: the input is not positive semi-definite (smallest eigenvalue "
            f"{worst:.3g} times the largest); negative eigenvalues are raised to the floor.",
        )


def log_divided_difference(w: torch.Tensor) -> torch.Tensor:
    """First divided differences of ``log`` on positive eigenvalues ``w``:
    ``F_ij = (log w_i - log w_j) / (w_i - w_j)``, and ``1 / w_i`` on ties.

    Evaluated without cancellation: for nearby eigenvalues (``|w_i - w_j| <
    w_j / 2``) as ``log1p(x) / (w_i - w_j)`` with ``x = (w_i - w_j) / w_j``,
    which is accurate to a few ulps all the way down to exact ties (Higham,
    *Functions of Matrices*, 2008, section 11.3 on divided differences of the
    logarithm); otherwise directly.
    """
    a = w.unsqueeze(-1)
    b = w.unsqueeze(-2)
    d = a - b
    x = d / b
    close = x.abs() < 0.5
    d_safe = torch.where(d == 0, torch.ones_like(d), d)
    near = torch.where(d == 0, 1.0 / b, torch.log1p(torch.where(close, x, torch.zeros_like(x))) / d_safe)
    far = (torch.log(a) - torch.log(b)) / d_safe
    return torch.where(close, near, far)


def host_reads_allowed(check: bool = True) -> bool:
    """Whether a check that reads a tensor value on the host may run: not when
    the caller turned checks off (``check_radius=False``: the loss then never
    synchronizes a GPU), and not while ``torch.compile`` traces (a host read
    would break the graph; the checked fallbacks are replaced by NaN there)."""
    return bool(check) and not torch.compiler.is_compiling()


class SymmetricLog(torch.autograd.Function):
    """``log(sym(A))`` by ``eigh`` with eigenvalues raised to the floor, and a
    Daleckii-Krein backward that stays finite at repeated eigenvalues.

    For ``A = U diag(w) U^T`` and an upstream gradient ``G``, the gradient is
    ``U (F o (U^T sym(G) U)) U^T`` with ``F`` the divided differences of log
    (Daleckii & Krein 1965; Higham 2008, Thm. 3.11). Plain autograd through
    ``torch.linalg.eigh`` divides by ``w_i - w_j`` and returns NaN on ties.

    Returns ``(log A, w, U)`` with the raw eigenvalues ``w`` (for the PSD check
    of :func:`symmetric_log`, outside the Function so that it stays vmappable)
    and eigenvectors ``U``, both non-differentiable outputs: the
    ``setup_context`` form that ``torch.func`` needs saves them this way.

    Second derivatives: the ``w, U`` saved by ``forward`` carry no graph, so a
    backward run with ``create_graph=True`` recomputes them from ``A`` with
    autograd. Second derivatives are then those of ``eigh``: correct for distinct
    eigenvalues, NaN at exact ties (loud, like plain autograd). Without this they
    were silently zero (a wrong Hessian); ``once_differentiable`` would not catch
    it, because the upstream gradient of ``tr(P log Q)`` does not require grad.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(A: torch.Tensor):  # type: ignore[override]
        w, U = torch.linalg.eigh(symmetrize(A))
        floored = raise_to_floor(w)
        return (U * torch.log(floored).unsqueeze(-2)) @ U.mT, w, U

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        (A,) = inputs
        _, w, U = output
        ctx.mark_non_differentiable(w, U)
        ctx.save_for_backward(A, w, U)

    @staticmethod
    def backward(ctx, G: torch.Tensor, _gw, _gU):  # type: ignore[override]
        A, w, U = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: make the result differentiable in A
            w, U = torch.linalg.eigh(symmetrize(A))
        w = raise_to_floor(w)
        inner = U.mT @ symmetrize(G) @ U
        return U @ (log_divided_difference(w) * inner) @ U.mT


def symmetric_log(fn: str, A: torch.Tensor, check: bool = True) -> torch.Tensor:
    """:class:`SymmetricLog` with the PSD warning (one host read) when ``check``."""
    log_a, w, _ = SymmetricLog.apply(A)
    if host_reads_allowed(check):
        _warn_if_not_psd(fn, w)
    return log_a


class TraceProductLog(torch.autograd.Function):
    """``tr(P log Q)`` for symmetric ``P`` and PSD ``Q`` (eigh, floored
    eigenvalues) without forming ``log Q``.

    With ``Q = U diag(w) U^T`` and ``W = U^T P U``: the value is
    ``sum_i log(w_i) W_ii`` (one matmul for ``P U``, the diagonal by an
    elementwise product), the gradient in ``Q`` the Daleckii-Krein
    ``U (F o W) U^T`` and in ``P`` ``log Q = U diag(log w) U^T`` (only if
    ``P`` needs it). Four matmuls in all beside the ``eigh``, against five when
    ``log Q`` is formed and multiplied. Returns ``(value, w, U, P U)``, the
    last three non-differentiable (as in :class:`SymmetricLog`). Second
    derivatives as in :class:`SymmetricLog`.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(P: torch.Tensor, Q: torch.Tensor):  # type: ignore[override]
        w, U = torch.linalg.eigh(symmetrize(Q))
        floored = raise_to_floor(w)
        PU = symmetrize(P) @ U
        return (torch.log(floored) * (U * PU).sum(-2)).sum(-1), w, U, PU

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        P, Q = inputs
        _, w, U, PU = output
        ctx.mark_non_differentiable(w, U, PU)
        ctx.save_for_backward(P, Q, w, U, PU)

    @staticmethod
    def backward(ctx, g: torch.Tensor, _gw, _gU, _gPU):  # type: ignore[override]
        P, Q, w, U, PU = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiable in P and Q
            w, U = torch.linalg.eigh(symmetrize(Q))
            PU = symmetrize(P) @ U
        w = raise_to_floor(w)
        g = g[..., None, None]
        grad_P = grad_Q = None
        if ctx.needs_input_grad[0]:
            grad_P = g * ((U * torch.log(w).unsqueeze(-2)) @ U.mT)
        if ctx.needs_input_grad[1]:
            W = U.mT @ PU
            grad_Q = g * (U @ (log_divided_difference(w) * W) @ U.mT)
        return grad_P, grad_Q


def trace_product_log(fn: str, P: torch.Tensor, Q: torch.Tensor, check: bool = True) -> torch.Tensor:
    """:class:`TraceProductLog` with the PSD warning on ``Q`` (one host read) when ``check``."""
    value, w, _, _ = TraceProductLog.apply(P, Q)
    if host_reads_allowed(check):
        _warn_if_not_psd(fn, w)
    return value


def spectral_radius_estimate(X: torch.Tensor, iterations: int = 64) -> torch.Tensor:
    """Estimate the spectral radius of each ``(n, n)`` matrix of ``X`` by block
    power iteration: ``min(n, 4)`` fixed probe vectors, renormalized each step,
    and the geometric mean growth of ``||X^k V||_F`` over the second half of
    ``iterations`` steps. Costs ``4 * iterations`` mat-vecs (for ``n = 2048``
    and 64 steps, about 1/8 of the flops of one ``n x n`` matmul).

    Several probes and a long window matter for non-symmetric ``X``: with one
    vector, a dominant complex pair makes ``||X^k v||`` oscillate, and over 1000
    random Gaussian matrices (n = 2..11) a one-vector, 32-step, last-quarter
    estimate ranged over 0.79..1.31 times the true radius. This estimate ranges
    over 0.96..1.03 on the same kind of matrices (0.98..1.00 for symmetric ones,
    where it approaches the radius from below). Callers warn at the estimate, so
    within a few percent of the radius the warning is indicative only."""
    with torch.no_grad():
        X = X.detach()
        n = X.shape[-1]
        p = min(n, 4)
        # Fixed, generic start vectors: no global RNG is touched.
        i = torch.arange(1, n + 1, dtype=X.dtype, device=X.device).unsqueeze(-1)
        j = torch.arange(1, p + 1, dtype=X.dtype, device=X.device).unsqueeze(0)
        V = 1.0 + torch.sin(i * (1.3 + 0.7 * j) + j)
        V = (V / V.norm()).expand(*X.shape[:-2], n, p)
        start = iterations // 2
        log_growth = torch.zeros(X.shape[:-2], dtype=X.dtype, device=X.device)
        for k in range(iterations):
            V = X @ V
            norm = V.norm(dim=(-2, -1)).clamp_min(torch.finfo(X.dtype).tiny)
            V = V / norm[..., None, None]
            if k >= start:
                log_growth = log_growth + torch.log(norm)
        return torch.exp(log_growth / max(iterations - start, 1))


def spectral_radius_bound(X: torch.Tensor) -> torch.Tensor:
    """A cheap upper bound of the spectral radius of each ``(n, n)`` matrix:
    ``rho(X) <= ||X||_2 <= sqrt(||X||_1 ||X||_inf)`` (largest absolute column
    and row sums). One pass over ``X``, no mat-vec: it lets the power iteration
    be skipped whenever the series is provably inside its radius."""
    with torch.no_grad():
        A = X.detach().abs()
        return torch.sqrt(A.sum(-2).amax(-1) * A.sum(-1).amax(-1))


def warn_if_outside_radius(
    fn: str, M: torch.Tensor, what: str, *, shift: float = 0.0, dim: int | None = None, loss: bool = False
) -> None:
    """Warn when the Mercator series of ``log(I + X)`` is used with ``rho(X) >= 1``,
    for ``X = M + shift I``. The one radius check of the package.

    ``M`` is ``(*, n, n)``. When ``dim > n``, ``M`` carries the nonzero spectrum
    of a ``dim x dim`` matrix (the smaller side of a Gram matrix) and the
    ``dim - n`` missing eigenvalues of ``X`` are ``shift``. ``what`` names
    ``X`` in the message; ``loss`` words it for a loss (the series stands for a
    log-determinant) rather than for :func:`matrixinfo.matrix_log`.

    Reads one or two scalars on the host (a GPU synchronization): the cheap
    bound of :func:`spectral_radius_bound`, then, only if that does not settle
    it, the power-iteration estimate. No warning for a non-finite ``M``
    (the result is NaN anyway)."""
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    X = M + shift * eye
    padding = abs(shift) if dim is not None and M.shape[-1] < dim else 0.0
    bound = float(spectral_radius_bound(X).max())
    if max(bound, padding) < 1.0 or not math.isfinite(bound):
        return  # provably inside: no power iteration (or NaN/inf input: the result is NaN)
    rho = max(float(spectral_radius_estimate(X).max()), padding)
    if rho < 1.0:
        return
    if loss:
        series, result, target = "the matrix logarithm", "the loss", "the log-determinant"
        advice = "Use a larger shift, scale the input down (for MEC, the lambda warm-up), or method='exact'."
    else:
        series, result, target = "log(I + X)", "the value", "the matrix logarithm"
        advice = (
            "Add a larger shift (mu), scale the input down (for example with a warm-up), or use method='eigh'/'exact'."
        )
    warn(
        f"{fn}: the Taylor series of {series} is used outside its convergence radius: "
        f"the spectral radius of {what} is about {rho:.3g} >= 1, so {result} is "
        f"not an approximation of {target}. {advice}",
        key=f"{fn}: Taylor radius",
    )


def taylor_log(A: torch.Tensor, order: int) -> torch.Tensor:
    """``sum_{k=1}^{order} (-1)^(k+1) (A - I)^k / k`` (no checks, no warning)."""
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    X = A - eye
    power = X
    result = X
    for k in range(2, order + 1):
        power = power @ X
        result = result + ((-1) ** (k + 1) / k) * power
    return result
