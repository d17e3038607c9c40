r"""A training monitor: update per batch, compute per epoch, gathered across processes."""

from __future__ import annotations

import torch
import torch.distributed as dist

from .. import _distributed
from .._checks import MatrixInfoTypeError, MatrixInfoValueError, check_choice, check_int, check_number, shape_str
from ._common import ArrayLike, _as_samples, _effective_rank_of_spectrum
from ._hypersphere import _normalized, uniformity
from ._spectral_metrics import _alpha_from_spectrum, _check_fit_range
from ._streaming import CovarianceAccumulator

_STAGES = ("train", "validation")


class EmbeddingMonitor:
    r"""Label-free collapse metrics of a training run, accumulated over an epoch in O(d²) memory.

    Call :meth:`update` with each batch's embeddings (one view, or the two
    views of each sample), :meth:`compute` at the end of an epoch, then
    :meth:`reset`. :meth:`compute` returns a ``dict`` of Python floats ready
    for any logger:

    ==================  =================================================================
    ``effective_rank``  :meth:`CovarianceAccumulator.effective_rank` of all embeddings seen
    ``nesum``           :meth:`CovarianceAccumulator.nesum` (equal to the centered stable rank)
    ``alpha_req``       :meth:`CovarianceAccumulator.alpha_req`, only when ``d >= fit_range[1]``
    ``alignment``       :func:`alignment` over all positive pairs seen (only with two views)
    ``uniformity``      mean over batches of :func:`uniformity` of each batch's first view ``z1``
    ``samples``         number of embeddings in the covariance (all processes)
    ==================  =================================================================

    The covariance metrics and alignment are exactly those of the whole
    epoch's embeddings (streamed, as :class:`CovarianceAccumulator`);
    uniformity couples all pairs and cannot be streamed, so it is the
    per-batch value averaged, the estimator training logs use. It is taken
    on the first view only: the second view has the same distribution, and
    its uniformity would cost as much again (``B^2 d / 2`` multiply-adds per
    batch of ``B`` rows, against about ``B d^2 / 2`` for that view's share
    of the covariance).

    **Cost.** Per batch, the covariance Gram matrices of the views and one
    ``B x B`` Gram matrix for the uniformity; per :meth:`compute`, one ``d x d`` symmetric eigenvalue problem
    (``eigvalsh``) shared by the effective rank, NESum and alpha-ReQ. At
    ``d = 2048`` with batches of 4096 pairs, an epoch of ``N = 10^5``
    embeddings cost 2.0 times one ``Z^T Z`` of all ``N`` on one CPU thread
    (``benchmarks/README.md``).

    **Distributed.** Under an initialized ``torch.distributed`` process group,
    :meth:`compute` must be called by every process: it reduces a copy of
    the statistics (three ``all_reduce`` collectives, :math:`d^2 + d + 5`
    float64 values) and every process returns the same global values, so
    log them from one process or without further syncing. Accumulation goes
    on unchanged, so :meth:`compute` may be called mid-epoch.

    Args:
        dim: embedding dimension ``d``.
        alpha: exponent of :func:`alignment`.
        t: scale of :func:`uniformity`.
        fit_range: ``(first, last)`` of :func:`alpha_req`.
        group: the process group to reduce over (default: the world).
        device: where the statistics live (``None``: the first batch's;
            pass the CUDA device under NCCL).

    Raises:
        MatrixInfoValueError: a bad ``dim``, ``alpha``, ``t`` or ``fit_range``.

    Examples:
        >>> import torch
        >>> from matrixinfo.metrics import EmbeddingMonitor
        >>> monitor = EmbeddingMonitor(4)
        >>> g = torch.Generator().manual_seed(0)
        >>> for _ in range(3):  # three batches of two views
        ...     z1 = torch.randn(32, 4, generator=g, dtype=torch.float64)
        ...     _ = monitor.update(z1, z1 + 0.1 * torch.randn(32, 4, generator=g, dtype=torch.float64))
        >>> logs = monitor.compute()
        >>> sorted(logs)
        ['alignment', 'effective_rank', 'nesum', 'samples', 'uniformity']
        >>> logs["samples"], 3.5 < logs["effective_rank"] <= 4
        (192.0, True)
    """

    def __init__(
        self,
        dim: int,
        *,
        alpha: float = 2.0,
        t: float = 2.0,
        fit_range: tuple[int, int] = (11, 100),
        group: dist.ProcessGroup | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        fn = "EmbeddingMonitor"
        self._dim = check_int(fn, "dim", dim, 1)
        self._alpha = check_number(fn, "alpha", alpha, minimum=0.0, strict=True)
        self._t = check_number(fn, "t", t, minimum=0.0, strict=True)
        self._fit_range = _check_fit_range(fn, fit_range)
        self._group = group
        self._acc = CovarianceAccumulator(dim, device=device)
        self.reset()

    def reset(self) -> EmbeddingMonitor:
        """Forget everything seen (call it at the start of each epoch). Returns ``self``."""
        self._acc.reset()
        # align_sum, pairs, uniformity_sum, batches (uniformity), in float64
        self._sums = [0.0, 0.0, 0.0, 0.0]
        return self

    def __repr__(self) -> str:
        return f"EmbeddingMonitor(dim={self._dim}, samples={self._acc.count})"

    def update(self, z1: ArrayLike, z2: ArrayLike | None = None) -> EmbeddingMonitor:
        """Add a batch: ``(B, d)`` embeddings, and optionally the second views of the same samples.

        Both views enter the covariance; pairs ``(z1[i], z2[i])`` enter the
        alignment; ``z1`` with ``B >= 2`` gives one uniformity value.
        Inputs are detached.

        Args:
            z1: ``(B, d)`` torch tensor or NumPy array.
            z2: ``None`` or ``(B, d)``, the positive of each row of ``z1``.

        Returns:
            ``self``.

        Raises:
            MatrixInfoValueError: wrong shapes; NaN or inf.
            MatrixInfoTypeError: not tensors/arrays, or not floating.
        """
        fn = "EmbeddingMonitor.update"
        views = [_as_samples(fn, "z1", z1, dim=self._dim)]
        if z2 is not None:
            views.append(_as_samples(fn, "z2", z2, dim=self._dim))
            if views[1].shape != views[0].shape:
                raise MatrixInfoValueError(
                    f"{fn}: expected z2 to have the shape of z1, {shape_str(views[0].shape)}, "
                    f"got {shape_str(views[1].shape)}."
                )
        for v in views:
            self._acc.update(v)
        if len(views) == 2 and views[0].shape[0] > 0:
            a, b = _normalized(fn, "z1", views[0]), _normalized(fn, "z2", views[1])
            dist_ = (a - b.to(a.device, a.dtype)).to(torch.float64).norm(dim=1)
            self._sums[0] += float(dist_.pow(self._alpha).sum())
            self._sums[1] += views[0].shape[0]
        if views[0].shape[0] >= 2:
            self._sums[2] += uniformity(views[0], t=self._t)
            self._sums[3] += 1
        return self

    def compute(self) -> dict[str, float]:
        """The metrics of everything seen since :meth:`reset`, over all processes.

        Returns:
            ``dict`` of metric name to Python ``float`` (keys in the class docstring).

        Raises:
            MatrixInfoValueError: no samples seen (by any process).
        """
        acc = CovarianceAccumulator(self._dim, device=self._acc._device).merge(self._acc)
        sums = torch.tensor(self._sums, dtype=torch.float64, device=acc._device)
        if _distributed.is_active():
            dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=self._group)
        acc.all_reduce(group=self._group)
        if acc.count == 0:
            raise MatrixInfoValueError(
                "EmbeddingMonitor.compute: expected at least 1 sample, got 0; call update() first."
            )
        align_sum, pairs, uniform_sum, batches = sums.tolist()
        # One eigenvalue problem for the effective rank, NESum and alpha-ReQ.
        spectrum = acc.spectrum()
        top = float(spectrum[0])
        logs = {
            "effective_rank": _effective_rank_of_spectrum(spectrum),
            "nesum": float(spectrum.sum()) / top if top > 0 else 0.0,
        }
        first, last = self._fit_range
        if self._dim >= last and acc.count > last:
            try:
                logs["alpha_req"] = _alpha_from_spectrum("EmbeddingMonitor.compute", spectrum, self._fit_range)
            except MatrixInfoValueError:  # rank below the fit range (e.g. collapse): nothing to fit
                logs["alpha_req"] = float("nan")
        if pairs > 0:
            logs["alignment"] = align_sum / pairs
        if batches > 0:
            logs["uniformity"] = uniform_sum / batches
        logs["samples"] = float(acc.count)
        return logs


def lightning_callback(
    monitor: EmbeddingMonitor, *, key: str = "embeddings", prefix: str = "monitor/", stage: str = "train"
):
    r"""A PyTorch Lightning ``Callback`` that feeds an :class:`EmbeddingMonitor` and logs it each epoch.

    Lightning is optional (the ``lightning`` extra: ``pip install
    "matrixinfo[lightning]"``); it is imported only when this function is
    called, from ``lightning.pytorch`` or else ``pytorch_lightning``.

    The callback reads ``outputs[key]`` after each batch of ``stage``
    (``training_step``/``validation_step`` must return a dict holding it):
    a ``(B, d)`` tensor, or a pair ``(z1, z2)`` of views. At the end of the
    epoch it logs ``monitor.compute()`` with ``prefix`` prepended, through
    ``LightningModule.log_dict`` (values are already global across
    processes, so without ``sync_dist``), then resets the monitor.

    Args:
        monitor: the :class:`EmbeddingMonitor` to feed.
        key: the key of the embeddings in the step's output dict.
        prefix: prepended to each logged name.
        stage: ``"train"`` or ``"validation"``.

    Returns:
        A ``Callback`` instance for ``Trainer(callbacks=[...])``.

    Raises:
        ImportError: Lightning is not installed (names the extra).
        MatrixInfoValueError: unknown ``stage``.
        MatrixInfoTypeError: ``monitor`` is not an :class:`EmbeddingMonitor`.

    Examples:
        >>> import pytest; _ = pytest.importorskip("lightning")  # skipped without the lightning extra
        >>> from matrixinfo.metrics import EmbeddingMonitor, lightning_callback
        >>> callback = lightning_callback(EmbeddingMonitor(16), key="z")
        >>> type(callback).__name__
        'EmbeddingMonitorCallback'
    """
    fn = "lightning_callback"
    check_choice(fn, "stage", stage, _STAGES)
    if not isinstance(monitor, EmbeddingMonitor):
        raise MatrixInfoTypeError(f"{fn}: expected monitor to be an EmbeddingMonitor, got {type(monitor).__name__}.")
    try:
        from lightning.pytorch import Callback
    except ImportError:
        try:
            from pytorch_lightning import Callback
        except ImportError as exc:
            raise ImportError(
                f'{fn}: needs PyTorch Lightning, the optional "lightning" extra: pip install "matrixinfo[lightning]"'
            ) from exc

    def on_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        z = outputs[key] if isinstance(outputs, dict) else None
        if z is None:
            raise MatrixInfoValueError(
                f"{fn}: expected the {stage} step to return a dict with the key {key!r}, got {type(outputs).__name__}."
            )
        monitor.update(*z) if isinstance(z, (tuple, list)) else monitor.update(z)

    def on_epoch_end(self, trainer, pl_module):
        if monitor._acc.count == 0 and not _distributed.is_active():
            return
        logs = monitor.compute()
        pl_module.log_dict({prefix + name: value for name, value in logs.items()}, sync_dist=False)
        monitor.reset()

    hooks = {
        f"on_{stage}_batch_end": on_batch_end,
        f"on_{stage}_epoch_end": on_epoch_end,
        "monitor": monitor,
    }
    return type("EmbeddingMonitorCallback", (Callback,), hooks)()
