r"""Stochastic Lanczos quadrature (SLQ) for trace functions of symmetric PSD matrices.

Private: the documented entry points are the ``method="lanczos"`` options of
:func:`matrixinfo.matrix_entropy`, :func:`matrixinfo.von_neumann_entropy`,
:func:`matrixinfo.matrix_cross_entropy` and :func:`matrixinfo.matrix_kl_divergence`.

The estimator of :math:`\operatorname{tr}(M f(A))` (``M = A`` for the entropies,
``M = P`` for :math:`\operatorname{tr}(P \log Q)`):

1. **Deflation (Hutch++).** A sketch :math:`Y = M (M S)` of ``k`` Gaussian
   vectors ``S`` is orthonormalized, :math:`Q_k = \operatorname{orth}(Y)`: an
   approximation of the top eigenspace of ``M``, where most of
   :math:`\|M f(A)\|_F` (and so of the Hutchinson variance) sits for decaying
   spectra. Since :math:`\Pi = Q_k Q_k^\top` is a projector,
   :math:`\operatorname{tr}(X) = \operatorname{tr}(Q_k^\top X Q_k) + \operatorname{tr}((I - \Pi) X (I - \Pi))`
   for every ``X``; the first term is a sum of ``k`` bilinear forms, the second
   is estimated by Hutchinson on the projected Rademacher probes
   :math:`w_j = (I - \Pi) g_j`. ``Q_k`` carries no gradient: the identity holds
   for every orthonormal ``Q_k``, so treating it as a constant keeps the
   estimator (and its gradient) unbiased (Meyer, Musco, Musco & Woodruff,
   "Hutch++", SOSA 2021, doi:10.1137/1.9781611976496.16).
2. **Lanczos quadrature.** Each start vector ``b`` (the ``k`` columns of ``Q_k``
   and the ``N`` projected probes, run together as one batch of mat-mat
   products) gets ``s`` Lanczos steps with full reorthogonalization (classical
   Gram-Schmidt, twice), giving ``A V = V T + r e_s^T``. Then
   :math:`f(A) b \approx \|b\| V f(T) e_1` and
   :math:`b^\top f(A) b \approx \|b\|^2 e_1^\top f(T) e_1`, the ``s``-node
   Gauss quadrature of the spectral measure of ``b`` (Golub & Meurant,
   *Matrices, Moments and Quadrature*, 2010; Ubaru, Chen & Saad, SIAM J. Matrix
   Anal. Appl. 38(4), 2017, doi:10.1137/16M1104974). ``f(T)`` is taken with the
   library's eigenvalue-floored logarithm, whose Daleckii-Krein backward stays
   finite at repeated Ritz values, and ``T log T = T @ log T``.
   A breakdown (``beta_j`` below ``n * eps * ||T||``: the Krylov space of ``b``
   is invariant, as for repeated eigenvalues or a low rank) zeroes the rest of
   that column's recurrence, which decouples from ``e_1`` and adds nothing.

Gradients are those of this computation (autograd through the recurrence):
an unbiased estimate of the exact gradient up to the quadrature error.

The error estimate returned with ``return_error=True`` is the standard error of
the Hutchinson mean over the ``N`` probes plus a quadrature term,
``s/2`` times the change of the whole estimate from ``s - 1`` to ``s`` nodes
(for :math:`\lambda \log \lambda`, whose derivatives blow up at 0, the Gauss
error decays algebraically, roughly like ``s^-2``, and then the remaining error
is about ``s/2`` times the last increment; for :math:`\log` on a PD matrix it
decays geometrically and the term is an over-estimate).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import _spectral
from ._checks import MatrixInfoTypeError, MatrixInfoValueError, check_int

__all__: list[str] = []

DEFAULT_PROBES = 16
DEFAULT_STEPS = 16

MatVec = Callable[[torch.Tensor], torch.Tensor]


def check_options(fn: str, method: str, num_probes, num_steps, generator, return_error) -> None:
    """Validate the Lanczos keyword arguments (all of them, whatever the method,
    so that a typo fails before any work)."""
    check_int(fn, "num_probes", num_probes, 2)
    check_int(fn, "num_steps", num_steps, 1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise MatrixInfoTypeError(
            f"{fn}: expected generator to be a torch.Generator or None, got {type(generator).__name__}."
        )
    if not isinstance(return_error, bool):
        raise MatrixInfoTypeError(f"{fn}: expected return_error to be a bool, got {return_error!r}.")
    if return_error and method != "lanczos":
        raise MatrixInfoValueError(
            f"{fn}: expected return_error=True only with method='lanczos' (the error estimate of the "
            f"stochastic method), got method={method!r}."
        )


def dense_operator(A: torch.Tensor) -> MatVec:
    """Mat-vecs with the symmetric part of ``A``; the 1/2 is applied to the
    thin block, not to the ``n x n`` matrix (one pass over ``A`` fewer)."""
    S = A + A.mT
    return lambda X: S @ (0.5 * X)


def factor_operator(Z: torch.Tensor, scale: float) -> MatVec:
    """Mat-vecs with ``scale * Z^T Z`` for ``Z`` of shape ``(*, B, d)``, never
    forming the ``d x d`` matrix: two thin products per block of vectors."""
    return lambda X: scale * (Z.mT @ (Z @ X))


def _draw(shape, kind: str, generator, dtype, device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    if kind == "rademacher":
        x = torch.randint(0, 2, shape, generator=generator, device=gen_device).to(dtype) * 2 - 1
    else:
        x = torch.randn(shape, generator=generator, device=gen_device, dtype=dtype)
    return x.to(device=device, dtype=dtype)


def _any_grad(mv: MatVec, X: torch.Tensor) -> bool:
    """Whether the mat-vec carries a graph (probed on one column)."""
    return mv(X[..., :1]).requires_grad


def lanczos(mv: MatVec, X: torch.Tensor, steps: int):
    """Independent Lanczos recurrences from each column of ``X`` ``(*, n, m)``,
    run as one batch of mat-mat products, with full reorthogonalization.

    Returns ``(V, T, norm)``: ``V`` ``(*, m, s, n)`` the Lanczos vectors (rows),
    ``T`` ``(*, m, s, s)`` the tridiagonal matrices, ``norm`` ``(*, m)`` the
    norms of the start vectors. Zero start vectors and breakdowns give zero rows
    of ``V`` and decoupled zero blocks of ``T``."""
    dtype = X.dtype
    eps = torch.finfo(dtype).eps
    tiny = torch.finfo(dtype).tiny
    n = X.shape[-2]
    steps = min(steps, n)
    Xt = X.mT  # (*, m, n): one row per recurrence

    def safe_norm(R):
        return torch.sqrt((R * R).sum(-1).clamp_min(tiny))

    norm = safe_norm(Xt)
    alive = norm > math.sqrt(tiny) * 1e3
    q = torch.where(alive.unsqueeze(-1), Xt / torch.where(alive, norm, torch.ones_like(norm)).unsqueeze(-1), 0.0)
    norm = torch.where(alive, norm, torch.zeros_like(norm))
    # Without autograd the Lanczos vectors go into one preallocated buffer; with
    # it they are kept as a list and stacked (in-place writes would invalidate
    # the tensors saved for the backward).
    grad = torch.is_grad_enabled() and (X.requires_grad or _any_grad(mv, X))
    buffer = None if grad else torch.empty((*q.shape[:-1], steps, n), dtype=dtype, device=X.device)
    rows = [q]
    if buffer is not None:
        buffer[..., 0, :] = q
    alphas, betas = [], []
    rows_prev = q
    scale = torch.zeros_like(norm)
    for j in range(steps):
        r = mv(q.mT).mT
        # The three-term recurrence, then one full reorthogonalization pass
        # (classical Gram-Schmidt against every Lanczos vector): together the
        # two passes keep the basis orthogonal to working precision ("twice is
        # enough"), while only the second reads all of V (the reads of V, not
        # the flops, are what the reorthogonalization costs).
        a = (q * r).sum(-1)
        r = r - a.unsqueeze(-1) * q
        if betas:
            r = r - betas[-1].unsqueeze(-1) * rows_prev
        if j == steps - 1:
            alphas.append(a)
            break
        V = torch.stack(rows, -2) if buffer is None else buffer[..., : j + 1, :]  # (*, m, j+1, n)
        coef = (V @ r.unsqueeze(-1)).squeeze(-1)  # (*, m, j+1)
        r = r - (coef.unsqueeze(-2) @ V).squeeze(-2)
        alphas.append(a + coef[..., -1])
        scale = torch.maximum(scale, a.detach().abs())
        b = torch.linalg.vector_norm(r, dim=-1)
        scale = torch.maximum(scale, b.detach())
        alive = alive & (b > n * eps * scale)
        b = torch.where(alive, b, torch.zeros_like(b))
        inv = torch.where(alive, 1.0 / torch.where(alive, b, torch.ones_like(b)), torch.zeros_like(b))
        rows_prev = q
        q = r * inv.unsqueeze(-1)
        betas.append(b)
        if buffer is None:
            rows.append(q)
        else:
            buffer[..., j + 1, :] = q
    V = torch.stack(rows, -2) if buffer is None else buffer[..., :steps, :]
    return V, tridiagonal(alphas, betas), norm


def tridiagonal(alphas: list[torch.Tensor], betas: list[torch.Tensor]) -> torch.Tensor:
    """The symmetric tridiagonal ``(*, s, s)`` with diagonal ``alphas`` and off-diagonal ``betas`` (``s - 1``)."""
    T = torch.diag_embed(torch.stack(alphas, -1))
    if betas:
        beta = torch.stack(betas, -1)
        T = T + torch.diag_embed(beta, 1) + torch.diag_embed(beta, -1)
    return T


def _fT_e1(fn: str, T: torch.Tensor, kind: str) -> torch.Tensor:
    """``f(T) e_1`` for ``f = log`` or ``x log x``, with the floored logarithm."""
    L = _spectral.symmetric_log(fn, T, check=False)[..., :, 0]
    if kind == "log":
        return L
    return (T @ L.unsqueeze(-1)).squeeze(-1)


def _forms(fn: str, V, T, norm, kind: str, U=None):
    """Per start vector: ``b^T f(A) b`` (``U=None``) or ``u^T f(A) b`` with
    ``u`` the rows of ``U`` ``(*, m, n)``, from ``s`` and from ``s - 1`` nodes."""
    s = T.shape[-1]
    out = []
    for size in (s, s - 1):
        if size == 0:
            out.append(out[0])
            continue
        c = _fT_e1(fn, T[..., :size, :size], kind)  # (*, m, size)
        if U is None:
            out.append(norm * norm * c[..., 0])
        else:
            proj = (V[..., :size, :] @ U.unsqueeze(-1)).squeeze(-1)  # (*, m, size)
            out.append(norm * (proj * c).sum(-1))
    return out[0], out[1].detach()


def start_vectors(weight: MatVec, n: int, batch: tuple, dtype, device, num_probes: int, generator, rank=None):
    """The ``k`` deflation vectors ``Q_k`` (top eigenspace of ``weight``) and the
    ``N`` projected Rademacher probes, as the columns of one ``(*, n, k + N)``
    tensor without gradient. Returns ``(X, k)``."""
    k = min(num_probes if rank is None else rank, n)
    S = _draw((*batch, n, k), "gaussian", generator, dtype, device)
    G = _draw((*batch, n, num_probes), "rademacher", generator, dtype, device)
    with torch.no_grad():
        Qk = torch.linalg.qr(weight(weight(S)))[0]
        W = G - Qk @ (Qk.mT @ G)
        W = W - Qk @ (Qk.mT @ W)  # twice: (I - Pi) g orthogonal to Q_k in working precision
    return torch.cat([Qk, W], -1), k


def trace_estimate(fn: str, mv: MatVec, X: torch.Tensor, k: int, num_steps: int, kind: str, mv_u: MatVec | None = None):
    """SLQ estimate of ``tr(A log A)`` (``kind="xlogx"``, ``mv_u=None``) or of
    ``tr(P log A)`` (``kind="log"``, ``mv_u`` the mat-vec with ``P``) from the
    start vectors of :func:`start_vectors`. Returns ``(value, error)`` of the
    batch shape; the error carries no gradient."""
    n = X.shape[-2]
    N = X.shape[-1] - k
    V, T, norm = lanczos(mv, X, num_steps)
    s = T.shape[-1]
    U = None if mv_u is None else mv_u(X).mT
    full, short = _forms(fn, V, T, norm, kind, U)
    hutch = full[..., k:]
    value = full[..., :k].sum(-1) + hutch.mean(-1)
    with torch.no_grad():
        stderr = hutch.detach().std(-1) / math.sqrt(N)
        short_value = short[..., :k].sum(-1) + short[..., k:].mean(-1)
        quad = 0.5 * s * (value.detach() - short_value).abs() if s < n else torch.zeros_like(stderr)
    return value, stderr + quad


def _trace(A: torch.Tensor) -> torch.Tensor:
    return A.diagonal(dim1=-2, dim2=-1).sum(-1)


def _finish(fn, value, error, out_dtype, return_error):
    value, error = value.to(out_dtype), error.to(out_dtype)
    return (value, error) if return_error else value


def _setup(tensors):
    """The precision policy of the inputs, and the inputs in the dtype of the work."""
    policy = _spectral.precision(*tensors)
    return policy, list(policy.cast(*tensors))


def matrix_entropy(fn, A, *, normalize=None, num_probes, num_steps, generator, return_error):
    """``normalize=None``: the matrix entropy ``-tr(A log A) + tr A``;
    ``True``/``False``: the von Neumann entropy of ``A / tr A`` or of ``A``."""
    policy, (A,) = _setup([A])
    with policy:
        n = A.shape[-1]
        mv = dense_operator(A)
        X, k = start_vectors(mv, n, tuple(A.shape[:-2]), A.dtype, A.device, num_probes, generator)
        tlogt, err = trace_estimate(fn, mv, X, k, num_steps, "xlogx")
        t = _trace(A)
        if normalize is None:
            value = t - tlogt
        elif normalize:
            # -sum p log p with p = lambda / t:  log t - tr(A log A) / t
            pos = t > 0
            t_safe = torch.where(pos, t, torch.ones_like(t))
            value = torch.where(pos, torch.log(t_safe) - tlogt / t_safe, torch.zeros_like(t))
            err = torch.where(pos, err / t_safe.detach(), torch.zeros_like(err))
        else:
            value = 0.0 - tlogt
    return _finish(fn, value, err, policy.result_dtype, return_error)


def matrix_divergence(fn, P, Q, *, kl: bool, num_probes, num_steps, generator, return_error):
    """``kl=False``: ``-tr(P log Q) + tr Q``; ``kl=True``: ``tr(P log P) - tr(P log Q) - tr P + tr Q``,
    both traces from the same probes (their errors partly cancel near ``Q = P``)."""
    policy, (P, Q) = _setup([P, Q])
    P, Q = torch.broadcast_tensors(P, Q)
    with policy:
        n = P.shape[-1]
        mv_p, mv_q = dense_operator(P), dense_operator(Q)
        X, k = start_vectors(mv_p, n, tuple(P.shape[:-2]), P.dtype, P.device, num_probes, generator)
        plogq, err = trace_estimate(fn, mv_q, X, k, num_steps, "log", mv_p)
        value = _trace(Q) - plogq
        if kl:
            plogp, err_p = trace_estimate(fn, mv_p, X, k, num_steps, "xlogx")
            value = value + plogp - _trace(P)
            err = err + err_p
    return _finish(fn, value, err, policy.result_dtype, return_error)


def covariance_effective_rank(
    Z, *, center: bool = True, num_probes=DEFAULT_PROBES, num_steps=DEFAULT_STEPS, generator=None, return_error=False
):
    """Effective rank ``exp(VNE(C))`` of the covariance ``C = Y^T Y / B`` of the
    rows of ``Z`` ``(B, d)`` (``Y`` = ``Z`` centered if ``center``), by SLQ on
    mat-vecs with ``Y``: the ``d x d`` matrix is never formed. The hook for
    :mod:`matrixinfo.metrics`; the error is propagated to first order
    (``erank * err(VNE)``)."""
    fn = "covariance_effective_rank"
    policy, (Z,) = _setup([Z])
    with torch.no_grad(), policy:
        B, d = Z.shape[-2], Z.shape[-1]
        Y = Z - Z.mean(-2, keepdim=True) if center else Z
        mv = factor_operator(Y, 1.0 / B)
        X, k = start_vectors(mv, d, tuple(Z.shape[:-2]), Z.dtype, Z.device, num_probes, generator)
        tlogt, err = trace_estimate(fn, mv, X, k, num_steps, "xlogx")
        t = (Y * Y).sum((-2, -1)) / B
        pos = t > 0
        t_safe = torch.where(pos, t, torch.ones_like(t))
        vne = torch.log(t_safe) - tlogt / t_safe
        erank = torch.where(pos, torch.exp(vne), torch.zeros_like(t))
        err = torch.where(pos, erank * err / t_safe, torch.zeros_like(t))
    return _finish(fn, erank, err, policy.result_dtype, return_error)
