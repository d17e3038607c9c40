r"""Contrastive and cosine losses: SimCLR, negative cosine, BYOL, spectral contrastive.

SimCLR (NT-Xent), SimSiam's negative cosine, BYOL and the spectral
contrastive loss.

Each function reproduces its authors' definition (see :doc:`/reproducing`) and
says where it sits in the paper's matrix-information view (section 4): the
first-order term of the Taylor expansion of the total coding rate (eq. 18), a
second-order Frobenius term, or matrix cross-entropy with an element-wise
logarithm (Prop. 4.3). Conventions (shapes, precision, ``gather_distributed``)
are those of :mod:`._common`.
"""

from __future__ import annotations

import math

import torch

from .. import _distributed, _spectral
from .._checks import check_embeddings, check_flag, check_number
from ._common import _with_terms

__all__ = [
    "byol_loss",
    "negative_cosine_similarity_loss",
    "simclr_loss",
    "spectral_contrastive_loss",
]

# Norms below this are treated as this in the cosine-based losses (the eps of
# torch.nn.functional.cosine_similarity). It is a float32 normal number; the
# division is done in float32 or float64, never in half precision.
_NORM_EPS = 1e-8


def _normalize(z: torch.Tensor) -> torch.Tensor:
    """Rows divided by ``max(||row||, 1e-8)``; a zero row stays zero."""
    return z / torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_min(_NORM_EPS)


# --------------------------------------------------------------------------- #
# SimCLR / NT-Xent                                                             #
# --------------------------------------------------------------------------- #
def simclr_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    temperature: float = 0.5,
    gather_distributed: bool = False,
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize (positive: a log-sum-exp over ``2B - 1`` terms
        minus one of them). With ``return_terms=True``, ``(loss, terms)``:
        ``terms["alignment"]`` is :math:`-\frac{1}{2B}\sum_a s_{a,p(a)}` and
        ``terms["uniformity"]`` is
        :math:`\frac{1}{2B}\sum_a \log\sum_{k \ne a} \exp(s_{ak})` (detached),
        with ``loss = alignment + uniformity``; with ``gather_distributed``
        they are global, as the loss (one more all-reduce, of two numbers).

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
    check_flag(fn, "return_terms", return_terms)
    check_embeddings(fn, ("z1", "z2"), z1, z2, min_rows=_distributed.local_min_rows(gather_distributed))
    temperature = check_number(fn, "temperature", temperature, minimum=0.0, strict=True)
    with _spectral.precision(z1, z2) as policy:
        n1, n2 = (_normalize(z) for z in policy.cast(z1, z2))
        (g1, g2), offset, active = _distributed._rows_against_global(gather_distributed, n1, n2)
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
        positives = logits[index, positive]
        value = (log_denominator - positives).sum() / (2 * total)
    loss = _distributed._SumOverProcesses.apply(value) if active else value
    if not return_terms:
        return loss
    return _with_terms(
        loss,
        **_summed(active, alignment=-positives.sum() / (2 * total), uniformity=log_denominator.sum() / (2 * total)),
    )


def _summed(active: bool, **partial: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-process partial sums of detached terms, summed over the processes when ``active`` (one all-reduce)."""
    if not active:
        return partial
    total = _distributed._all_reduce(torch.stack([t.detach() for t in partial.values()]))
    return dict(zip(partial, total.unbind(), strict=True))


# --------------------------------------------------------------------------- #
# SimSiam and BYOL                                                             #
# --------------------------------------------------------------------------- #
def _mean_cosine(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cosine of paired rows (in the dtype of the work: see the callers)."""
    return (_normalize(online) * _normalize(target)).sum(dim=1).mean()


def negative_cosine_similarity_loss(
    online: torch.Tensor, target: torch.Tensor, *, return_terms: bool = False
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor in ``[-1, 1]`` to minimize. With ``return_terms=True``,
        ``(loss, terms)``: one term, ``terms["cosine_similarity"]``, the mean
        cosine :math:`\frac1B \sum_i \cos(p_i, z_i)` (detached), and
        ``loss = -cosine_similarity``.

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
    fn = "negative_cosine_similarity_loss"
    check_flag(fn, "return_terms", return_terms)
    check_embeddings(fn, ("online", "target"), online, target, min_rows=1)
    with _spectral.precision(online, target) as policy:
        cosine = _mean_cosine(*policy.cast(online, target))
        loss = -cosine
        return _with_terms(loss, cosine_similarity=cosine) if return_terms else loss


def byol_loss(
    online: torch.Tensor, target: torch.Tensor, *, return_terms: bool = False
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor in ``[0, 4]`` to minimize. With ``return_terms=True``,
        ``(loss, terms)``: ``terms["cosine_similarity"]`` is the mean cosine
        :math:`\frac1B \sum_i \cos(p_i, z_i)` (detached), and
        ``loss = 2 - 2 * cosine_similarity``.

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
    check_flag("byol_loss", "return_terms", return_terms)
    check_embeddings("byol_loss", ("online", "target"), online, target, min_rows=1)
    with _spectral.precision(online, target) as policy:
        cosine = _mean_cosine(*policy.cast(online, target))
        loss = 2.0 - 2.0 * cosine
        return _with_terms(loss, cosine_similarity=cosine) if return_terms else loss


# --------------------------------------------------------------------------- #
# Spectral contrastive loss                                                    #
# --------------------------------------------------------------------------- #
def _project_to_ball(z: torch.Tensor, radius: float) -> torch.Tensor:
    """Rows with norm above ``radius`` scaled back onto the sphere of that radius.

    The others are unchanged. The double ``where`` keeps the gradient of
    a zero row finite.
    """
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
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize. With ``return_terms=True``, ``(loss, terms)``:
        the two brackets of the formula before the division by :math:`\mu`,
        ``terms["alignment"]`` :math:`-\frac{2}{B}\sum_i z_{1,i}^\top z_{2,i}` and
        ``terms["uniformity"]`` :math:`\frac{1}{B(B-1)}\sum_{i \ne j} (z_{1,i}^\top z_{2,j})^2`
        (after the projection; detached), with
        ``loss = (alignment + uniformity) / mu``; with ``gather_distributed``
        they are global, as the loss (one more all-reduce, of two numbers).

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
    check_flag(fn, "return_terms", return_terms)
    check_embeddings(fn, ("z1", "z2"), z1, z2, min_rows=_distributed.local_min_rows(gather_distributed))
    mu = check_number(fn, "mu", mu, minimum=0.0, strict=True)
    radius = math.sqrt(mu)
    with _spectral.precision(z1, z2) as policy:
        p1, p2 = (_project_to_ball(z, radius) for z in policy.cast(z1, z2))
        (g2,), offset, active = _distributed._rows_against_global(gather_distributed, p2)
        local, total = p1.shape[0], g2.shape[0]
        gram = p1 @ g2.mT  # (B_local, B): z1_i . z2_j
        index = torch.arange(local, device=gram.device)
        own = index + offset
        is_pair = torch.zeros_like(gram, dtype=torch.bool)
        is_pair[index, own] = True
        alignment = gram[index, own].sum()
        uniformity = torch.where(is_pair, torch.zeros_like(gram), gram).square().sum()
        value = (-2.0 / total * alignment + uniformity / (total * (total - 1))) / mu
    loss = _distributed._SumOverProcesses.apply(value) if active else value
    if not return_terms:
        return loss
    parts = _summed(active, alignment=-2.0 / total * alignment, uniformity=uniformity / (total * (total - 1)))
    return _with_terms(loss, **parts)
