r"""Classic self-supervised losses in the paper's unified view: Barlow Twins,
VICReg, SimCLR (NT-Xent), SimSiam's negative cosine, BYOL, the spectral
contrastive loss and CorInfoMax.

Each function reproduces its authors' definition (see :doc:`/reproducing`) and
says where it sits in the paper's matrix-information view (section 4): the
first- and second-order terms of the Taylor expansion of the total coding rate
(eq. 18), matrix cross-entropy with an element-wise logarithm (Prop. 4.3), or
a log-determinant, i.e. a matrix cross-entropy against the identity.

Conventions shared by every function here:

* Embeddings are ``(B, d)``, rows are samples (the paper writes ``d x B``).
  Where a method distinguishes its branches, the online branch comes first and
  the target branch second. No loss detaches an input: stop-gradients are the
  caller's (``target.detach()``), as in the authors' training loops.
* Every function returns a 0-d tensor to be minimized.
* float32 and float64 inputs are computed in their own precision. float16 and
  bfloat16 inputs are computed in float32 with autocast disabled, and the loss
  is returned in float32, as autocast does for its own losses. Normalizations
  therefore never underflow in half precision (lightly issue 1259).
* ``gather_distributed=True`` makes a loss that uses batch statistics (means,
  covariances, negatives) see the global batch of all ``torch.distributed``
  processes, with gradients that are exact after DDP's averaging: W processes
  with ``B/W`` samples each give the value and the parameter gradients of one
  process holding all ``B`` samples. Processes may hold different numbers of
  samples, zero included. Batch statistics come from all-reduced moments
  when ``d <= B`` and from all-gathered rows otherwise (see
  :doc:`/distributed`). Without an initialized process group the flag does
  nothing.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from .. import _distributed, _spectral
from .._checks import MatrixInfoValueError, check_embeddings, check_flag, check_not_meta, check_number, shape_str, warn
from .._spectral import compute_dtype, full_precision, host_reads_allowed

__all__ = [
    "CorInfoMaxState",
    "barlow_twins_loss",
    "byol_loss",
    "corinfomax_loss",
    "negative_cosine_similarity_loss",
    "simclr_loss",
    "spectral_contrastive_loss",
    "vicreg_loss",
]

# Norms below this are treated as this in the cosine-based losses (the eps of
# torch.nn.functional.cosine_similarity). It is a float32 normal number; the
# division is done in float32 or float64, never in half precision.
_NORM_EPS = 1e-8
# BatchNorm1d's default eps, used by the Barlow Twins authors' standardization.
_BATCHNORM_EPS = 1e-5


# --------------------------------------------------------------------------- #
# Shared helpers                                                               #
# --------------------------------------------------------------------------- #
def _work(*zs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cast to the compute dtype: half -> float32, float32/float64 unchanged."""
    dtype = zs[0].dtype
    for z in zs[1:]:
        dtype = torch.promote_types(dtype, z.dtype)
    work = compute_dtype(dtype)
    return tuple(z.to(work) for z in zs)


def _normalize(z: torch.Tensor) -> torch.Tensor:
    """Rows divided by ``max(||row||, 1e-8)``; a zero row stays zero."""
    return z / torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_min(_NORM_EPS)


def _off_diagonal_square_sum(c: torch.Tensor) -> torch.Tensor:
    """``sum_{i != j} c_ij^2`` without subtracting the diagonal from the total."""
    eye = torch.eye(c.shape[0], dtype=torch.bool, device=c.device)
    return torch.where(eye, torch.zeros_like(c), c).square().sum()


# --------------------------------------------------------------------------- #
# Barlow Twins                                                                 #
# --------------------------------------------------------------------------- #
def _batch_correlation(batch: _distributed.Batch, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """``c = s(Z_1)^T s(Z_2) / B`` with ``s`` what ``BatchNorm1d(affine=False)``
    does in training mode (biased variance, eps 1e-5), from the batch's sums:
    the means first, then the centered cross and square sums (two reductions,
    so that nothing is taken as a difference of raw moments)."""
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
) -> torch.Tensor:
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

    Returns:
        0-d tensor to minimize; ``>= 0``, and 0 only if ``c = I``.

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
    check_embeddings(fn, ("z1", "z2"), z1, z2, min_rows=_distributed.local_min_rows(gather_distributed))
    lambda_param = check_number(fn, "lambda_param", lambda_param, minimum=0.0)
    batch = _distributed.batch(fn, gather_distributed, z1, z2)
    with full_precision(z1.device.type):
        z1, z2 = _work(*batch.rows)
        c = _batch_correlation(batch, z1, z2)
        on_diagonal = (1.0 - c.diagonal()).square().sum()
        return on_diagonal + lambda_param * _off_diagonal_square_sum(c)


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
) -> torch.Tensor:
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

    Returns:
        0-d tensor to minimize; ``>= 0``.

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
    """
    fn = "vicreg_loss"
    check_flag(fn, "gather_distributed", gather_distributed)
    check_embeddings(fn, ("z1", "z2"), z1, z2, min_rows=_distributed.local_min_rows(gather_distributed))
    lambda_param = check_number(fn, "lambda_param", lambda_param, minimum=0.0)
    mu_param = check_number(fn, "mu_param", mu_param, minimum=0.0)
    nu_param = check_number(fn, "nu_param", nu_param, minimum=0.0)
    eps = check_number(fn, "eps", eps, minimum=0.0)
    batch = _distributed.batch(fn, gather_distributed, z1, z2)
    with full_precision(z1.device.type):
        z1, z2 = _work(*batch.rows)
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
        return lambda_param * invariance + mu_param * variance + nu_param * covariance


# --------------------------------------------------------------------------- #
# SimCLR / NT-Xent                                                             #
# --------------------------------------------------------------------------- #
def simclr_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    temperature: float = 0.5,
    gather_distributed: bool = False,
) -> torch.Tensor:
    r"""SimCLR's NT-Xent loss (Chen et al. 2020; paper eq. 1).

    The ``2B`` rows of both views are l2-normalized,
    :math:`s_{ak} = \hat z_a^\top \hat z_k / \tau`, the positive of sample
    ``i`` of one view is sample ``i`` of the other view, and every other of
    the ``2B`` samples is a negative:

    .. math::

        \mathcal{L} = \frac{1}{2B} \sum_{a=1}^{2B}
            \Big[-s_{a,p(a)} + \log \sum_{k \ne a} \exp(s_{ak})\Big].

    This is the definition lightly, solo-learn and pytorch-metric-learning
    agree on at equal temperature. Default
    temperature 0.5 is lightly's (solo-learn 0.1, pytorch-metric-learning
    0.07). Rows are normalized in float32 (or float64) with norms floored at
    1e-8, so half-precision inputs do not underflow (lightly issue 1259).

    In the unified view (paper Prop. 4.3) NT-Xent is a matrix cross-entropy
    with an element-wise logarithm on the ``2B x 2B`` relation matrix: it
    equals MCE only when the relation matrix is diagonal, so it is not a
    canonical matrix-uniformity loss.

    Args:
        z1: ``(B, d)`` embeddings of the first view.
        z2: ``(B, d)`` embeddings of the second view (symmetric in the views).
        temperature: :math:`\tau > 0`.
        gather_distributed: take the negatives from the global batch. Each
            process computes the rows of its own samples against all ``2B``
            global samples, and the partial sums are all-reduced, so the value
            is the single-process value on the full batch on every process
            (one scalar all-reduce) and gradients are exact after DDP's
            averaging.

    Returns:
        0-d tensor to minimize (positive: a log-sum-exp over ``2B - 1`` terms
        minus one of them).

    Raises:
        MatrixInfoValueError: shapes are not ``(B, d)`` with ``B >= 2`` or differ;
            inputs on different devices; ``temperature <= 0``.
        MatrixInfoTypeError: inputs are not real floating tensors.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import simclr_loss
        >>> z = torch.eye(3, dtype=torch.float64)
        >>> # s = 2 with the positive, 0 with the 4 negatives: -2 + log(e^2 + 4)
        >>> bool(torch.isclose(simclr_loss(z, z), torch.log(torch.tensor(4.0, dtype=torch.float64) + torch.e**2) - 2))
        True
    """
    fn = "simclr_loss"
    check_flag(fn, "gather_distributed", gather_distributed)
    check_embeddings(fn, ("z1", "z2"), z1, z2, min_rows=_distributed.local_min_rows(gather_distributed))
    temperature = check_number(fn, "temperature", temperature, minimum=0.0, strict=True)
    with full_precision(z1.device.type):
        n1, n2 = (_normalize(z) for z in _work(z1, z2))
    (g1, g2), offset, active = _distributed._rows_against_global(gather_distributed, n1, n2)
    with full_precision(z1.device.type):
        local, total = n1.shape[0], g1.shape[0]
        anchors = torch.cat([n1, n2])  # (2 B_local, d)
        candidates = torch.cat([g1, g2])  # (2 B, d)
        logits = anchors @ candidates.mT / temperature
        rows = torch.arange(local, device=logits.device) + offset
        own = torch.cat([rows, rows + total])
        positive = torch.cat([rows + total, rows])
        index = torch.arange(2 * local, device=logits.device)
        is_self = torch.zeros_like(logits, dtype=torch.bool)
        is_self[index, own] = True
        log_denominator = torch.logsumexp(logits.masked_fill(is_self, -math.inf), dim=1)
        value = (log_denominator - logits[index, positive]).sum() / (2 * total)
    return _distributed._SumOverProcesses.apply(value) if active else value


# --------------------------------------------------------------------------- #
# SimSiam and BYOL                                                             #
# --------------------------------------------------------------------------- #
def _mean_cosine(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    online, target = _work(online, target)
    return (_normalize(online) * _normalize(target)).sum(dim=1).mean()


def negative_cosine_similarity_loss(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""SimSiam's negative cosine similarity (Chen & He 2021; paper eq. 2).

    .. math:: \mathcal{L} = -\frac{1}{B} \sum_{i=1}^{B}
              \frac{p_i^\top z_i}{\max(\|p_i\|, \epsilon)\,\max(\|z_i\|, \epsilon)},
              \qquad \epsilon = 10^{-8},

    with ``p = online`` (the predictor output) and ``z = target``. The paper's
    eq. 2 writes the sum :math:`-\operatorname{tr}(Z_1^\top Z_2)` of
    l2-normalized rows; this is its per-sample mean, as in the authors' code.
    The authors symmetrize over the two views,
    ``0.5 * (loss(p1, z2.detach()) + loss(p2, z1.detach()))``; the stop-gradient
    is the caller's: the loss does not detach ``target``.

    A per-sample mean needs no ``gather_distributed``: DDP's averaging of the
    per-process means already gives the gradient of the global mean.

    In the unified view (paper section 4) this is the first-order term of the
    Taylor expansion of the total coding rate (eq. 18), a trace
    :math:`\operatorname{tr}(Z_1 Z_2^\top)`: it measures alignment only and is
    minimized by any collapsed batch; predictor and stop-gradient are what
    prevent collapse.

    Args:
        online: ``(B, d)`` online embeddings (predictor output).
        target: ``(B, d)`` target embeddings (not detached by the loss).

    Returns:
        0-d tensor in ``[-1, 1]`` to minimize.

    Raises:
        MatrixInfoValueError: shapes are not ``(B, d)`` with ``B >= 1`` or differ;
            inputs on different devices.
        MatrixInfoTypeError: inputs are not real floating tensors.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import negative_cosine_similarity_loss
        >>> p = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> z = torch.tensor([[3.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
        >>> negative_cosine_similarity_loss(p, z)  # -(1 + 1/sqrt(2)) / 2
        tensor(-0.8536, dtype=torch.float64)
    """
    check_embeddings("negative_cosine_similarity_loss", ("online", "target"), online, target, min_rows=1)
    with full_precision(online.device.type):
        return -_mean_cosine(online, target)


def byol_loss(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""BYOL's normalized mean squared error (Grill et al. 2020; paper eq. 3).

    .. math:: \mathcal{L} = \frac{1}{B} \sum_{i=1}^{B} \Big\| \frac{p_i}{\|p_i\|} - \frac{z_i}{\|z_i\|} \Big\|_2^2
              = 2 - \frac{2}{B} \sum_{i=1}^{B} \cos(p_i, z_i),

    computed as the right-hand side (the authors' form), with norms floored at
    1e-8, ``p = online`` (predictor output) and ``z = target`` (the EMA
    network's projection). It equals ``2 + 2 *``
    :func:`negative_cosine_similarity_loss`. The paper's eq. 3 is the sum over
    the batch; this is the per-sample mean. The authors symmetrize over the two
    views and compute the target without gradient: the loss does not detach
    ``target``.

    A per-sample mean needs no ``gather_distributed`` (see
    :func:`negative_cosine_similarity_loss`).

    In the unified view it is, like SimSiam's loss, the first-order term of the
    Taylor expansion of the total coding rate (eq. 18), plus a constant.

    Args:
        online: ``(B, d)`` online embeddings (predictor output).
        target: ``(B, d)`` target embeddings (not detached by the loss).

    Returns:
        0-d tensor in ``[0, 4]`` to minimize.

    Raises:
        MatrixInfoValueError: shapes are not ``(B, d)`` with ``B >= 1`` or differ;
            inputs on different devices.
        MatrixInfoTypeError: inputs are not real floating tensors.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import byol_loss
        >>> p = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> byol_loss(p, -p)  # opposite directions: the maximum
        tensor(4., dtype=torch.float64)
    """
    check_embeddings("byol_loss", ("online", "target"), online, target, min_rows=1)
    with full_precision(online.device.type):
        return 2.0 - 2.0 * _mean_cosine(online, target)


# --------------------------------------------------------------------------- #
# Spectral contrastive loss                                                    #
# --------------------------------------------------------------------------- #
def _project_to_ball(z: torch.Tensor, radius: float) -> torch.Tensor:
    """Rows with norm above ``radius`` scaled back onto the sphere of that
    radius; the others unchanged. The double ``where`` keeps the gradient of
    a zero row finite."""
    norm = torch.linalg.vector_norm(z, dim=1, keepdim=True)
    outside = norm > radius
    safe = torch.where(outside, norm, torch.ones_like(norm))
    return torch.where(outside, z * (radius / safe), z)


def spectral_contrastive_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    mu: float = 1.0,
    gather_distributed: bool = False,
) -> torch.Tensor:
    r"""Spectral contrastive loss (HaoChen et al. 2021), the authors' definition.

    Rows whose norm exceeds :math:`\sqrt{\mu}` are first projected back to the
    sphere of radius :math:`\sqrt{\mu}`; then

    .. math::

        \mathcal{L} = \frac{1}{\mu}\Big[-\frac{2}{B} \sum_{i} z_{1,i}^\top z_{2,i}
            + \frac{1}{B(B-1)} \sum_{i \ne j} \big(z_{1,i}^\top z_{2,j}\big)^2\Big].

    As in jhaochenz96/spectral_contrastive_learning (``models/spectral.py``).
    Default ``mu = 1`` is the authors' CIFAR value
    (ImageNet: 10).

    In the unified view (paper sections 3.1 and 5.1) the first term is the
    alignment trace :math:`-\operatorname{tr}(Z_1 Z_2^\top)` shared with
    SimSiam/BYOL (Lemma 5.2) and the second a Frobenius term on the
    off-diagonal of the ``B x B`` Gram matrix: the sample-contrastive
    counterpart of Barlow Twins' second-order term. The loss performs spectral
    clustering on the augmentation graph (HaoChen et al. 2021).

    Args:
        z1: ``(B, d)`` embeddings of the first view.
        z2: ``(B, d)`` embeddings of the second view.
        mu: :math:`\mu > 0`, the squared radius of the projection and the scale.
        gather_distributed: pair the rows of each process's first view with the
            second view of the global batch and all-reduce the partial sums:
            the value on every process is the single-process value on the full
            batch, gradients are exact after DDP's averaging.

    Returns:
        0-d tensor to minimize.

    Raises:
        MatrixInfoValueError: shapes are not ``(B, d)`` with ``B >= 2`` or differ;
            inputs on different devices; ``mu <= 0``.
        MatrixInfoTypeError: inputs are not real floating tensors.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import spectral_contrastive_loss
        >>> z = torch.eye(4, dtype=torch.float64)  # orthonormal rows, aligned views
        >>> spectral_contrastive_loss(z, z)  # -2 * 4 / 4 + 0
        tensor(-2., dtype=torch.float64)
        >>> spectral_contrastive_loss(3 * z, 3 * z)  # rows projected back to norm 1
        tensor(-2., dtype=torch.float64)
    """
    fn = "spectral_contrastive_loss"
    check_flag(fn, "gather_distributed", gather_distributed)
    check_embeddings(fn, ("z1", "z2"), z1, z2, min_rows=_distributed.local_min_rows(gather_distributed))
    mu = check_number(fn, "mu", mu, minimum=0.0, strict=True)
    radius = math.sqrt(mu)
    with full_precision(z1.device.type):
        p1, p2 = (_project_to_ball(z, radius) for z in _work(z1, z2))
    (g2,), offset, active = _distributed._rows_against_global(gather_distributed, p2)
    with full_precision(z1.device.type):
        local, total = p1.shape[0], g2.shape[0]
        gram = p1 @ g2.mT  # (B_local, B): z1_i . z2_j
        index = torch.arange(local, device=gram.device)
        own = index + offset
        is_pair = torch.zeros_like(gram, dtype=torch.bool)
        is_pair[index, own] = True
        alignment = gram[index, own].sum()
        uniformity = torch.where(is_pair, torch.zeros_like(gram), gram).square().sum()
        value = (-2.0 / total * alignment + uniformity / (total * (total - 1))) / mu
    return _distributed._SumOverProcesses.apply(value) if active else value


# --------------------------------------------------------------------------- #
# CorInfoMax                                                                   #
# --------------------------------------------------------------------------- #
class CorInfoMaxState(NamedTuple):
    """Running estimates of :func:`corinfomax_loss`, one per branch, float64,
    without gradient: covariances ``R1``, ``R2`` of shape ``(d, d)`` and means
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

    R1: torch.Tensor
    R2: torch.Tensor
    mu1: torch.Tensor
    mu2: torch.Tensor

    @classmethod
    def initial(cls, dim: int, device=None) -> "CorInfoMaxState":
        """Identity covariances and zero means (the authors' ``R_ini = 1``)."""
        eye = torch.eye(dim, dtype=torch.float64, device=device)
        zeros = torch.zeros(dim, dtype=torch.float64, device=device)
        return cls(eye, eye.clone(), zeros, zeros.clone())


def _logdet_spd(fn: str, A: torch.Tensor) -> torch.Tensor:
    """``log det A`` of a symmetric positive definite ``A`` by Cholesky.

    If the Cholesky factorization fails (``A`` numerically indefinite; one
    host read of its status, skipped while ``torch.compile`` traces, where a
    failure gives NaN), falls back to eigenvalues floored at
    ``d * eps * lambda_max`` and warns."""
    L, info = torch.linalg.cholesky_ex(A)
    if not host_reads_allowed():  # torch.compile traces: no host read; NaN if the factorization failed
        ok = info == 0
        return torch.where(ok, 2.0 * torch.log(torch.where(ok, L.diagonal(), 1.0)).sum(), float("nan"))
    if bool(info.ne(0).any()):
        warn(
            f"{fn}: the regularized covariance is not numerically positive definite; "
            "its log-determinant is taken from eigenvalues floored at d * eps * lambda_max. "
            "Increase eps.",
        )
        w = torch.linalg.eigvalsh(0.5 * (A + A.mT))
        floor = A.shape[-1] * torch.finfo(w.dtype).eps * w.abs().max().clamp_min(torch.finfo(w.dtype).tiny)
        return torch.log(torch.maximum(w, floor)).sum()
    return 2.0 * torch.log(L.diagonal()).sum()


def corinfomax_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    state: Optional[CorInfoMaxState] = None,
    *,
    alpha: float = 500.0,
    eps: float = 1e-6,
    forgetting: float = 0.01,
    gather_distributed: bool = False,
) -> tuple[torch.Tensor, CorInfoMaxState]:
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

    Returns:
        ``(loss, new_state)``: the 0-d loss to minimize, in float32 for half
        and float32 inputs and float64 for float64 inputs, and the updated
        :class:`CorInfoMaxState` (float64, detached) to pass to the next call.

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
    with full_precision(z1.device.type):
        z1, z2 = _work(*batch.rows)
        out_dtype = z1.dtype
        B = batch.n
        zs = (z1.to(torch.float64), z2.to(torch.float64))
        sum1, sum2, squared_error = batch.sums(*zs, (z1 - z2).square().sum(dim=1))
        invariance = squared_error / (B * d)
        eye = torch.eye(d, dtype=torch.float64, device=z1.device)
        logdets = []
        new = []
        means = [forgetting * m.detach().to(torch.float64) + (1.0 - forgetting) * s / B
                 for m, s in zip((state.mu1, state.mu2), (sum1, sum2))]
        scatters = batch.reduce(*((z - m).mT @ (z - m) for z, m in zip(zs, means)))
        for scatter, R, m_new in zip(scatters, (state.R1, state.R2), means):
            R_new = forgetting * R.detach().to(torch.float64) + (1.0 - forgetting) * scatter / B
            bad, (R_reg,) = _spectral.non_finite_guard(R_new + eps * eye)  # NaN out, no LAPACK error
            logdets.append(_spectral.nan_where(bad, _logdet_spd(fn, R_reg)))
            new.append((R_new.detach(), m_new.detach()))
        loss = alpha * invariance.to(torch.float64) - (logdets[0] + logdets[1]) / d
        new_state = CorInfoMaxState(new[0][0], new[1][0], new[0][1], new[1][1])
        return loss.to(out_dtype), new_state


def _check_corinfomax_state(fn: str, state, d: int, device: torch.device) -> None:
    if not isinstance(state, tuple) or len(state) != 4:
        raise MatrixInfoValueError(
            f"{fn}: expected state to be a CorInfoMaxState (R1, R2, mu1, mu2), got {type(state).__name__}."
        )
    expected = ((d, d), (d, d), (d,), (d,))
    for name, tensor, shape in zip(CorInfoMaxState._fields, state, expected):
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            got = shape_str(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise MatrixInfoValueError(
                f"{fn}: expected state.{name} to have shape {shape_str(shape)} for d = {d}, got {got}."
            )
        if tensor.device != device:
            raise MatrixInfoValueError(
                f"{fn}: expected state.{name} on {device} like the embeddings, got {tensor.device}."
            )
