"""Streaming moments: :class:`CovarianceAccumulator`."""

from __future__ import annotations

import torch
import torch.distributed as dist

from .. import _distributed
from .._checks import (
    MatrixInfoTypeError,
    MatrixInfoValueError,
    check_flag,
    check_int,
)
from ._common import (
    ArrayLike,
    _as_samples,
    _combine,
    _effective_rank_of_spectrum,
    _moments,
    _normalized_matrix_entropy,
    _second_moment,
)
from ._spectral_metrics import _ALPHA_FIT_RANGE, _alpha_from_spectrum

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
       :math:`S = Y^\top Y` (one Gram matrix, multiplying only its column
       tiles on and above the diagonal: 56% of the GEMM at ``d >= 2048``)
       and :math:`s = \sum_i y_i`;

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

    def reset(self) -> CovarianceAccumulator:
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

    def load_state_dict(self, state: dict) -> CovarianceAccumulator:
        """Restore the statistics saved by :meth:`state_dict`.

        The statistics then live on the device of ``state["mean"]`` (so
        ``torch.load(..., map_location=...)`` decides it).

        Args:
            state: the dict returned by :meth:`state_dict`.

        Returns:
            ``self``, so calls can be chained.

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
            isinstance(mean, torch.Tensor)
            and isinstance(m2, torch.Tensor)
            and tuple(mean.shape) == (d,)
            and tuple(m2.shape) == (d, d)
            and mean.dtype == m2.dtype == torch.float64
            and mean.device == m2.device
            and isinstance(count, int)
            and not isinstance(count, bool)
            and count >= 0
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

    def update(self, batch: ArrayLike) -> CovarianceAccumulator:
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

    def merge(self, other: CovarianceAccumulator) -> CovarianceAccumulator:
        """Add the samples summarized by ``other`` (left unchanged).

        Args:
            other: a :class:`CovarianceAccumulator` of the same ``dim``.

        Returns:
            ``self``, so calls can be chained.

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

    def all_reduce(self, group: dist.ProcessGroup | None = None) -> CovarianceAccumulator:
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
            center: ``True`` for the covariance, ``False`` for the uncentered second moment.

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
        """Effective rank of :meth:`covariance`, as :func:`covariance_effective_rank` defines it.

        From the eigenvalues of :meth:`spectrum` (one symmetric eigenvalue
        problem; for this PSD matrix they are the singular values that
        :func:`matrixinfo.effective_rank` takes, at a fifth of the cost of an SVD).

        Args:
            center: ``True`` for the covariance, ``False`` for the uncentered second moment.

        Returns:
            The effective rank, a Python float.

        Raises:
            MatrixInfoValueError: no samples yet.
        """
        self._require_samples("CovarianceAccumulator.effective_rank")
        check_flag("CovarianceAccumulator.effective_rank", "center", center)
        return _effective_rank_of_spectrum(self.spectrum(center=center))

    def matrix_entropy(self, *, center: bool = True) -> float:
        """Matrix entropy of the trace-normalized :meth:`covariance`, as :func:`embedding_matrix_entropy` defines it.

        Args:
            center: ``True`` for the covariance, ``False`` for the uncentered second moment.

        Returns:
            The matrix entropy, a Python float.

        Raises:
            MatrixInfoValueError: no samples yet.
        """
        self._require_samples("CovarianceAccumulator.matrix_entropy")
        check_flag("CovarianceAccumulator.matrix_entropy", "center", center)
        return _normalized_matrix_entropy(_second_moment(self._count, self._mean, self._m2, center))

    def nesum(self) -> float:
        r"""NESum of the streamed covariance, :math:`\operatorname{tr}C / \lambda_{\max}(C)`; see :func:`nesum`.

        Exact (one ``d x d`` eigenvalue problem), where :func:`nesum` of a
        whole ``Z`` estimates :math:`\lambda_{\max}` without forming ``C``.
        Equals :meth:`stable_rank` (centered). Constant samples give 0.

        Returns:
            NESum, a Python float.

        Raises:
            MatrixInfoValueError: no samples yet.
        """
        self._require_samples("CovarianceAccumulator.nesum")
        return self.stable_rank()

    def stable_rank(self, *, center: bool = True) -> float:
        r"""Stable rank :math:`\operatorname{tr}C / \lambda_{\max}(C)`, as :func:`stable_rank` defines it.

        Args:
            center: ``True`` for the covariance, ``False`` for the uncentered second moment.

        Returns:
            The stable rank, a Python float.

        Raises:
            MatrixInfoValueError: no samples yet.
        """
        self._require_samples("CovarianceAccumulator.stable_rank")
        c = _second_moment(self._count, self._mean, self._m2, center)
        top = float(torch.linalg.eigvalsh(c)[-1])
        return float(c.diagonal().sum()) / top if top > 0 else 0.0

    def alpha_req(self, *, fit_range: tuple[int, int] = _ALPHA_FIT_RANGE) -> float:
        r"""alpha-ReQ power-law exponent of the streamed covariance spectrum, as :func:`alpha_req` defines it.

        Args:
            fit_range: 1-based ``(first, last)`` eigenvalue indices of the fit, as in :func:`alpha_req`.

        Returns:
            The exponent :math:`\alpha`, a Python float.

        Raises:
            MatrixInfoValueError: no samples yet; ``d`` or the rank below the fit range.
        """
        fn = "CovarianceAccumulator.alpha_req"
        self._require_samples(fn)
        return _alpha_from_spectrum(fn, self.spectrum(), fit_range)


def _accumulate(fn: str, Z) -> CovarianceAccumulator:
    """An accumulator holding the moments of ``Z``, with errors named after ``fn``."""
    x = _as_samples(fn, "Z", Z)
    acc = CovarianceAccumulator(x.shape[1], device=x.device)
    acc._count, acc._mean, acc._m2 = _moments(fn, "Z", x)
    return acc
