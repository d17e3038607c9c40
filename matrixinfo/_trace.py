r"""Traces of matrix functions: the private machinery shared by :mod:`matrixinfo.core`
and :mod:`matrixinfo.functional`.

* Elementary traces: :func:`trace`, :func:`trace_of_product`, :func:`inner`,
  :func:`xlogx` (``0 log 0 = 0`` with a finite gradient).
* The Taylor (Mercator) series of :math:`\operatorname{tr}\log(M + \mu I)` without
  forming a ``d x d`` logarithm: with :math:`X = M + (\mu - 1) I` the binomial
  theorem turns :math:`\sum_k (-1)^{k+1} X^k / k` into :math:`\sum_j \alpha_j M^j`
  (:func:`taylor_coefficients`), and only the traces :math:`\operatorname{tr} M^j`
  are needed (:func:`matrix_powers`, :func:`power_traces`,
  :class:`TracePolynomial` with its closed-form backward).
* Log-determinants on the smaller side (:func:`sylvester_logdet`,
  :func:`logdet_identity_plus`) and the trace of a logarithm of an
  auto-covariance (:func:`trace_log_autocov`), which picks between them and the series.
* The eigh kernels of :func:`matrixinfo.matrix_kl_divergence` and friends
  (:func:`logm`, :func:`trace_of_log_product`, :func:`matrix_kl_divergence`).

Functions decorated with :func:`matrixinfo._spectral.spectral` apply the
package's precision policy themselves; the others expect their inputs already
in the dtype of the work.
"""

from __future__ import annotations

import math

import torch

from . import _spectral
from ._checks import warn

__all__: list[str] = []


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``<a, b> = sum_ij a_ij b_ij`` (a BLAS dot when both are contiguous)."""
    if a.is_contiguous() and b.is_contiguous():
        return torch.dot(a.reshape(-1), b.reshape(-1))
    return (a * b).sum()


def matrix_powers(M: torch.Tensor, order: int) -> list[torch.Tensor]:
    """``[M^1, ..., M^h]``, ``h = ceil(order / 2)``: enough for the traces of
    every power up to ``order`` (``tr M^(a+b) = tr(M^a M^b)``)."""
    powers = [M]
    for _ in range(1, (order + 1) // 2):
        powers.append(powers[-1] @ M)
    return powers


def power_traces(powers: list[torch.Tensor], order: int, symmetric: bool = False) -> list[torch.Tensor]:
    """``[tr M^1, ..., tr M^order]`` from the powers of :func:`matrix_powers`."""
    traces = [powers[0].diagonal(dim1=-2, dim2=-1).sum(-1)]
    for j in range(2, order + 1):
        a = (j + 1) // 2
        if symmetric:  # powers of a symmetric matrix are symmetric
            traces.append(inner(powers[a - 1], powers[j - a - 1]))
        else:
            traces.append(trace_of_product(powers[a - 1], powers[j - a - 1]))
    return traces


def taylor_coefficients(order: int, mu: float) -> list[float]:
    r"""``alpha_j``, j = 0..order, with ``sum_k (-1)^(k+1) (M + (mu-1) I)^k / k
    = sum_j alpha_j M^j`` (binomial expansion of each power)."""
    s = mu - 1.0
    alpha = [0.0] * (order + 1)
    for k in range(1, order + 1):
        c = (-1.0) ** (k + 1) / k
        for j in range(0, k + 1):
            alpha[j] += c * math.comb(k, j) * s ** (k - j)
    return alpha


def smaller_side(a: torch.Tensor, b: torch.Tensor, divisor: float) -> torch.Tensor:
    """The matrix with the nonzero spectrum of ``a^T b / divisor`` (``d x d``)
    on the smaller side: ``b a^T / divisor`` (``B x B``) when ``B < d``."""
    B, d = a.shape
    return (a.mT @ b if d <= B else b @ a.mT) / divisor


class TracePolynomial(torch.autograd.Function):
    r"""``f(M) = sum_{j>=1} c_j tr(M^j)`` with the closed-form gradient
    ``(sum_j j c_j M^(j-1))^T``.

    The forward forms the powers ``M^1..M^h``, ``h = ceil(order/2)`` (traces of
    higher powers are inner products of lower ones). The backward splits the
    derivative polynomial as ``A + B M^h`` with ``A`` and ``B`` combinations of
    the saved powers: one matmul, whatever the order. For order 4 that is two
    matmuls in all, where autograd through the powers needs three.

    The powers ``M^2..M^h`` are returned as non-differentiable outputs (the
    ``setup_context`` form that ``torch.func`` needs). They carry no graph, so
    a backward run with ``create_graph=True`` (second derivatives) recomputes
    them from ``M`` with autograd; the backward is then made of differentiable
    operations on ``M`` and the upstream gradient, and second derivatives are
    exact. (Before, the saved powers were used as constants there, and
    Hessian-vector products were silently off by a few percent to 44%.)"""

    generate_vmap_rule = True

    @staticmethod
    def forward(M: torch.Tensor, coeffs: tuple):  # type: ignore[override]
        powers = matrix_powers(M, len(coeffs))
        total = sum(c * t for c, t in zip(coeffs, power_traces(powers, len(coeffs)), strict=True))
        return (total, *powers[1:])

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        M, coeffs = inputs
        higher = output[1:]
        ctx.mark_non_differentiable(*higher)
        ctx.save_for_backward(M, *higher)
        ctx.coeffs = coeffs

    @staticmethod
    def backward(ctx, grad: torch.Tensor, *_):  # type: ignore[override]
        saved = ctx.saved_tensors
        coeffs = ctx.coeffs
        M = saved[0]
        if torch.is_grad_enabled():  # create_graph=True: powers with a graph to M
            powers = matrix_powers(M, len(coeffs))
        else:
            powers = [M, *saved[1:]]  # M^1 .. M^h
        order, half = len(coeffs), len(powers)
        eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
        power = lambda k: eye if k == 0 else powers[k - 1]  # noqa: E731
        D = sum(j * coeffs[j - 1] * power(j - 1) for j in range(1, min(order, half + 1) + 1))
        if order > half + 1:
            B = sum(j * coeffs[j - 1] * power(j - 1 - half) for j in range(half + 2, order + 1))
            D = D + B @ powers[-1]
        return grad * D.mT, None


def trace_log_taylor(M_small: torch.Tensor, dim: int, shift: float, order: int) -> torch.Tensor:
    """``tr log_T(M + shift I_dim)``, the order-``order`` Mercator series around I."""
    alpha = taylor_coefficients(order, shift)
    return alpha[0] * dim + TracePolynomial.apply(M_small, tuple(alpha[1:]))[0]


class SymmetricGram(torch.autograd.Function):
    """``z z^T`` (``gram_side``) or ``z^T z`` with the backward ``(G + G^T) z``
    (or ``z (G + G^T)``): one matmul, where autograd through ``z @ z.mT`` does
    two because it does not know both factors are the same tensor. The
    backward is made of differentiable operations on ``z``: second
    derivatives are exact."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z: torch.Tensor, gram_side: bool):  # type: ignore[override]
        return z @ z.mT if gram_side else z.mT @ z

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        z, gram_side = inputs
        ctx.save_for_backward(z)
        ctx.gram_side = gram_side

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (z,) = ctx.saved_tensors
        sym = grad + grad.mT
        return (sym @ z if ctx.gram_side else z @ sym), None


def trace_log_autocov(fn, batch, z, shift, scale, method, order, check_radius):
    r"""``tr log(shift I_d + scale z^T z)`` for ``(B, d)`` rows ``z`` (on the
    moment path, ``z^T z`` summed over all processes)."""
    B, d = z.shape
    if batch.moments:
        M = scale * batch.reduce(SymmetricGram.apply(z, False))[0]
        if method == "exact":
            return d * math.log(shift) + logdet_identity_plus(M / shift, True, check_radius)
    elif method == "exact":
        return d * math.log(shift) + sylvester_logdet(z.mT, None, scale / shift, check_radius)
    else:
        M = smaller_side(z, z, 1.0 / scale)
    if check_radius:
        _spectral.warn_if_outside_radius(fn, M.detach(), "the Taylor variable", shift=shift - 1.0, dim=d, loss=True)
    return trace_log_taylor(M, d, shift, order)


def trace(A: torch.Tensor) -> torch.Tensor:
    return A.diagonal(dim1=-2, dim2=-1).sum(-1)


def trace_of_product(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``tr(A @ B) = sum_ij A_ij B_ji`` without forming the product (einsum
    reads the transposed operand blockwise: 4x faster than ``(A * B.mT).sum()``)."""
    return torch.einsum("...ij,...ji->...", A, B)


def xlogx(w: torch.Tensor) -> torch.Tensor:
    """``w log w`` with ``0 log 0 = 0`` and non-positive ``w`` treated as 0.

    The double ``where`` keeps the gradient finite (zero) on the masked
    entries; masking ``xlogy(w, w)`` after the fact leaves NaN in the gradient."""
    positive = w > 0
    safe = torch.where(positive, w, torch.ones_like(w))
    return torch.where(positive, safe * torch.log(safe), torch.zeros_like(w))


def eigvalsh(A: torch.Tensor) -> torch.Tensor:
    # eigvalsh's backward is U diag(g) U^T: finite at repeated eigenvalues.
    return torch.linalg.eigvalsh(_spectral.symmetrize(A))


def logm(fn: str, A: torch.Tensor, method: str, order: int, check_radius: bool) -> torch.Tensor:
    if method == "eigh":
        return _spectral.symmetric_log(fn, A, check_radius)
    if check_radius:
        _spectral.warn_if_outside_radius(fn, A, "Q - I", shift=-1.0)
    return _spectral.taylor_log(A, order)


def trace_of_log_product(fn, P, Q, method, order, check_radius) -> torch.Tensor:
    """``tr(P log Q)``; with ``method="eigh"`` without forming ``log Q``."""
    if method == "eigh":
        P, Q = torch.broadcast_tensors(P, Q)
        return _spectral.trace_product_log(fn, P, Q, check_radius)
    return trace_of_product(P, logm(fn, Q, method, order, check_radius))


@_spectral.spectral
def matrix_kl_divergence(fn, P, Q, method, order, check_radius):
    plogp = xlogx(eigvalsh(P)).sum(-1)
    return plogp - trace_of_log_product(fn, P, Q, method, order, check_radius) - trace(P) + trace(Q)


@_spectral.spectral
def sylvester_logdet(X, Y, scale, host_checks=True):
    # host_checks=False (a loss with check_radius=False, or torch.compile
    # tracing): no host read. A failed Cholesky factorization (non-finite or
    # overflowing input) gives NaN instead of the LU fallback, and a
    # non-positive determinant NaN without the warning.
    host_checks = _spectral.host_reads_allowed(host_checks)
    n, k = X.shape[-2], X.shape[-1]
    symmetric = Y is None
    Y = X if Y is None else Y
    if n <= k:
        M = scale * (X @ Y.mT)
    else:
        M = scale * (Y.mT @ X)
    return logdet_identity_plus(M, symmetric and scale >= 0, host_checks)


def logdet_identity_plus(M: torch.Tensor, positive_semidefinite: bool, host_checks: bool = True) -> torch.Tensor:
    """``log det(I + M)``: Cholesky when ``M`` is known to be PSD (LU if that
    fails), else LU with NaN and a warning where the determinant is not
    positive. Shared by :func:`sylvester_logdet` and the losses that form
    ``M`` from all-reduced moments. ``host_checks=False``: no host read (see
    :func:`sylvester_logdet`)."""
    host_checks = _spectral.host_reads_allowed(host_checks)
    M = M + torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    if positive_semidefinite:
        L, info = torch.linalg.cholesky_ex(M)
        if not host_checks:
            ok = info == 0
            diag = torch.where(ok.unsqueeze(-1), L.diagonal(dim1=-2, dim2=-1), torch.ones_like(M[..., 0]))
            return torch.where(ok, 2.0 * torch.log(diag).sum(-1), torch.full_like(diag[..., 0], float("nan")))
        if not bool((info != 0).any()):
            return 2.0 * torch.log(L.diagonal(dim1=-2, dim2=-1)).sum(-1)
    sign, logabs = torch.linalg.slogdet(M)
    if host_checks and bool((sign <= 0).any()):
        warn(
            "sylvester_logdet: the determinant of I + c X Y^T is not positive, so its "
            "log-determinant is not real; returning NaN for those matrices.",
        )
    return torch.where(sign > 0, logabs, torch.full_like(logabs, float("nan")))
