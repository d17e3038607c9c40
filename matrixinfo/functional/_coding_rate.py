r"""Coding-rate losses: TCR, EMP-TCR, EMP-SSL and MEC.

The total coding rate (TCR), EMP-SSL's coding rate of concatenated views
(EMP-TCR) and total loss (EMP-SSL), and maximum entropy coding (MEC).

Each is a log-determinant of a scaled auto- or cross-covariance of
l2-normalized embeddings, computed by the Taylor series or exactly;
:mod:`._common` says how, and :mod:`matrixinfo._trace` holds the machinery.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _distributed, _spectral, _trace
from .._checks import check_embeddings, check_flag, check_number
from ._common import _check_views, _common_checks, _prepare, _run, _with_terms

__all__ = [
    "emp_ssl_loss",
    "emp_tcr_loss",
    "mec_loss",
    "tcr_loss",
]


def _check_tcr(fn, views, eps, method, order, gather_distributed, return_terms):
    check_flag(fn, "return_terms", return_terms)
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
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        method: ``"exact"`` (Cholesky log-determinant on the smaller side) or ``"taylor"``.
        order: number of terms of the Taylor series (``method="taylor"``), ``>= 1``.
        gather_distributed: compute over the global batch of all ``torch.distributed``
            processes (see :doc:`/distributed`); nothing without a process group.
        check_radius: warn when the Taylor series is outside its convergence
            radius. ``False`` skips every host read (no GPU synchronization).
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize. With ``return_terms=True``, ``(loss, terms)`` with one term,
        ``terms["tcr"]``, the loss itself (detached); global with
        ``gather_distributed``, as the loss.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import tcr_loss
        >>> spread = torch.eye(4, dtype=torch.float64).repeat(2, 1)
        >>> collapsed = torch.ones(8, 4, dtype=torch.float64)
        >>> bool(tcr_loss(spread) < tcr_loss(collapsed))  # collapse is penalized
        True
    """
    fn = "tcr_loss"
    _check_tcr(fn, views, eps, method, order, gather_distributed, return_terms)
    batch, zs = _prepare(fn, gather_distributed, *views, check_radius=check_radius)
    B, d = batch.n, zs[0].shape[1]
    scale = d / (B * eps)

    def compute():
        loss = torch.stack(
            [-0.5 * _trace.trace_log_autocov(fn, batch, z, 1.0, scale, method, order, check_radius) for z in zs]
        ).mean()
        return _with_terms(loss, tcr=loss) if return_terms else loss

    return _run(zs[0], compute, ("tcr",) if return_terms else None)


def emp_tcr_loss(
    *views: torch.Tensor,
    eps: float = 0.2,
    mu: float = 0.5,
    method: str = "exact",
    order: int = 4,
    gather_distributed: bool = False,
    check_radius: bool = True,
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Coding rate of the concatenated views (paper eq. 9).

    Each view is l2-normalized, then the ``n`` views of a sample are
    concatenated into :math:`\tilde z \in \mathbb{R}^{n d}`:

    .. math:: \mathcal{L}_{\mathrm{EMP\text{-}TCR}}
              = -\mu \log\det\Big(I_{nd} + \frac{d}{B\,\epsilon^2} \tilde Z^\top \tilde Z\Big).

    This is eq. 9 exactly (its identity has the dimension ``n d`` of
    :math:`\tilde z`). The code scales by :math:`\frac{nd}{B\epsilon^2}` and
    divides each row of :math:`\tilde Z` by :math:`\sqrt n` (unit rows); the
    two factors cancel. With ``n = 1`` it is :func:`tcr_loss` with
    ``mu = 1/2``. ``eps`` is :math:`\epsilon^2`.

    Args:
        *views: the ``n >= 1`` views, ``(B, d)`` embeddings of the same shape
            (row ``b`` of every view is the same sample).
        eps: :math:`\epsilon^2 > 0`.
        mu: weight :math:`\mu \ge 0` of the log-determinant.
        method: ``"exact"`` (Cholesky log-determinant on the smaller side) or ``"taylor"``.
        order: number of terms of the Taylor series (``method="taylor"``), ``>= 1``.
        gather_distributed: compute over the global batch of all ``torch.distributed``
            processes (see :doc:`/distributed`); nothing without a process group.
        check_radius: warn when the Taylor series is outside its convergence
            radius. ``False`` skips every host read (no GPU synchronization).
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize. With ``return_terms=True``, ``(loss, terms)``:
        ``terms["log_det"]`` is the log-determinant
        :math:`\log\det(I_{nd} + \frac{d}{B\epsilon^2} \tilde Z^\top \tilde Z)`
        (detached), and ``loss = -mu * log_det``; global with
        ``gather_distributed``, as the loss.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import emp_tcr_loss, tcr_loss
        >>> z = torch.randn(16, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isclose(emp_tcr_loss(z), tcr_loss(z)))
        True
    """
    fn = "emp_tcr_loss"
    _check_tcr(fn, views, eps, method, order, gather_distributed, return_terms)
    check_number(fn, "mu", mu, minimum=0.0)
    n = len(views)
    batch, zs = _prepare(fn, gather_distributed, *views, dim=n * views[0].shape[1], check_radius=check_radius)
    B, d = batch.n, zs[0].shape[1]
    Z = torch.cat(zs, dim=1) / math.sqrt(n)
    scale = n * d / (B * eps)

    def compute():
        log_det = _trace.trace_log_autocov(fn, batch, Z, 1.0, scale, method, order, check_radius)
        loss = -mu * log_det
        return _with_terms(loss, log_det=log_det) if return_terms else loss

    return _run(zs[0], compute, ("log_det",) if return_terms else None)


def emp_ssl_loss(
    *views: torch.Tensor,
    eps: float = 0.2,
    invariance_weight: float = 200.0,
    tcr_weight: float = 1.0,
    method: str = "exact",
    order: int = 4,
    gather_distributed: bool = False,
    check_radius: bool = True,
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""EMP-SSL's total loss over ``n`` patches (views) of each sample.

    .. math:: \mathcal{L} = \frac{w_{\mathrm{tcr}}}{n}\sum_{i=1}^n \mathcal{L}_{\mathrm{TCR}}(Z_i)
              - \frac{w_{\mathrm{inv}}}{n}\sum_{i=1}^n \frac1B \sum_{b=1}^B \cos(z_{i,b}, \bar z_b),
              \qquad \bar z_b = \frac1n \sum_i z_{i,b},

    with the EMP-SSL defaults ``invariance_weight = 200``, ``tcr_weight = 1``,
    ``eps`` :math:`= \epsilon^2 = 0.2` (tsb0601/EMP-SSL). The mean
    :math:`\bar z` is not detached.

    Args:
        *views: the ``n >= 1`` patches, ``(B, d)`` embeddings of the same shape
            (row ``b`` of every view is the same sample).
        eps: :math:`\epsilon^2 > 0` of the coding rate.
        invariance_weight: :math:`w_{\mathrm{inv}} \ge 0`, weight of the cosine term.
        tcr_weight: :math:`w_{\mathrm{tcr}} \ge 0`, weight of the coding rate.
        method: ``"exact"`` (Cholesky log-determinant on the smaller side) or ``"taylor"``.
        order: number of terms of the Taylor series (``method="taylor"``), ``>= 1``.
        gather_distributed: compute over the global batch of all ``torch.distributed``
            processes (see :doc:`/distributed`); nothing without a process group.
        check_radius: warn when the Taylor series is outside its convergence
            radius. ``False`` skips every host read (no GPU synchronization).
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize. With ``return_terms=True``, ``(loss, terms)``:
        ``terms["tcr"]`` is :math:`\frac1n\sum_i \mathcal{L}_{\mathrm{TCR}}(Z_i)`
        (:func:`tcr_loss` of the views) and ``terms["invariance"]`` is
        :math:`-\frac1n\sum_i \frac1B \sum_b \cos(z_{i,b}, \bar z_b)`
        (detached), with ``loss = tcr_weight * tcr + invariance_weight *
        invariance``; global with ``gather_distributed``, as the loss.

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
    _check_tcr(fn, views, eps, method, order, gather_distributed, return_terms)
    check_number(fn, "invariance_weight", invariance_weight, minimum=0.0)
    check_number(fn, "tcr_weight", tcr_weight, minimum=0.0)
    batch, zs = _prepare(fn, gather_distributed, *views, check_radius=check_radius)
    B, d = batch.n, zs[0].shape[1]
    scale = d / (B * eps)

    def compute():
        tcr = torch.stack(
            [-0.5 * _trace.trace_log_autocov(fn, batch, z, 1.0, scale, method, order, check_radius) for z in zs]
        )
        mean = torch.stack(zs).mean(dim=0)
        # A per-sample mean: the sum over the global batch, divided by B and the number of views.
        (cos,) = batch.sums(torch.stack([F.cosine_similarity(z, mean, dim=1) for z in zs]).sum(dim=0))
        tcr_mean = tcr.mean()
        loss = tcr_weight * tcr_mean - invariance_weight * cos / (B * len(zs))
        return _with_terms(loss, tcr=tcr_mean, invariance=-cos / (B * len(zs))) if return_terms else loss

    return _run(zs[0], compute, ("tcr", "invariance") if return_terms else None)


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
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        order: number of terms of the Taylor series (``method="taylor"``), ``>= 1``.
        method: ``"taylor"`` (default, the authors') or ``"exact"`` (LU
            log-determinant on the smaller side).
        gather_distributed: compute over the global batch of all ``torch.distributed``
            processes (see :doc:`/distributed`); nothing without a process group.
        check_radius: warn when the Taylor series is outside its convergence
            radius. ``False`` skips every host read (no GPU synchronization).
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize. With ``return_terms=True``, ``(loss, terms)`` with one term,
        ``terms["mec"]``, the loss itself (detached); global with
        ``gather_distributed``, as the loss.

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
    check_flag(fn, "return_terms", return_terms)
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
            trace_log = (
                _trace.logdet_identity_plus(M, False, check_radius)
                if batch.moments
                else _trace.sylvester_logdet(z, p, lam, check_radius)
            )
        else:
            if not batch.moments:
                M = lam * _trace.smaller_side(p, z, 1.0)
            if check_radius:
                _spectral.warn_if_outside_radius(fn, M.detach(), "lambda * Z P^T", dim=min(B, d), loss=True)
            trace_log = _trace.trace_log_taylor(M, min(B, d), 1.0, order)
        loss = -trace_log / (B * lam)
        return _with_terms(loss, mec=loss) if return_terms else loss

    return _run(z, compute, ("mec",) if return_terms else None)
