"""Input handling and the centered float64 moments shared by the metrics."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Union

import torch

from .. import _spectral, _trace
from .._checks import (
    MatrixInfoTypeError,
    MatrixInfoValueError,
    check_not_meta,
    check_tensor,
    shape_str,
)
from ..core import matrix_entropy as _matrix_entropy

if TYPE_CHECKING:
    import numpy as np

# What the metrics accept as embeddings or labels: a torch tensor or a NumPy array.
ArrayLike = Union[torch.Tensor, "np.ndarray"]

# Rows are processed in blocks whose working copy is about this many bytes:
# it bounds the memory beyond the input, whatever N.
_BLOCK_BYTES = 1 << 24
_MIN_BLOCK_ROWS = 64
# Gram matrices Y^T Y by column tiles: only the tiles on and above the diagonal are
# multiplied (k (k + 1) / 2 of the k^2), at most _GRAM_TILES tiles of at least
# _GRAM_TILE_MIN columns (narrower tiles lose GEMM efficiency).
_GRAM_TILES = 8
_GRAM_TILE_MIN = 256
_RANKME_EPS = 1e-7
_WEIGHTINGS = ("classes", "samples")


# ----------------------------------------------------------------------------- input handling


def _as_tensor(fn: str, name: str, x) -> torch.Tensor:
    """A torch tensor (detached) from a tensor or a NumPy array.

    NumPy is not a dependency: an object can only be an ndarray if NumPy is
    already imported, so it is looked up in ``sys.modules``.
    """
    if isinstance(x, torch.Tensor):
        return x.detach()
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, np.ndarray):
        # from_numpy rejects negative strides; ascontiguousarray copies only then.
        return torch.from_numpy(np.ascontiguousarray(x))
    raise MatrixInfoTypeError(f"{fn}: expected {name} to be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}.")


def _as_samples(fn: str, name: str, x, *, dim: int | None = None, min_rows: int = 1) -> torch.Tensor:
    """A floating ``(N, d)`` tensor of samples.

    Not :func:`._checks.check_embeddings`: metrics take whole data sets (``N``
    rows, NumPy arrays, a fixed ``d`` for a streaming accumulator), where the
    losses take one batch ``(B, d)`` of torch tensors.
    """
    x = check_tensor(fn, name, _as_tensor(fn, name, x))
    check_not_meta(fn, name, x)
    if dim is None:
        if x.ndim != 2 or x.shape[0] < min_rows or x.shape[1] < 1:
            raise MatrixInfoValueError(
                f"{fn}: expected {name} to have shape (N, d) with N >= {min_rows} and d >= 1, got {shape_str(x.shape)}."
            )
    elif x.ndim != 2 or x.shape[1] != dim:
        raise MatrixInfoValueError(f"{fn}: expected {name} to have shape (n, {dim}), got {shape_str(x.shape)}.")
    return x


def _as_labels(fn: str, labels, n: int, device: torch.device) -> torch.Tensor:
    y = _as_tensor(fn, "labels", labels)
    if y.dtype.is_floating_point or y.dtype.is_complex:
        raise MatrixInfoTypeError(f"{fn}: expected labels to have an integer dtype, got {y.dtype}.")
    if y.ndim != 1 or y.shape[0] != n:
        raise MatrixInfoValueError(f"{fn}: expected labels to have shape (N,) with N = {n}, got {shape_str(y.shape)}.")
    return y.to(device)


def _check_finite(fn: str, name: str, x: torch.Tensor) -> None:
    """Reject NaN/inf in ``x`` (one pass over the data and one host read)."""
    if not bool(torch.isfinite(x).all()):
        raise _non_finite_error(fn, name, x)


def _non_finite_error(fn: str, name: str, x: torch.Tensor) -> MatrixInfoValueError:
    """The error for a non-finite result; counts the bad entries (error path only)."""
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        return MatrixInfoValueError(
            f"{fn}: expected {name} to contain only finite values, got {bad} NaN or inf entries."
        )
    return MatrixInfoValueError(
        f"{fn}: the second moments of {name} overflowed in {x.dtype}; pass float64 embeddings or rescale them."
    )


# ----------------------------------------------------------------------------- moments


def _combine(n_a: int, mean_a: torch.Tensor, m2_a, n_b: int, mean_b: torch.Tensor, m2_b) -> int:
    r"""Chan, Golub & LeVeque's pairwise combination, in place on ``(mean_a, m2_a)``.

    ``M2`` is the centered scatter :math:`\sum (z - \mu)(z - \mu)^\top`.
    With :math:`\delta = \mu_b - \mu_a` and :math:`n = n_a + n_b`:
    :math:`\mu = \mu_a + \delta\, n_b / n`,
    :math:`M_2 = M_{2,a} + M_{2,b} + \delta\delta^\top n_a n_b / n`.
    ``m2_a = m2_b = None`` combines means only. Returns ``n``.
    """
    n = n_a + n_b
    if n_b == 0:
        return n_a
    delta = mean_b - mean_a
    mean_a.add_(delta, alpha=n_b / n)
    if m2_a is not None:
        m2_a.add_(m2_b).addr_(delta, delta, alpha=n_a * n_b / n)
    return n


def _gram(y: torch.Tensor) -> torch.Tensor:
    r"""``y^T y`` of an ``(n, d)`` ``y``, multiplying only the column tiles on and above the diagonal.

    ``y^T y`` is symmetric: with ``k`` column tiles, the strips
    :math:`Y_{:,a}^\top Y_{:,a:}` (tile row ``a`` from the diagonal on) are
    ``k (k + 1) / 2`` of the ``k^2`` tile products, the rest is mirrored. With
    ``k = 8`` that is 56% of the multiply-adds of ``y.mT @ y`` (measured 0.53
    of its time for ``(4096, 2048)`` float32 on one CPU thread). ``k`` is
    ``min(8, d // 256)``; ``k <= 1`` is one plain product. The result is in
    ``y``'s dtype and exactly symmetric off the diagonal tiles.
    """
    d = y.shape[1]
    k = min(_GRAM_TILES, d // _GRAM_TILE_MIN)
    if k <= 1:
        return y.mT @ y
    bounds = [d * i // k for i in range(k + 1)]
    out = torch.empty(d, d, dtype=y.dtype, device=y.device)
    for a, b in zip(bounds[:-1], bounds[1:]):
        strip = y[:, a:b].mT @ y[:, a:]  # rows a:b, columns a:d
        out[a:b, a:] = strip
        out[b:, a:b] = strip[:, b - a :].mT
    return out


def _moments(fn: str, name: str, x: torch.Tensor, *, scatter: bool = True):
    """``(n, mean, M2)`` of the rows of ``x``, in float64 on ``x``'s device.

    ``M2`` is ``None`` with ``scatter=False``, which skips the GEMMs.

    Per block of rows, in the input's precision (half precision in float32):
    a provisional mean ``m``; the centered block ``Y = X - m``; ``S = Y^T Y``
    (the one Gram matrix, :func:`_gram`) and ``s = sum(Y)``. In float64: the block mean
    ``m + s / n_b`` and scatter ``S - s s^T / n_b``, which removes the
    rounding error of ``m``. Blocks are then combined by :func:`_combine`.
    Raises on NaN/inf (read once, from the d-sized results).
    """
    n, d = x.shape
    policy = _spectral.precision(x)
    work = policy.dtype
    itemsize = torch.empty((), dtype=work).element_size()
    rows = max(_MIN_BLOCK_ROWS, _BLOCK_BYTES // (d * itemsize))
    f64 = dict(dtype=torch.float64, device=x.device)
    count, mean = 0, torch.zeros(d, **f64)
    m2 = torch.zeros(d, d, **f64) if scatter else None
    with torch.no_grad(), policy:
        centered = torch.empty(min(rows, n), d, dtype=work, device=x.device)  # reused: no page faults per block
        for start in range(0, n, rows):
            block = x[start : start + rows].to(work)
            n_b = block.shape[0]
            shift = block.sum(0) / n_b
            y = torch.sub(block, shift, out=centered[:n_b])
            s = y.sum(0).to(torch.float64)
            m2_b = _gram(y).to(torch.float64).addr_(s, s, alpha=-1.0 / n_b) if scatter else None
            count = _combine(count, mean, m2, n_b, shift.to(torch.float64) + s / n_b, m2_b)
        if not (bool(torch.isfinite(mean).all()) and (m2 is None or bool(torch.isfinite(m2).all()))):
            raise _non_finite_error(fn, name, x)
    return count, mean, m2


def _second_moment(count: int, mean: torch.Tensor, m2: torch.Tensor, center: bool) -> torch.Tensor:
    """Covariance ``M2 / N`` (``center=True``) or ``Z^T Z / N = M2 / N + mu mu^T``."""
    c = m2 / count
    if not center:
        c = c.addr(mean, mean)
    return _spectral.symmetrize(c)


def _effective_rank_of_spectrum(values: torch.Tensor) -> float:
    """Effective rank from the eigenvalues of a PSD matrix: ``exp`` of the entropy of ``values / sum``.

    The singular values of a PSD matrix are its eigenvalues, so this is
    :func:`matrixinfo.effective_rank` of the matrix (``0 log 0 = 0``; all
    zero gives 0) from one ``eigvalsh`` instead of an SVD, which costs about
    five times as much at ``d = 2048``. Non-positive values (rounding below
    zero) count as 0.
    """
    values = values.clamp_min(0)
    total = float(values.sum())
    if not total > 0:
        return 0.0
    return float(torch.exp(-_trace.xlogx(values / total).sum()))


def _normalized_matrix_entropy(c: torch.Tensor) -> float:
    """ME of ``c / tr c``; 0 for a zero matrix (the matrix entropy of 0)."""
    trace = float(c.diagonal().sum())
    return float(_matrix_entropy(c / trace)) if trace > 0 else 0.0
