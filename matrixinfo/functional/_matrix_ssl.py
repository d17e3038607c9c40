r"""Matrix-SSL and the uniformity losses.

The Matrix-KL uniformity and alignment losses, Matrix-SSL (their sum), and
the uniformity MCE/MKL losses.

Every loss here is a trace of a matrix logarithm of a covariance of
l2-normalized embeddings plus a shift (or of a product with one), computed by
the Taylor series or exactly; :mod:`._common` says how, and
:mod:`matrixinfo._trace` holds the machinery.
"""

from __future__ import annotations

import math

import torch

from .. import _distributed, _spectral, _trace
from .._checks import check_choice, check_embeddings, check_flag, check_number
from ._common import _check_views, _common_checks, _prepare, _run, _with_terms

__all__ = [
    "matrix_kl_alignment_loss",
    "matrix_kl_uniformity_loss",
    "matrix_ssl_loss",
    "uniformity_mce_loss",
    "uniformity_mkl_loss",
]

_FORMULATIONS = ("official", "paper")


def _center(z: torch.Tensor) -> torch.Tensor:
    return z - z.mean(dim=0, keepdim=True)


class _Gram:
    """The small matrices of a centered (target ``p``, online ``z``) pair.

    They are formed once and shared by the uniformity and alignment terms.

    ``B < d``: ``cross = p z^T / n`` (``B x B``; its nonzero spectrum is that of
    ``C_pz = p^T z / n``) and ``auto = z z^T / n`` (that of ``C_zz``).
    ``d <= B``: ``cross = p^T z / n = C_pz`` and ``auto = z^T z / n = C_zz`` (``d x d``).
    Matrices are built lazily: the uniformity term needs only ``cross``.

    On the distributed moment path (``batch.moments``) ``p`` and ``z`` are this
    process's rows, centered with the global means, and every ``d x d``
    matrix and trace is a sum over the local rows all-reduced over the
    processes (one reduction each).
    """

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
            self._auto = self._total(_trace.SymmetricGram.apply(self.z, self.gram_side))[0] / self.divisor
        return self._auto

    @property
    def auto_target(self) -> torch.Tensor:
        """``C_pp = p^T p / n`` (``d x d``, whatever the side)."""
        if self._auto_p is None:
            self._auto_p = self._total(_trace.SymmetricGram.apply(self.p, False))[0] / self.divisor
        return self._auto_p

    @property
    def traces(self) -> tuple:
        """``(tr C_pp, tr C_zz, tr C_pz)``: squared norms and inner product of the rows, over ``n``."""
        if self._traces is None:
            p, z = self.p, self.z
            sums = self._total(p.square().sum(), z.square().sum(), _trace.inner(p, z))
            self._traces = tuple(t / self.divisor for t in sums)
        return self._traces

    def target_pair(self) -> _Gram:
        """The pair ``(p, p)``, sharing ``C_pp``."""
        g = _Gram(self.p, self.p, self.divisor, self.batch)
        if self.batch is not None:
            g._auto = g._auto_p = self.auto_target
        return g


def _weighted_trace_log_taylor(g: _Gram, shift: float, order: int) -> torch.Tensor:
    r"""``tr((C_pp + shift I) log_T(C_zz + shift I))`` for the centered pair of ``g``.

    ``C_xx = x^T x / n``; no d x d matrix is formed when ``B < d``.

    With ``S = C_zz``: ``log_T(S + shift I) = sum_j alpha_j S^j`` and we need
    ``u_j = tr(C_pp S^j)`` and ``s_j = tr(S^j)``.

    * ``d <= B``: ``W_a = p S^a``; ``u_j = <W_a, W_b> / n`` with a + b = j.
    * ``B < d``:  ``K = z z^T / n``, ``V_a = (p z^T / n) K^a``;
      ``u_j = <V_a, V_b>`` with a + b = j - 1 (since S^j = z^T K^(j-1) z / n),
      and ``s_j = tr K^j``.
    """
    p, z, divisor = g.p, g.z, g.divisor
    d = z.shape[1]
    alpha = _trace.taylor_coefficients(order, shift)
    half = (order + 1) // 2
    u = [g.traces[0]]
    powers = _trace.matrix_powers(g.auto, order)
    s = [torch.as_tensor(float(d), dtype=z.dtype, device=z.device)] + _trace.power_traces(powers, order, symmetric=True)
    if g.batch is not None:
        # Moment path: u_j = tr(C_pp S^j) = <C_pp S^a, S^b> with a + b = j.
        CS = [g.auto_target]
        for _ in range(half):
            CS.append(CS[-1] @ g.auto)
        for j in range(1, order + 1):
            a = (j + 1) // 2
            u.append(CS[a].diagonal().sum() if j == a else _trace.inner(CS[a], powers[j - a - 1]))
    elif not g.gram_side:
        W = [p]
        for _ in range(half):
            W.append(W[-1] @ g.auto)
        for j in range(1, order + 1):
            a = (j + 1) // 2
            u.append(_trace.inner(W[a], W[j - a]) / divisor)
    else:
        V = [g.cross]
        for _ in range(order // 2):
            V.append(V[-1] @ g.auto)
        for j in range(1, order + 1):
            a = j // 2
            u.append(_trace.inner(V[a], V[j - 1 - a]))
    total = 0.0
    for j in range(order + 1):
        total = total + alpha[j] * (u[j] + shift * s[j])
    return total


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
            _spectral.warn_if_outside_radius(
                fn, g.cross.detach(), "C(target, online) + mu I - I", shift=mu - 1.0, dim=d, loss=True
            )
        trace_log = _trace.trace_log_taylor(g.cross, d, mu, order)
    else:
        # tr log(C + mu I) = d log mu + log det(I + C / mu), C = pc^T zc / n.
        if g.batch is not None:
            trace_log = d * math.log(mu) + _trace.logdet_identity_plus(g.cross / mu, False, check_radius)
        else:
            trace_log = d * math.log(mu) + _trace.sylvester_logdet(g.p.mT, g.z.mT, 1.0 / (mu * g.divisor), check_radius)
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
            _spectral.warn_if_outside_radius(
                fn, g.auto.detach(), "C(online, online) + mu I - I", shift=mu - 1.0, dim=d, loss=True
            )
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
        return _trace.matrix_kl_divergence(fn, P, Q, "eigh", order, check_radius)
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


def _check_matrix_ssl(
    fn, online, target, lam, mu, order, method, formulation, gamma=None, gather_distributed=False, return_terms=False
):
    check_flag(fn, "return_terms", return_terms)
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
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize. With ``return_terms=True``, ``(loss, terms)``
        with one term, ``terms["uniformity"]``, the loss itself (detached;
        the same name as in :func:`matrix_ssl_loss`); global with
        ``gather_distributed``, as the loss.

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
    _check_matrix_ssl(fn, online, target, lam, mu, order, method, formulation, None, gather_distributed, return_terms)
    batch, (z, p) = _prepare(
        fn, gather_distributed, online, target, min_rows=_min_rows(formulation), check_radius=check_radius
    )

    def compute():
        loss = _uniformity_value(
            fn,
            _gram(p, z, formulation, batch),
            lam=lam,
            mu=mu,
            order=order,
            method=method,
            formulation=formulation,
            check_radius=check_radius,
        )
        return _with_terms(loss, uniformity=loss) if return_terms else loss

    return _run(z, compute, ("uniformity",) if return_terms else None)


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
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        mu: shift :math:`\mu > 0` of both covariances; it keeps the Taylor
            series convergent.
        order: number of terms of the Taylor series (``method="taylor"``), ``>= 1``.
        method: ``"taylor"`` or ``"exact"`` (eigh matrix logarithm, ``d x d``).
        formulation: ``"official"`` or ``"paper"``.
        gather_distributed: compute over the global batch of all ``torch.distributed``
            processes (see :doc:`/distributed`); nothing without a process group.
        check_radius: warn when the Taylor series is outside its convergence
            radius. ``False`` skips every host read (no GPU synchronization).
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize. With ``return_terms=True``, ``(loss, terms)``
        with one term, ``terms["alignment"]``, the loss itself (detached;
        the same name as in :func:`matrix_ssl_loss`); global with
        ``gather_distributed``, as the loss.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import matrix_kl_alignment_loss
        >>> z = torch.randn(32, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        >>> loss = matrix_kl_alignment_loss(z, z, formulation="paper", method="exact")
        >>> bool(abs(loss) < 1e-12)  # equal covariances: zero divergence
        True
    """
    fn = "matrix_kl_alignment_loss"
    _check_matrix_ssl(fn, online, target, None, mu, order, method, formulation, None, gather_distributed, return_terms)
    batch, (z, p) = _prepare(
        fn, gather_distributed, online, target, min_rows=_min_rows(formulation), check_radius=check_radius
    )

    def compute():
        loss = _alignment_value(
            fn,
            _gram(p, z, formulation, batch),
            mu=mu,
            order=order,
            method=method,
            formulation=formulation,
            check_radius=check_radius,
        )
        return _with_terms(loss, alignment=loss) if return_terms else loss

    return _run(z, compute, ("alignment",) if return_terms else None)


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
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        lam: weight :math:`w \ge 0` of the identity target of the uniformity
            term (``formulation="official"``; ignored by ``"paper"``).
        mu: shift :math:`\mu > 0` of the covariances in both terms.
        order: number of terms of the Taylor series (``method="taylor"``), ``>= 1``.
        method: ``"taylor"`` or ``"exact"`` (both terms).
        formulation: ``"official"`` or ``"paper"`` (both terms).
        gather_distributed: compute over the global batch of all ``torch.distributed``
            processes (see :doc:`/distributed`); nothing without a process group.
        check_radius: warn when the Taylor series is outside its convergence
            radius. ``False`` skips every host read (no GPU synchronization).
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize. With ``return_terms=True``, ``(loss, terms)``:
        ``terms["uniformity"]`` is :math:`\mathcal{L}_U` and
        ``terms["alignment"]`` is :math:`\mathcal{L}_A` (the values of
        :func:`matrix_kl_uniformity_loss` and :func:`matrix_kl_alignment_loss`;
        detached), with ``loss = uniformity + gamma * alignment``. With
        ``gamma = 0`` the alignment term is not computed and not returned.
        Global with ``gather_distributed``, as the loss.

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
    _check_matrix_ssl(fn, online, target, lam, mu, order, method, formulation, gamma, gather_distributed, return_terms)
    batch, (z, p) = _prepare(
        fn, gather_distributed, online, target, min_rows=_min_rows(formulation), check_radius=check_radius
    )
    opts = dict(mu=mu, order=order, method=method, formulation=formulation, check_radius=check_radius)

    def compute():
        g = _gram(p, z, formulation, batch)  # the cross-Gram matrix serves both terms
        value = uniformity = _uniformity_value(fn, g, lam=lam, **opts)
        terms = {"uniformity": uniformity}
        if gamma != 0:
            terms["alignment"] = alignment = _alignment_value(fn, g, **opts)
            value = value + gamma * alignment
        return _with_terms(value, **terms) if return_terms else value

    names = ("uniformity", "alignment") if gamma != 0 else ("uniformity",)
    return _run(z, compute, names if return_terms else None)


# --------------------------------------------------------------------------- #
# Uniformity MCE / MKL                                                         #
# --------------------------------------------------------------------------- #
def _uniformity_lam(d: int, lam) -> float:
    return 1.0 / d if lam is None else lam


def _uniformity_parts(fn, views, lam, method, order, gather_distributed, check_radius, return_terms):
    check_flag(fn, "return_terms", return_terms)
    _check_views(fn, views, gather_distributed)
    _common_checks(fn, method, order)
    if lam is not None:
        check_number(fn, "lam", lam, minimum=0.0, strict=True)
    batch, zs = _prepare(fn, gather_distributed, *views, check_radius=check_radius)
    B, d = batch.n, zs[0].shape[1]
    lam = _uniformity_lam(d, lam)

    def mce(z):
        # MCE((1/d + lam) I, z^T z / B + lam I) = -(1/d + lam) tr log(.) + tr(z^T z)/B + d lam.
        trace_log = _trace.trace_log_autocov(fn, batch, z, lam, 1.0 / B, method, order, check_radius)
        return -(1.0 / d + lam) * trace_log + batch.reduce(z.square().sum())[0] / B + d * lam

    return zs, d, lam, mce


def uniformity_mce_loss(
    *views: torch.Tensor,
    lam: float | None = None,
    method: str = "exact",
    order: int = 4,
    gather_distributed: bool = False,
    check_radius: bool = True,
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        order: number of terms of the Taylor series (``method="taylor"``), ``>= 1``.
        gather_distributed: compute over the global batch of all ``torch.distributed``
            processes (see :doc:`/distributed`); nothing without a process group.
        check_radius: warn when the Taylor series is outside its convergence
            radius. ``False`` skips every host read (no GPU synchronization).
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize. With ``return_terms=True``, ``(loss, terms)``
        with one term, ``terms["uniformity_mce"]``, the loss itself (detached);
        global with ``gather_distributed``, as the loss.

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
    zs, _, _, mce = _uniformity_parts(fn, views, lam, method, order, gather_distributed, check_radius, return_terms)

    def compute():
        loss = torch.stack([mce(z) for z in zs]).mean()
        return _with_terms(loss, uniformity_mce=loss) if return_terms else loss

    return _run(zs[0], compute, ("uniformity_mce",) if return_terms else None)


def uniformity_mkl_loss(
    *views: torch.Tensor,
    lam: float | None = None,
    method: str = "exact",
    order: int = 4,
    gather_distributed: bool = False,
    check_radius: bool = True,
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Uniformity-MKL loss (paper eq. 17), averaged over the views given.

    .. math:: \mathcal{L}_{\mathrm{UMKL}} = \mathrm{MKL}\Big(\tfrac1d I_d + \lambda I_d \,\Big\|\,
              \tfrac1B Z^\top Z + \lambda I_d\Big)
              = \mathcal{L}_{\mathrm{UMCE}} - \mathrm{ME}\big((\tfrac1d + \lambda) I_d\big),

    non-negative, and zero exactly at :math:`\frac1B Z^\top Z = \frac1d I`.

    Args:
        *views: one or more ``(B, d)`` embeddings of the same shape.
        lam: :math:`\lambda > 0`; ``None`` (default) means :math:`1/d`.
        method: ``"exact"`` (default; Cholesky log-determinant on the smaller
            side) or ``"taylor"`` (converges for :math:`0 < \lambda < 1` on
            unit rows, as for :func:`uniformity_mce_loss`).
        order: number of terms of the Taylor series (``method="taylor"``), ``>= 1``.
        gather_distributed: compute over the global batch of all ``torch.distributed``
            processes (see :doc:`/distributed`); nothing without a process group.
        check_radius: warn when the Taylor series is outside its convergence
            radius. ``False`` skips every host read (no GPU synchronization).
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize. With ``return_terms=True``, ``(loss, terms)``
        with one term, ``terms["uniformity_mkl"]``, the loss itself (detached);
        global with ``gather_distributed``, as the loss, ``>= 0`` (exact method).

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import uniformity_mkl_loss
        >>> frame = torch.eye(4, dtype=torch.float64).repeat(2, 1)
        >>> bool(abs(uniformity_mkl_loss(frame)) < 1e-12)
        True
    """
    fn = "uniformity_mkl_loss"
    zs, d, lam, mce = _uniformity_parts(fn, views, lam, method, order, gather_distributed, check_radius, return_terms)
    c = 1.0 / d + lam
    entropy_p = -d * c * math.log(c) + d * c

    def compute():
        loss = torch.stack([mce(z) for z in zs]).mean() - entropy_p
        return _with_terms(loss, uniformity_mkl=loss) if return_terms else loss

    return _run(zs[0], compute, ("uniformity_mkl",) if return_terms else None)
