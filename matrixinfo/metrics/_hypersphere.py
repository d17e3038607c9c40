r"""Alignment and uniformity on the hypersphere (Wang & Isola, 2020)."""

from __future__ import annotations

import math

import torch

from .. import _spectral
from .._checks import MatrixInfoValueError, check_number, shape_str
from ..functional._hypersphere import alignment_terms, log_mean_pair_potential
from ._common import ArrayLike, _as_samples, _check_finite

# Rows per block of alignment: the normalized float64 copies of a block (about this many bytes) stay in cache.
_ALIGN_BLOCK_BYTES = 1 << 22


def _normalized(fn: str, name: str, z, *, min_rows: int = 1) -> torch.Tensor:
    """Rows of ``z`` scaled to unit length, in the computation dtype (zero rows stay zero)."""
    x = _as_samples(fn, name, z, min_rows=min_rows)
    _check_finite(fn, name, x)
    (x,) = _spectral.precision(x).cast(x)
    return torch.nn.functional.normalize(x, dim=1)


def alignment(z1: ArrayLike, z2: ArrayLike, *, alpha: float = 2.0) -> float:
    r"""Alignment (Wang & Isola, 2020): mean distance between positive pairs on the unit sphere.

    .. math:: \mathcal L_{\text{align}} = \frac1N \sum_{i=1}^N
              \big\lVert \hat z_{1,i} - \hat z_{2,i} \big\rVert_2^{\alpha},\qquad
              \hat z = z / \lVert z\rVert_2 ,

    where row ``i`` of ``z1`` and of ``z2`` are the two views of sample ``i``.
    Rows are l2-normalized here (a zero row stays zero), as the authors
    require of their inputs (``SsnL/align_uniform``, ``align_uniform/__init__.py``,
    ``align_loss``: the mean of ``(x - y).norm(dim=1) ** alpha``). It lies
    in ``[0, 2^alpha]``; lower is better aligned. It is a mean over rows,
    so it streams: :class:`EmbeddingMonitor` accumulates it batch by batch.
    Cost: ``O(N d)``, by blocks of rows (no copy of the inputs is made).

    Args:
        z1: ``(N, d)`` embeddings of the first views, torch tensor or NumPy array.
        z2: ``(N, d)`` embeddings of the second views (same shape).
        alpha: ``> 0``, the exponent (the authors' default 2).

    Returns:
        A Python ``float``.

    Raises:
        MatrixInfoValueError: shapes differ or are not ``(N, d)``; NaN or inf; ``alpha <= 0``.
        MatrixInfoTypeError: not tensors/arrays, or not floating.

    References:
        T. Wang and P. Isola, "Understanding contrastive representation
        learning through alignment and uniformity on the hypersphere",
        ICML 2020.

    Examples:
        >>> import torch
        >>> from matrixinfo.metrics import alignment
        >>> z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> z2 = torch.tensor([[3.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # same, orthogonal
        >>> round(alignment(z1, z2), 12)  # (0 + 2) / 2
        1.0
    """
    fn = "alignment"
    alpha = check_number(fn, "alpha", alpha, minimum=0.0, strict=True)
    x1, x2 = _as_samples(fn, "z1", z1), _as_samples(fn, "z2", z2)
    if x1.shape != x2.shape:
        raise MatrixInfoValueError(
            f"{fn}: expected z1 and z2 to have the same shape, got {shape_str(x1.shape)} and {shape_str(x2.shape)}."
        )
    n, d = x1.shape
    rows = max(64, _ALIGN_BLOCK_BYTES // (8 * d))
    total = torch.zeros((), dtype=torch.float64, device=x1.device)
    # The maths of matrixinfo.functional.alignment_loss, per block of rows: each input's rows
    # normalized in its computation dtype (as _normalized does), distances and sums in float64.
    with torch.no_grad(), _spectral.precision(x1):
        for start in range(0, n, rows):
            a, b = (
                torch.nn.functional.normalize(x[start : start + rows].to(_spectral.compute_dtype(x.dtype)), dim=1)
                for x in (x1, x2)
            )
            total += alignment_terms(a.to(torch.float64), b.to(x1.device, torch.float64), float(alpha)).sum()
    total = float(total)
    if not math.isfinite(total):  # NaN or inf in an input (a normalized row with one is NaN)
        _check_finite(fn, "z1", x1)
        _check_finite(fn, "z2", x2)
    return total / n


def uniformity(z: ArrayLike, *, t: float = 2.0) -> float:
    r"""Uniformity (Wang & Isola, 2020): log of the mean Gaussian potential over distinct pairs on the sphere.

    .. math:: \mathcal L_{\text{uniform}} = \log \frac{2}{N(N - 1)} \sum_{i < j}
              e^{-t \lVert \hat z_i - \hat z_j\rVert_2^2},\qquad \hat z = z / \lVert z\rVert_2 ,

    over the distinct pairs of rows, as the authors compute it with
    ``torch.pdist`` (``SsnL/align_uniform``, ``align_uniform/__init__.py``,
    ``uniform_loss``); rows are l2-normalized here. It lies in
    ``[-4t, 0]``; lower is more uniform, and 0 means every row points the
    same way (collapse). With :math:`\lVert\hat z_i - \hat z_j\rVert^2 = 2 - 2\hat z_i^\top\hat z_j`
    the distances come from blocks of the Gram matrix, summed in float64.

    Cost: ``N^2 d`` multiply-adds (the upper triangle of the Gram matrix),
    in blocks of rows (memory ``O(N)`` per block row): about ``N / (2d)``
    times one ``Z^T Z``, so at ``N >> d`` pass a subsample.
    It does not stream (it couples every pair): :class:`EmbeddingMonitor`
    logs the mean over batches of each batch's uniformity, the estimator
    used in training logs.

    Args:
        z: ``(N, d)`` embeddings, ``N >= 2``, torch tensor or NumPy array.
        t: ``> 0``, the potential's scale (the authors' default 2).

    Returns:
        A Python ``float``.

    Raises:
        MatrixInfoValueError: ``z`` is not ``(N, d)`` with ``N >= 2``; NaN or inf; ``t <= 0``.
        MatrixInfoTypeError: not a tensor/array, or not floating.

    References:
        T. Wang and P. Isola, ICML 2020 (see :func:`alignment`).

    Examples:
        >>> import math, torch
        >>> from matrixinfo.metrics import uniformity
        >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)  # antipodal: distance^2 = 4
        >>> math.isclose(uniformity(z), -8.0, rel_tol=1e-12)
        True
    """
    fn = "uniformity"
    t = check_number(fn, "t", t, minimum=0.0, strict=True)
    x = _normalized(fn, "z", z, min_rows=2)
    # The maths of matrixinfo.functional.uniformity_loss, with distances and sums in float64.
    with torch.no_grad(), _spectral.precision(x):
        return float(log_mean_pair_potential(x, t, accumulate=torch.float64))
