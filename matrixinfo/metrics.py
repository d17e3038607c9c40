r"""Effective rank and matrix entropy of embeddings, for notebooks and training callbacks.

Monitoring metrics, not losses: nothing here is differentiable (inputs are
detached) and every scalar is returned as a Python ``float``, ready for a
logger. Reading it is a host synchronization on a GPU. Matrices and spectra
are returned as float64 torch tensors.

Conventions:

* Embeddings ``Z`` have shape ``(N, d)``: rows are samples (the paper writes
  the transposed ``d x N``). They may be torch tensors of any floating dtype
  and device, or NumPy arrays.
* The covariance is divided by ``N`` (not ``N - 1``):
  :math:`C = \frac1N \sum_i (z_i - \mu)(z_i - \mu)^\top`. The paper uses
  :math:`\frac{1}{B-1}` in section 5 and Lemma C.2, and :math:`\frac{1}{n_y}`
  and :math:`\frac1K` in Defs. E.1/E.2; effective rank and the
  trace-normalized matrix entropy do not depend on this factor.
* Two effective-rank conventions coexist in the literature and differ on the
  same embeddings (see :doc:`/theory`); each function names its own:

  =====================================  ==========================================================
  :func:`covariance_effective_rank`      Roy & Vetterli on the eigenvalues of the covariance,
                                         :math:`\lambda_i = \sigma_i^2(Z - \mathbf 1\mu^\top) / N`
                                         (the :math:`\sigma^2` convention of paper Prop. 3.6; with
                                         ``center=False`` exactly Prop. 3.6's :math:`\frac1N Z^\top Z`).
  :func:`rankme`                         RankMe (Garrido et al., 2023): singular values
                                         :math:`\sigma_i(Z)` of the raw embeddings, plus ``1e-7``.
  =====================================  ==========================================================

  On anisotropic embeddings (N = 512, d = 64) RankMe gave 55.8 where
  :math:`\operatorname{erank}(\frac1N Z^\top Z)` gave 43.9: compare runs only
  within one convention.

* Numerics. Second moments are accumulated in float64 from centered blocks
  of rows, combined with the pairwise formula of Chan, Golub & LeVeque; no sum
  of squares of raw values is ever formed, so a large common offset does not
  cancel the covariance away. See :class:`CovarianceAccumulator`.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from . import _distributed, _spectral
from ._checks import (
    check_choice,
    check_flag,
    check_int,
    check_not_meta,
    check_tensor,
    MatrixInfoTypeError,
    MatrixInfoValueError,
    shape_str,
    warn,
)
from .core import effective_rank as _effective_rank
from .core import matrix_entropy as _matrix_entropy

__all__ = [
    "CovarianceAccumulator",
    "covariance_effective_rank",
    "embedding_matrix_entropy",
    "inter_class_effective_rank",
    "intra_class_effective_rank",
    "plot_spectrum",
    "rankme",
]

# Rows are processed in blocks whose working copy is about this many bytes:
# it bounds the memory beyond the input, whatever N.
_BLOCK_BYTES = 1 << 24
_MIN_BLOCK_ROWS = 64
_RANKME_EPS = 1e-7
_WEIGHTINGS = ("classes", "samples")


# ----------------------------------------------------------------------------- input handling


def _as_tensor(fn: str, name: str, x) -> torch.Tensor:
    """A torch tensor (detached) from a tensor or a NumPy array.

    NumPy is not a dependency: an object can only be an ndarray if NumPy is
    already imported, so it is looked up in ``sys.modules``."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, np.ndarray):
        # from_numpy rejects negative strides; ascontiguousarray copies only then.
        return torch.from_numpy(np.ascontiguousarray(x))
    raise MatrixInfoTypeError(
        f"{fn}: expected {name} to be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}."
    )


def _as_samples(fn: str, name: str, x, *, dim: int | None = None, min_rows: int = 1) -> torch.Tensor:
    """A floating ``(N, d)`` tensor of samples.

    Not :func:`._checks.check_embeddings`: metrics take whole data sets (``N``
    rows, NumPy arrays, a fixed ``d`` for a streaming accumulator), where the
    losses take one batch ``(B, d)`` of torch tensors."""
    x = check_tensor(fn, name, _as_tensor(fn, name, x))
    check_not_meta(fn, name, x)
    if dim is None:
        if x.ndim != 2 or x.shape[0] < min_rows or x.shape[1] < 1:
            raise MatrixInfoValueError(
                f"{fn}: expected {name} to have shape (N, d) with N >= {min_rows} and d >= 1, "
                f"got {shape_str(x.shape)}."
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
    ``m2_a = m2_b = None`` combines means only. Returns ``n``."""
    n = n_a + n_b
    if n_b == 0:
        return n_a
    delta = mean_b - mean_a
    mean_a.add_(delta, alpha=n_b / n)
    if m2_a is not None:
        m2_a.add_(m2_b).addr_(delta, delta, alpha=n_a * n_b / n)
    return n


def _moments(fn: str, name: str, x: torch.Tensor, *, scatter: bool = True):
    """``(n, mean, M2)`` of the rows of ``x`` (float64 results, on ``x``'s device;
    ``M2`` is ``None`` with ``scatter=False``, which skips the GEMMs).

    Per block of rows, in the input's precision (half precision in float32):
    a provisional mean ``m``; the centered block ``Y = X - m``; ``S = Y^T Y``
    (the one GEMM) and ``s = sum(Y)``. In float64: the block mean
    ``m + s / n_b`` and scatter ``S - s s^T / n_b``, which removes the
    rounding error of ``m``. Blocks are then combined by :func:`_combine`.
    Raises on NaN/inf (read once, from the d-sized results)."""
    n, d = x.shape
    work = _spectral.compute_dtype(x.dtype)
    itemsize = torch.empty((), dtype=work).element_size()
    rows = max(_MIN_BLOCK_ROWS, _BLOCK_BYTES // (d * itemsize))
    f64 = dict(dtype=torch.float64, device=x.device)
    count, mean = 0, torch.zeros(d, **f64)
    m2 = torch.zeros(d, d, **f64) if scatter else None
    with torch.no_grad(), _spectral.full_precision(x.device.type):
        centered = torch.empty(min(rows, n), d, dtype=work, device=x.device)  # reused: no page faults per block
        for start in range(0, n, rows):
            block = x[start : start + rows].to(work)
            n_b = block.shape[0]
            shift = block.sum(0) / n_b
            y = torch.sub(block, shift, out=centered[:n_b])
            s = y.sum(0).to(torch.float64)
            m2_b = (y.mT @ y).to(torch.float64).addr_(s, s, alpha=-1.0 / n_b) if scatter else None
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


def _normalized_matrix_entropy(c: torch.Tensor) -> float:
    """ME of ``c / tr c``; 0 for a zero matrix (the matrix entropy of 0)."""
    trace = float(c.diagonal().sum())
    return float(_matrix_entropy(c / trace)) if trace > 0 else 0.0


# ----------------------------------------------------------------------------- streaming


class CovarianceAccumulator:
    r"""Streaming mean and covariance of embeddings, in O(d²) memory whatever N.

    Feed it batches with :meth:`update`, combine accumulators with
    :meth:`merge` (for example one per data-loader worker) or across
    ``torch.distributed`` processes with :meth:`all_reduce`, then read
    :meth:`covariance`, :meth:`effective_rank`, :meth:`matrix_entropy` or
    :meth:`spectrum`. The result does not depend on how the data were split
    into batches, nor on the merge order, up to rounding (see the precision
    choice below).

    **Algorithm.** The state is the count :math:`n`, the mean :math:`\mu` and
    the centered scatter :math:`M_2 = \sum_i (z_i - \mu)(z_i - \mu)^\top`,
    all in float64. Each batch is processed in blocks of rows (about 16 MiB
    of working copy each). For a block :math:`X_b` with :math:`n_b` rows, in
    the input's precision (float16/bfloat16 in float32):

    1. a provisional mean :math:`m = \frac{1}{n_b}\sum_i x_i`;
    2. the centered block :math:`Y = X_b - \mathbf 1 m^\top`, its scatter
       :math:`S = Y^\top Y` (one GEMM) and :math:`s = \sum_i y_i`;

    then in float64 the block's exact-mean statistics
    :math:`\mu_b = m + s/n_b`, :math:`M_{2,b} = S - s s^\top / n_b` (removing
    the rounding error of :math:`m`), merged into the state by the pairwise
    formula of Chan, Golub & LeVeque:

    .. math:: \delta = \mu_b - \mu,\quad
              \mu \leftarrow \mu + \delta\,\frac{n_b}{n + n_b},\quad
              M_2 \leftarrow M_2 + M_{2,b} + \delta\delta^\top \frac{n\, n_b}{n + n_b}.

    No sum of squares of raw values (:math:`\sum z z^\top - n \mu\mu^\top`) is
    formed: that textbook formula loses every digit when the mean is large
    compared to the spread (an offset of 1e4 on unit-variance float32 data
    leaves nothing of the covariance), while the centered form keeps the
    relative error of the GEMM on the centered data, whatever the offset.

    **Precision choice.** The GEMM runs in the input's precision: float64
    batches give covariances correct to ~1e-14 relative; float32 batches to
    the accuracy of a float32 GEMM on centered data, 1e-7 to 1e-6 relative
    (Frobenius) in the tests, the larger when a large offset has quantized
    the data. That is far below what storing embeddings in float32 already
    costs (an offset of 1e4 rounds each value by up to 5e-4). A float64 GEMM
    costs about twice a float32 one on CPUs (and far more on consumer GPUs);
    pass float64 batches when you need the extra digits.

    **Devices.** The state lives on ``device``; with ``device=None`` on the
    device of the first batch (or merged accumulator). Batches on another
    device (and NumPy arrays) are copied to it.

    Args:
        dim: embedding dimension ``d``.
        device: where the statistics live (``None``: the first batch's device).

    Raises:
        MatrixInfoValueError: ``dim`` is not an integer ``>= 1``.

    References:
        T. F. Chan, G. H. Golub and R. J. LeVeque, "Updating formulae and a
        pairwise algorithm for computing sample variances", Stanford report
        STAN-CS-79-773 (1979), and "Algorithms for computing the sample
        variance: analysis and recommendations", The American Statistician
        37(3), 242-247 (1983), doi:10.1080/00031305.1983.10483115.

    Examples:
        >>> import torch
        >>> from matrixinfo.metrics import CovarianceAccumulator
        >>> Z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=torch.float64)
        >>> acc = CovarianceAccumulator(2)
        >>> acc.update(Z[:1]).update(Z[1:])
        CovarianceAccumulator(dim=2, count=4, device=cpu)
        >>> acc.covariance()
        tensor([[0.5000, 0.0000],
                [0.0000, 2.0000]], dtype=torch.float64)
        >>> other = CovarianceAccumulator(2).update(Z + 1e4)  # same spread, large offset
        >>> bool(torch.equal(other.covariance(), acc.covariance()))
        True
    """

    def __init__(self, dim: int, *, device: torch.device | str | None = None) -> None:
        self._dim = check_int("CovarianceAccumulator", "dim", dim, 1)
        self._device_fixed = device is not None
        try:
            self._device = torch.device(device) if device is not None else torch.device("cpu")
        except (RuntimeError, TypeError):
            raise MatrixInfoValueError(
                f"CovarianceAccumulator: expected device to be a torch.device or a device string, got {device!r}."
            ) from None
        self.reset()

    def reset(self) -> "CovarianceAccumulator":
        """Forget all samples (for example at the start of an epoch). Returns ``self``."""
        self._count = 0
        self._mean = torch.zeros(self._dim, dtype=torch.float64, device=self._device)
        self._m2 = torch.zeros(self._dim, self._dim, dtype=torch.float64, device=self._device)
        self._reduced = False
        return self

    def __repr__(self) -> str:
        return f"CovarianceAccumulator(dim={self._dim}, count={self._count}, device={self._device})"

    def state_dict(self) -> dict:
        """The statistics as a dict of tensors and plain numbers, for checkpoints.

        It loads with ``torch.load(..., weights_only=True)`` (the default), and
        ``map_location`` works as for a module: :meth:`load_state_dict` keeps
        the statistics on the device of the loaded tensors.

        Returns:
            ``{"dim": int, "count": int, "mean": (d,) float64 tensor,
            "m2": (d, d) float64 tensor, "reduced": bool, "device_fixed": bool}``
            (copies: later updates do not change it).

        Examples:
            >>> import io
            >>> import torch
            >>> from matrixinfo.metrics import CovarianceAccumulator
            >>> acc = CovarianceAccumulator(2).update(torch.tensor([[1.0, 2.0], [3.0, 5.0]]))
            >>> buffer = io.BytesIO()
            >>> torch.save({"metric": acc.state_dict()}, buffer)
            >>> _ = buffer.seek(0)
            >>> resumed = CovarianceAccumulator(2).load_state_dict(torch.load(buffer)["metric"])
            >>> bool(torch.equal(resumed.covariance(), acc.covariance())), resumed.count
            (True, 2)
        """
        return {
            "dim": self._dim,
            "count": self._count,
            "mean": self._mean.clone(),
            "m2": self._m2.clone(),
            "reduced": self._reduced,
            "device_fixed": self._device_fixed,
        }

    def load_state_dict(self, state: dict) -> "CovarianceAccumulator":
        """Restore the statistics saved by :meth:`state_dict`. Returns ``self``.

        The statistics then live on the device of ``state["mean"]`` (so
        ``torch.load(..., map_location=...)`` decides it).

        Raises:
            MatrixInfoValueError: ``state`` is not such a dict, or its ``dim``
                differs from this accumulator's.
        """
        fn = "CovarianceAccumulator.load_state_dict"
        keys = {"dim", "count", "mean", "m2", "reduced", "device_fixed"}
        if not isinstance(state, dict) or set(state) != keys:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise MatrixInfoValueError(f"{fn}: expected state to be a dict with keys {sorted(keys)}, got {got}.")
        d = self._dim
        if state["dim"] != d:
            raise MatrixInfoValueError(f"{fn}: expected state of dim {d}, got dim {state['dim']!r}.")
        mean, m2, count = state["mean"], state["m2"], state["count"]
        ok = (
            isinstance(mean, torch.Tensor) and isinstance(m2, torch.Tensor)
            and tuple(mean.shape) == (d,) and tuple(m2.shape) == (d, d)
            and mean.dtype == m2.dtype == torch.float64 and mean.device == m2.device
            and isinstance(count, int) and not isinstance(count, bool) and count >= 0
        )
        if not ok:
            raise MatrixInfoValueError(
                f"{fn}: expected count an integer >= 0, mean ({d},) and m2 ({d}, {d}) float64 tensors on one "
                f"device, got count {count!r}, mean {getattr(mean, 'shape', mean)!r}, m2 {getattr(m2, 'shape', m2)!r}."
            )
        self._count, self._mean, self._m2 = count, mean.clone(), m2.clone()
        self._reduced, self._device_fixed = bool(state["reduced"]), bool(state["device_fixed"])
        self._device = mean.device
        return self

    @property
    def dim(self) -> int:
        """The embedding dimension ``d``."""
        return self._dim

    @property
    def count(self) -> int:
        """Number of samples seen (a Python ``int``)."""
        return self._count

    @property
    def mean(self) -> torch.Tensor:
        """Mean of the samples seen: a new ``(d,)`` float64 tensor.

        Raises:
            MatrixInfoValueError: no samples yet.
        """
        self._require_samples("CovarianceAccumulator.mean")
        return self._mean.clone()

    def update(self, batch) -> "CovarianceAccumulator":
        """Add a batch of embeddings. Returns ``self``.

        Args:
            batch: ``(n, d)`` torch tensor or NumPy array, floating; ``n = 0``
                is allowed and changes nothing.

        Returns:
            ``self``, so calls can be chained.

        Raises:
            MatrixInfoValueError: wrong shape; NaN or inf in ``batch`` (the
                accumulator is left unchanged). This check reads one value on
                the host (a GPU synchronization) per call.
            MatrixInfoTypeError: not a tensor/array, or not floating.
        """
        fn = "CovarianceAccumulator.update"
        x = _as_samples(fn, "batch", batch, dim=self._dim)
        if x.shape[0] == 0:
            return self
        self._adopt_device(x.device)
        n, mean, m2 = _moments(fn, "batch", x.to(self._device))
        self._count = _combine(self._count, self._mean, self._m2, n, mean, m2)
        return self

    def merge(self, other: "CovarianceAccumulator") -> "CovarianceAccumulator":
        """Add the samples summarized by ``other`` (left unchanged). Returns ``self``.

        Raises:
            MatrixInfoTypeError: ``other`` is not a :class:`CovarianceAccumulator`.
            MatrixInfoValueError: the dimensions differ.
        """
        fn = "CovarianceAccumulator.merge"
        if not isinstance(other, CovarianceAccumulator):
            raise MatrixInfoTypeError(
                f"{fn}: expected other to be a CovarianceAccumulator, got {type(other).__name__}."
            )
        if other._dim != self._dim:
            raise MatrixInfoValueError(f"{fn}: expected other to have dim = {self._dim}, got {other._dim}.")
        self._adopt_device(other._device)
        mean, m2 = other._mean.to(self._device), other._m2.to(self._device)
        self._count = _combine(self._count, self._mean, self._m2, other._count, mean, m2)
        self._reduced = self._reduced or other._reduced
        return self

    def all_reduce(self, group=None) -> "CovarianceAccumulator":
        r"""Replace this process's statistics by those of all processes' samples.

        Must be called by every process of ``group``; afterwards every process
        holds the same global count, mean and covariance. Two ``all_reduce``
        (sum) collectives of :math:`d + 1` and :math:`d^2` float64 values: the
        global mean :math:`\mu = \sum_r n_r \mu_r / n`, then
        :math:`M_2 = \sum_r M_{2,r} + n_r (\mu_r - \mu)(\mu_r - \mu)^\top`
        (Chan et al.'s formula for many parts, centered on the global mean).
        The statistics must live on a device the backend supports (CUDA for
        NCCL: pass ``device=`` when a process may see no batch). Without an
        initialized process group, or with one process, nothing changes.

        A second call would count every sample once per process again, so it
        raises until :meth:`reset`. To log a global value while accumulating
        on, reduce a copy: ``CovarianceAccumulator(acc.dim).merge(acc).all_reduce()``.

        Args:
            group: the process group (default: the world).

        Returns:
            ``self``.

        Raises:
            MatrixInfoValueError: already reduced.
        """
        if self._reduced:
            raise MatrixInfoValueError(
                "CovarianceAccumulator.all_reduce: expected an accumulator of this process's samples, got "
                "one that already holds all processes' statistics; reducing again would count each sample "
                "once per process. Call reset() first, or reduce a copy: CovarianceAccumulator(acc.dim).merge(acc)."
            )
        self._reduced = True
        if not _distributed.is_active():
            return self
        head = torch.cat([self._mean.new_full((1,), float(self._count)), self._count * self._mean])
        dist.all_reduce(head, op=dist.ReduceOp.SUM, group=group)
        total = int(round(float(head[0])))
        if total == 0:
            return self
        mean = head[1:] / total
        delta = self._mean - mean
        m2 = self._m2.addr(delta, delta, alpha=float(self._count))
        dist.all_reduce(m2, op=dist.ReduceOp.SUM, group=group)
        self._count, self._mean, self._m2 = total, mean, m2
        return self

    def _adopt_device(self, device: torch.device) -> None:
        """With ``device=None``, an empty accumulator moves to where the first data are."""
        if self._count == 0 and not self._device_fixed and device != self._device:
            self._device = device
            self._mean, self._m2 = self._mean.to(device), self._m2.to(device)

    def _require_samples(self, fn: str) -> None:
        if self._count == 0:
            raise MatrixInfoValueError(f"{fn}: expected at least 1 sample, got 0; call update() first.")

    def covariance(self, *, center: bool = True) -> torch.Tensor:
        r"""The covariance :math:`\frac1n\sum_i (z_i - \mu)(z_i - \mu)^\top`.

        Args:
            center: with ``False``, the uncentered second moment
                :math:`\frac1n \sum_i z_i z_i^\top = \frac1n Z^\top Z` instead.

        Returns:
            A new ``(d, d)`` float64 tensor, exactly symmetric.

        Raises:
            MatrixInfoValueError: no samples yet.
        """
        self._require_samples("CovarianceAccumulator.covariance")
        check_flag("CovarianceAccumulator.covariance", "center", center)
        return _second_moment(self._count, self._mean, self._m2, center)

    def spectrum(self, *, center: bool = True) -> torch.Tensor:
        """Eigenvalues of :meth:`covariance`, in descending order.

        Args:
            center: see :meth:`covariance`.

        Returns:
            ``(d,)`` float64 tensor; rounding noise below zero (of a
            rank-deficient covariance) is clamped to 0.

        Raises:
            MatrixInfoValueError: no samples yet.
        """
        self._require_samples("CovarianceAccumulator.spectrum")
        check_flag("CovarianceAccumulator.spectrum", "center", center)
        c = _second_moment(self._count, self._mean, self._m2, center)
        return torch.linalg.eigvalsh(c).flip(0).clamp_min(0)

    def effective_rank(self, *, center: bool = True) -> float:
        """Effective rank of :meth:`covariance`; see :func:`covariance_effective_rank`.

        Raises:
            MatrixInfoValueError: no samples yet.
        """
        self._require_samples("CovarianceAccumulator.effective_rank")
        check_flag("CovarianceAccumulator.effective_rank", "center", center)
        return float(_effective_rank(_second_moment(self._count, self._mean, self._m2, center)))

    def matrix_entropy(self, *, center: bool = True) -> float:
        """Matrix entropy of the trace-normalized :meth:`covariance`; see :func:`embedding_matrix_entropy`.

        Raises:
            MatrixInfoValueError: no samples yet.
        """
        self._require_samples("CovarianceAccumulator.matrix_entropy")
        check_flag("CovarianceAccumulator.matrix_entropy", "center", center)
        return _normalized_matrix_entropy(_second_moment(self._count, self._mean, self._m2, center))


def _accumulate(fn: str, Z) -> CovarianceAccumulator:
    """An accumulator holding the moments of ``Z``, with errors named after ``fn``."""
    x = _as_samples(fn, "Z", Z)
    acc = CovarianceAccumulator(x.shape[1], device=x.device)
    acc._count, acc._mean, acc._m2 = _moments(fn, "Z", x)
    return acc


# ----------------------------------------------------------------------------- one-shot metrics


def covariance_effective_rank(Z, *, center: bool = True) -> float:
    r"""Effective rank of the covariance of embeddings (paper Def. 3.5 on the :math:`\sigma^2` convention).

    .. math:: C = \frac1N \sum_{i=1}^N (z_i - \mu)(z_i - \mu)^\top, \qquad
              \operatorname{erank}(C) = \exp\Big(-\sum_j p_j \log p_j\Big),\quad
              p_j = \frac{\lambda_j(C)}{\sum_k \lambda_k(C)} .

    The eigenvalues of ``C`` are :math:`\sigma_j^2(Z - \mathbf 1 \mu^\top)/N`:
    squared singular values, the convention of paper Prop. 3.6 (there on the
    uncentered :math:`\frac1N Z^\top Z`, which ``center=False`` computes), not
    RankMe's (:func:`rankme`). By Prop. 3.6,
    :math:`\operatorname{erank}(C) = \exp(\mathrm{ME}(C/\operatorname{tr}C) - 1)`
    (:func:`embedding_matrix_entropy`). It lies in ``[1, min(N, d)]``; constant
    embeddings (a zero covariance, which Def. 3.5 excludes) give 0, as in
    :func:`matrixinfo.effective_rank`. A single sample is constant.

    Cost: one pass over ``Z`` (a ``d x d`` GEMM per block of rows, see
    :class:`CovarianceAccumulator` for the precision) and one ``d x d``
    eigenvalue problem.

    Args:
        Z: ``(N, d)`` embeddings, torch tensor or NumPy array.
        center: subtract the mean (covariance); ``False`` uses :math:`\frac1N Z^\top Z`.

    Returns:
        A Python ``float``.

    Raises:
        MatrixInfoValueError: ``Z`` is not ``(N, d)`` with ``N, d >= 1``; NaN or inf in ``Z``.
        MatrixInfoTypeError: not a tensor/array, or not floating.

    Examples:
        >>> import torch
        >>> from matrixinfo.metrics import covariance_effective_rank
        >>> Z = torch.tensor([[1.0, 0.0, 5.0], [-1.0, 0.0, 5.0], [0.0, 1.0, 5.0], [0.0, -1.0, 5.0]],
        ...                  dtype=torch.float64)
        >>> round(covariance_effective_rank(Z), 12)  # covariance diag(1/2, 1/2, 0)
        2.0
        >>> covariance_effective_rank(Z, center=False) < 2  # the offset 5 dominates Z^T Z / N
        True
    """
    check_flag("covariance_effective_rank", "center", center)
    return _accumulate("covariance_effective_rank", Z).effective_rank(center=center)


def embedding_matrix_entropy(Z, *, center: bool = True) -> float:
    r"""Matrix entropy (paper Def. 3.1) of the trace-normalized covariance of embeddings.

    .. math:: \hat C = \frac{C}{\operatorname{tr} C},\qquad
              \mathrm{ME}(\hat C) = -\operatorname{tr}(\hat C \log \hat C) + \operatorname{tr}\hat C
              = \mathrm{VNE}(\hat C) + 1,

    with ``C`` as in :func:`covariance_effective_rank`. Since
    :math:`\operatorname{tr}\hat C = 1`, paper Prop. 3.6 links it to the
    effective rank:

    .. math:: \operatorname{erank}(C) = \exp\big(\mathrm{ME}(\hat C) - 1\big) = \exp\big(\mathrm{VNE}(\hat C)\big).

    It lies in ``[1, log d + 1]``; the maximum is reached by isotropic
    embeddings (:math:`\hat C = I/d`). Constant embeddings (``C = 0``, which
    cannot be normalized) give 0, the matrix entropy of the zero matrix; the
    identity above holds for every nonzero ``C``.

    Args:
        Z: ``(N, d)`` embeddings, torch tensor or NumPy array.
        center: subtract the mean; ``False`` uses :math:`\frac1N Z^\top Z` as Prop. 3.6 does.

    Returns:
        A Python ``float``.

    Raises:
        MatrixInfoValueError: ``Z`` is not ``(N, d)`` with ``N, d >= 1``; NaN or inf in ``Z``.
        MatrixInfoTypeError: not a tensor/array, or not floating.

    Examples:
        >>> import math, torch
        >>> from matrixinfo.metrics import covariance_effective_rank, embedding_matrix_entropy
        >>> Z = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 0.5]], dtype=torch.float64)
        >>> me = embedding_matrix_entropy(Z)
        >>> math.isclose(math.exp(me - 1), covariance_effective_rank(Z), rel_tol=1e-12)
        True
    """
    check_flag("embedding_matrix_entropy", "center", center)
    return _accumulate("embedding_matrix_entropy", Z).matrix_entropy(center=center)


def rankme(Z) -> float:
    r"""RankMe (Garrido et al., 2023): the effective rank of the raw embedding matrix.

    .. math:: p_j = \frac{\sigma_j(Z)}{\lVert\sigma(Z)\rVert_1} + 10^{-7},\qquad
              \operatorname{RankMe}(Z) = \exp\Big(-\sum_{j=1}^{\min(N, d)} p_j \log p_j\Big),

    on the singular values of ``Z`` itself: uncentered, and :math:`\sigma`
    rather than the :math:`\sigma^2` of :func:`covariance_effective_rank`.
    The ``1e-7`` is the authors' (it keeps ``log`` finite; the ``p_j`` then
    sum to slightly more than 1). An all-zero ``Z`` gives 0.

    Cost: the singular values of ``Z``, :math:`O(N d \min(N, d))`, in ``Z``'s
    precision (half precision in float32); the entropy in float64.

    Args:
        Z: ``(N, d)`` embeddings, torch tensor or NumPy array.

    Returns:
        A Python ``float``.

    Raises:
        MatrixInfoValueError: ``Z`` is not ``(N, d)`` with ``N, d >= 1``; NaN or inf in ``Z``.
        MatrixInfoTypeError: not a tensor/array, or not floating.

    References:
        Q. Garrido, R. Balestriero, L. Najman and Y. LeCun, "RankMe: assessing
        the downstream performance of pretrained self-supervised
        representations by their rank", ICML 2023.

    Examples:
        >>> import torch
        >>> from matrixinfo.metrics import rankme
        >>> Z = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)  # sigma = 3, sqrt 2
        >>> round(rankme(Z), 6)
        1.872273
    """
    fn = "rankme"
    x = _as_samples(fn, "Z", Z)
    _check_finite(fn, "Z", x)
    with torch.no_grad(), _spectral.full_precision(x.device.type):
        s = torch.linalg.svdvals(x.to(_spectral.compute_dtype(x.dtype))).to(torch.float64)
        total = s.sum()
        if not bool(total > 0):
            return 0.0
        p = s / total + _RANKME_EPS
        return float(torch.exp(-(p * torch.log(p)).sum()))


def _classes(fn: str, x: torch.Tensor, labels):
    """Row indices of each class, sorted by label: a list of 1-D index tensors."""
    y = _as_labels(fn, labels, x.shape[0], x.device)
    _, inverse, counts = torch.unique(y, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    return list(torch.split(order, counts.tolist()))


def _gram_side_effective_rank(y: torch.Tensor, weights: torch.Tensor | None = None) -> float:
    r"""``erank(Y^T W Y)`` for ``(m, d)`` float64 ``Y``, on the smaller side.

    :math:`Y^\top W Y` and :math:`W^{1/2} Y Y^\top W^{1/2}` have the same
    nonzero eigenvalues, hence the same effective rank (paper Thm. E.5)."""
    if weights is not None:
        y = y * weights.sqrt().unsqueeze(-1)
    gram = y @ y.mT if y.shape[0] < y.shape[1] else y.mT @ y
    return float(_effective_rank(_spectral.symmetrize(gram)))


def intra_class_effective_rank(Z, labels) -> float:
    r"""Intra-class effective rank (paper Def. E.1): the mean effective rank of the class covariances.

    .. math:: C_c = \frac{1}{n_c} \sum_{y_i = c} (z_i - \mu_c)(z_i - \mu_c)^\top,\qquad
              \operatorname{erank}_{\text{intra}} = \frac1K \sum_{c} \operatorname{erank}(C_c),

    over the ``K`` classes present in ``labels`` (every class counts the same,
    whatever its size), each on the :math:`\sigma^2` convention of
    :func:`covariance_effective_rank`. It measures variability collapse:
    collapsed classes (identical embeddings within a class) give 0.

    A class with a single sample has a zero covariance by construction, which
    says nothing about its spread: such classes are left out of the average
    (``K`` counts the others) with a :class:`RuntimeWarning`. Counting them
    as 0 (the :func:`matrixinfo.effective_rank` convention for a zero matrix)
    would pull the average down by the share of singletons, an artefact of
    the sampling. If no class has two samples there is nothing to average:
    :class:`MatrixInfoValueError`.

    Cost: per class one GEMM and an eigenvalue problem of size
    ``min(n_c, d)``, in float64.

    Args:
        Z: ``(N, d)`` embeddings, torch tensor or NumPy array.
        labels: ``(N,)`` integer class labels (any values), tensor or array.

    Returns:
        A Python ``float``.

    Raises:
        MatrixInfoValueError: bad shapes; NaN or inf in ``Z``; no class with 2 samples.
        MatrixInfoTypeError: not tensors/arrays; ``Z`` not floating; ``labels`` not integer.

    Warns:
        RuntimeWarning: some classes have a single sample and are left out.

    Examples:
        >>> import torch
        >>> from matrixinfo.metrics import intra_class_effective_rank
        >>> Z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [5.0, 1.0], [5.0, -1.0], [6.0, 0.0], [4.0, 0.0]],
        ...                  dtype=torch.float64)
        >>> labels = torch.tensor([0, 0, 1, 1, 1, 1])  # class 0: rank 1; class 1: isotropic in 2-D
        >>> round(intra_class_effective_rank(Z, labels), 12)
        1.5
    """
    fn = "intra_class_effective_rank"
    x = _as_samples(fn, "Z", Z)
    groups = _classes(fn, x, labels)
    _check_finite(fn, "Z", x)
    ranks = []
    with torch.no_grad():
        for rows in groups:
            if rows.numel() < 2:
                continue
            xc = x[rows]
            if rows.numel() < x.shape[1]:
                # Fewer samples than dimensions: the n_c x n_c Gram of the centered rows.
                xc = xc.to(torch.float64)
                ranks.append(_gram_side_effective_rank(xc - xc.mean(0)))
            else:
                count, mean, m2 = _moments(fn, "Z", xc)
                ranks.append(float(_effective_rank(_second_moment(count, mean, m2, True))))
    singletons = len(groups) - len(ranks)
    if not ranks:
        raise MatrixInfoValueError(
            f"{fn}: expected at least one class with 2 or more samples, got {len(groups)} classes of 1 sample each."
        )
    if singletons:
        warn(
            f"{fn}: {singletons} of {len(groups)} classes have a single sample; their covariance is zero by "
            f"construction, so they are left out of the average over classes (K = {len(ranks)})."
        )
    return sum(ranks) / len(ranks)


def inter_class_effective_rank(Z, labels, *, weighting: str = "classes") -> float:
    r"""Inter-class effective rank (paper Def. E.2): the effective rank of the spread of the class means.

    With class means :math:`\mu_c` and the global mean of all ``N`` samples
    :math:`\mu_G = \frac1N \sum_i z_i`,

    .. math:: \operatorname{erank}_{\text{inter}} = \operatorname{erank}\Big[\sum_{c=1}^K w_c\,
              (\mu_c - \mu_G)(\mu_c - \mu_G)^\top\Big].

    ``weighting="classes"`` (default) is eq. 26 as printed, :math:`w_c = 1/K`:
    every class counts the same, but the centre :math:`\mu_G` is weighted by
    class size. For balanced classes this is the covariance of the class
    means. For unbalanced classes it is neither that nor the between-class
    term of the total covariance decomposition
    :math:`C = \sum_c \frac{n_c}{N} C_c + \sum_c \frac{n_c}{N}(\mu_c - \mu_G)(\mu_c - \mu_G)^\top`
    (the paper's Remark); ``weighting="samples"``, :math:`w_c = n_c/N`, gives
    that term. The overall scale does not matter (erank is scale invariant).

    ``K`` class means centred on their (weighted) mean span at most ``K - 1``
    dimensions, so the value is at most ``min(K - 1, d)``; class means forming
    a simplex ETF (neural collapse) give exactly ``K - 1``.

    Args:
        Z: ``(N, d)`` embeddings, torch tensor or NumPy array.
        labels: ``(N,)`` integer class labels, at least 2 distinct values.
        weighting: ``"classes"`` (eq. 26) or ``"samples"``.

    Returns:
        A Python ``float``.

    Raises:
        MatrixInfoValueError: bad shapes; unknown ``weighting``; fewer than 2
            classes; NaN or inf in ``Z``.
        MatrixInfoTypeError: not tensors/arrays; ``Z`` not floating; ``labels`` not integer.

    Examples:
        >>> import torch
        >>> from matrixinfo.metrics import inter_class_effective_rank
        >>> means = torch.tensor([[1.0, 0.0], [-0.5, 3 ** 0.5 / 2], [-0.5, -(3 ** 0.5) / 2]], dtype=torch.float64)
        >>> Z = means.repeat_interleave(2, dim=0) + 10.0  # 3 classes, an equilateral triangle
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2])
        >>> round(inter_class_effective_rank(Z, labels), 12)  # K - 1
        2.0
    """
    fn = "inter_class_effective_rank"
    check_choice(fn, "weighting", weighting, _WEIGHTINGS)
    x = _as_samples(fn, "Z", Z)
    groups = _classes(fn, x, labels)
    _check_finite(fn, "Z", x)
    if len(groups) < 2:
        raise MatrixInfoValueError(f"{fn}: expected labels with at least 2 distinct classes, got {len(groups)}.")
    with torch.no_grad():
        counts = torch.tensor([rows.numel() for rows in groups], dtype=torch.float64, device=x.device)
        # Class means by the same centered, float64 accumulation as everything else.
        means = torch.stack([_moments(fn, "Z", x[rows], scatter=False)[1] for rows in groups])
        global_mean = (counts / counts.sum()) @ means
        weights = torch.full_like(counts, 1.0 / len(groups)) if weighting == "classes" else counts / counts.sum()
        return _gram_side_effective_rank(means - global_mean, weights)


# ----------------------------------------------------------------------------- plotting


def plot_spectrum(data, *, center: bool = True, normalize: bool = False, ax=None, **plot_kwargs):
    r"""Plot covariance eigenvalues in descending order on a logarithmic scale.

    A collapsed dimension shows as a cliff in the spectrum; the effective rank
    summarizes its flatness. Zero eigenvalues cannot be drawn on a log scale
    and are left out of the line.

    Needs matplotlib, the ``plot`` extra: ``pip install "matrixinfo[plot]"``
    (imported only when this function is called, and only when ``ax`` is not given).

    Args:
        data: ``(N, d)`` embeddings (their covariance spectrum is drawn), a
            ``(d,)`` vector of eigenvalues (drawn as given, sorted), or a
            :class:`CovarianceAccumulator`. Torch tensors or NumPy arrays.
        center: for embeddings and accumulators, see :func:`covariance_effective_rank`.
        normalize: divide the eigenvalues by their sum, to compare models of different scales.
        ax: matplotlib ``Axes`` to draw in; ``None`` makes a new figure with
            ``matplotlib.pyplot`` (close it when done in a training loop).
        **plot_kwargs: passed to ``ax.plot`` (``label``, ``color``, ...).

    Returns:
        The matplotlib ``Axes``.

    Raises:
        ImportError: matplotlib is missing (names the extra to install).
        MatrixInfoValueError, MatrixInfoTypeError: bad ``data`` (as in
            :func:`covariance_effective_rank`).

    Examples:
        >>> import torch
        >>> import pytest; _ = pytest.importorskip("matplotlib")  # skipped without the plot extra
        >>> from matrixinfo.metrics import plot_spectrum
        >>> Z = torch.randn(200, 8, dtype=torch.float64) * torch.logspace(0, -3, 8, dtype=torch.float64)
        >>> ax = plot_spectrum(Z, label="model A")
        >>> ax.get_yscale(), len(ax.lines[0].get_ydata())
        ('log', 8)
    """
    fn = "plot_spectrum"
    check_flag(fn, "center", center)
    check_flag(fn, "normalize", normalize)
    if ax is None:
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError(
                f'{fn}: needs matplotlib, which is the optional "plot" extra: pip install "matrixinfo[plot]"'
            ) from exc
        _, ax = plt.subplots()
    if isinstance(data, CovarianceAccumulator):
        values = data.spectrum(center=center)
    else:
        x = check_tensor(fn, "data", _as_tensor(fn, "data", data))
        if x.ndim == 1:
            _check_finite(fn, "data", x)
            values = torch.sort(x.to(torch.float64), descending=True).values
        elif x.ndim == 2:
            values = _accumulate(fn, x).spectrum(center=center)
        else:
            raise MatrixInfoValueError(
                f"{fn}: expected data to have shape (N, d) (embeddings) or (d,) (eigenvalues), "
                f"got {shape_str(x.shape)}."
            )
    if normalize:
        total = float(values.clamp_min(0).sum())
        values = values / total if total > 0 else values
    values = values.cpu()
    index = torch.arange(1, values.numel() + 1)
    positive = values > 0
    ax.plot(index[positive].tolist(), values[positive].tolist(), **plot_kwargs)
    ax.set_yscale("log")
    ax.set_xlabel("index (eigenvalues in descending order)")
    ax.set_ylabel("eigenvalue / trace" if normalize else "covariance eigenvalue")
    return ax
