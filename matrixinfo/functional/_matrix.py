r"""Matrix-information losses: Matrix-SSL (uniformity and alignment), the
uniformity MCE/MKL losses, the total coding rate (TCR, EMP-SSL) and MEC.

Shared machinery. Every loss here is a trace of a matrix logarithm of a
covariance-like matrix :math:`M` plus a shift, :math:`\operatorname{tr}\log(M + \mu I)`,
or a trace of a product with one. Two methods compute it:

``method="taylor"``
    The Mercator series of :func:`matrixinfo.matrix_log` around the identity,
    as in the authors' code. It is never formed as a ``d x d`` matrix: with
    :math:`X = M + (\mu - 1) I` the binomial theorem turns
    :math:`\sum_k (-1)^{k+1} X^k / k` into :math:`\sum_j \alpha_j M^j`, and only
    the traces :math:`\operatorname{tr} M^j` (or :math:`\operatorname{tr} P M^j`)
    are needed. These are inner products of powers up to
    :math:`\lceil \mathrm{order}/2 \rceil` (:math:`\operatorname{tr} M^{a+b} =
    \langle M^a, (M^b)^\top \rangle`), taken on the smaller of the ``B x B``
    and ``d x d`` sides (the nonzero spectra agree). The series converges iff
    the spectral radius of :math:`X` is below 1; outside, a
    :class:`RuntimeWarning` is raised (one host read per call; pass
    ``check_radius=False`` to skip it). With ``check_radius=False`` no loss
    here reads a value on the host, whatever the method: the exact paths'
    checks are skipped too (a failed Cholesky factorization, which only
    non-finite input causes, then gives NaN instead of the LU fallback).

``method="exact"``
    Log-determinants by Sylvester's identity on the smaller side
    (:func:`matrixinfo.sylvester_logdet`) wherever the weight matrix is a
    multiple of the identity; the eigh matrix logarithm with its
    Daleckii-Krein backward otherwise.

Spectral work runs in the promoted dtype of all inputs (torch's type
promotion: float32 with float64 gives float64; half precision is raised to
float32) with autocast disabled; for float16/bfloat16 inputs the loss is
returned in float32, like PyTorch's own losses under autocast.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .. import _spectral
from .._checks import (
    MatrixInfoValueError,
    check_choice,
    check_embeddings,
    check_flag,
    check_int,
    check_number,
)
from .. import _distributed
from ..core import _logdet_identity_plus, _matrix_kl_divergence, _sylvester_logdet, _trace_of_product

__all__ = [
    "emp_ssl_loss",
    "emp_tcr_loss",
    "matrix_kl_alignment_loss",
    "matrix_kl_uniformity_loss",
    "matrix_ssl_loss",
    "mec_loss",
    "tcr_loss",
    "uniformity_mce_loss",
    "uniformity_mkl_loss",
]

_METHODS = ("taylor", "exact")
_FORMULATIONS = ("official", "paper")


# --------------------------------------------------------------------------- #
# Trace machinery                                                              #
# --------------------------------------------------------------------------- #
def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``<a, b> = sum_ij a_ij b_ij`` (a BLAS dot when both are contiguous)."""
    if a.is_contiguous() and b.is_contiguous():
        return torch.dot(a.reshape(-1), b.reshape(-1))
    return (a * b).sum()


def _powers(M: torch.Tensor, order: int) -> list[torch.Tensor]:
    """``[M^1, ..., M^h]``, ``h = ceil(order / 2)``: enough for the traces of
    every power up to ``order`` (``tr M^(a+b) = tr(M^a M^b)``)."""
    powers = [M]
    for _ in range(1, (order + 1) // 2):
        powers.append(powers[-1] @ M)
    return powers


def _traces(powers: list[torch.Tensor], order: int, symmetric: bool = False) -> list[torch.Tensor]:
    """``[tr M^1, ..., tr M^order]`` from the powers of :func:`_powers`."""
    traces = [powers[0].diagonal(dim1=-2, dim2=-1).sum(-1)]
    for j in range(2, order + 1):
        a = (j + 1) // 2
        if symmetric:  # powers of a symmetric matrix are symmetric
            traces.append(_inner(powers[a - 1], powers[j - a - 1]))
        else:
            traces.append(_trace_of_product(powers[a - 1], powers[j - a - 1]))
    return traces


def _taylor_coefficients(order: int, mu: float) -> list[float]:
    r"""``alpha_j``, j = 0..order, with ``sum_k (-1)^(k+1) (M + (mu-1) I)^k / k
    = sum_j alpha_j M^j`` (binomial expansion of each power)."""
    s = mu - 1.0
    alpha = [0.0] * (order + 1)
    for k in range(1, order + 1):
        c = (-1.0) ** (k + 1) / k
        for j in range(0, k + 1):
            alpha[j] += c * math.comb(k, j) * s ** (k - j)
    return alpha


def _smaller_side(a: torch.Tensor, b: torch.Tensor, divisor: float) -> torch.Tensor:
    """The matrix with the nonzero spectrum of ``a^T b / divisor`` (``d x d``)
    on the smaller side: ``b a^T / divisor`` (``B x B``) when ``B < d``."""
    B, d = a.shape
    return (a.mT @ b if d <= B else b @ a.mT) / divisor


def _warn_radius(fn: str, M_small: torch.Tensor, shift: float, dim: int, what: str) -> None:
    """Warn if ``rho(M + (shift - 1) I_dim) >= 1``; ``M_small`` carries the
    nonzero spectrum and, when smaller than ``dim``, zeros fill the rest."""
    eye = torch.eye(M_small.shape[-1], dtype=M_small.dtype, device=M_small.device)
    X = M_small + (shift - 1.0) * eye
    padding = abs(shift - 1.0) if M_small.shape[-1] < dim else 0.0
    bound = float(_spectral.spectral_radius_bound(X))
    if max(bound, padding) < 1.0 or not math.isfinite(bound):
        return  # provably inside: no power iteration (or NaN/inf input: the loss is NaN)
    rho = max(float(_spectral.spectral_radius_estimate(X)), padding)
    if rho >= 1.0:
        _spectral.warn(
            f"{fn}: the Taylor series of the matrix logarithm is used outside its convergence "
            f"radius: the spectral radius of {what} is about {rho:.3g} >= 1, so the loss is not an "
            "approximation of the log-determinant. Use a larger shift, scale the input down "
            "(for MEC, the lambda warm-up), or method='exact'.",
            key=f"{fn}: Taylor radius",
        )


class _TracePolynomial(torch.autograd.Function):
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
        powers = _powers(M, len(coeffs))
        total = sum(c * t for c, t in zip(coeffs, _traces(powers, len(coeffs))))
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
            powers = _powers(M, len(coeffs))
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


def _trace_log_taylor(M_small: torch.Tensor, dim: int, shift: float, order: int) -> torch.Tensor:
    """``tr log_T(M + shift I_dim)``, the order-``order`` Mercator series around I."""
    alpha = _taylor_coefficients(order, shift)
    return alpha[0] * dim + _TracePolynomial.apply(M_small, tuple(alpha[1:]))[0]


class _Gram:
    """The small matrices of a centered (target ``p``, online ``z``) pair,
    formed once and shared by the uniformity and alignment terms.

    ``B < d``: ``cross = p z^T / n`` (``B x B``; its nonzero spectrum is that of
    ``C_pz = p^T z / n``) and ``auto = z z^T / n`` (that of ``C_zz``).
    ``d <= B``: ``cross = p^T z / n = C_pz`` and ``auto = z^T z / n = C_zz`` (``d x d``).
    Matrices are built lazily: the uniformity term needs only ``cross``.

    On the distributed moment path (``batch.moments``) ``p`` and ``z`` are this
    process's rows, centered with the global means, and every ``d x d``
    matrix and trace is a sum over the local rows all-reduced over the
    processes (one reduction each)."""

    def __init__(self, p: torch.Tensor, z: torch.Tensor, divisor: float, batch=None):
        self.p, self.z, self.divisor = p, z, divisor
        self.batch = batch if batch is not None and batch.moments else None
        self.gram_side = self.batch is None and z.shape[0] < z.shape[1]
        self._cross = self._auto = self._auto_p = self._traces = None

    def _total(self, *local: torch.Tensor):
        return local if self.batch is None else self.batch.reduce(*local)

    @property
    def cross(self) -> torch.Tensor:
        if self._cross is None:
            p, z = self.p, self.z
            self._cross = (p @ z.mT if self.gram_side else self._total(p.mT @ z)[0]) / self.divisor
        return self._cross

    @property
    def auto(self) -> torch.Tensor:
        if self._auto is None:
            self._auto = self._total(_SymmetricGram.apply(self.z, self.gram_side))[0] / self.divisor
        return self._auto

    @property
    def auto_target(self) -> torch.Tensor:
        """``C_pp = p^T p / n`` (``d x d``, whatever the side)."""
        if self._auto_p is None:
            self._auto_p = self._total(_SymmetricGram.apply(self.p, False))[0] / self.divisor
        return self._auto_p

    @property
    def traces(self) -> tuple:
        """``(tr C_pp, tr C_zz, tr C_pz)``: squared norms and inner product of the rows, over ``n``."""
        if self._traces is None:
            p, z = self.p, self.z
            sums = self._total(p.square().sum(), z.square().sum(), _inner(p, z))
            self._traces = tuple(t / self.divisor for t in sums)
        return self._traces

    def target_pair(self) -> "_Gram":
        """The pair ``(p, p)``, sharing ``C_pp``."""
        g = _Gram(self.p, self.p, self.divisor, self.batch)
        if self.batch is not None:
            g._auto = g._auto_p = self.auto_target
        return g


class _SymmetricGram(torch.autograd.Function):
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


def _weighted_trace_log_taylor(g: _Gram, shift: float, order: int) -> torch.Tensor:
    r"""``tr((C_pp + shift I) log_T(C_zz + shift I))`` for the centered pair of
    ``g``, ``C_xx = x^T x / n``, without forming d x d matrices when ``B < d``.

    With ``S = C_zz``: ``log_T(S + shift I) = sum_j alpha_j S^j`` and we need
    ``u_j = tr(C_pp S^j)`` and ``s_j = tr(S^j)``.

    * ``d <= B``: ``W_a = p S^a``; ``u_j = <W_a, W_b> / n`` with a + b = j.
    * ``B < d``:  ``K = z z^T / n``, ``V_a = (p z^T / n) K^a``;
      ``u_j = <V_a, V_b>`` with a + b = j - 1 (since S^j = z^T K^(j-1) z / n),
      and ``s_j = tr K^j``.
    """
    p, z, divisor = g.p, g.z, g.divisor
    d = z.shape[1]
    alpha = _taylor_coefficients(order, shift)
    half = (order + 1) // 2
    u = [g.traces[0]]
    powers = _powers(g.auto, order)
    s = [torch.as_tensor(float(d), dtype=z.dtype, device=z.device)] + _traces(powers, order, symmetric=True)
    if g.batch is not None:
        # Moment path: u_j = tr(C_pp S^j) = <C_pp S^a, S^b> with a + b = j.
        CS = [g.auto_target]
        for _ in range(half):
            CS.append(CS[-1] @ g.auto)
        for j in range(1, order + 1):
            a = (j + 1) // 2
            u.append(CS[a].diagonal().sum() if j == a else _inner(CS[a], powers[j - a - 1]))
    elif not g.gram_side:
        W = [p]
        for _ in range(half):
            W.append(W[-1] @ g.auto)
        for j in range(1, order + 1):
            a = (j + 1) // 2
            u.append(_inner(W[a], W[j - a]) / divisor)
    else:
        V = [g.cross]
        for _ in range(order // 2):
            V.append(V[-1] @ g.auto)
        for j in range(1, order + 1):
            a = j // 2
            u.append(_inner(V[a], V[j - 1 - a]))
    total = 0.0
    for j in range(order + 1):
        total = total + alpha[j] * (u[j] + shift * s[j])
    return total


# --------------------------------------------------------------------------- #
# Argument handling                                                            #
# --------------------------------------------------------------------------- #
def _common_checks(fn: str, method, order) -> None:
    check_choice(fn, "method", method, _METHODS)
    check_int(fn, "order", order, 1)


def _prepare(
    fn: str, gather_distributed: bool, *zs: torch.Tensor, dim=None, min_rows: int = 2, check_radius: bool = True
):
    """Check the flags; the distributed dispatch (:func:`matrixinfo._distributed.batch`:
    rows gathered, or moments to all-reduce when ``dim <= B_global``); then the
    rows cast to the compute dtype of all inputs (torch's type promotion:
    float32 with float64 computes in float64) and l2-normalized."""
    check_flag(fn, "gather_distributed", gather_distributed)
    check_flag(fn, "check_radius", check_radius)
    batch = _distributed.batch(fn, gather_distributed, *zs, dim=dim, min_rows=min_rows)
    work = _spectral.compute_dtype(functools.reduce(torch.promote_types, [z.dtype for z in zs]))
    return batch, tuple(F.normalize(z.to(work), dim=1) for z in batch.rows)


def _center(z: torch.Tensor) -> torch.Tensor:
    return z - z.mean(dim=0, keepdim=True)


def _run(fn, ref: torch.Tensor, compute):
    """Run ``compute()`` with autocast off. The result stays in the compute
    dtype: float32 for half-precision inputs (as PyTorch's own losses under
    autocast), so that the loss is not rounded to 3 significant digits."""
    if ref.device.type == "meta":
        # Shape inference (meta tensors, e.g. FSDP initialization): a 0-d loss
        # of the compute dtype, connected to the graph; nothing is read on the host.
        return ref.sum() * 0.0
    with _spectral.full_precision(ref.device.type):
        return compute()


def _check_views(fn: str, views: Sequence[torch.Tensor], gather_distributed: bool = False) -> None:
    if len(views) == 0:
        raise MatrixInfoValueError(f"{fn}: expected at least one view of shape (B, d), got none.")
    names = [f"views[{i}]" for i in range(len(views))]
    check_embeddings(fn, names, *views, min_rows=_distributed.local_min_rows(gather_distributed))


# --------------------------------------------------------------------------- #
# Matrix-SSL                                                                   #
# --------------------------------------------------------------------------- #
def _divisor(formulation: str, B: int) -> int:
    return B if formulation == "official" else B - 1


def _uniformity_value(fn, g: _Gram, *, lam, mu, order, method, formulation, check_radius):
    d = g.z.shape[1]
    # P = lam I (official) or (1/d + mu) I (paper, eq. 16/20 with the shift on both sides).
    weight = lam if formulation == "official" else 1.0 / d + mu
    if method == "taylor":
        # rho(C_pz + (mu - 1) I) <= sqrt(tr C_pp tr C_zz) + |mu - 1| (Cauchy-Schwarz):
        # the power iteration runs only when this cheap bound does not settle it.
        # No host read unless check_radius: the bound itself is read on the host.
        if check_radius and float(torch.sqrt(g.traces[0].detach() * g.traces[1].detach())) + abs(mu - 1.0) >= 1.0:
            _warn_radius(fn, g.cross.detach(), mu, d, "C(target, online) + mu I - I")
        trace_log = _trace_log_taylor(g.cross, d, mu, order)
    else:
        # tr log(C + mu I) = d log mu + log det(I + C / mu), C = pc^T zc / n.
        if g.batch is not None:
            trace_log = d * math.log(mu) + _logdet_identity_plus(g.cross / mu, False, check_radius)
        else:
            trace_log = d * math.log(mu) + _sylvester_logdet(g.p.mT, g.z.mT, 1.0 / (mu * g.divisor), check_radius)
    value = -weight * trace_log
    if formulation == "paper":
        # + tr(Q) = tr(C) + d mu, the term of MCE that the authors' code drops.
        value = value + g.traces[2] + d * mu
    return value


def _alignment_value(fn, g: _Gram, *, mu, order, method, formulation, check_radius):
    pc, zc, divisor = g.p, g.z, g.divisor
    d = zc.shape[1]
    if method == "taylor":
        # C_zz is PSD: rho(C_zz + (mu - 1) I) <= max(|mu - 1|, tr C_zz + mu - 1).
        if check_radius and max(abs(mu - 1.0), float(g.traces[1].detach()) + mu - 1.0) >= 1.0:
            _warn_radius(fn, g.auto.detach(), mu, d, "C(online, online) + mu I - I")
        cross = _weighted_trace_log_taylor(g, mu, order)
        if formulation == "official":
            return -cross
        self_term = _weighted_trace_log_taylor(g.target_pair(), mu, order)
        # MKL(P || Q) = tr(P log P) - tr(P log Q) - tr P + tr Q.
        return self_term - cross - g.traces[0] + g.traces[1]
    eye = torch.eye(d, dtype=zc.dtype, device=zc.device)
    if g.batch is not None:
        P, Q = g.auto_target + mu * eye, g.auto + mu * eye
    else:
        P = pc.mT @ pc / divisor + mu * eye
        Q = zc.mT @ zc / divisor + mu * eye
    if formulation == "paper":
        return _matrix_kl_divergence(fn, P, Q, "eigh", order, check_radius)
    # tr(P log Q) without forming log Q: eigh plus four matmuls, forward and backward.
    bad, (P, Q) = _spectral.non_finite_guard(P, Q)  # NaN out without a LAPACK error
    return _spectral.nan_where(bad, -_spectral.trace_product_log(fn, P, Q, check_radius))


def _gram(p, z, formulation, batch) -> _Gram:
    if batch.moments:  # centered with the global means
        sum_p, sum_z = batch.sums(p, z)
        return _Gram(p - sum_p / batch.n, z - sum_z / batch.n, _divisor(formulation, batch.n), batch)
    return _Gram(_center(p), _center(z), _divisor(formulation, z.shape[0]))


def _min_rows(formulation: str) -> int:
    return 3 if formulation == "paper" else 2


def _check_matrix_ssl(fn, online, target, lam, mu, order, method, formulation, gamma=None, gather_distributed=False):
    min_rows = _distributed.local_min_rows(gather_distributed, _min_rows(formulation))
    check_embeddings(fn, ("online", "target"), online, target, min_rows=min_rows)
    _common_checks(fn, method, order)
    check_choice(fn, "formulation", formulation, _FORMULATIONS)
    check_number(fn, "mu", mu, minimum=0.0, strict=True)
    if lam is not None:
        check_number(fn, "lam", lam, minimum=0.0)
    if gamma is not None:
        check_number(fn, "gamma", gamma, minimum=0.0)


def matrix_kl_uniformity_loss(
    online: torch.Tensor,
    target: torch.Tensor,
    *,
    lam: float = 1.0,
    mu: float = 1.0,
    order: int = 4,
    method: str = "taylor",
    formulation: str = "official",
    gather_distributed: bool = False,
    check_radius: bool = True,
) -> torch.Tensor:
    r"""Matrix-KL uniformity loss of Matrix-SSL (paper eq. 20), per view pair.

    Rows of both inputs are l2-normalized and centered over the batch;
    :math:`C = \frac{1}{n} P_c^\top Z_c` is the cross-covariance between the
    target ``P`` and the online ``Z`` branch.

    ``formulation="official"`` (default; the authors' code, ``main_pretrain.py`` of yifanzhang-pro/Matrix-SSL):

    .. math:: \mathcal{L}_U = -w \operatorname{tr} \log(C + \mu I_d), \qquad n = B,

    with :math:`w` = ``lam``, i.e. :math:`\mathrm{MCE}(w I, C + \mu I)` without its
    :math:`+\operatorname{tr}(Q)` term. With ``lam=1, mu=1, order=4`` and
    ``method="taylor"`` this is the authors' value and gradient.

    ``formulation="paper"``: the matrix cross-entropy of eq. 20 with the shift
    of eq. 16 on both sides,

    .. math:: \mathcal{L}_U = \mathrm{MCE}\big((\tfrac1d + \mu) I_d,\; C + \mu I_d\big)
              = -(\tfrac1d + \mu) \operatorname{tr}\log(C + \mu I) + \operatorname{tr} C + d\mu,
              \qquad n = B - 1 .

    Its minimizer over :math:`C` is :math:`I/d` (Prop. 4.2). Eq. 20 as printed
    has no shift (the paper adds one to :math:`C` in the sentence after it);
    shifting only :math:`C`, :math:`\mathrm{MCE}(\frac1d I, C + \mu I)` would be
    minimized at :math:`C = (\frac1d - \mu) I`: zero (collapse) at
    :math:`\mu = 1/d`, not PSD for :math:`\mu > 1/d`, so for :math:`\mu \ge 1/d`
    the :math:`+\operatorname{tr} Q` term rewards collapse. The shift must be
    on both arguments. ``lam`` is ignored.

    In the unified view this is the uniformity MCE (eq. 16) of the
    cross-covariance: up to constants and the centering, TCR (Thm. 4.4).

    Args:
        online: ``(B, d)`` online-branch embeddings (gradient flows here).
        target: ``(B, d)`` target-branch embeddings. The loss does not detach
            them; the authors compute them under ``no_grad`` (EMA teacher).
        lam: weight :math:`w` of the identity target (official). (In
            :func:`uniformity_mce_loss` ``lam`` is a shift, :math:`\lambda`.)
        mu: shift :math:`\mu > 0`; it keeps the Taylor series convergent
            (with ``mu=1`` the series is expanded around ``C = 0``).
        order: Taylor order (``method="taylor"``).
        method: ``"taylor"`` or ``"exact"`` (Sylvester log-determinant on the smaller side).
        formulation: ``"official"`` or ``"paper"``.
        gather_distributed: compute over the global batch of all processes.
        check_radius: warn when the Taylor series is outside its radius.

    Returns:
        0-d tensor to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import matrix_kl_uniformity_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(64, 8, generator=g, dtype=torch.float64)
        >>> p = z + 0.1 * torch.randn(64, 8, generator=g, dtype=torch.float64)
        >>> taylor = matrix_kl_uniformity_loss(z, p)
        >>> exact = matrix_kl_uniformity_loss(z, p, method="exact")
        >>> bool(abs(taylor - exact) < 1e-4)  # mu = 1: the order-4 series is accurate
        True
    """
    fn = "matrix_kl_uniformity_loss"
    _check_matrix_ssl(fn, online, target, lam, mu, order, method, formulation, gather_distributed=gather_distributed)
    batch, (z, p) = _prepare(fn, gather_distributed, online, target, min_rows=_min_rows(formulation), check_radius=check_radius)
    return _run(fn, z, lambda: _uniformity_value(
        fn, _gram(p, z, formulation, batch), lam=lam, mu=mu, order=order, method=method, formulation=formulation, check_radius=check_radius))


def matrix_kl_alignment_loss(
    online: torch.Tensor,
    target: torch.Tensor,
    *,
    mu: float = 1.0,
    order: int = 4,
    method: str = "taylor",
    formulation: str = "official",
    gather_distributed: bool = False,
    check_radius: bool = True,
) -> torch.Tensor:
    r"""Matrix-KL alignment loss of Matrix-SSL (paper eq. 21), per view pair.

    With l2-normalized, centered rows, :math:`C_{pp} = \frac1n P_c^\top P_c`
    (target) and :math:`C_{zz} = \frac1n Z_c^\top Z_c` (online):

    ``formulation="official"`` (default; the authors' code, :math:`n = B`):

    .. math:: \mathcal{L}_A = -\operatorname{tr}\big((C_{pp} + \mu I) \log(C_{zz} + \mu I)\big),

    the matrix cross-entropy :math:`\mathrm{MCE}(C_{pp} + \mu I, C_{zz} + \mu I)`
    without its :math:`+\operatorname{tr} Q` term; its gradient therefore differs
    from the MKL gradient by that of :math:`\operatorname{tr} C_{zz}`.

    ``formulation="paper"`` (eq. 21 with the shift, :math:`n = B - 1`):

    .. math:: \mathcal{L}_A = \mathrm{MKL}(C_{pp} + \mu I \,\|\, C_{zz} + \mu I),

    which is :math:`\ge 0` and zero exactly when the two covariances agree.

    ``method="exact"`` uses the eigh matrix logarithm (``d x d``).

    Args:
        online: ``(B, d)`` online embeddings (gradient flows here).
        target: ``(B, d)`` target embeddings (not detached by the loss).
        mu, order, method, formulation, gather_distributed, check_radius:
            as in :func:`matrix_kl_uniformity_loss`.

    Returns:
        0-d tensor to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import matrix_kl_alignment_loss
        >>> z = torch.randn(32, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        >>> loss = matrix_kl_alignment_loss(z, z, formulation="paper", method="exact")
        >>> bool(abs(loss) < 1e-12)  # equal covariances: zero divergence
        True
    """
    fn = "matrix_kl_alignment_loss"
    _check_matrix_ssl(fn, online, target, None, mu, order, method, formulation, gather_distributed=gather_distributed)
    batch, (z, p) = _prepare(fn, gather_distributed, online, target, min_rows=_min_rows(formulation), check_radius=check_radius)
    return _run(fn, z, lambda: _alignment_value(
        fn, _gram(p, z, formulation, batch), mu=mu, order=order, method=method, formulation=formulation, check_radius=check_radius))


def matrix_ssl_loss(
    online: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 1.0,
    lam: float = 1.0,
    mu: float = 1.0,
    order: int = 4,
    method: str = "taylor",
    formulation: str = "official",
    gather_distributed: bool = False,
    check_radius: bool = True,
) -> torch.Tensor:
    r"""Matrix-SSL loss (paper eq. 22) for one (online, target) view pair.

    .. math:: \mathcal{L}_{\text{Matrix-SSL}} = \mathcal{L}_U + \gamma\, \mathcal{L}_A,

    with :math:`\mathcal{L}_U` from :func:`matrix_kl_uniformity_loss` and
    :math:`\mathcal{L}_A` from :func:`matrix_kl_alignment_loss` (same
    ``formulation``, ``mu``, ``order``, ``method``).

    Defaults reproduce the authors' per-pair formula with the settings of their
    README (``lam = mu = gamma = 1``, Taylor order 4; their argparse defaults
    are ``lam = mu = 0.5``). Their training step symmetrizes over the two view
    pairs, with ``p`` from an EMA teacher (no gradient) and ``z`` from the
    online network with predictor::

        loss = 0.5 * (matrix_ssl_loss(z1, p2) + matrix_ssl_loss(z2, p1))

    With ``mu = 0.5`` the order-4 series is about 1.5% off the exact value
    (6% in gradient, measured in float64); ``mu = 1`` agrees to ~1e-6.

    Args:
        online: ``(B, d)`` online embeddings (gradient flows here).
        target: ``(B, d)`` target embeddings (not detached by the loss).
        gamma: weight of the alignment term.
        lam, mu, order, method, formulation, gather_distributed, check_radius:
            see :func:`matrix_kl_uniformity_loss`.

    Returns:
        0-d tensor to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import matrix_ssl_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> z, p = torch.randn(2, 128, 16, generator=g, dtype=torch.float64)
        >>> aligned = matrix_ssl_loss(z, z + 0.05 * p)
        >>> shuffled = matrix_ssl_loss(z, p)
        >>> bool(aligned < shuffled)
        True
    """
    fn = "matrix_ssl_loss"
    _check_matrix_ssl(fn, online, target, lam, mu, order, method, formulation, gamma, gather_distributed)
    batch, (z, p) = _prepare(fn, gather_distributed, online, target, min_rows=_min_rows(formulation), check_radius=check_radius)
    opts = dict(mu=mu, order=order, method=method, formulation=formulation, check_radius=check_radius)

    def compute():
        g = _gram(p, z, formulation, batch)  # the cross-Gram matrix serves both terms
        value = _uniformity_value(fn, g, lam=lam, **opts)
        if gamma != 0:
            value = value + gamma * _alignment_value(fn, g, **opts)
        return value

    return _run(fn, z, compute)


# --------------------------------------------------------------------------- #
# Uniformity MCE / MKL and TCR                                                 #
# --------------------------------------------------------------------------- #
def _trace_log_autocov(fn, batch, z, shift, scale, method, order, check_radius):
    r"""``tr log(shift I_d + scale z^T z)`` for ``(B, d)`` rows ``z`` (on the
    moment path, ``z^T z`` summed over all processes)."""
    B, d = z.shape
    if batch.moments:
        M = scale * batch.reduce(_SymmetricGram.apply(z, False))[0]
        if method == "exact":
            return d * math.log(shift) + _logdet_identity_plus(M / shift, True, check_radius)
    elif method == "exact":
        return d * math.log(shift) + _sylvester_logdet(z.mT, None, scale / shift, check_radius)
    else:
        M = _smaller_side(z, z, 1.0 / scale)
    if check_radius:
        _warn_radius(fn, M.detach(), shift, d, "the Taylor variable")
    return _trace_log_taylor(M, d, shift, order)


def _uniformity_lam(d: int, lam) -> float:
    return 1.0 / d if lam is None else lam


def _uniformity_parts(fn, views, lam, method, order, gather_distributed, check_radius):
    _check_views(fn, views, gather_distributed)
    _common_checks(fn, method, order)
    if lam is not None:
        check_number(fn, "lam", lam, minimum=0.0, strict=True)
    batch, zs = _prepare(fn, gather_distributed, *views, check_radius=check_radius)
    B, d = batch.n, zs[0].shape[1]
    lam = _uniformity_lam(d, lam)

    def mce(z):
        # MCE((1/d + lam) I, z^T z / B + lam I) = -(1/d + lam) tr log(.) + tr(z^T z)/B + d lam.
        trace_log = _trace_log_autocov(fn, batch, z, lam, 1.0 / B, method, order, check_radius)
        return -(1.0 / d + lam) * trace_log + batch.reduce(z.square().sum())[0] / B + d * lam

    return zs, d, lam, mce


def uniformity_mce_loss(
    *views: torch.Tensor,
    lam: float | None = None,
    method: str = "exact",
    order: int = 4,
    gather_distributed: bool = False,
    check_radius: bool = True,
) -> torch.Tensor:
    r"""Uniformity-MCE loss (paper eq. 16), averaged over the views given.

    For each view, with l2-normalized rows (not centered):

    .. math:: \mathcal{L}_{\mathrm{UMCE}} = \mathrm{MCE}\Big(\tfrac1d I_d + \lambda I_d,\;
              \tfrac1B Z^\top Z + \lambda I_d\Big).

    It is minimized at :math:`\frac1B Z^\top Z = \frac1d I` when ``B >= d``.
    It is an affine function of TCR with :math:`\lambda = \epsilon^2/d`
    (Thm. 4.4, with the factor corrected: see the errata page),
    :math:`\mathcal{L}_{\mathrm{UMCE}} = (1 + d\lambda)(1 - \log\lambda + \tfrac2d \mathcal{L}_{\mathrm{TCR}})`.

    Args:
        *views: one or more ``(B, d)`` embeddings of the same shape.
        lam: :math:`\lambda > 0`; ``None`` (default) means :math:`1/d`. The
            paper's remark that it "can be set as 0" needs ``B >= d``
            (else :math:`\log 0`); the exact method then warns nothing but
            returns a very large value.
        method: ``"exact"`` (default; Cholesky log-determinant on the smaller
            side) or ``"taylor"``, which converges when :math:`\lambda > 0` and
            :math:`\lambda + \|Z\|_2^2 / B < 2`; unit rows give
            :math:`\|Z\|_2^2 / B \le 1`, so :math:`0 < \lambda < 1` suffices.
        order, gather_distributed, check_radius: as elsewhere.

    Returns:
        0-d tensor to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import uniformity_mce_loss
        >>> d = 4
        >>> frame = torch.eye(d, dtype=torch.float64).repeat(2, 1)  # (1/B) Z^T Z = I/d
        >>> collapsed = torch.ones(8, d, dtype=torch.float64)
        >>> bool(uniformity_mce_loss(frame) < uniformity_mce_loss(collapsed))
        True
    """
    fn = "uniformity_mce_loss"
    zs, _, _, mce = _uniformity_parts(fn, views, lam, method, order, gather_distributed, check_radius)
    return _run(fn, zs[0], lambda: torch.stack([mce(z) for z in zs]).mean())


def uniformity_mkl_loss(
    *views: torch.Tensor,
    lam: float | None = None,
    method: str = "exact",
    order: int = 4,
    gather_distributed: bool = False,
    check_radius: bool = True,
) -> torch.Tensor:
    r"""Uniformity-MKL loss (paper eq. 17), averaged over the views given.

    .. math:: \mathcal{L}_{\mathrm{UMKL}} = \mathrm{MKL}\Big(\tfrac1d I_d + \lambda I_d \,\Big\|\,
              \tfrac1B Z^\top Z + \lambda I_d\Big)
              = \mathcal{L}_{\mathrm{UMCE}} - \mathrm{ME}\big((\tfrac1d + \lambda) I_d\big),

    non-negative, and zero exactly at :math:`\frac1B Z^\top Z = \frac1d I`.
    Arguments as in :func:`uniformity_mce_loss`.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import uniformity_mkl_loss
        >>> frame = torch.eye(4, dtype=torch.float64).repeat(2, 1)
        >>> bool(abs(uniformity_mkl_loss(frame)) < 1e-12)
        True
    """
    fn = "uniformity_mkl_loss"
    zs, d, lam, mce = _uniformity_parts(fn, views, lam, method, order, gather_distributed, check_radius)
    c = 1.0 / d + lam
    entropy_p = -d * c * math.log(c) + d * c
    return _run(fn, zs[0], lambda: torch.stack([mce(z) for z in zs]).mean() - entropy_p)


def _check_tcr(fn, views, eps, method, order, gather_distributed):
    _check_views(fn, views, gather_distributed)
    _common_checks(fn, method, order)
    check_number(fn, "eps", eps, minimum=0.0, strict=True)


def tcr_loss(
    *views: torch.Tensor,
    eps: float = 0.2,
    method: str = "exact",
    order: int = 4,
    gather_distributed: bool = False,
    check_radius: bool = True,
) -> torch.Tensor:
    r"""Total coding rate loss (paper eq. 6), averaged over the views given.

    .. math:: \mathcal{L}_{\mathrm{TCR}} = -\frac12 \log\det\Big(I_d + \frac{d}{B\,\epsilon^2} Z^\top Z\Big)

    on l2-normalized rows. ``eps`` **is** :math:`\epsilon^2` (already squared),
    as in EMP-SSL's and MCR²'s code, whose default 0.2 is ours. Minimizing this
    loss *maximizes* the coding rate (the log-det is negated): collapse is
    penalized. (lightly 1.6's ``EMPSSLLoss`` has the opposite sign.)

    For ``B >= d`` it is minimized on the sphere at :math:`\frac1B Z^\top Z = \frac1d I`
    (Thm. 4.5); for ``B < d`` at orthonormal rows (:math:`Z Z^\top = I_B`).
    ``method="exact"`` (default) takes a Cholesky log-determinant on the smaller
    side; ``method="taylor"`` expands :math:`\log(I + X)` to ``order`` (eq. 18:
    for unit rows order 1 is the constant :math:`-\frac{d}{2\epsilon^2}`,
    order 2 adds a term in :math:`\|Z^\top Z\|_F^2`; SimSiam/BYOL's trace
    :math:`\operatorname{tr}(Z_1^\top Z_2)` appears only in the two-view form)
    and converges only when :math:`\frac{d}{B\epsilon^2}\lambda_{\max}(Z^\top Z) < 1`.

    Args:
        *views: one or more ``(B, d)`` embeddings (the EMP-SSL patches).
        eps: :math:`\epsilon^2 > 0`.
        method, order, gather_distributed, check_radius: as elsewhere.

    Returns:
        0-d tensor to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import tcr_loss
        >>> spread = torch.eye(4, dtype=torch.float64).repeat(2, 1)
        >>> collapsed = torch.ones(8, 4, dtype=torch.float64)
        >>> bool(tcr_loss(spread) < tcr_loss(collapsed))  # collapse is penalized
        True
    """
    fn = "tcr_loss"
    _check_tcr(fn, views, eps, method, order, gather_distributed)
    batch, zs = _prepare(fn, gather_distributed, *views, check_radius=check_radius)
    B, d = batch.n, zs[0].shape[1]
    scale = d / (B * eps)
    return _run(fn, zs[0], lambda: torch.stack(
        [-0.5 * _trace_log_autocov(fn, batch, z, 1.0, scale, method, order, check_radius) for z in zs]).mean())


def emp_tcr_loss(
    *views: torch.Tensor,
    eps: float = 0.2,
    mu: float = 0.5,
    method: str = "exact",
    order: int = 4,
    gather_distributed: bool = False,
    check_radius: bool = True,
) -> torch.Tensor:
    r"""Coding rate of the concatenated views (paper eq. 9).

    Each view is l2-normalized, then the ``n`` views of a sample are
    concatenated into :math:`\tilde z \in \mathbb{R}^{n d}`:

    .. math:: \mathcal{L}_{\mathrm{EMP\text{-}TCR}} = -\mu \log\det\Big(I_{nd} + \frac{d}{B\,\epsilon^2} \tilde Z^\top \tilde Z\Big).

    This is eq. 9 exactly (its identity has the dimension ``n d`` of
    :math:`\tilde z`). The code scales by :math:`\frac{nd}{B\epsilon^2}` and
    divides each row of :math:`\tilde Z` by :math:`\sqrt n` (unit rows); the
    two factors cancel. With ``n = 1`` it is :func:`tcr_loss` with
    ``mu = 1/2``. ``eps`` is :math:`\epsilon^2`.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import emp_tcr_loss, tcr_loss
        >>> z = torch.randn(16, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isclose(emp_tcr_loss(z), tcr_loss(z)))
        True
    """
    fn = "emp_tcr_loss"
    _check_tcr(fn, views, eps, method, order, gather_distributed)
    check_number(fn, "mu", mu, minimum=0.0)
    n = len(views)
    batch, zs = _prepare(fn, gather_distributed, *views, dim=n * views[0].shape[1], check_radius=check_radius)
    B, d = batch.n, zs[0].shape[1]
    Z = torch.cat(zs, dim=1) / math.sqrt(n)
    scale = n * d / (B * eps)
    return _run(fn, zs[0], lambda: -mu * _trace_log_autocov(fn, batch, Z, 1.0, scale, method, order, check_radius))


def emp_ssl_loss(
    *views: torch.Tensor,
    eps: float = 0.2,
    invariance_weight: float = 200.0,
    tcr_weight: float = 1.0,
    method: str = "exact",
    order: int = 4,
    gather_distributed: bool = False,
    check_radius: bool = True,
) -> torch.Tensor:
    r"""EMP-SSL's total loss over ``n`` patches (views) of each sample.

    .. math:: \mathcal{L} = \frac{w_{\mathrm{tcr}}}{n}\sum_{i=1}^n \mathcal{L}_{\mathrm{TCR}}(Z_i)
              - \frac{w_{\mathrm{inv}}}{n}\sum_{i=1}^n \frac1B \sum_{b=1}^B \cos(z_{i,b}, \bar z_b),
              \qquad \bar z_b = \frac1n \sum_i z_{i,b},

    with the EMP-SSL defaults ``invariance_weight = 200``, ``tcr_weight = 1``,
    ``eps`` :math:`= \epsilon^2 = 0.2` (tsb0601/EMP-SSL). The mean
    :math:`\bar z` is not detached.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import emp_ssl_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(32, 8, generator=g, dtype=torch.float64)
        >>> noise = torch.randn(4, 32, 8, generator=g, dtype=torch.float64)
        >>> close = emp_ssl_loss(*(z + 0.01 * e for e in noise))
        >>> far = emp_ssl_loss(*(z + 3.0 * e for e in noise))
        >>> bool(close < far)
        True
    """
    fn = "emp_ssl_loss"
    _check_tcr(fn, views, eps, method, order, gather_distributed)
    check_number(fn, "invariance_weight", invariance_weight, minimum=0.0)
    check_number(fn, "tcr_weight", tcr_weight, minimum=0.0)
    batch, zs = _prepare(fn, gather_distributed, *views, check_radius=check_radius)
    B, d = batch.n, zs[0].shape[1]
    scale = d / (B * eps)

    def compute():
        tcr = torch.stack(
            [-0.5 * _trace_log_autocov(fn, batch, z, 1.0, scale, method, order, check_radius) for z in zs])
        mean = torch.stack(zs).mean(dim=0)
        # A per-sample mean: the sum over the global batch, divided by B and the number of views.
        (cos,) = batch.sums(torch.stack([F.cosine_similarity(z, mean, dim=1) for z in zs]).sum(dim=0))
        return tcr_weight * tcr.mean() - invariance_weight * cos / (B * len(zs))

    return _run(fn, zs[0], compute)


# --------------------------------------------------------------------------- #
# MEC                                                                          #
# --------------------------------------------------------------------------- #
def mec_loss(
    online: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float = 64.0,
    lam_scale: float = 1.0,
    order: int = 4,
    method: str = "taylor",
    gather_distributed: bool = False,
    check_radius: bool = True,
) -> torch.Tensor:
    r"""Maximum entropy coding loss (paper eq. 8) as optimized by the MEC authors.

    With l2-normalized rows and :math:`\lambda = \frac{d}{B \epsilon^2}`
    (``eps`` is :math:`\epsilon^2`, default 64, as the authors' ``--eps``):

    .. math:: \mathcal{L}_{\mathrm{MEC}} = -\frac{\epsilon^2}{d}
              \operatorname{tr}\log\big(I_B + \lambda\, Z P^\top\big)
              = -\frac{1}{B\lambda}\log\det\big(I_d + \lambda\, P^\top Z\big),

    the log taken by its order-``order`` Taylor series (default 4, the
    authors'), or exactly with ``method="exact"`` (LU log-determinant on the
    smaller side; NaN with a warning if the determinant is not positive).
    Its first-order term is :math:`-\frac1B\sum_i \cos(z_i, p_i)`. The
    :math:`\mu = (B + d)/2` of eq. 8 only scales the authors' logged value;
    here the scale is :math:`\frac{1}{B\lambda}`, as in the optimized loss.
    Eq. 19 writes it as a matrix cross-entropy:
    :math:`\mathrm{MCE}(I, I + \lambda P^\top Z) - \operatorname{tr}(I + \lambda P^\top Z)`.

    Convergence and warm-up: the series needs the spectral radius of
    :math:`\lambda Z P^\top` below 1. For a collapsed batch it equals
    :math:`d/\epsilon^2` (32 at ``d = 2048``), where the order-4 value is
    meaningless; the authors therefore start :math:`\lambda` at
    :math:`\lambda/8` and raise it linearly to :math:`\lambda` over 10 epochs.
    ``lam_scale`` multiplies :math:`\lambda` for that warm-up; the loss is
    normalized by the scaled :math:`\lambda`, so that its first-order term stays
    :math:`-\frac1B\sum_i \cos(z_i, p_i)` throughout the warm-up.

    Args:
        online: ``(B, d)`` online embeddings (gradient flows here).
        target: ``(B, d)`` target embeddings (not detached by the loss).
        eps: :math:`\epsilon^2 > 0`.
        lam_scale: warm-up multiplier of :math:`\lambda` in ``(0, 1]``.
        order, method, gather_distributed, check_radius: as elsewhere.

    Returns:
        0-d tensor to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import mec_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(256, 16, generator=g, dtype=torch.float64)
        >>> p = z + 0.1 * torch.randn(256, 16, generator=g, dtype=torch.float64)
        >>> bool(abs(mec_loss(z, p) - mec_loss(z, p, method="exact")) < 1e-3)
        True
    """
    fn = "mec_loss"
    check_embeddings(fn, ("online", "target"), online, target, min_rows=_distributed.local_min_rows(gather_distributed))
    _common_checks(fn, method, order)
    check_number(fn, "eps", eps, minimum=0.0, strict=True)
    check_number(fn, "lam_scale", lam_scale, minimum=0.0, strict=True, maximum=1.0)
    batch, (z, p) = _prepare(fn, gather_distributed, online, target, check_radius=check_radius)
    B, d = batch.n, z.shape[1]
    lam = lam_scale * d / (B * eps)

    def compute():
        if batch.moments:  # d <= B: lam P^T Z summed over all processes
            M = lam * batch.reduce(p.mT @ z)[0]
        if method == "exact":
            trace_log = _logdet_identity_plus(M, False, check_radius) if batch.moments else _sylvester_logdet(z, p, lam, check_radius)
        else:
            if not batch.moments:
                M = lam * _smaller_side(p, z, 1.0)
            if check_radius:
                _warn_radius(fn, M.detach(), 1.0, min(B, d), "lambda * Z P^T")
            trace_log = _trace_log_taylor(M, min(B, d), 1.0, order)
        return -trace_log / (B * lam)

    return _run(fn, z, compute)
