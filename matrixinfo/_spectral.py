"""Spectral building blocks: precision handling, eigenvalue floors, a matrix
logarithm with a Daleckii-Krein backward, and the Taylor (Mercator) series.

Private: the public, documented entry points live in :mod:`matrixinfo.core`.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch

from ._checks import warn

__all__: list[str] = []

_HALF = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are computed in float32 (eigh, slogdet and
    cholesky have no float16/bfloat16 kernels, and their accuracy would be
    useless anyway); float32 and float64 are computed as they are."""
    return torch.float32 if dtype in _HALF else dtype


@contextlib.contextmanager
def full_precision(device_type: str):
    """Disable autocast for a spectral block.

    Casting inputs to float32 is not enough under autocast: CPU bfloat16
    autocast turns ``x.float().T @ x.float()`` back into bfloat16
    (REFERENCES.md section 7), so the whole block must run with autocast off.
    """
    if device_type in ("cpu", "cuda"):
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    else:  # pragma: no cover - other backends have no autocast to disable
        yield


def spectral(fn):
    """Decorator: run ``fn`` on float32/float64 copies of its tensor arguments
    with autocast disabled, and return results in the input's dtype."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        out_dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors])
        work = compute_dtype(out_dtype)
        args = tuple(a.to(work) if isinstance(a, torch.Tensor) else a for a in args)
        with full_precision(tensors[0].device.type):
            out = fn(*args, **kwargs)
        if out_dtype != work:
            out = out.to(out_dtype)
        return out

    return wrapper


def symmetrize(A: torch.Tensor) -> torch.Tensor:
    return 0.5 * (A + A.mT)


def eigenvalue_floor(w: torch.Tensor) -> torch.Tensor:
    """The floor below which eigenvalues of a PSD matrix are indistinguishable
    from zero: ``n * eps(dtype) * max(|lambda_max|, tiny)``, per matrix.

    This is the tolerance NumPy's ``matrix_rank`` uses for singular values.
    It is relative, so a matrix and its rescaling ``c * A`` get the same
    relative treatment across scales."""
    n = w.shape[-1]
    info = torch.finfo(w.dtype)
    top = w.abs().amax(dim=-1, keepdim=True).clamp_min(info.tiny)
    return n * info.eps * top


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
            stacklevel=4,
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


class SymmetricLog(torch.autograd.Function):
    """``log(sym(A))`` by ``eigh`` with eigenvalues raised to the floor, and a
    Daleckii-Krein backward that stays finite at repeated eigenvalues.

    For ``A = U diag(w) U^T`` and an upstream gradient ``G``, the gradient is
    ``U (F o (U^T sym(G) U)) U^T`` with ``F`` the divided differences of log
    (Daleckii & Krein 1965; Higham 2008, Thm. 3.11). Plain autograd through
    ``torch.linalg.eigh`` divides by ``w_i - w_j`` and returns NaN on ties.
    """

    @staticmethod
    def forward(ctx, A: torch.Tensor, fn: str):  # type: ignore[override]
        w, U = torch.linalg.eigh(symmetrize(A))
        _warn_if_not_psd(fn, w)
        w = torch.maximum(w, eigenvalue_floor(w))
        ctx.save_for_backward(w, U)
        return (U * torch.log(w).unsqueeze(-2)) @ U.mT

    @staticmethod
    def backward(ctx, G: torch.Tensor):  # type: ignore[override]
        w, U = ctx.saved_tensors
        inner = U.mT @ symmetrize(G) @ U
        return U @ (log_divided_difference(w) * inner) @ U.mT, None


def spectral_radius_estimate(X: torch.Tensor, iterations: int = 32) -> torch.Tensor:
    """Estimate the spectral radius of each ``(n, n)`` matrix of ``X`` by power
    iteration: the geometric mean growth of ``||X^k v||`` over the last quarter
    of ``iterations`` steps. Works for non-symmetric ``X`` (complex pairs make
    the norms oscillate; the mean smooths that). Costs ``iterations`` mat-vecs."""
    with torch.no_grad():
        X = X.detach()
        n = X.shape[-1]
        # A fixed, generic start vector: no global RNG is touched.
        v = 1.0 + torch.sin(torch.arange(1, n + 1, dtype=X.dtype, device=X.device) * 1.3)
        v = (v / v.norm()).expand(*X.shape[:-2], n).unsqueeze(-1)
        tail = max(iterations // 4, 1)
        log_growth = torch.zeros(X.shape[:-2], dtype=X.dtype, device=X.device)
        for k in range(iterations):
            v = X @ v
            norm = v.norm(dim=(-2, -1)).clamp_min(torch.finfo(X.dtype).tiny)
            v = v / norm[..., None, None]
            if k >= iterations - tail:
                log_growth = log_growth + torch.log(norm)
        return torch.exp(log_growth / tail)


def warn_if_outside_radius(fn: str, X: torch.Tensor, radius: float = 1.0, what: str = "Q - I") -> None:
    """Warn when the Mercator series ``log(I + X)`` is used with ``rho(X) >= 1``.

    Reads one scalar on the host (a GPU synchronization)."""
    rho = spectral_radius_estimate(X)
    worst = float(rho.max())
    if worst >= radius:
        warn(
            f"{fn}: the Taylor series of log(I + X) is used outside its convergence radius: "
            f"the spectral radius of {what} is about {worst:.3g} >= {radius:g}, so the value is "
            "not an approximation of the matrix logarithm. Add a larger shift (mu), scale the "
            "input down (for example with a warm-up), or use method='eigh'/'exact'.",
            stacklevel=4,
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
