"""One-shot effective ranks and matrix entropy of embeddings (with and without labels)."""

from __future__ import annotations

import torch

from .. import _spectral
from .._checks import (
    MatrixInfoValueError,
    check_choice,
    check_flag,
    warn,
)
from ..core import effective_rank as _effective_rank
from ._common import (
    _RANKME_EPS,
    _WEIGHTINGS,
    ArrayLike,
    _as_labels,
    _as_samples,
    _check_finite,
    _moments,
    _second_moment,
)
from ._streaming import _accumulate

# ----------------------------------------------------------------------------- one-shot metrics


def covariance_effective_rank(Z: ArrayLike, *, center: bool = True) -> float:
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


def embedding_matrix_entropy(Z: ArrayLike, *, center: bool = True) -> float:
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


def rankme(Z: ArrayLike) -> float:
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
    with torch.no_grad(), _spectral.precision(x) as policy:
        (x,) = policy.cast(x)
        s = torch.linalg.svdvals(x).to(torch.float64)
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
    nonzero eigenvalues, hence the same effective rank (paper Thm. E.5).
    """
    if weights is not None:
        y = y * weights.sqrt().unsqueeze(-1)
    gram = y @ y.mT if y.shape[0] < y.shape[1] else y.mT @ y
    return float(_effective_rank(_spectral.symmetrize(gram)))


def intra_class_effective_rank(Z: ArrayLike, labels: ArrayLike) -> float:
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


def inter_class_effective_rank(Z: ArrayLike, labels: ArrayLike, *, weighting: str = "classes") -> float:
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
