r"""Redundancy-reduction losses: Barlow Twins, VICReg and CorInfoMax.

Each function reproduces its authors' definition (see :doc:`/reproducing`) and
says where it sits in the paper's matrix-information view (section 4): the
second-order terms of the Taylor expansion of the total coding rate (eq. 18),
or a log-determinant, i.e. a matrix cross-entropy against the identity.
Conventions (shapes, precision, ``gather_distributed``) are those of
:mod:`._common`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import _distributed, _spectral
from .._checks import MatrixInfoValueError, check_embeddings, check_flag, check_not_meta, check_number, shape_str, warn
from ._common import _with_terms

__all__ = [
    "CorInfoMaxState",
    "barlow_twins_loss",
    "corinfomax_loss",
    "vicreg_loss",
]

# BatchNorm1d's default eps, used by the Barlow Twins authors' standardization.
_BATCHNORM_EPS = 1e-5


def _off_diagonal_square_sum(c: torch.Tensor) -> torch.Tensor:
    """``sum_{i != j} c_ij^2`` without subtracting the diagonal from the total."""
    eye = torch.eye(c.shape[0], dtype=torch.bool, device=c.device)
    return torch.where(eye, torch.zeros_like(c), c).square().sum()


# --------------------------------------------------------------------------- #
# Barlow Twins                                                                 #
# --------------------------------------------------------------------------- #
def _batch_correlation(batch: _distributed.Batch, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The cross-correlation ``c = s(Z_1)^T s(Z_2) / B`` of the standardized views.

    ``s`` is what ``BatchNorm1d(affine=False)`` does in training mode (biased
    variance, eps 1e-5), from the batch's sums: the means first, then the
    centered cross and square sums (two reductions, so that nothing is taken as
    a difference of raw moments).
    """
    n = batch.n
    s1, s2 = batch.sums(z1, z2)
    c1, c2 = z1 - s1 / n, z2 - s2 / n
    v1, v2, cross = batch.reduce(c1.square().sum(dim=0), c2.square().sum(dim=0), c1.mT @ c2)
    std1, std2 = torch.sqrt(v1 / n + _BATCHNORM_EPS), torch.sqrt(v2 / n + _BATCHNORM_EPS)
    return cross / n / (std1[:, None] * std2[None, :])


def barlow_twins_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    lambda_param: float = 0.0051,
    gather_distributed: bool = False,
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Barlow Twins loss (Zbontar et al. 2021; paper eq. 4).

    Each view is standardized per feature over the batch as
    ``BatchNorm1d(affine=False)`` does in training mode (biased variance,
    :math:`\epsilon = 10^{-5}`), then

    .. math::

        \hat z_{v} = \frac{z_v - \bar z_v}{\sqrt{\sigma_v^2 + \epsilon}}, \qquad
        c = \frac{1}{B} \hat Z_1^\top \hat Z_2 \in \mathbb{R}^{d \times d}, \qquad
        \mathcal{L}_{BT} = \sum_i (1 - c_{ii})^2 + \lambda \sum_i \sum_{j \ne i} c_{ij}^2 .

    This is the authors' definition (facebookresearch/barlowtwins),
    including its scale: a sum over the ``d x d`` cross-correlation,
    not a mean.

    In the unified view (paper eq. 18) the off-diagonal term is the
    second-order term of the Taylor expansion of the total coding rate
    :math:`\operatorname{tr}(Z_1 Z_2^\top Z_1 Z_2^\top) = \sum_i c_{ii}^2 + \sum_{i\ne j} c_{ij}^2`:
    Barlow Twins is a second-order approximation of TCR / uniformity MCE.

    Defaults: ``lambda_param = 0.0051``, the authors' value; lightly's
    ``BarlowTwinsLoss`` defaults to ``lambda_param = 5e-3`` (pass it to
    reproduce lightly's weighting).

    Args:
        z1: ``(B, d)`` embeddings of the first view.
        z2: ``(B, d)`` embeddings of the second view (symmetric in the views).
        lambda_param: weight :math:`\lambda \ge 0` of the redundancy-reduction term.
        gather_distributed: standardize and correlate over the global batch of
            all processes, as the authors do (synchronized batch norm and an
            all-reduce of ``c``). lightly and solo-learn use local statistics.
            Costs an all-reduce of ``d^2 + 4 d`` numbers and ``B_local d^2``
            flops per process when ``d <= B``, else an all-gather of the
            embeddings and ``B d^2`` (see :doc:`/distributed`).
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize; ``>= 0``, and 0 only if ``c = I``. With
        ``return_terms=True``, ``(loss, terms)``: ``terms["on_diagonal"]`` is
        :math:`\sum_i (1 - c_{ii})^2` and ``terms["off_diagonal"]`` is
        :math:`\sum_i \sum_{j \ne i} c_{ij}^2` (detached), and
        ``loss = on_diagonal + lambda_param * off_diagonal``; global with
        ``gather_distributed``, as the loss.

    Raises:
        MatrixInfoValueError: shapes are not ``(B, d)`` with ``B >= 2`` or differ;
            inputs on different devices; ``lambda_param < 0``.
        MatrixInfoTypeError: inputs are not real floating tensors.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import barlow_twins_loss
        >>> z = torch.tensor([[1.0, 2.0], [2.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
        >>> # c is the correlation matrix of z (up to BatchNorm's eps): unit
        >>> # diagonal, off-diagonal -0.5, so the loss is 2 * 0.0051 * 0.25
        >>> round(float(barlow_twins_loss(z, z)), 6)
        0.00255
        >>> round(float(barlow_twins_loss(z, z.flip(0))), 4)  # misaligned views cost more
        4.2525
    """
    fn = "barlow_twins_loss"
    check_flag(fn, "gather_distributed", gather_distributed)
    check_flag(fn, "return_terms", return_terms)
    check_embeddings(fn, ("z1", "z2"), z1, z2, min_rows=_distributed.local_min_rows(gather_distributed))
    lambda_param = check_number(fn, "lambda_param", lambda_param, minimum=0.0)
    batch = _distributed.batch(fn, gather_distributed, z1, z2)
    with _spectral.precision(*batch.rows) as policy:
        z1, z2 = policy.cast(*batch.rows)
        c = _batch_correlation(batch, z1, z2)
        on_diagonal = (1.0 - c.diagonal()).square().sum()
        off_diagonal = _off_diagonal_square_sum(c)
        loss = on_diagonal + lambda_param * off_diagonal
        return _with_terms(loss, on_diagonal=on_diagonal, off_diagonal=off_diagonal) if return_terms else loss


# --------------------------------------------------------------------------- #
# VICReg                                                                       #
# --------------------------------------------------------------------------- #
def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    lambda_param: float = 25.0,
    mu_param: float = 25.0,
    nu_param: float = 1.0,
    gather_distributed: bool = False,
    eps: float = 1e-4,
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""VICReg loss (Bardes et al. 2021; paper eq. 5), the authors' definition.

    With :math:`\bar z_v` the batch mean, :math:`\sigma_{v,k}^2` the unbiased
    variance of feature :math:`k` and
    :math:`C_v = \frac{1}{B-1} (Z_v - \bar z_v)^\top (Z_v - \bar z_v)`:

    .. math::

        \mathcal{L} = \lambda \,\frac{1}{Bd} \|Z_1 - Z_2\|_F^2
        + \mu \,\frac{1}{2} \sum_{v=1}^{2} \frac{1}{d} \sum_{k=1}^{d}
            \max\!\big(0, 1 - \sqrt{\sigma_{v,k}^2 + \epsilon}\big)
        + \nu \sum_{v=1}^{2} \frac{1}{d} \sum_{j \ne k} (C_v)_{jk}^2 .

    As in facebookresearch/vicreg: the variance
    hinge is the AVERAGE over the two views (solo-learn's is their sum, twice
    as large), the covariance term is the SUM over the two views, each divided
    by ``d``. Defaults ``25, 25, 1`` and ``eps = 1e-4`` are the authors' and
    lightly's; the keyword names are lightly's.

    In the unified view (paper section 4) the covariance term, like Barlow
    Twins', is a second-order (Frobenius) term of the Taylor expansion of the
    coding rate of the auto-covariance, and the invariance term is the
    alignment term :math:`\|Z_1 - Z_2\|_F^2` of Lemma 5.2.

    Args:
        z1: ``(B, d)`` embeddings of the first view.
        z2: ``(B, d)`` embeddings of the second view (symmetric in the views).
        lambda_param: weight of the invariance (MSE) term, ``>= 0``.
        mu_param: weight of the variance term, ``>= 0``.
        nu_param: weight of the covariance term, ``>= 0``.
        gather_distributed: compute every term over the global batch of all
            processes (the authors gather for the variance and covariance terms
            and average the invariance term over processes, which has the same
            gradient). Costs an all-reduce of two ``d x d`` covariances when
            ``d <= B``, else an all-gather of the embeddings.
        eps: added to the variance before the square root, ``>= 0``.
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize; ``>= 0``. With ``return_terms=True``,
        ``(loss, terms)``: the three brackets of the formula, unweighted and
        detached, ``terms["invariance"]`` (the MSE), ``terms["variance"]``
        (the hinge averaged over the views) and ``terms["covariance"]`` (summed
        over the views), with ``loss = lambda_param * invariance + mu_param *
        variance + nu_param * covariance``; global with ``gather_distributed``,
        as the loss.

    Raises:
        MatrixInfoValueError: shapes are not ``(B, d)`` with ``B >= 2`` or differ;
            inputs on different devices; a negative weight or ``eps``.
        MatrixInfoTypeError: inputs are not real floating tensors.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import vicreg_loss
        >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
        >>> # aligned and decorrelated; each feature has unbiased variance 2/3 < 1
        >>> hinge = 1 - torch.sqrt(torch.tensor(2 / 3 + 1e-4, dtype=torch.float64))
        >>> bool(torch.isclose(vicreg_loss(z, z), 25 * hinge))
        True
        >>> loss, terms = vicreg_loss(z, z, return_terms=True)
        >>> sorted(terms), float(terms["invariance"]), float(terms["covariance"])
        (['covariance', 'invariance', 'variance'], 0.0, 0.0)
    """
    fn = "vicreg_loss"
    check_flag(fn, "gather_distributed", gather_distributed)
    check_flag(fn, "return_terms", return_terms)
    check_embeddings(fn, ("z1", "z2"), z1, z2, min_rows=_distributed.local_min_rows(gather_distributed))
    lambda_param = check_number(fn, "lambda_param", lambda_param, minimum=0.0)
    mu_param = check_number(fn, "mu_param", mu_param, minimum=0.0)
    nu_param = check_number(fn, "nu_param", nu_param, minimum=0.0)
    eps = check_number(fn, "eps", eps, minimum=0.0)
    batch = _distributed.batch(fn, gather_distributed, z1, z2)
    with _spectral.precision(*batch.rows) as policy:
        z1, z2 = policy.cast(*batch.rows)
        B, d = batch.n, z1.shape[1]
        s1, s2, squared_error = batch.sums(z1, z2, (z1 - z2).square().sum(dim=1))
        invariance = squared_error / (B * d)
        centered = (z1 - s1 / B, z2 - s2 / B)
        variance = z1.new_zeros(())
        covariance = z1.new_zeros(())
        for cov in batch.reduce(*(c.mT @ c for c in centered)):
            cov = cov / (B - 1)
            variance = variance + torch.relu(1.0 - torch.sqrt(cov.diagonal() + eps)).mean() / 2
            covariance = covariance + _off_diagonal_square_sum(cov) / d
        loss = lambda_param * invariance + mu_param * variance + nu_param * covariance
        if return_terms:
            return _with_terms(loss, invariance=invariance, variance=variance, covariance=covariance)
        return loss


# --------------------------------------------------------------------------- #
# CorInfoMax                                                                   #
# --------------------------------------------------------------------------- #
class _CorInfoMaxFields(NamedTuple):
    # The fields, in a base class of their own: the docstring of CorInfoMaxState
    # describes them, and Sphinx would list annotated fields a second time.
    R1: torch.Tensor
    R2: torch.Tensor
    mu1: torch.Tensor
    mu2: torch.Tensor


class CorInfoMaxState(_CorInfoMaxFields):
    """Running estimates of :func:`corinfomax_loss`, one per branch.

    float64, without gradient: covariances ``R1``, ``R2`` of shape ``(d, d)`` and means
    ``mu1``, ``mu2`` of shape ``(d,)``. A :class:`~typing.NamedTuple`: it
    unpacks as ``R1, R2, mu1, mu2``.

    Examples:
        >>> from matrixinfo.functional import CorInfoMaxState
        >>> state = CorInfoMaxState.initial(2)  # identity covariances, zero means
        >>> state.R1
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)
        >>> state.mu2
        tensor([0., 0.], dtype=torch.float64)
    """

    __slots__ = ()

    @classmethod
    def initial(cls, dim: int, device=None) -> CorInfoMaxState:
        """Identity covariances and zero means (the authors' ``R_ini = 1``)."""
        eye = torch.eye(dim, dtype=torch.float64, device=device)
        zeros = torch.zeros(dim, dtype=torch.float64, device=device)
        return cls(eye, eye.clone(), zeros, zeros.clone())


def _logdet_spd(fn: str, A: torch.Tensor) -> torch.Tensor:
    """``log det A`` of a symmetric positive definite ``A`` by Cholesky.

    If the Cholesky factorization fails (``A`` numerically indefinite; one
    host read of its status, skipped while ``torch.compile`` traces, where a
    failure gives NaN), falls back to eigenvalues raised to the package's
    eigenvalue floor (:func:`matrixinfo._spectral.raise_to_floor`) and warns.
    """
    L, info = torch.linalg.cholesky_ex(A)
    if not _spectral.host_reads_allowed():  # torch.compile traces: no host read; NaN if the factorization failed
        ok = info == 0
        return torch.where(ok, 2.0 * torch.log(torch.where(ok, L.diagonal(), 1.0)).sum(), float("nan"))
    if bool(info.ne(0).any()):
        warn(
            f"{fn}: the regularized covariance is not numerically positive definite; "
            "its log-determinant is taken from eigenvalues floored at d * eps * lambda_max. "
            "Increase eps.",
        )
        w = torch.linalg.eigvalsh(0.5 * (A + A.mT))
        return torch.log(_spectral.raise_to_floor(w)).sum()
    return 2.0 * torch.log(L.diagonal()).sum()


def corinfomax_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    state: CorInfoMaxState | None = None,
    *,
    alpha: float = 500.0,
    eps: float = 1e-6,
    forgetting: float = 0.01,
    gather_distributed: bool = False,
    return_terms: bool = False,
) -> tuple[torch.Tensor, CorInfoMaxState] | tuple[torch.Tensor, CorInfoMaxState, dict[str, torch.Tensor]]:
    r"""CorInfoMax loss (Ozsoy et al. 2022; the paper's "ColorInfoMax", eq. 7).

    Each branch ``v`` keeps a running mean :math:`m_v` and covariance
    :math:`R_v`, updated with forgetting factor :math:`f` (the weight of the
    history), and the loss is

    .. math::

        m_v' = f\, m_v + (1 - f)\, \bar z_v, \qquad
        R_v' = f\, R_v + (1 - f)\, \frac{1}{B} (Z_v - m_v')^\top (Z_v - m_v'),

        \mathcal{L} = \alpha \,\frac{1}{Bd}\|Z_1 - Z_2\|_F^2
            - \frac{1}{d}\Big[\log\det(R_1' + \epsilon I) + \log\det(R_2' + \epsilon I)\Big].

    As in serdarozsoy/corinfomax-ssl (``loss.py``):
    the history :math:`m_v, R_v` carries no gradient, the current batch
    (through :math:`\bar z_v` and :math:`Z_v`) does; the covariance and the
    log-determinants are computed in float64 with autocast disabled (here by
    Cholesky). Defaults are the authors': ``alpha = 500`` (their README uses
    250 to 2000), ``eps = 1e-6`` (their README runs 1e-8), ``forgetting = 0.01``
    for both the mean and the covariance. The initial state
    (:meth:`CorInfoMaxState.initial`) is the identity covariance and a zero
    mean, the authors' ``R_ini = 1``. The authors l2-normalize the projector
    output (option ``--normalize_on``) before the loss; this function does
    not normalize.

    The paper's eq. 7 prints the alignment term with a minus sign and a
    ``2 / (eps B)`` factor; the authors' code adds :math:`\alpha` times the
    mean squared error, which is what is minimized here.

    In the unified view (paper section 5) the log-determinant terms are
    auto-covariance matrix cross-entropies against the identity,
    :math:`-\log\det Q = \mathrm{MCE}(I, Q) - \operatorname{tr} Q`, the same
    family as TCR (eq. 6); the MSE is the alignment term of Lemma 5.2.

    Args:
        z1: ``(B, d)`` embeddings of the first branch.
        z2: ``(B, d)`` embeddings of the second branch.
        state: running estimates from the previous call; ``None`` starts from
            :meth:`CorInfoMaxState.initial`. Not modified.
        alpha: weight of the mean squared error, ``>= 0``.
        eps: diagonal regularization :math:`\epsilon > 0` of the covariances.
        forgetting: :math:`f \in [0, 1]`, weight of the history in both running
            estimates (0: the current batch only).
        gather_distributed: estimate means and covariances (and the MSE) over
            the global batch of all processes, so that every process holds the
            same state. The authors' multi-GPU code uses local batches. Costs an
            all-reduce of two ``d x d`` scatter matrices when ``d <= B``, else an
            all-gather of the embeddings.
        return_terms: also return the terms, ``(loss, new_state, terms)``.

    Returns:
        ``(loss, new_state)``: the 0-d loss to minimize, in float32 for half
        and float32 inputs and float64 for float64 inputs, and the updated
        :class:`CorInfoMaxState` (float64, detached) to pass to the next call.
        With ``return_terms=True``, ``(loss, new_state, terms)``:
        ``terms["invariance"]`` is the MSE :math:`\frac{1}{Bd}\|Z_1 - Z_2\|_F^2`
        and ``terms["covariance"]`` is
        :math:`-\frac1d[\log\det(R_1' + \epsilon I) + \log\det(R_2' + \epsilon I)]`
        (the authors' ``cov_loss``), detached, in the loss's dtype, with
        ``loss = alpha * invariance + covariance``; global with
        ``gather_distributed``, as the loss.

    Raises:
        MatrixInfoValueError: shapes are not ``(B, d)`` with ``B >= 2`` or differ;
            inputs on different devices; ``state`` of the wrong shape;
            ``alpha < 0``, ``eps <= 0`` or ``forgetting`` outside ``[0, 1]``.
        MatrixInfoTypeError: inputs are not real floating tensors.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import corinfomax_loss
        >>> z = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
        >>> loss, state = corinfomax_loss(z, z, forgetting=0.0, eps=1e-12)
        >>> state.R1  # the batch covariance: the identity, so log det = 0
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)
        >>> bool(abs(loss) < 1e-10)
        True
        >>> loss, state = corinfomax_loss(2 * z, 2 * z, state, forgetting=0.0, eps=1e-12)
        >>> round(float(loss), 6)  # -2 log det(4 I) / 2 = -4 log 2
        -2.772589
    """
    fn = "corinfomax_loss"
    check_flag(fn, "gather_distributed", gather_distributed)
    check_flag(fn, "return_terms", return_terms)
    check_embeddings(fn, ("z1", "z2"), z1, z2, min_rows=_distributed.local_min_rows(gather_distributed))
    alpha = check_number(fn, "alpha", alpha, minimum=0.0)
    eps = check_number(fn, "eps", eps, minimum=0.0, strict=True)
    forgetting = check_number(fn, "forgetting", forgetting, minimum=0.0)
    if forgetting > 1.0:
        raise MatrixInfoValueError(f"{fn}: expected forgetting <= 1, got {forgetting!r}.")
    check_not_meta(fn, "z1", z1)
    d = z1.shape[1]
    if state is None:
        state = CorInfoMaxState.initial(d, device=z1.device)
    else:
        _check_corinfomax_state(fn, state, d, z1.device)
    batch = _distributed.batch(fn, gather_distributed, z1, z2)
    with _spectral.precision(*batch.rows) as policy:
        z1, z2 = policy.cast(*batch.rows)
        out_dtype = policy.dtype
        B = batch.n
        zs = (z1.to(torch.float64), z2.to(torch.float64))
        sum1, sum2, squared_error = batch.sums(*zs, (z1 - z2).square().sum(dim=1))
        invariance = squared_error / (B * d)
        eye = torch.eye(d, dtype=torch.float64, device=z1.device)
        logdets = []
        new = []
        means = [
            forgetting * m.detach().to(torch.float64) + (1.0 - forgetting) * s / B
            for m, s in zip((state.mu1, state.mu2), (sum1, sum2), strict=True)
        ]
        scatters = batch.reduce(*((z - m).mT @ (z - m) for z, m in zip(zs, means, strict=True)))
        for scatter, R, m_new in zip(scatters, (state.R1, state.R2), means, strict=True):
            R_new = forgetting * R.detach().to(torch.float64) + (1.0 - forgetting) * scatter / B
            bad, (R_reg,) = _spectral.non_finite_guard(R_new + eps * eye)  # NaN out, no LAPACK error
            logdets.append(_spectral.nan_where(bad, _logdet_spd(fn, R_reg)))
            new.append((R_new.detach(), m_new.detach()))
        loss = alpha * invariance.to(torch.float64) - (logdets[0] + logdets[1]) / d
        new_state = CorInfoMaxState(new[0][0], new[1][0], new[0][1], new[1][1])
        if return_terms:
            loss, terms = _with_terms(
                loss.to(out_dtype), invariance=invariance, covariance=-(logdets[0] + logdets[1]) / d
            )
            return loss, new_state, terms
        return loss.to(out_dtype), new_state


def _check_corinfomax_state(fn: str, state, d: int, device: torch.device) -> None:
    if not isinstance(state, tuple) or len(state) != 4:
        raise MatrixInfoValueError(
            f"{fn}: expected state to be a CorInfoMaxState (R1, R2, mu1, mu2), got {type(state).__name__}."
        )
    expected = ((d, d), (d, d), (d,), (d,))
    for name, tensor, shape in zip(CorInfoMaxState._fields, state, expected, strict=True):
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            got = shape_str(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise MatrixInfoValueError(
                f"{fn}: expected state.{name} to have shape {shape_str(shape)} for d = {d}, got {got}."
            )
        if tensor.device != device:
            raise MatrixInfoValueError(
                f"{fn}: expected state.{name} on {device} like the embeddings, got {tensor.device}."
            )
