"""Plotting covariance spectra (needs the optional matplotlib)."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import (
    MatrixInfoValueError,
    check_flag,
    check_tensor,
    shape_str,
)
from ._common import ArrayLike, _as_tensor, _check_finite
from ._streaming import CovarianceAccumulator, _accumulate

# ----------------------------------------------------------------------------- plotting


def plot_spectrum(
    data: ArrayLike | CovarianceAccumulator,
    *,
    center: bool = True,
    normalize: bool = False,
    ax: Any = None,
    **plot_kwargs: Any,
) -> Any:
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
