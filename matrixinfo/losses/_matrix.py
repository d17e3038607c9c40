r"""nn.Module losses of matrix information theory.

Matrix-SSL (eqs. 20-22), the uniformity losses (eqs. 16-17), the coding-rate
family (TCR, EMP-TCR, EMP-SSL) and MEC.

Each class documents its constructor and its shapes; its formula is written once,
in its functional twin of :mod:`matrixinfo.functional`, and shown in the class
docstring from there.
"""

from __future__ import annotations

import torch

from .. import functional as Fm
from .._checks import check_choice, check_flag, check_int, check_number
from ._base import _Loss, views_of

__all__ = [
    "EMPSSLLoss",
    "EMPTCRLoss",
    "MECLoss",
    "MatrixKLAlignmentLoss",
    "MatrixKLUniformityLoss",
    "MatrixSSLLoss",
    "TCRLoss",
    "UniformityMCELoss",
    "UniformityMKLLoss",
]

# Every matrix loss has both methods, each tested; Matrix-SSL's two formulations differ in exact mode too.
_BOTH_METHODS = {"taylor": {"method": "taylor"}, "exact": {"method": "exact"}}
_WITH_PAPER = {**_BOTH_METHODS, "paper-exact": {"method": "exact", "formulation": "paper"}}


def _check_common(name: str, method, order, gather_distributed, check_radius, methods=("taylor", "exact")) -> None:
    check_choice(name, "method", method, methods)
    check_int(name, "order", order, 1)
    check_flag(name, "gather_distributed", gather_distributed)
    check_flag(name, "check_radius", check_radius)


class MatrixKLUniformityLoss(_Loss):
    r"""Matrix-KL uniformity loss of Matrix-SSL (paper eq. 20), per (online, target) view pair.

    <formula>

    Reproduces the uniformity term of the Matrix-SSL authors' code
    (yifanzhang-pro/Matrix-SSL, ``main_pretrain.py``) with the defaults.

    Args:
        lam: weight :math:`w \ge 0` of the identity target in the official
            formulation; ignored by ``formulation="paper"``. Default 1.
        mu: shift :math:`\mu > 0` added to the cross-covariance; with ``mu=1``
            the Taylor series is expanded around ``C = 0``. Default 1.
        order: Taylor order, an integer ``>= 1`` (``method="taylor"`` only). Default 4.
        method: ``"taylor"`` (default, the authors' truncated series) or
            ``"exact"`` (Sylvester log-determinant on the smaller side).
        formulation: ``"official"`` (default, the authors' code, divisor ``B``)
            or ``"paper"`` (eq. 20 with the shift on both sides, divisor ``B - 1``).
        gather_distributed: compute over the global batch of all processes. Default False.
        check_radius: warn (once per instance) when the Taylor series is
            outside its convergence radius; reads one value on the host. Default True.

    Shape:
        - ``online``, ``target``: ``(B, d)``, ``B >= 2`` (``B >= 3`` for ``"paper"``).
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import MatrixKLUniformityLoss
        >>> z = torch.randn(16, 4, dtype=torch.float64)
        >>> MatrixKLUniformityLoss()(z, z).shape
        torch.Size([])
    """

    functional = staticmethod(Fm.matrix_kl_uniformity_loss)
    variants = _BOTH_METHODS

    def __init__(
        self,
        *,
        lam: float = 1.0,
        mu: float = 1.0,
        order: int = 4,
        method: str = "taylor",
        formulation: str = "official",
        gather_distributed: bool = False,
        check_radius: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_common(name, method, order, gather_distributed, check_radius)
        check_number(name, "lam", lam, minimum=0.0)
        check_number(name, "mu", mu, minimum=0.0, strict=True)
        check_choice(name, "formulation", formulation, ("official", "paper"))
        self.lam, self.mu, self.order, self.method = lam, mu, order, method
        self.formulation, self.gather_distributed, self.check_radius = formulation, gather_distributed, check_radius

    def forward(
        self, online: torch.Tensor, target: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one view pair.

        Args:
            online: ``(B, d)`` online-branch embeddings (gradient flows here).
            target: ``(B, d)`` target-branch embeddings; not detached here
                (the authors compute them under ``no_grad``).
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(online, target, return_terms=return_terms, **self._options())


class MatrixKLAlignmentLoss(_Loss):
    r"""Matrix-KL alignment loss of Matrix-SSL (paper eq. 21), per (online, target) view pair.

    <formula>

    Reproduces the alignment term of the Matrix-SSL authors' code
    (yifanzhang-pro/Matrix-SSL, ``main_pretrain.py``) with the defaults.

    Args:
        mu: shift :math:`\mu > 0` added to both covariances. Default 1.
        order: Taylor order, an integer ``>= 1`` (``method="taylor"`` only). Default 4.
        method: ``"taylor"`` (default, the authors' truncated series) or
            ``"exact"`` (eigendecomposition).
        formulation: ``"official"`` (default, the authors' cross term only,
            divisor ``B``) or ``"paper"`` (the full matrix KL divergence, divisor ``B - 1``).
        gather_distributed: compute over the global batch of all processes. Default False.
        check_radius: warn (once per instance) when the Taylor series is
            outside its convergence radius; reads one value on the host. Default True.

    Shape:
        - ``online``, ``target``: ``(B, d)``, ``B >= 2`` (``B >= 3`` for ``"paper"``).
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import MatrixKLAlignmentLoss
        >>> z = torch.randn(16, 4, dtype=torch.float64)
        >>> bool(abs(MatrixKLAlignmentLoss(formulation="paper", method="exact")(z, z)) < 1e-12)
        True
    """

    functional = staticmethod(Fm.matrix_kl_alignment_loss)
    variants = _WITH_PAPER

    def __init__(
        self,
        *,
        mu: float = 1.0,
        order: int = 4,
        method: str = "taylor",
        formulation: str = "official",
        gather_distributed: bool = False,
        check_radius: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_common(name, method, order, gather_distributed, check_radius)
        check_number(name, "mu", mu, minimum=0.0, strict=True)
        check_choice(name, "formulation", formulation, ("official", "paper"))
        self.mu, self.order, self.method = mu, order, method
        self.formulation, self.gather_distributed, self.check_radius = formulation, gather_distributed, check_radius

    def forward(
        self, online: torch.Tensor, target: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one view pair.

        Args:
            online: ``(B, d)`` online-branch embeddings (gradient flows here).
            target: ``(B, d)`` target-branch embeddings; not detached here.
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(online, target, return_terms=return_terms, **self._options())


class MatrixSSLLoss(_Loss):
    r"""Matrix-SSL loss (paper eq. 22) for one (online, target) view pair.

    <formula>

    With no arguments it reproduces the Matrix-SSL authors' per-pair loss
    (yifanzhang-pro/Matrix-SSL, ``main_pretrain.py``). As a module::

        criterion = MatrixSSLLoss()
        loss = 0.5 * (criterion(z1, p2) + criterion(z2, p1))

    where ``z`` are online outputs (with predictor) and ``p`` EMA-teacher
    outputs computed under ``torch.no_grad()``.

    Args:
        gamma: weight :math:`\gamma \ge 0` of the alignment term. Default 1.
        lam: weight :math:`w \ge 0` of the identity target of the uniformity
            term (official formulation; ignored by ``"paper"``). Default 1.
        mu: shift :math:`\mu > 0` of both terms' covariances; ``mu=1`` keeps
            the order-4 series within ~1e-6 of the exact value, ``mu=0.5``
            about 1.5% off. Default 1.
        order: Taylor order, an integer ``>= 1`` (``method="taylor"`` only). Default 4.
        method: ``"taylor"`` (default, the authors' truncated series) or
            ``"exact"`` (log-determinant and eigendecomposition).
        formulation: ``"official"`` (default, the authors' code, divisor ``B``)
            or ``"paper"`` (eqs. 20-21 as matrix cross-entropy and KL, divisor ``B - 1``).
        gather_distributed: compute over the global batch of all processes. Default False.
        check_radius: warn (once per instance) when a Taylor series is outside
            its convergence radius; reads one value on the host. Default True.

    Shape:
        - ``online``, ``target``: ``(B, d)``, ``B >= 2`` (``B >= 3`` for ``"paper"``).
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import MatrixSSLLoss
        >>> z, p = torch.randn(2, 64, 8, dtype=torch.float64)
        >>> MatrixSSLLoss()(z, p).shape
        torch.Size([])
    """

    functional = staticmethod(Fm.matrix_ssl_loss)
    formula_terms = (Fm.matrix_kl_uniformity_loss, Fm.matrix_kl_alignment_loss)
    variants = _WITH_PAPER

    def __init__(
        self,
        *,
        gamma: float = 1.0,
        lam: float = 1.0,
        mu: float = 1.0,
        order: int = 4,
        method: str = "taylor",
        formulation: str = "official",
        gather_distributed: bool = False,
        check_radius: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_common(name, method, order, gather_distributed, check_radius)
        check_number(name, "gamma", gamma, minimum=0.0)
        check_number(name, "lam", lam, minimum=0.0)
        check_number(name, "mu", mu, minimum=0.0, strict=True)
        check_choice(name, "formulation", formulation, ("official", "paper"))
        self.gamma, self.lam, self.mu, self.order, self.method = gamma, lam, mu, order, method
        self.formulation, self.gather_distributed, self.check_radius = formulation, gather_distributed, check_radius

    def forward(
        self, online: torch.Tensor, target: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one view pair.

        Args:
            online: ``(B, d)`` online-branch embeddings (gradient flows here).
            target: ``(B, d)`` target-branch embeddings; not detached here
                (the authors compute them under ``no_grad``).
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(online, target, return_terms=return_terms, **self._options())


class UniformityMCELoss(_Loss):
    r"""Uniformity-MCE loss (paper eq. 16), averaged over one or more views.

    <formula>

    It reproduces the paper's definition (no authors' code is public); the
    value is checked against SciPy's matrix logarithm in the tests.

    Args:
        lam: shift :math:`\lambda > 0` added to both matrices; ``None``
            (default) means :math:`1/d`.
        method: ``"exact"`` (default; Cholesky log-determinant on the smaller
            side) or ``"taylor"``, which converges when :math:`\lambda > 0` and
            :math:`\lambda + \|Z\|_2^2 / B < 2` (``0 < lam < 1`` suffices for unit rows).
        order: Taylor order, an integer ``>= 1`` (``method="taylor"`` only). Default 4.
        gather_distributed: compute over the global batch of all processes. Default False.
        check_radius: warn (once per instance) when the Taylor series is
            outside its convergence radius; reads one value on the host. Default True.

    Shape:
        - ``*views``: one or more ``(B, d)`` tensors of the same shape, ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import UniformityMCELoss
        >>> z1, z2 = torch.randn(2, 16, 4, dtype=torch.float64)
        >>> UniformityMCELoss()(z1, z2).shape
        torch.Size([])
    """

    functional = staticmethod(Fm.uniformity_mce_loss)
    inputs = "views"
    variants = _BOTH_METHODS

    def __init__(
        self,
        *,
        lam: float | None = None,
        method: str = "exact",
        order: int = 4,
        gather_distributed: bool = False,
        check_radius: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_common(name, method, order, gather_distributed, check_radius)
        if lam is not None:
            check_number(name, "lam", lam, minimum=0.0, strict=True)
        self.lam, self.method, self.order = lam, method, order
        self.gather_distributed, self.check_radius = gather_distributed, check_radius

    def forward(
        self, *views: torch.Tensor, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss averaged over the views.

        Args:
            *views: one or more ``(B, d)`` embeddings (or a single list of them).
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(*views_of(views), return_terms=return_terms, **self._options())


class UniformityMKLLoss(_Loss):
    r"""Uniformity-MKL loss (paper eq. 17), averaged over one or more views.

    <formula>

    It reproduces the paper's definition (no authors' code is public); the
    value is checked against SciPy's matrix logarithm in the tests.

    Args:
        lam: shift :math:`\lambda > 0` added to both matrices; ``None``
            (default) means :math:`1/d`.
        method: ``"exact"`` (default; Cholesky log-determinant on the smaller
            side) or ``"taylor"``, which converges when :math:`\lambda > 0` and
            :math:`\lambda + \|Z\|_2^2 / B < 2` (``0 < lam < 1`` suffices for unit rows).
        order: Taylor order, an integer ``>= 1`` (``method="taylor"`` only). Default 4.
        gather_distributed: compute over the global batch of all processes. Default False.
        check_radius: warn (once per instance) when the Taylor series is
            outside its convergence radius; reads one value on the host. Default True.

    Shape:
        - ``*views``: one or more ``(B, d)`` tensors of the same shape, ``B >= 2``.
        - Output: ``()``, non-negative, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import UniformityMKLLoss
        >>> frame = torch.eye(4, dtype=torch.float64).repeat(2, 1)
        >>> bool(abs(UniformityMKLLoss()(frame)) < 1e-12)
        True
    """

    functional = staticmethod(Fm.uniformity_mkl_loss)
    inputs = "views"
    variants = _BOTH_METHODS

    def __init__(
        self,
        *,
        lam: float | None = None,
        method: str = "exact",
        order: int = 4,
        gather_distributed: bool = False,
        check_radius: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_common(name, method, order, gather_distributed, check_radius)
        if lam is not None:
            check_number(name, "lam", lam, minimum=0.0, strict=True)
        self.lam, self.method, self.order = lam, method, order
        self.gather_distributed, self.check_radius = gather_distributed, check_radius

    def forward(
        self, *views: torch.Tensor, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss averaged over the views.

        Args:
            *views: one or more ``(B, d)`` embeddings (or a single list of them).
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(*views_of(views), return_terms=return_terms, **self._options())


class TCRLoss(_Loss):
    r"""Total coding rate loss (paper eq. 6), averaged over one or more views.

    <formula>

    Reproduces the TCR term of EMP-SSL's code (tsb0601/EMP-SSL) with the
    defaults. Minimizing it maximizes the coding rate.

    Args:
        eps: :math:`\epsilon^2 > 0` (the squared distortion, not
            :math:`\epsilon`). Default 0.2, EMP-SSL's.
        method: ``"exact"`` (default; log-determinant on the smaller side) or
            ``"taylor"`` (truncated series of the log).
        order: Taylor order, an integer ``>= 1`` (``method="taylor"`` only). Default 4.
        gather_distributed: compute over the global batch of all processes. Default False.
        check_radius: warn (once per instance) when the Taylor series is
            outside its convergence radius; reads one value on the host. Default True.

    Shape:
        - ``*views``: one or more ``(B, d)`` tensors of the same shape, ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import TCRLoss
        >>> z = torch.randn(32, 8, dtype=torch.float64)
        >>> bool(TCRLoss()(z) < 0)
        True
    """

    functional = staticmethod(Fm.tcr_loss)
    inputs = "views"
    variants = {"exact": {"method": "exact"}, "taylor": {"method": "taylor"}}

    def __init__(
        self,
        *,
        eps: float = 0.2,
        method: str = "exact",
        order: int = 4,
        gather_distributed: bool = False,
        check_radius: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_common(name, method, order, gather_distributed, check_radius)
        check_number(name, "eps", eps, minimum=0.0, strict=True)
        self.eps, self.method, self.order = eps, method, order
        self.gather_distributed, self.check_radius = gather_distributed, check_radius

    def forward(
        self, *views: torch.Tensor, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss averaged over the views.

        Args:
            *views: one or more ``(B, d)`` embeddings (or a single list of them).
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(*views_of(views), return_terms=return_terms, **self._options())


class EMPTCRLoss(_Loss):
    r"""Coding rate of the concatenated views (paper eq. 9).

    <formula>

    Reproduces eq. 9 as EMP-SSL's code computes it (tsb0601/EMP-SSL): the
    scaling by ``n d`` and the division of each row by :math:`\sqrt n` cancel.

    Args:
        eps: :math:`\epsilon^2 > 0`. Default 0.2.
        mu: weight :math:`\mu \ge 0` of the log-determinant. Default 0.5.
        method: ``"exact"`` (default; log-determinant on the smaller side) or
            ``"taylor"`` (truncated series of the log).
        order: Taylor order, an integer ``>= 1`` (``method="taylor"`` only). Default 4.
        gather_distributed: compute over the global batch of all processes. Default False.
        check_radius: warn (once per instance) when the Taylor series is
            outside its convergence radius; reads one value on the host. Default True.

    Shape:
        - ``*views``: ``n >= 1`` tensors ``(B, d)`` of the same shape, ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import EMPTCRLoss
        >>> views = torch.randn(3, 16, 4, dtype=torch.float64)
        >>> EMPTCRLoss()(*views).shape
        torch.Size([])
    """

    functional = staticmethod(Fm.emp_tcr_loss)
    inputs = "views"
    variants = {"exact": {"method": "exact"}, "taylor": {"method": "taylor"}}

    def __init__(
        self,
        *,
        eps: float = 0.2,
        mu: float = 0.5,
        method: str = "exact",
        order: int = 4,
        gather_distributed: bool = False,
        check_radius: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_common(name, method, order, gather_distributed, check_radius)
        check_number(name, "eps", eps, minimum=0.0, strict=True)
        check_number(name, "mu", mu, minimum=0.0)
        self.eps, self.mu, self.method, self.order = eps, mu, method, order
        self.gather_distributed, self.check_radius = gather_distributed, check_radius

    def forward(
        self, *views: torch.Tensor, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The coding rate of the concatenated views.

        Args:
            *views: the ``n`` views, each ``(B, d)`` (or a single list of them).
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(*views_of(views), return_terms=return_terms, **self._options())


class EMPSSLLoss(_Loss):
    r"""EMP-SSL's total loss over the ``n`` patches (views) of each sample: TCR (paper eq. 6) plus invariance.

    <formula>

    Reproduces the loss of EMP-SSL's code (tsb0601/EMP-SSL) with the defaults.

    Args:
        eps: :math:`\epsilon^2 > 0` of the TCR term. Default 0.2.
        invariance_weight: weight :math:`w_{\mathrm{inv}} \ge 0` of the
            cosine invariance term. Default 200.
        tcr_weight: weight :math:`w_{\mathrm{tcr}} \ge 0` of the TCR term. Default 1.
        method: ``"exact"`` (default; log-determinant on the smaller side) or
            ``"taylor"`` (truncated series of the log).
        order: Taylor order, an integer ``>= 1`` (``method="taylor"`` only). Default 4.
        gather_distributed: compute over the global batch of all processes. Default False.
        check_radius: warn (once per instance) when the Taylor series is
            outside its convergence radius; reads one value on the host. Default True.

    Shape:
        - ``*views``: ``n >= 1`` tensors ``(B, d)`` of the same shape, ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import EMPSSLLoss
        >>> views = torch.randn(4, 16, 8, dtype=torch.float64)
        >>> EMPSSLLoss()(*views).shape
        torch.Size([])
    """

    functional = staticmethod(Fm.emp_ssl_loss)
    inputs = "views"
    variants = {"exact": {"method": "exact"}, "taylor": {"method": "taylor"}}

    def __init__(
        self,
        *,
        eps: float = 0.2,
        invariance_weight: float = 200.0,
        tcr_weight: float = 1.0,
        method: str = "exact",
        order: int = 4,
        gather_distributed: bool = False,
        check_radius: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_common(name, method, order, gather_distributed, check_radius)
        check_number(name, "eps", eps, minimum=0.0, strict=True)
        check_number(name, "invariance_weight", invariance_weight, minimum=0.0)
        check_number(name, "tcr_weight", tcr_weight, minimum=0.0)
        self.eps, self.invariance_weight, self.tcr_weight = eps, invariance_weight, tcr_weight
        self.method, self.order = method, order
        self.gather_distributed, self.check_radius = gather_distributed, check_radius

    def forward(
        self, *views: torch.Tensor, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss over the patches.

        Args:
            *views: the ``n`` patch embeddings, each ``(B, d)`` (or a single list of them).
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(*views_of(views), return_terms=return_terms, **self._options())


class MECLoss(_Loss):
    r"""Maximum entropy coding loss (paper eq. 8) as the MEC authors optimize it.

    <formula>

    With no arguments it reproduces the MEC authors' per-pair loss
    (xinliu20/MEC: ``eps`` = :math:`\epsilon^2` = 64, Taylor order 4). For
    their lambda warm-up set the attribute ``lam_scale`` each epoch, from 1/8
    rising linearly to 1 over the first 10 epochs::

        criterion.lam_scale = min(1.0, 1 / 8 + (1 - 1 / 8) * epoch / 10)

    Args:
        eps: :math:`\epsilon^2 > 0` (the authors' ``--eps``). Default 64.
        lam_scale: warm-up multiplier of :math:`\lambda`, in ``(0, 1]``. Default 1.
        order: Taylor order, an integer ``>= 1`` (``method="taylor"`` only). Default 4.
        method: ``"taylor"`` (default, the authors' truncated series) or
            ``"exact"`` (LU log-determinant on the smaller side).
        gather_distributed: compute over the global batch of all processes. Default False.
        check_radius: warn (once per instance) when the Taylor series is
            outside its convergence radius; reads one value on the host. Default True.

    Shape:
        - ``online``, ``target``: ``(B, d)``, ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import MECLoss
        >>> z, p = torch.randn(2, 64, 8, dtype=torch.float64)
        >>> MECLoss()(z, p).shape
        torch.Size([])
    """

    functional = staticmethod(Fm.mec_loss)
    variants = _BOTH_METHODS

    def __init__(
        self,
        *,
        eps: float = 64.0,
        lam_scale: float = 1.0,
        order: int = 4,
        method: str = "taylor",
        gather_distributed: bool = False,
        check_radius: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_common(name, method, order, gather_distributed, check_radius)
        check_number(name, "eps", eps, minimum=0.0, strict=True)
        check_number(name, "lam_scale", lam_scale, minimum=0.0, strict=True, maximum=1.0)
        self.eps, self.lam_scale, self.order, self.method = eps, lam_scale, order, method
        self.gather_distributed, self.check_radius = gather_distributed, check_radius

    def forward(
        self, online: torch.Tensor, target: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one view pair.

        Args:
            online: ``(B, d)`` online-branch embeddings (gradient flows here).
            target: ``(B, d)`` target-branch embeddings; not detached here.
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(online, target, return_terms=return_terms, **self._options())
