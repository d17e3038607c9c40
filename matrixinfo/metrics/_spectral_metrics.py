r"""Label-free spectral metrics of embeddings: LiDAR, alpha-ReQ, NESum and the stable rank.

Each function states its reference and where its conventions differ from the
published implementations (see :doc:`/theory` for the effective-rank ones).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from .. import _distributed, _spectral
from .._checks import MatrixInfoValueError, check_int, check_number, check_tensor, shape_str
from ._common import ArrayLike, _as_samples, _as_tensor, _check_finite, _gram, _moments

# alpha-ReQ's default fit range, as 1-based inclusive eigenvalue indices: the
# reference's ``np.arange(10, 100)`` of 0-based indices (reptrix, alpha.py).
_ALPHA_FIT_RANGE = (11, 100)
# Lanczos for the top covariance eigenvalue: one start vector, ``steps`` products with
# the covariance (each one pass over Z). One vector, not a block: on a spectrum without
# a gap at the top the degree of the Krylov polynomial is what counts, and a
# matrix-vector pass (memory-bound) costs a fraction of a pass with a 16-column block.
_KRYLOV_STEPS = 12
_KRYLOV_SEED = 0
# Rows whose mean (in float64) shifts Z before the low-precision products; spread over Z.
_SHIFT_ROWS = 1024
# Row blocks of a pass: on the CPU small enough (per thread) to stay in cache between
# the two matrix-vector products; on other devices large (fewer kernel launches).
# 4 MiB per thread: nesum at N = 1e5, d = 2048 took 0.75-0.77 s with 2 threads and 0.90-0.93 s with
# one (2 MiB: 0.74-0.94 s and 0.97-1.00 s; 8 MiB: 0.98-1.12 s; 16 MiB: 1.27-1.54 s), 2-core AMD EPYC.
_SKINNY_BYTES = 1 << 22
_DEVICE_BYTES = 1 << 26


# ----------------------------------------------------------------------------- LiDAR


def lidar(embeddings: ArrayLike, *, delta: float = 1e-4, eps: float = 1e-8) -> float:
    r"""LiDAR (Thilak et al., 2023): the effective rank of the LDA matrix of augmented views.

    For ``n`` samples with ``q`` augmented views each, :math:`z_{ij}` (view ``j``
    of sample ``i``), :math:`\mu_i = \frac1q\sum_j z_{ij}` and
    :math:`\mu = \frac1n\sum_i \mu_i`:

    .. math:: S_b = \frac{1}{n - 1}\sum_i (\mu_i - \mu)(\mu_i - \mu)^\top,\qquad
              S_w = \frac{1}{n(q - 1)}\sum_{i,j} (z_{ij} - \mu_i)(z_{ij} - \mu_i)^\top + \delta I,

    .. math:: \Sigma = S_w^{-1/2} S_b S_w^{-1/2},\qquad
              p_k = \frac{\lambda_k(\Sigma) + \epsilon}{\sum_l (\lambda_l(\Sigma) + \epsilon)},\qquad
              \operatorname{LiDAR} = \exp\Big(-\sum_k p_k \log p_k\Big).

    Conventions. Normalized (unbiased) scatters, ``delta = 1e-4`` and
    ``eps = 1e-8`` added to each eigenvalue before normalizing are those of
    stable-pretraining's LiDAR callback (``stable_pretraining/callbacks/lidar.py``,
    ``LiDAR._compute_lidar``), which follows the paper. reptrix
    (``reptrix/lidar.py``, ``get_lidar``) differs in three ways, so the same
    name gives different numbers: its scatters are unnormalized (its
    :math:`S_b` is ours times ``n - 1``, its :math:`S_w` ours times ``q - 1``,
    without :math:`\delta`), its :math:`\delta = 10^{-6}` is then relative to
    a matrix ``q - 1`` times larger, and its entropy is taken over the PCA
    explained-variance ratios of the rows of :math:`\Sigma` (the eigenvalues
    of the centered :math:`\Sigma^\top\Sigma`, not of :math:`\Sigma`) plus
    ``1e-7``. The value lies in ``[1, d]``; since :math:`S_b` has rank at most
    ``n - 1``, it is about ``min(n - 1, d)`` at most, apart from ``eps``.
    Deliberate deviation: a zero :math:`\Sigma` (all samples' views have the
    same mean, complete collapse) gives 0, as :func:`matrixinfo.effective_rank`
    of a zero matrix, where the reference's ``eps`` would give ``d``.

    Computed in float64 by a Cholesky factor :math:`S_w = LL^\top`:
    :math:`L^{-1}S_bL^{-\top}` is similar to :math:`\Sigma` (same eigenvalues),
    without a matrix square root. Cost: one pass over the ``n q`` rows (a
    ``d x d`` GEMM), a Cholesky factorization, two triangular solves and one
    symmetric eigenvalue problem of size ``d``.

    Args:
        embeddings: ``(n, q, d)`` embeddings, ``n >= 2`` samples of ``q >= 2``
            views each, torch tensor or NumPy array.
        delta: ``> 0``, added to the diagonal of the within-sample scatter.
        eps: ``>= 0``, added to each eigenvalue of :math:`\Sigma`.

    Returns:
        A Python ``float``.

    Raises:
        MatrixInfoValueError: ``embeddings`` not ``(n, q, d)`` with ``n, q >= 2``;
            NaN or inf; ``delta <= 0`` or ``eps < 0``.
        MatrixInfoTypeError: not a tensor/array, or not floating.

    References:
        V. Thilak, C. Huang, O. Saremi, L. Dinh, H. Goh, P. Nakkiran, J. M.
        Susskind and E. Littwin, "LiDAR: sensing linear probing performance in
        joint embedding SSL architectures", ICLR 2024, arXiv:2312.04000.

    Examples:
        >>> import torch
        >>> from matrixinfo.metrics import lidar
        >>> means = 10 * torch.eye(3, dtype=torch.float64)  # 3 samples, a simplex
        >>> views = torch.cat([torch.eye(3), -torch.eye(3)]).double()  # 6 views each: isotropic spread
        >>> Z = means[:, None, :] + views[None, :, :]  # (n, q, d) = (3, 6, 3)
        >>> round(lidar(Z), 6)  # 3 sample means span n - 1 = 2 directions equally
        2.0
    """
    fn = "lidar"
    delta = check_number(fn, "delta", delta, minimum=0.0, strict=True)
    eps = check_number(fn, "eps", eps, minimum=0.0)
    x = check_tensor(fn, "embeddings", _as_tensor(fn, "embeddings", embeddings))
    if x.ndim != 3 or x.shape[0] < 2 or x.shape[1] < 2 or x.shape[2] < 1:
        raise MatrixInfoValueError(
            f"{fn}: expected embeddings to have shape (n, q, d) with n >= 2 samples, q >= 2 views and d >= 1, "
            f"got {shape_str(x.shape)}."
        )
    _check_finite(fn, "embeddings", x)
    n, q, d = x.shape
    with torch.no_grad(), _spectral.precision(x) as policy:
        (x,) = policy.cast(x)
        means = x.mean(1)  # (n, d), in the input's precision like the scatter's GEMM
        # Within-sample scatter: one (n q, d) GEMM on rows centered by their sample's mean.
        centered = (x - means.unsqueeze(1)).reshape(n * q, d)
        sw = _gram(centered).to(torch.float64) / (n * (q - 1))
        # Between-sample scatter from the means, centered in float64.
        _, _, m2 = _moments(fn, "embeddings", means)
        sb = m2 / (n - 1)
        return _lidar_from_scatters(sb, sw, delta, eps)


def _lidar_from_scatters(sb: torch.Tensor, sw: torch.Tensor, delta: float, eps: float) -> float:
    """LiDAR from the float64 scatters ``Sb`` and ``Sw`` (without ``delta``), by a Cholesky factor of ``Sw``."""
    d = sw.shape[0]
    sw = _spectral.symmetrize(sw) + delta * torch.eye(d, dtype=torch.float64, device=sw.device)
    chol = torch.linalg.cholesky(sw)
    half = torch.linalg.solve_triangular(chol, sb, upper=False)  # L^-1 Sb
    sigma = torch.linalg.solve_triangular(chol, half.mT, upper=False)  # L^-1 Sb L^-T
    values = torch.linalg.eigvalsh(_spectral.symmetrize(sigma)).clamp_min(0)
    if not bool(values.sum() > 0):
        return 0.0
    p = (values + eps) / (values + eps).sum()
    p = p[p > 0]
    return float(torch.exp(-(p * torch.log(p)).sum()))


class LidarAccumulator:
    r"""Streaming :func:`lidar`: batches of ``(b, q, d)`` views, O(d²) memory whatever the number of samples.

    The within-sample scatter is a sum over samples, so it streams as a
    ``d x d`` float64 sum (one GEMM per batch on rows centered by their own
    sample's mean); the between-sample scatter is the covariance of the
    sample means, streamed by a :class:`CovarianceAccumulator`. Every view
    of a sample must arrive in the same batch (a sample's mean needs all its
    views), and ``q`` is fixed by the first batch. :meth:`compute` gives the
    value :func:`lidar` gives on all samples at once, up to rounding.

    Args:
        dim: embedding dimension ``d``.
        device: where the statistics live (``None``: the first batch's device).

    Raises:
        MatrixInfoValueError: ``dim`` is not an integer ``>= 1``.

    Examples:
        >>> import math, torch
        >>> from matrixinfo.metrics import LidarAccumulator, lidar
        >>> Z = torch.randn(40, 3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> acc = LidarAccumulator(5)
        >>> for batch in Z.split(7):
        ...     _ = acc.update(batch)
        >>> math.isclose(acc.compute(), lidar(Z), rel_tol=1e-10)
        True
    """

    def __init__(self, dim: int, *, device: torch.device | str | None = None) -> None:
        from ._streaming import CovarianceAccumulator  # _streaming imports this module

        self._dim = check_int("LidarAccumulator", "dim", dim, 1)
        self._means = CovarianceAccumulator(dim, device=device)
        self.reset()

    def reset(self) -> LidarAccumulator:
        """Forget all samples. Returns ``self``."""
        self._means.reset()
        self._within = None
        self._views = None
        return self

    def __repr__(self) -> str:
        return f"LidarAccumulator(dim={self._dim}, samples={self._means.count}, views={self._views})"

    def update(self, batch: ArrayLike) -> LidarAccumulator:
        """Add ``(b, q, d)`` embeddings: ``b`` samples with all their ``q >= 2`` views.

        Args:
            batch: ``(b, q, d)`` torch tensor or NumPy array, floating.

        Returns:
            ``self``, so calls can be chained.

        Raises:
            MatrixInfoValueError: wrong shape (or ``q`` differs from the first batch's); NaN or inf.
            MatrixInfoTypeError: not a tensor/array, or not floating.
        """
        fn = "LidarAccumulator.update"
        x = check_tensor(fn, "batch", _as_tensor(fn, "batch", batch))
        q = self._views if self._views is not None else (x.shape[1] if x.ndim == 3 else 2)
        if x.ndim != 3 or x.shape[1] != q or q < 2 or x.shape[2] != self._dim:
            want = f"(b, {q}, {self._dim})" if self._views is not None else f"(b, q, {self._dim}) with q >= 2"
            raise MatrixInfoValueError(f"{fn}: expected batch to have shape {want}, got {shape_str(x.shape)}.")
        if x.shape[0] == 0:
            return self
        _check_finite(fn, "batch", x)
        with torch.no_grad(), _spectral.precision(x) as policy:
            (x,) = policy.cast(x)
            means = x.mean(1)
            centered = (x - means.unsqueeze(1)).reshape(-1, self._dim)
            within = _gram(centered).to(torch.float64)
            self._means.update(means)
            within = within.to(self._means._device)
            self._within = within if self._within is None else self._within.add_(within)
        self._views = q
        return self

    def all_reduce(self, group=None) -> LidarAccumulator:
        """Replace this process's statistics by those of all processes.

        A collective, once (as :meth:`CovarianceAccumulator.all_reduce`). Every
        process must have seen at least one batch. Returns ``self``.
        """
        self._means.all_reduce(group)
        if _distributed.is_active():
            dist.all_reduce(self._within, op=dist.ReduceOp.SUM, group=group)
        return self

    def compute(self, *, delta: float = 1e-4, eps: float = 1e-8) -> float:
        r""":func:`lidar` of all samples seen.

        Args:
            delta: ridge :math:`\delta > 0` added to the within-class scatter, as in :func:`lidar`.
            eps: :math:`\epsilon > 0` added to each eigenvalue before normalizing, as in :func:`lidar`.

        Returns:
            LiDAR, a Python float.

        Raises:
            MatrixInfoValueError: fewer than 2 samples; bad ``delta``/``eps``.
        """
        fn = "LidarAccumulator.compute"
        delta = check_number(fn, "delta", delta, minimum=0.0, strict=True)
        eps = check_number(fn, "eps", eps, minimum=0.0)
        n = self._means.count
        if n < 2:
            raise MatrixInfoValueError(f"{fn}: expected at least 2 samples, got {n}; call update() first.")
        sb = self._means.covariance() * (n / (n - 1))
        return _lidar_from_scatters(sb, self._within / (n * (self._views - 1)), delta, eps)


# ----------------------------------------------------------------------------- alpha-ReQ


def _check_fit_range(fn: str, fit_range) -> tuple[int, int]:
    if not isinstance(fit_range, (tuple, list)) or len(fit_range) != 2:
        raise MatrixInfoValueError(
            f"{fn}: expected fit_range to be a pair (first, last) of 1-based eigenvalue indices, got {fit_range!r}."
        )
    first = check_int(fn, "fit_range[0]", fit_range[0], 1)
    last = check_int(fn, "fit_range[1]", fit_range[1], first + 1)
    return first, last


def _alpha_from_spectrum(fn: str, values: torch.Tensor, fit_range) -> float:
    """Weighted least-squares slope of ``log lambda_i`` on ``-log i`` over the fit range (float64)."""
    first, last = _check_fit_range(fn, fit_range)
    d = values.numel()
    if last > d:
        raise MatrixInfoValueError(
            f"{fn}: expected at least {last} eigenvalues for fit_range=({first}, {last}), got d = {d}; "
            f"pass a fit_range whose last index is at most {d} (and leave out the first and last few eigenvalues)."
        )
    lam = values[first - 1 : last].to(torch.float64)
    floor = float(_spectral.eigenvalue_floor(values.to(torch.float64)))  # see docs/numerics.rst
    if not bool((lam > floor).all()):
        positive = int((values > floor).sum())
        raise MatrixInfoValueError(
            f"{fn}: expected positive covariance eigenvalues at indices {first}..{last}, got {positive} positive "
            f"eigenvalues (a covariance of rank {positive}); a power law cannot be fitted to zeros."
        )
    i = torch.arange(first, last + 1, dtype=torch.float64, device=lam.device)
    x, y, w = -torch.log(i), torch.log(lam), 1.0 / i
    w = w / w.sum()
    xm, ym = (w * x).sum(), (w * y).sum()
    return float((w * (x - xm) * (y - ym)).sum() / (w * (x - xm) ** 2).sum())


def alpha_req(Z: ArrayLike, *, fit_range: tuple[int, int] = _ALPHA_FIT_RANGE) -> float:
    r"""alpha-ReQ (Agrawal et al., 2022): the power-law decay exponent of the covariance spectrum.

    With the covariance eigenvalues :math:`\lambda_1 \ge \lambda_2 \ge \dots`
    (as in :func:`covariance_effective_rank`), :math:`\lambda_i \approx c\, i^{-\alpha}`
    is fitted by weighted least squares over the indices ``first..last``:

    .. math:: (\alpha, \log c) = \arg\min \sum_{i=\text{first}}^{\text{last}} \frac1i
              \big(\log\lambda_i + \alpha\log i - \log c\big)^2 .

    Conventions, following reptrix (``reptrix/alpha.py``, ``get_alpha`` and
    ``get_powerlaw``, after Stringer et al. 2019): weights :math:`1/i`;
    default indices ``11..100`` (reptrix's ``np.arange(10, 100)`` of 0-based
    indices, leaving out the head of the spectrum); eigenvalues of the
    centered covariance (the scale, ``1/N`` or ``1/(N - 1)`` or reptrix's
    normalization to explained-variance ratios, only moves :math:`\log c`).
    Unlike reptrix, the caller's range is not modified.

    When ``d`` (the number of eigenvalues) is smaller than ``last``, the fit
    is undefined and :class:`MatrixInfoValueError` says so (reptrix raises
    an ``IndexError``): pass a smaller ``fit_range``, for example
    ``(2, d // 2)``. Likewise when the covariance has rank below ``last``
    (zero eigenvalues, for example ``N <= last``).

    Cost: one pass over ``Z`` (a ``d x d`` GEMM) and one symmetric eigenvalue
    problem of size ``d``. :meth:`CovarianceAccumulator.alpha_req` streams it.

    Args:
        Z: ``(N, d)`` embeddings, torch tensor or NumPy array.
        fit_range: ``(first, last)``, 1-based inclusive indices of the
            eigenvalues (descending) to fit, ``1 <= first < last <= d``.

    Returns:
        A Python ``float``; larger means a faster decaying spectrum (about 1
        for the best-performing representations in the paper).

    Raises:
        MatrixInfoValueError: bad shapes; NaN or inf; a bad ``fit_range``;
            ``d < last`` or fewer than ``last`` positive eigenvalues.
        MatrixInfoTypeError: not a tensor/array, or not floating.

    References:
        K. K. Agrawal, A. K. Mondal, A. Ghosh and B. A. Richards, "alpha-ReQ:
        assessing representation quality in self-supervised learning by
        measuring eigenspectrum decay", NeurIPS 2022.

    Examples:
        >>> import torch
        >>> from matrixinfo.metrics import alpha_req
        >>> d = 8
        >>> Z = torch.diag(torch.arange(1, d + 1, dtype=torch.float64) ** -0.75)  # variances ~ i^-1.5
        >>> Z = torch.cat([Z, -Z]) * 2 ** 0.5  # mean 0, covariance diag(i^-1.5)
        >>> round(alpha_req(Z, fit_range=(2, 7)), 12)
        1.5
    """
    fn = "alpha_req"
    _check_fit_range(fn, fit_range)
    x = _as_samples(fn, "Z", Z)
    count, _, m2 = _moments(fn, "Z", x)
    values = torch.linalg.eigvalsh(_spectral.symmetrize(m2 / count)).flip(0).clamp_min(0)
    return _alpha_from_spectrum(fn, values, fit_range)


# ----------------------------------------------------------------------------- NESum and stable rank


def _row_blocks(x: torch.Tensor):
    """Blocks of rows of ``x``: ``_SKINNY_BYTES`` per CPU thread (at most ``_DEVICE_BYTES``), or ``_DEVICE_BYTES``.

    On the CPU each thread's share of a block stays in cache between the two
    matrix-vector products of a pass, and more threads get fewer, larger
    blocks (each product is a parallel region: fewer of them wait less on a
    thread that the OS has descheduled); on other devices large blocks mean
    fewer kernel launches.
    """
    if x.device.type == "cpu":
        size = min(_SKINNY_BYTES * torch.get_num_threads(), _DEVICE_BYTES)
    else:
        size = _DEVICE_BYTES
    rows = max(64, size // (x.shape[1] * x.element_size()))
    return torch.split(x, rows)


def _next_direction(basis: torch.Tensor, w: torch.Tensor) -> torch.Tensor | None:
    """``w`` orthonormalized against the orthonormal columns of ``basis``; ``None`` if nothing is left.

    Gram-Schmidt passes, normalizing after each, at least two ("twice is
    enough") and more while a pass shrinks the vector below half its norm:
    when ``w`` lies in the span of ``basis`` up to rounding (an invariant
    subspace), what is left is rounding noise, mostly in the span again, and
    only repeated normalized passes make it orthogonal to working precision.
    """
    for k in range(5):
        norm = torch.linalg.vector_norm(w)
        if not norm > 0:
            return None
        w = w / norm
        w = w - basis @ (basis.mT @ w)
        if k >= 1 and torch.linalg.vector_norm(w) > 0.5:
            return w / torch.linalg.vector_norm(w)
    return None


class _CenteredGram:
    r"""Products :math:`Y^\top Y v` with ``Y = Z - 1 mu^T`` (or ``Z``), one pass over ``Z`` each.

    Never forms :math:`Y^\top Y` or a centered copy of ``Z``: per block of
    rows, :math:`X_b^\top (X_b v)` in ``Z``'s precision on the block shifted
    by ``s`` (the float64 mean of up to ``_SHIFT_ROWS`` rows spread over
    ``Z``, rounded to ``Z``'s dtype), accumulated in float64 and corrected in
    float64 for the rest of the mean, :math:`\delta = \mu - s`:

    .. math:: Y^\top Y v = X^\top X v - N\,\delta\,(\delta^\top v),\qquad
              \lVert Y\rVert_F^2 = \lVert X\rVert_F^2 - N\lVert\delta\rVert^2,
              \qquad X = Z - \mathbf 1 s^\top.

    The shift keeps the low-precision products free of cancellation (the
    correction is small against them, and ``Z - s`` is exact in floating
    point for entries within a factor 2 of ``s``); the column sums of ``X``
    (hence :math:`\delta`) and :math:`\lVert X\rVert_F^2` ride along the
    first product, so no pass is spent on the mean. ``delta`` and
    ``sum_squares`` (:math:`\lVert Y\rVert_F^2`) are ``None`` until then;
    non-finite entries of ``Z`` make them non-finite (the caller checks).
    """

    def __init__(self, x: torch.Tensor, center: bool):
        self.x, self.center = x, center
        n, d = x.shape
        self.blocks = _row_blocks(x)
        like = self.blocks[0]
        self.shift = x[:: max(1, n // _SHIFT_ROWS)].mean(0, dtype=torch.float64).to(x.dtype) if center else None
        self.buffer = torch.empty_like(like) if center else None  # reused for every block: no page faults
        self.ones = torch.ones(like.shape[0], dtype=x.dtype, device=x.device)  # column sums as a matrix-vector product
        self.delta: torch.Tensor | None = None
        self.sum_squares: float | None = None

    def times(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`Y^\top Y v` in float64 for a float64 vector ``v`` of size ``d``."""
        x, first = self.x, self.delta is None
        n, d = x.shape
        f64 = dict(dtype=torch.float64, device=x.device)
        out, column_sum, sum_squares = torch.zeros(d, **f64), torch.zeros(d, **f64), torch.zeros((), **f64)
        v_x = v.to(x.dtype)
        for block in self.blocks:
            rows = block.shape[0]
            xb = torch.sub(block, self.shift, out=self.buffer[:rows]) if self.center else block
            out += (xb.mT @ (xb @ v_x)).to(torch.float64)
            if first:
                if self.center:
                    column_sum += xb.mT @ self.ones[:rows]
                norms = torch.linalg.vector_norm(xb, dim=1)  # accurate per row, cheaper than squaring the block
                sum_squares += torch.dot(norms, norms)
        if first:
            self.delta = column_sum / n  # the mean of X: the part of the mean that the shift missed
            self.sum_squares = float(sum_squares - n * (self.delta @ self.delta))
        if self.center:
            out -= (n * (self.delta @ v)) * self.delta
        return out


def _trace_and_top(fn: str, Z, center: bool, steps: int) -> tuple[float, float]:
    r"""``tr C`` and ``lambda_max(C)`` for :math:`C = \frac1N Y^\top Y`, ``Y = Z - 1 mu^T`` (or ``Z``).

    The products with :math:`Y^\top Y` come from :class:`_CenteredGram`. The
    largest eigenvalue comes from Lanczos with full reorthogonalization: the
    seeded start vector and its ``min(steps, d)`` products, projected
    (Rayleigh-Ritz on the Krylov space, with the images kept: no extra
    pass). The largest Ritz value is a lower bound of the top eigenvalue,
    exact when the Krylov space is all of ``R^d`` or invariant.
    """
    steps = check_int(fn, "steps", steps, 1)
    x = _as_samples(fn, "Z", Z)
    n, d = x.shape
    with torch.no_grad(), _spectral.precision(x) as policy:
        (x,) = policy.cast(x)
        gram = _CenteredGram(x, center)
        gen = torch.Generator(device="cpu").manual_seed(_KRYLOV_SEED)
        start = torch.randn(d, generator=gen, dtype=torch.float64).to(x.device)
        basis, images = [start / torch.linalg.vector_norm(start)], []
        passes = min(steps, d)
        for k in range(passes):
            images.append(gram.times(basis[-1]))
            if k == 0:
                if not (math.isfinite(gram.sum_squares) and bool(torch.isfinite(gram.delta).all())):
                    _check_finite(fn, "Z", x)
                    raise MatrixInfoValueError(f"{fn}: the sum of squares of Z overflowed in {x.dtype}; rescale Z.")
                if not gram.sum_squares > 0:
                    return 0.0, 0.0
            if k == passes - 1:
                break
            u = torch.stack(basis, dim=1)
            q = _next_direction(u, images[-1])
            if q is None:  # the image lies in the span (to the last bit): go on from a random direction
                q = _next_direction(u, torch.randn(d, generator=gen, dtype=torch.float64).to(x.device))
                if q is None:  # pragma: no cover - a random vector in the span of fewer than d vectors
                    break
            basis.append(q)
        projected = torch.stack(basis, dim=1).mT @ torch.stack(images, dim=1) / n
        return gram.sum_squares / n, float(torch.linalg.eigvalsh(_spectral.symmetrize(projected))[-1])


def nesum(Z: ArrayLike, *, steps: int = _KRYLOV_STEPS) -> float:
    r"""NESum (He & Ozay, 2022): the sum of the covariance eigenvalues, each normalized by the largest.

    .. math:: \operatorname{NESum}(Z) = \sum_{i=1}^{d} \frac{\lambda_i(C)}{\lambda_1(C)}
              = \frac{\operatorname{tr} C}{\lambda_{\max}(C)},

    with ``C`` the covariance of :func:`covariance_effective_rank`. It is
    the same number as :func:`stable_rank` of the centered embeddings; both
    names are kept because both are in use. It lies in ``[1, min(N - 1, d)]``
    and is ``r`` for ``r`` equal nonzero eigenvalues; constant embeddings give 0.

    Cheap enough for every training step: no ``d x d`` matrix is formed or
    decomposed, and no centered copy of ``Z`` is made.
    :math:`\lambda_{\max}` comes from Lanczos (one seeded random start
    vector, full reorthogonalization) with ``steps`` products with ``C``,
    each one pass over ``Z`` (two matrix-vector products per block of rows);
    the mean and :math:`\operatorname{tr}C` (a sum of squares) ride along
    the first pass, on rows shifted by the mean of a strided sample of rows,
    corrected exactly in float64 afterwards (no cancellation, whatever the
    offset). The start is seeded, so the value is deterministic up to rounding.

    Accuracy: the Krylov estimate of :math:`\lambda_{\max}` is a lower bound,
    so NESum can only come out too large (up to rounding). It is exact to
    rounding when ``steps >= d`` or when the top eigenvalue stands apart
    from the rest (about 1e-8 relative on power-law spectra
    :math:`\lambda_i \propto i^{-\alpha}`, ``alpha = 0.5`` to 2, float32,
    ``d = 512``, with the default 12 steps). The hard case is a spectrum
    without a gap at the top. On isotropic Gaussian ``N = 10^5, d = 2048``
    data (a Marchenko-Pastur spectrum) the relative error is 5.6e-3 with the
    default ``steps=12`` and the seeded start; over 100 random starts
    (Lanczos in float64 on that covariance's exact spectrum), median
    (worst): 1.2e-2 (1.9e-2) with 8 steps, 4.9e-3 (1.0e-2) with 12, 2.4e-3
    (7.3e-3) with 16, 8.8e-4 (2.8e-3) with 24, 3.1e-4 (2.0e-3) with 32; at
    ``N = 20000`` about twice that (1.0e-2 with 12). The tests check 3e-2
    with 12 and 1e-3 with 32 at ``d = 300, 400``. Each step reads ``Z`` once
    (memory-bound, ``N d`` numbers against the ``N d^2`` multiply-adds of
    ``Z^T Z``, so the ratio shrinks as ``d`` grows): about 0.01 of one
    ``Z^T Z`` at ``d = 2048`` on one CPU thread, the default 0.11 to 0.19
    depending on the load from other processes (``benchmarks/README.md``).
    Pass more ``steps`` when the spectrum may be flat and the
    digits matter, or use :meth:`CovarianceAccumulator.nesum`, which is
    exact from a streamed covariance.

    Args:
        Z: ``(N, d)`` embeddings, torch tensor or NumPy array.
        steps: ``>= 1``, Lanczos steps (passes over ``Z``) for :math:`\lambda_{\max}`;
            at most ``d`` are taken.

    Returns:
        A Python ``float``.

    Raises:
        MatrixInfoValueError: ``Z`` is not ``(N, d)``; NaN or inf in ``Z``; ``steps < 1``.
        MatrixInfoTypeError: not a tensor/array, or not floating.

    References:
        B. He and M. Ozay, "Exploring the gap between collapsed and whitened
        features in self-supervised learning", ICML 2022.

    Examples:
        >>> import torch
        >>> from matrixinfo.metrics import nesum
        >>> Z = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
        >>> round(nesum(Z), 12)  # covariance diag(2, 1/2): 1 + 1/4
        1.25
    """
    trace, top = _trace_and_top("nesum", Z, True, steps)
    return trace / top if top > 0 else 0.0


def stable_rank(Z: ArrayLike, *, center: bool = True, steps: int = _KRYLOV_STEPS) -> float:
    r"""Stable (numerical) rank of the embedding matrix, centered as the covariance is.

    .. math:: \operatorname{srank}(Z) = \frac{\lVert Y\rVert_F^2}{\lVert Y\rVert_2^2}
              = \frac{\sum_i \sigma_i^2(Y)}{\sigma_1^2(Y)},\qquad Y = Z - \mathbf 1\mu^\top

    (``center=False``: :math:`Y = Z`). Centered, it equals :func:`nesum`.
    It lies in ``[1, rank Y]``, is ``r`` for ``r`` equal nonzero singular
    values, and unlike the effective rank it is dominated by the top
    direction. A zero ``Y`` gives 0. Cost and accuracy as in :func:`nesum`
    (no eigendecomposition of a ``d x d`` matrix; the estimate can only be
    too large).

    Args:
        Z: ``(N, d)`` embeddings, torch tensor or NumPy array.
        center: subtract the mean of the rows first.
        steps: ``>= 1``, Lanczos steps (passes over ``Z``) for :math:`\sigma_1^2`; see :func:`nesum`.

    Returns:
        A Python ``float``.

    Raises:
        MatrixInfoValueError: ``Z`` is not ``(N, d)``; NaN or inf in ``Z``.
        MatrixInfoTypeError: not a tensor/array, or not floating.

    References:
        M. Rudelson and R. Vershynin, "Sampling from large matrices: an
        approach through geometric functional analysis", J. ACM 54(4), 2007.

    Examples:
        >>> import torch
        >>> from matrixinfo.metrics import stable_rank
        >>> Z = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
        >>> round(stable_rank(Z, center=False), 12)  # (9 + 1) / 9
        1.111111111111
    """
    trace, top = _trace_and_top("stable_rank", Z, center, steps)
    return trace / top if top > 0 else 0.0
