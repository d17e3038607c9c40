r"""Alignment and uniformity losses on the hypersphere (Wang & Isola, 2020).

The two private helpers hold the maths once: the losses here call them with
gradients, and :func:`matrixinfo.metrics.alignment` /
:func:`matrixinfo.metrics.uniformity` call them under ``no_grad`` with float64
accumulation and return floats.
"""

from __future__ import annotations

import math

import torch

from .. import _spectral
from .._checks import MatrixInfoValueError, check_embeddings, check_flag, check_number
from ._common import _with_terms

__all__ = ["alignment_loss", "uniformity_loss"]

#: Rows of the pairwise block in :func:`log_mean_pair_potential`: about this many bytes of distances per block.
PAIR_BLOCK_BYTES = 1 << 24


def alignment_terms(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """``||a_i - b_i||^alpha`` per row of two ``(N, d)`` tensors, with a finite (zero) gradient where they are equal."""
    sq = (a - b).square().sum(dim=-1)
    if alpha == 2.0:
        return sq
    positive = sq > 0
    safe = torch.where(positive, sq, torch.ones_like(sq))  # no 0 ** (alpha/2 - 1) in the backward pass
    return torch.where(positive, safe.pow(alpha / 2), torch.zeros_like(sq))


def log_mean_pair_potential(x: torch.Tensor, t: float, accumulate: torch.dtype | None = None) -> torch.Tensor:
    r"""``log( mean_{i<j} exp(-t ||x_i - x_j||^2) )`` over the distinct pairs of the unit rows of ``x`` ``(N, d)``.

    With unit rows :math:`\lVert x_i - x_j\rVert^2 = 2 - 2 x_i^\top x_j`, taken
    from blocks of the Gram matrix (upper triangle only; memory ``O(N)`` per
    block row) and combined by log-sum-exp, so that a large ``t`` stays finite.
    ``accumulate`` is the dtype of the distances and sums (default ``x``'s).
    """
    n = x.shape[-2]
    dtype = accumulate or x.dtype
    rows = max(1, PAIR_BLOCK_BYTES // (8 * n))
    parts = []
    for start in range(0, n, rows):
        block = x[..., start : start + rows, :]
        # Only the pairs (i, j) with j > i: the columns from this block's first row on.
        sq = (2.0 - 2.0 * (block @ x[..., start:, :].mT).to(dtype)).clamp_min(0)
        i = torch.arange(start, start + block.shape[-2], device=x.device).unsqueeze(1)
        j = torch.arange(start, n, device=x.device).unsqueeze(0)
        masked = torch.where(j > i, -t * sq, torch.full_like(sq, -math.inf))
        parts.append(torch.logsumexp(masked.flatten(-2), -1))
    return torch.logsumexp(torch.stack(parts, -1), -1) - math.log(n * (n - 1) / 2)


def _unit_rows(policy: _spectral.precision, *zs: torch.Tensor) -> list[torch.Tensor]:
    """Rows scaled to unit length, in the policy's dtype of the work (a zero row stays zero)."""
    return [torch.nn.functional.normalize(z, dim=-1) for z in policy.cast(*zs)]


def alignment_loss(
    z1: torch.Tensor, z2: torch.Tensor, *, alpha: float = 2.0, return_terms: bool = False
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Alignment loss (Wang & Isola, 2020, section 4.1): mean distance of positive pairs on the unit sphere.

    .. math:: \mathcal L_{\text{align}} = \frac1B \sum_{i=1}^B
              \big\lVert \hat z_{1,i} - \hat z_{2,i} \big\rVert_2^{\alpha},\qquad
              \hat z = z / \lVert z\rVert_2 ,

    where row ``i`` of ``z1`` and of ``z2`` are two views of sample ``i``.
    The rows are l2-normalized here, as the authors require of their inputs
    (their ``align_loss``: the mean of ``(x - y).norm(dim=1) ** alpha``). It
    lies in ``[0, 2^alpha]``; with ``alpha = 2`` it equals BYOL's
    ``2 - 2 cos``. Where two rows coincide the gradient is zero (finite for
    every ``alpha``). It is a per-sample mean, so with data parallelism the
    mean over processes is the global value. The same maths as
    :func:`matrixinfo.metrics.alignment`, with gradients.

    Args:
        z1: ``(B, d)`` embeddings of the first views, ``B >= 1``.
        z2: ``(B, d)`` embeddings of the second views (same shape).
        alpha: ``> 0``, the exponent of the distance. Default 2 (the authors').
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor in ``[0, 2^alpha]`` to minimize (float32 for half-precision inputs).
        With ``return_terms=True``, ``(loss, terms)`` with one term,
        ``terms["alignment"]``, the loss itself (detached).

    Raises:
        MatrixInfoValueError: shapes are not ``(B, d)`` or differ; ``alpha <= 0``.
        MatrixInfoTypeError: inputs are not real floating tensors.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import alignment_loss
        >>> z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> z2 = torch.tensor([[3.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # same, orthogonal
        >>> alignment_loss(z1, z2)  # (0 + 2) / 2
        tensor(1., dtype=torch.float64)
    """
    fn = "alignment_loss"
    check_number(fn, "alpha", alpha, minimum=0.0, strict=True)
    check_flag(fn, "return_terms", return_terms)
    check_embeddings(fn, ("z1", "z2"), z1, z2, min_rows=1)
    with _spectral.precision(z1, z2) as policy:
        a, b = _unit_rows(policy, z1, z2)
        loss = alignment_terms(a, b, float(alpha)).mean()
        return _with_terms(loss, alignment=loss) if return_terms else loss


def uniformity_loss(
    *views: torch.Tensor, t: float = 2.0, return_terms: bool = False
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Uniformity loss (Wang & Isola, 2020, section 4.1), averaged over the views given.

    For each view, over the distinct pairs of its l2-normalized rows,

    .. math:: \mathcal L_{\text{uniform}} = \log \frac{2}{B(B - 1)} \sum_{i < j}
              e^{-t \lVert \hat z_i - \hat z_j\rVert_2^2},\qquad \hat z = z / \lVert z\rVert_2 ,

    the log of the mean Gaussian potential, as the authors compute it with
    ``torch.pdist`` (their ``uniform_loss``); lightly calls it
    ``HypersphereLoss`` (there summed with the alignment term). It lies in
    ``[-4t, 0]``; lower is more uniform, and 0 means every row points the same
    way (collapse), where the gradient is finite. The authors apply it to each
    view and average, ``(uniform(x) + uniform(y)) / 2``: pass both views. It
    couples every pair of the batch: with data parallelism each process
    computes it over its own rows. Cost ``B^2 d`` per view (the upper triangle
    of the Gram matrix, in blocks of rows). The same maths as
    :func:`matrixinfo.metrics.uniformity`, with gradients.

    Args:
        *views: one or more ``(B, d)`` embeddings of the same shape, ``B >= 2``.
        t: ``> 0``, the scale of the potential. Default 2 (the authors').
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor in ``[-4t, 0]`` to minimize (float32 for half-precision inputs).
        With ``return_terms=True``, ``(loss, terms)`` with one term,
        ``terms["uniformity"]``, the loss itself (detached).

    Raises:
        MatrixInfoValueError: no view; shapes are not ``(B, d)`` with ``B >= 2`` or differ; ``t <= 0``.
        MatrixInfoTypeError: inputs are not real floating tensors.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import uniformity_loss
        >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)  # antipodal: distance^2 = 4
        >>> uniformity_loss(z)
        tensor(-8., dtype=torch.float64)
    """
    fn = "uniformity_loss"
    check_number(fn, "t", t, minimum=0.0, strict=True)
    check_flag(fn, "return_terms", return_terms)
    if not views:
        raise MatrixInfoValueError(f"{fn}: expected at least one view of shape (B, d), got none.")
    check_embeddings(fn, tuple(f"views[{i}]" for i in range(len(views))), *views, min_rows=2)
    with _spectral.precision(*views) as policy:
        loss = torch.stack([log_mean_pair_potential(x, float(t)) for x in _unit_rows(policy, *views)]).mean()
        return _with_terms(loss, uniformity=loss) if return_terms else loss
