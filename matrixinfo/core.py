r"""The matrix-information core.

Matrix logarithm, matrix entropy, matrix KL divergence, matrix cross-entropy,
effective rank and a Sylvester log-determinant.

Conventions shared by every function here:

* Matrices are batched over leading dimensions: an argument documented as
  ``(*, n, n)`` may have any number of batch dimensions, and results have the
  batch shape ``(*)``.
* float32 and float64 are computed in their own precision; float16 and
  bfloat16 inputs are computed in float32 with autocast disabled and the result
  is returned in the input dtype.
* Every function is differentiable. Spectral functions of one symmetric matrix
  use eigenvalue-only gradients (trace functions) or a Daleckii-Krein backward
  (the matrix logarithm), both finite at exactly repeated eigenvalues, where
  plain autograd through :func:`torch.linalg.eigh` returns NaN.
* Eigenvalues of a PSD input are raised to the package's eigenvalue floor
  wherever a logarithm of them is taken (defined on the numerics page,
  :ref:`numerics-floor`), and treated as zero in ``0 log 0 = 0`` terms.
"""

from __future__ import annotations

import torch

from . import _lanczos, _spectral, _trace
from ._checks import (
    MatrixInfoValueError,
    check_choice,
    check_flag,
    check_int,
    check_matrix,
    check_number,
    check_same_device,
    check_same_matrix_shape,
    check_square,
    shape_str,
)

__all__ = [
    "effective_rank",
    "matrix_cross_entropy",
    "matrix_entropy",
    "matrix_kl_divergence",
    "matrix_log",
    "sylvester_logdet",
    "von_neumann_entropy",
]

_LOG_METHODS = ("eigh", "taylor")


def _check_log_args(fn: str, method, order) -> None:
    check_choice(fn, "method", method, _LOG_METHODS)
    check_int(fn, "order", order, 1)


def matrix_log(A: torch.Tensor, *, method: str = "eigh", order: int = 4, check_radius: bool = True) -> torch.Tensor:
    r"""Matrix logarithm :math:`\log A`.

    Two methods:

    ``"eigh"`` (default)
        For symmetric positive semi-definite ``A`` (only the symmetric part
        :math:`(A + A^\top)/2` is read). With :math:`A = U \operatorname{diag}(\lambda) U^\top`,

        .. math:: \log A = U \operatorname{diag}(\log \max(\lambda_i, \lambda_{\mathrm{floor}})) U^\top,

        with :math:`\lambda_{\mathrm{floor}}` the eigenvalue floor of the
        numerics page (:ref:`numerics-floor`; relative to the largest
        eigenvalue). The floor keeps the log of a singular or rounding-noise
        eigenvalue finite; eigenvalues far below zero (more than
        ``sqrt(eps) * lambda_max``) warn that the input is not PSD. The
        backward is the Daleckii-Krein formula with divided differences of
        the logarithm, finite at repeated eigenvalues. Second derivatives
        (``create_graph=True``) go through the autograd of ``eigh``: correct
        for distinct eigenvalues, NaN at exactly repeated ones.

    ``"taylor"``
        The Mercator series around the identity used by the paper and by the
        authors' code (yifanzhang-pro/Matrix-SSL, ``main_pretrain.py``):

        .. math:: \log A \approx \sum_{k=1}^{\mathrm{order}} \frac{(-1)^{k+1}}{k} (A - I)^k .

        Works on non-symmetric ``A``. It converges to the principal logarithm
        when the spectral radius :math:`\rho(A - I) < 1` (every eigenvalue of
        ``A`` in the open disc of radius 1 around 1) and diverges when
        :math:`\rho(A - I) > 1` (on the boundary it depends on the point); the
        truncation error then falls like :math:`\rho^{\mathrm{order}+1} / (\mathrm{order}+1)`
        for normal ``A`` (symmetric included) only: on non-normal ``A`` it can
        be far larger (91% at order 4 on SciPy's upper-triangular ``logm`` test
        matrix with :math:`\rho(A - I) \approx 0.7`; see the numerics page).
        On the boundary it converges slowly or not at all, outside it diverges.
        With ``check_radius=True`` (default) a free bound
        :math:`\sqrt{\|A - I\|_1 \|A - I\|_\infty} \ge \rho(A - I)` is read
        first; if it does not prove convergence, :math:`\rho(A - I)` is estimated
        by block power iteration (4 probe vectors, 64 steps; within a few
        percent of the true radius) and a :class:`RuntimeWarning` is raised when
        the estimate is ``>= 1``. This reads one or two scalars on the host.

    Args:
        A: ``(*, n, n)`` matrices.
        method: ``"eigh"`` or ``"taylor"``.
        order: number of terms of the Taylor series (``method="taylor"`` only).
        check_radius: warn when the Taylor series is used outside its radius.
            ``False`` also skips the PSD warning of ``"eigh"``: then no value
            is read on the host (no GPU synchronization).

    Returns:
        ``(*, n, n)`` tensor, in the dtype of ``A``.

    Raises:
        MatrixInfoValueError: ``A`` is not ``(*, n, n)``; unknown ``method``; ``order < 1``.
        MatrixInfoTypeError: ``A`` is not a real floating tensor.

    Examples:
        >>> import torch
        >>> from matrixinfo import matrix_log
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
        >>> torch.linalg.eigvalsh(matrix_log(A))  # log 1 and log 3
        tensor([0.0000, 1.0986], dtype=torch.float64)
        >>> near = torch.eye(2, dtype=torch.float64) + 0.01 * A
        >>> bool(torch.allclose(matrix_log(near, method="taylor", order=8), matrix_log(near), atol=1e-15))
        True
    """
    fn = "matrix_log"
    check_square(fn, "A", A)
    _check_log_args(fn, method, order)
    check_flag(fn, "check_radius", check_radius)
    return _matrix_log(fn, A, method, order, check_radius)


@_spectral.spectral
def _matrix_log(fn, A, method, order, check_radius):
    return _trace.logm(fn, A, method, order, check_radius)


def matrix_entropy(
    A: torch.Tensor,
    *,
    method: str = "eigh",
    num_probes: int = _lanczos.DEFAULT_PROBES,
    num_steps: int = _lanczos.DEFAULT_STEPS,
    generator: torch.Generator | None = None,
    return_error: bool = False,
):
    r"""Matrix entropy of a PSD matrix (paper Def. 3.1).

    .. math:: \mathrm{ME}(A) = -\operatorname{tr}(A \log A) + \operatorname{tr}(A)
              = -\sum_i \lambda_i \log \lambda_i + \sum_i \lambda_i ,

    with :math:`0 \log 0 = 0`. It generalizes the von Neumann entropy to PSD
    matrices of any trace: for :math:`\operatorname{tr} A = 1`,
    :math:`\mathrm{ME}(A) = \mathrm{VNE}(A) + 1` (paper Prop. 3.6).

    Eigenvalues at or below zero (rounding noise of a rank-deficient input)
    contribute nothing to the :math:`\lambda \log \lambda` sum; the trace term
    is the exact trace of ``A``. The gradient is
    :math:`-U \operatorname{diag}(\log \lambda_i) U^\top` on the positive
    eigenvalues and ``I`` on the others (eigenvalues only: finite at repeated
    eigenvalues; on the null space of a rank-deficient input the true
    derivative is :math:`+\infty`, and this finite choice is used instead).

    ``method="eigh"`` (default) is exact. ``method="lanczos"`` (options
    shared with :func:`von_neumann_entropy`, :func:`matrix_cross_entropy` and
    :func:`matrix_kl_divergence`) estimates the traces by stochastic Lanczos
    quadrature from mat-vecs only, with no eigendecomposition:
    ``num_probes`` Rademacher probes after Hutch++ deflation of a
    ``num_probes``-dimensional sketch of the top eigenspace, ``num_steps``
    Lanczos steps each with full reorthogonalization, and Gauss quadrature of
    the spectral function; about ``2 * num_steps`` mat-mat products of ``A``
    with ``2 * num_probes`` columns instead of an ``O(n^3)`` ``eigh``. Draws
    come from ``generator`` (the global RNG when ``None``): a seeded generator
    reproduces the value. The gradient is autograd through the quadrature, an
    unbiased estimate of the exact gradient up to the quadrature error. With
    ``return_error=True`` the result is a pair ``(value, error)``: ``error``
    (same shape, no gradient) is the standard error over the probes plus an
    estimate of the quadrature error, a scale for the deviation from the exact
    value rather than a bound. The statistical error falls like
    ``1 / sqrt(num_probes)``; on a ``4096 x 4096`` float32 matrix with
    eigenvalues ``1/i`` the defaults are within about 0.5% (see
    ``benchmarks/README.md``).

    Args:
        A: ``(*, n, n)`` symmetric PSD matrices (the symmetric part is read).
        method: ``"eigh"`` or ``"lanczos"``.
        num_probes: probes (and deflation rank) of ``method="lanczos"``, ``>= 2``.
        num_steps: Lanczos steps (quadrature nodes), ``>= 1``; capped at ``n``.
        generator: :class:`torch.Generator` for the probes, or ``None``.
        return_error: return ``(value, error)`` (``method="lanczos"`` only).

    Returns:
        ``(*)`` tensor, or a pair of them with ``return_error=True``.

    Raises:
        MatrixInfoValueError, MatrixInfoTypeError: bad shape, dtype or option.

    Examples:
        >>> import torch
        >>> from matrixinfo import matrix_entropy
        >>> d = 4
        >>> value = matrix_entropy(torch.eye(d, dtype=torch.float64) / d)  # log d + 1
        >>> bool(torch.isclose(value, torch.log(torch.tensor(4.0, dtype=torch.float64)) + 1))
        True
        >>> w = 1.0 / torch.arange(1.0, 201.0, dtype=torch.float64)  # eigenvalues 1/i
        >>> g = torch.Generator().manual_seed(0)
        >>> Q = torch.linalg.qr(torch.randn(200, 200, dtype=torch.float64, generator=g))[0]
        >>> A = Q @ torch.diag(w) @ Q.T
        >>> est, err = matrix_entropy(A, method="lanczos", generator=g, return_error=True)
        >>> bool(abs(est - matrix_entropy(A)) < 0.05 * matrix_entropy(A)), bool(err > 0)
        (True, True)
    """
    fn = "matrix_entropy"
    check_square(fn, "A", A)
    check_choice(fn, "method", method, ("eigh", "lanczos"))
    _lanczos.check_options(fn, method, num_probes, num_steps, generator, return_error)
    if method == "lanczos":
        return _lanczos.matrix_entropy(
            fn, A, num_probes=num_probes, num_steps=num_steps, generator=generator, return_error=return_error
        )
    return _matrix_entropy(A)


@_spectral.spectral
def _matrix_entropy(A):
    return -_trace.xlogx(_trace.eigvalsh(A)).sum(-1) + _trace.trace(A)


def von_neumann_entropy(
    A: torch.Tensor,
    *,
    normalize: bool = True,
    method: str = "eigh",
    num_probes: int = _lanczos.DEFAULT_PROBES,
    num_steps: int = _lanczos.DEFAULT_STEPS,
    generator: torch.Generator | None = None,
    return_error: bool = False,
):
    r"""Von Neumann entropy :math:`-\operatorname{tr}(\hat A \log \hat A)`.

    The von Neumann entropy is defined for density matrices (PSD, unit trace).
    With ``normalize=True`` (default) the input is first divided by its trace,
    :math:`\hat A = A / \operatorname{tr} A`, so that the result is the Shannon
    entropy of the normalized spectrum and
    :math:`\operatorname{erank}(A) = \exp \mathrm{VNE}(A)` for every PSD ``A``
    (paper Prop. 3.6). With ``normalize=False`` it is
    :math:`-\sum_i \lambda_i \log \lambda_i` of ``A`` as given. ``0 log 0 = 0``.

    Args:
        A: ``(*, n, n)`` symmetric PSD matrices.
        normalize: divide by the trace first.
        method: ``"eigh"`` (exact, default) or ``"lanczos"`` (stochastic
            Lanczos quadrature, as in :func:`matrix_entropy`).
        num_probes: probes (and deflation rank) of ``method="lanczos"``, ``>= 2``.
        num_steps: Lanczos steps (quadrature nodes), ``>= 1``; capped at ``n``.
        generator: :class:`torch.Generator` for the probes, or ``None`` (the global RNG).
        return_error: return ``(value, error)`` (``method="lanczos"`` only).

    Returns:
        ``(*)`` tensor (a pair with ``return_error=True``). A zero matrix has entropy 0.

    Examples:
        >>> import torch
        >>> from matrixinfo import von_neumann_entropy
        >>> A = torch.diag(torch.tensor([3.0, 3.0, 0.0], dtype=torch.float64))
        >>> von_neumann_entropy(A)  # log 2: two equal eigenvalues after normalization
        tensor(0.6931, dtype=torch.float64)
    """
    fn = "von_neumann_entropy"
    check_square(fn, "A", A)
    check_flag("von_neumann_entropy", "normalize", normalize)
    check_choice(fn, "method", method, ("eigh", "lanczos"))
    _lanczos.check_options(fn, method, num_probes, num_steps, generator, return_error)
    if method == "lanczos":
        return _lanczos.matrix_entropy(
            fn,
            A,
            normalize=bool(normalize),
            num_probes=num_probes,
            num_steps=num_steps,
            generator=generator,
            return_error=return_error,
        )
    return _von_neumann_entropy(A, normalize)


@_spectral.spectral
def _von_neumann_entropy(A, normalize):
    w = _trace.eigvalsh(A)
    if normalize:
        total = w.clamp_min(0).sum(-1, keepdim=True)
        w = w / torch.where(total > 0, total, torch.ones_like(total))
    return 0.0 - _trace.xlogx(w).sum(-1)  # 0.0 - x: no -0.0 for the zero matrix


def _check_pair(fn: str, P, Q, method, order) -> None:
    check_square(fn, "P", P)
    check_square(fn, "Q", Q)
    check_same_matrix_shape(fn, ("P", "Q"), P, Q)
    _check_log_args(fn, method, order)


def _checked_divergence(fn, P, Q, kl, method, order, check_radius, num_probes, num_steps, generator, return_error):
    """The argument checks shared by the two divergences.

    Returns the Lanczos estimate for ``method="lanczos"``, else ``None`` (the caller runs its exact path).
    """
    _check_pair(fn, P, Q, "eigh" if method == "lanczos" else method, order)
    check_flag(fn, "check_radius", check_radius)
    _lanczos.check_options(fn, method, num_probes, num_steps, generator, return_error)
    if method != "lanczos":
        return None
    return _lanczos.matrix_divergence(
        fn, P, Q, kl=kl, num_probes=num_probes, num_steps=num_steps, generator=generator, return_error=return_error
    )


def matrix_cross_entropy(
    P: torch.Tensor,
    Q: torch.Tensor,
    *,
    method: str = "eigh",
    order: int = 4,
    check_radius: bool = True,
    num_probes: int = _lanczos.DEFAULT_PROBES,
    num_steps: int = _lanczos.DEFAULT_STEPS,
    generator: torch.Generator | None = None,
    return_error: bool = False,
):
    r"""Matrix cross-entropy (paper Def. 3.3).

    .. math:: \mathrm{MCE}(P, Q) = \operatorname{tr}(-P \log Q + Q)
              = \mathrm{MKL}(P \,\|\, Q) + \mathrm{ME}(P).

    ``P`` is the reference (target), ``Q`` the model. For fixed ``P`` it is
    minimized over :math:`Q \succ 0` at :math:`Q = P` (Prop. 4.2). ``P``
    enters linearly: a rank-deficient ``P`` is fine. The gradient with respect
    to ``Q`` is :math:`I - D\log(Q)^*[P]` (the adjoint Fréchet derivative of
    the logarithm applied to ``P``), which equals the paper's
    :math:`I - P Q^{-1}` only when ``P`` and ``Q`` commute.

    Args:
        P: ``(*, n, n)`` PSD reference.
        Q: ``(*, n, n)`` model; symmetric PSD for ``method="eigh"``, any
            matrix with :math:`\rho(Q - I) < 1` for ``method="taylor"``.
        method: how :math:`\log Q` is computed: ``"eigh"`` or ``"taylor"``
            (as in :func:`matrix_log`), or ``"lanczos"``: both traces by
            stochastic Lanczos quadrature (``P`` symmetric PSD, ``Q``
            symmetric PD).
        order: number of terms of the Taylor series (``method="taylor"`` only).
        check_radius: warn when the Taylor series is used outside its radius;
            ``False`` also skips the PSD warning of ``"eigh"`` (no host read).
        num_probes: probes (and deflation rank) of ``method="lanczos"``, ``>= 2``.
        num_steps: Lanczos steps (quadrature nodes), ``>= 1``; capped at ``n``.
        generator: :class:`torch.Generator` for the probes, or ``None`` (the global RNG).
        return_error: return ``(value, error)`` (``method="lanczos"`` only).

    Returns:
        ``(*)`` tensor (batch dims of ``P`` and ``Q`` broadcast).

    Examples:
        >>> import torch
        >>> from matrixinfo import matrix_cross_entropy
        >>> P = torch.eye(3, dtype=torch.float64) / 3
        >>> matrix_cross_entropy(P, P)  # log 3 + 1
        tensor(2.0986, dtype=torch.float64)
    """
    fn = "matrix_cross_entropy"
    estimate = _checked_divergence(
        fn, P, Q, False, method, order, check_radius, num_probes, num_steps, generator, return_error
    )
    if estimate is not None:
        return estimate
    return _matrix_cross_entropy(fn, P, Q, method, order, check_radius)


@_spectral.spectral
def _matrix_cross_entropy(fn, P, Q, method, order, check_radius):
    return -_trace.trace_of_log_product(fn, P, Q, method, order, check_radius) + _trace.trace(Q)


def matrix_kl_divergence(
    P: torch.Tensor,
    Q: torch.Tensor,
    *,
    method: str = "eigh",
    order: int = 4,
    check_radius: bool = True,
    num_probes: int = _lanczos.DEFAULT_PROBES,
    num_steps: int = _lanczos.DEFAULT_STEPS,
    generator: torch.Generator | None = None,
    return_error: bool = False,
):
    r"""Matrix KL divergence :math:`\mathrm{MKL}(P \,\|\, Q)` (paper Def. 3.2).

    .. math:: \mathrm{MKL}(P \,\|\, Q) = \operatorname{tr}(P \log P - P \log Q - P + Q),

    the first argument ``P`` is the reference. It is :math:`\ge 0` for PSD
    ``P`` and PD ``Q``, with equality exactly at ``Q = P`` (Klein's inequality;
    paper Prop. 4.1). For unit-trace ``P`` and ``Q`` it is the quantum relative
    entropy. ``0 log 0 = 0`` in :math:`\operatorname{tr}(P \log P)`. Where ``Q``
    is singular on the support of ``P`` the divergence is :math:`+\infty`;
    the eigenvalue floor of :func:`matrix_log` returns a large finite value.

    Args:
        P: ``(*, n, n)`` PSD reference.
        Q: ``(*, n, n)`` PD model (see :func:`matrix_cross_entropy` for the methods).
        method: how :math:`\log Q` is computed: ``"eigh"``, ``"taylor"`` or
            ``"lanczos"`` (as in :func:`matrix_cross_entropy`); with
            ``"lanczos"`` :math:`\operatorname{tr}(P \log P)` is estimated from
            the same probes.
        order: number of terms of the Taylor series (``method="taylor"`` only).
        check_radius: warn when the Taylor series is used outside its radius;
            ``False`` also skips the PSD warning of ``"eigh"`` (no host read).
        num_probes: probes (and deflation rank) of ``method="lanczos"``, ``>= 2``.
        num_steps: Lanczos steps (quadrature nodes), ``>= 1``; capped at ``n``.
        generator: :class:`torch.Generator` for the probes, or ``None`` (the global RNG).
        return_error: return ``(value, error)`` (``method="lanczos"`` only).

    Returns:
        ``(*)`` tensor.

    Examples:
        >>> import torch
        >>> from matrixinfo import matrix_kl_divergence
        >>> P = torch.diag(torch.tensor([0.5, 0.5], dtype=torch.float64))
        >>> Q = torch.diag(torch.tensor([0.25, 1.0], dtype=torch.float64))
        >>> matrix_kl_divergence(P, Q)  # 0.5 log 2 + 0.5 log 0.5 - 1 + 1.25
        tensor(0.2500, dtype=torch.float64)
        >>> matrix_kl_divergence(P, P)
        tensor(0., dtype=torch.float64)
    """
    fn = "matrix_kl_divergence"
    estimate = _checked_divergence(
        fn, P, Q, True, method, order, check_radius, num_probes, num_steps, generator, return_error
    )
    if estimate is not None:
        return estimate
    return _trace.matrix_kl_divergence(fn, P, Q, method, order, check_radius)


def effective_rank(A: torch.Tensor) -> torch.Tensor:
    r"""Effective rank of Roy & Vetterli (2007) (paper Def. 3.5).

    .. math:: \operatorname{erank}(A) = \exp\Big(-\sum_i p_i \log p_i\Big),
              \qquad p_i = \frac{\sigma_i}{\sum_k \sigma_k},

    on the singular values :math:`\sigma` of the ``(m, n)`` matrix given, with
    :math:`0 \log 0 = 0`; for a PSD matrix the singular values are its
    eigenvalues. It lies in ``[1, min(m, n)]`` and is invariant to scaling.

    Which matrix you pass decides the convention:
    ``effective_rank(Z)`` on raw embeddings uses :math:`\sigma(Z)` (RankMe,
    without its ``1e-7``), while ``effective_rank(Z.T @ Z / B)`` uses
    :math:`\sigma^2` (paper Prop. 3.6, VNE). :mod:`matrixinfo.metrics` names
    each convention.

    Args:
        A: ``(*, m, n)`` matrices.

    Returns:
        ``(*)`` tensor; 0 for an all-zero matrix (the definition excludes it).

    Examples:
        >>> import torch
        >>> from matrixinfo import effective_rank
        >>> effective_rank(torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)))
        tensor(3.0000, dtype=torch.float64)
    """
    check_matrix("effective_rank", "A", A)
    return _effective_rank(A)


@_spectral.spectral
def _effective_rank(A):
    s = torch.linalg.svdvals(A)
    total = s.sum(-1, keepdim=True)
    nonzero = total > 0
    p = s / torch.where(nonzero, total, torch.ones_like(total))
    return torch.where(nonzero.squeeze(-1), torch.exp(-_trace.xlogx(p).sum(-1)), torch.zeros_like(total.squeeze(-1)))


def sylvester_logdet(X: torch.Tensor, Y: torch.Tensor | None = None, *, scale: float = 1.0) -> torch.Tensor:
    r"""Log-determinant of :math:`I + c\, X Y^\top` on the smaller side.

    For ``X``, ``Y`` of shape ``(*, n, k)``, Sylvester's determinant identity

    .. math:: \det(I_n + c\, X Y^\top) = \det(I_k + c\, Y^\top X)

    lets the determinant be taken on a ``min(n, k)``-sized matrix, exactly.
    With ``Y=None`` (``Y = X``) and ``scale >= 0`` the matrix is symmetric
    positive definite and a Cholesky factorization is used; otherwise an LU
    ``slogdet``. Gradients are those of the Cholesky / LU log-determinant.

    This is the coding rate of TCR/MCR² (``X = Z``, rows are samples:
    :math:`\log\det(I_d + c Z^\top Z) = \log\det(I_B + c Z Z^\top)`) and of MEC
    (``X = Z_1``, ``Y = Z_2``).

    A non-symmetric matrix whose determinant is not positive has no real
    log-determinant (its principal log has a complex trace): NaN is returned
    with a :class:`RuntimeWarning`.

    Args:
        X: ``(*, n, k)``.
        Y: ``(*, n, k)`` or ``None`` for ``Y = X``.
        scale: the constant :math:`c`.

    Returns:
        ``(*)`` tensor.

    Examples:
        >>> import torch
        >>> from matrixinfo import sylvester_logdet
        >>> Z = torch.randn(8, 100, dtype=torch.float64)  # 8 samples, d = 100
        >>> big = torch.logdet(torch.eye(100, dtype=torch.float64) + 0.5 * Z.T @ Z)
        >>> bool(torch.isclose(sylvester_logdet(Z.T, scale=0.5), big))
        True
    """
    fn = "sylvester_logdet"
    check_matrix(fn, "X", X)
    scale = check_number(fn, "scale", scale)
    if Y is not None:
        check_matrix(fn, "Y", Y)
        same = X.shape[-2:] == Y.shape[-2:]
        if same:
            try:
                torch.broadcast_shapes(X.shape[:-2], Y.shape[:-2])
            except RuntimeError:
                same = False
        if not same:
            raise MatrixInfoValueError(
                f"{fn}: expected X and Y to have the same shape (*, n, k) with broadcastable "
                f"batch dimensions, got {shape_str(X.shape)} and {shape_str(Y.shape)}."
            )
        check_same_device(fn, ("X", "Y"), X, Y)
    return _trace.sylvester_logdet(X, Y, scale)
