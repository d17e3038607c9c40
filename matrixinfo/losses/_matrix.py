"""nn.Module wrappers of the matrix-information losses.

The formulas, defaults and their sources are documented once, in the
functional twins of :mod:`matrixinfo.functional`; each class validates its
hyperparameters at construction and calls its twin in ``forward``.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import functional as Fm
from .._checks import check_choice, check_flag, check_int, check_number, warnings_owned_by

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


def _validate(name: str, method, order, methods=("taylor", "exact"), gather_distributed=False, check_radius=True,
              **numbers) -> None:
    check_choice(name, "method", method, methods)
    check_int(name, "order", order, 1)
    check_flag(name, "gather_distributed", gather_distributed)
    check_flag(name, "check_radius", check_radius)
    for key, spec in numbers.items():
        value, minimum, strict = spec[:3]
        if value is not None:
            check_number(name, key, value, minimum=minimum, strict=strict, maximum=spec[3] if len(spec) > 3 else None)


class _PairLoss(nn.Module):
    """``forward(online, target)``; options stored as attributes and passed through."""

    _fn = None
    _options: tuple[str, ...] = ()
    #: The latest warning of this loss (shown once per instance; see :class:`matrixinfo.MatrixInfoWarning`).
    last_warning = None

    def forward(self, online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._call(online, target)

    def _call(self, *inputs: torch.Tensor) -> torch.Tensor:
        options = {k: getattr(self, k) for k in self._options}
        if torch.compiler.is_compiling():  # a compiled graph reads nothing on the host, so it never warns
            return type(self)._fn(*inputs, **options)
        with warnings_owned_by(self):  # each warning shown once per instance (MatrixInfoWarning)
            return type(self)._fn(*inputs, **options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in self._options)


class _ViewsLoss(_PairLoss):
    """``forward(*views)`` (one or more views, or a single sequence of views)."""

    def forward(self, *views) -> torch.Tensor:  # type: ignore[override]
        if len(views) == 1 and isinstance(views[0], (list, tuple)):
            views = tuple(views[0])
        return self._call(*views)


class MatrixKLUniformityLoss(_PairLoss):
    """Matrix-KL uniformity loss (paper eq. 20); see :func:`matrixinfo.functional.matrix_kl_uniformity_loss`.

    ``forward(online, target)`` with ``(B, d)`` inputs returns a 0-d tensor to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import MatrixKLUniformityLoss
        >>> z = torch.randn(16, 4, dtype=torch.float64)
        >>> MatrixKLUniformityLoss()(z, z).shape
        torch.Size([])
    """

    _fn = staticmethod(Fm.matrix_kl_uniformity_loss)
    _options = ("lam", "mu", "order", "method", "formulation", "gather_distributed", "check_radius")

    def __init__(self, *, lam: float = 1.0, mu: float = 1.0, order: int = 4, method: str = "taylor",
                 formulation: str = "official", gather_distributed: bool = False, check_radius: bool = True):
        super().__init__()
        name = type(self).__name__
        _validate(name, method, order, gather_distributed=gather_distributed, check_radius=check_radius,
                  lam=(lam, 0.0, False), mu=(mu, 0.0, True))
        check_choice(name, "formulation", formulation, ("official", "paper"))
        self.lam, self.mu, self.order, self.method = lam, mu, order, method
        self.formulation, self.gather_distributed, self.check_radius = formulation, gather_distributed, check_radius


class MatrixKLAlignmentLoss(_PairLoss):
    """Matrix-KL alignment loss (paper eq. 21); see :func:`matrixinfo.functional.matrix_kl_alignment_loss`.

    ``forward(online, target)`` with ``(B, d)`` inputs returns a 0-d tensor to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import MatrixKLAlignmentLoss
        >>> z = torch.randn(16, 4, dtype=torch.float64)
        >>> bool(abs(MatrixKLAlignmentLoss(formulation="paper", method="exact")(z, z)) < 1e-12)
        True
    """

    _fn = staticmethod(Fm.matrix_kl_alignment_loss)
    _options = ("mu", "order", "method", "formulation", "gather_distributed", "check_radius")

    def __init__(self, *, mu: float = 1.0, order: int = 4, method: str = "taylor", formulation: str = "official",
                 gather_distributed: bool = False, check_radius: bool = True):
        super().__init__()
        name = type(self).__name__
        _validate(name, method, order, gather_distributed=gather_distributed, check_radius=check_radius,
                  mu=(mu, 0.0, True))
        check_choice(name, "formulation", formulation, ("official", "paper"))
        self.mu, self.order, self.method = mu, order, method
        self.formulation, self.gather_distributed, self.check_radius = formulation, gather_distributed, check_radius


class MatrixSSLLoss(_PairLoss):
    """Matrix-SSL loss (paper eq. 22) for one (online, target) pair; see
    :func:`matrixinfo.functional.matrix_ssl_loss`.

    With no arguments it is the authors' per-pair loss (``lam = mu = gamma = 1``,
    Taylor order 4). Symmetrize over the two view pairs as the authors do::

        criterion = MatrixSSLLoss()
        loss = 0.5 * (criterion(z1, p2) + criterion(z2, p1))

    where ``z`` are online outputs (with predictor) and ``p`` EMA-teacher
    outputs computed under ``torch.no_grad()``.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import MatrixSSLLoss
        >>> z, p = torch.randn(2, 64, 8, dtype=torch.float64)
        >>> MatrixSSLLoss()(z, p).shape
        torch.Size([])
    """

    _fn = staticmethod(Fm.matrix_ssl_loss)
    _options = ("gamma", "lam", "mu", "order", "method", "formulation", "gather_distributed", "check_radius")

    def __init__(self, *, gamma: float = 1.0, lam: float = 1.0, mu: float = 1.0, order: int = 4,
                 method: str = "taylor", formulation: str = "official", gather_distributed: bool = False,
                 check_radius: bool = True):
        super().__init__()
        name = type(self).__name__
        _validate(name, method, order, gather_distributed=gather_distributed, check_radius=check_radius,
                  gamma=(gamma, 0.0, False), lam=(lam, 0.0, False), mu=(mu, 0.0, True))
        check_choice(name, "formulation", formulation, ("official", "paper"))
        self.gamma, self.lam, self.mu, self.order, self.method = gamma, lam, mu, order, method
        self.formulation, self.gather_distributed, self.check_radius = formulation, gather_distributed, check_radius


class UniformityMCELoss(_ViewsLoss):
    """Uniformity-MCE loss (paper eq. 16); see :func:`matrixinfo.functional.uniformity_mce_loss`.

    ``forward(*views)`` averages over one or more ``(B, d)`` views.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import UniformityMCELoss
        >>> z1, z2 = torch.randn(2, 16, 4, dtype=torch.float64)
        >>> UniformityMCELoss()(z1, z2).shape
        torch.Size([])
    """

    _fn = staticmethod(Fm.uniformity_mce_loss)
    _options = ("lam", "method", "order", "gather_distributed", "check_radius")

    def __init__(self, *, lam: float | None = None, method: str = "exact", order: int = 4,
                 gather_distributed: bool = False, check_radius: bool = True):
        super().__init__()
        _validate(type(self).__name__, method, order, gather_distributed=gather_distributed,
                  check_radius=check_radius, lam=(lam, 0.0, True))
        self.lam, self.method, self.order = lam, method, order
        self.gather_distributed, self.check_radius = gather_distributed, check_radius


class UniformityMKLLoss(UniformityMCELoss):
    """Uniformity-MKL loss (paper eq. 17); see :func:`matrixinfo.functional.uniformity_mkl_loss`.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import UniformityMKLLoss
        >>> frame = torch.eye(4, dtype=torch.float64).repeat(2, 1)
        >>> bool(abs(UniformityMKLLoss()(frame)) < 1e-12)
        True
    """

    _fn = staticmethod(Fm.uniformity_mkl_loss)


class TCRLoss(_ViewsLoss):
    """Total coding rate loss (paper eq. 6); ``eps`` is epsilon squared. See
    :func:`matrixinfo.functional.tcr_loss`.

    ``forward(*views)`` averages the TCR of one or more ``(B, d)`` views.
    Minimizing it maximizes the coding rate.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import TCRLoss
        >>> z = torch.randn(32, 8, dtype=torch.float64)
        >>> bool(TCRLoss()(z) < 0)
        True
    """

    _fn = staticmethod(Fm.tcr_loss)
    _options = ("eps", "method", "order", "gather_distributed", "check_radius")

    def __init__(self, *, eps: float = 0.2, method: str = "exact", order: int = 4,
                 gather_distributed: bool = False, check_radius: bool = True):
        super().__init__()
        _validate(type(self).__name__, method, order, gather_distributed=gather_distributed,
                  check_radius=check_radius, eps=(eps, 0.0, True))
        self.eps, self.method, self.order = eps, method, order
        self.gather_distributed, self.check_radius = gather_distributed, check_radius


class EMPTCRLoss(_ViewsLoss):
    """Coding rate of the concatenated views (paper eq. 9); see :func:`matrixinfo.functional.emp_tcr_loss`.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import EMPTCRLoss
        >>> views = torch.randn(3, 16, 4, dtype=torch.float64)
        >>> EMPTCRLoss()(*views).shape
        torch.Size([])
    """

    _fn = staticmethod(Fm.emp_tcr_loss)
    _options = ("eps", "mu", "method", "order", "gather_distributed", "check_radius")

    def __init__(self, *, eps: float = 0.2, mu: float = 0.5, method: str = "exact", order: int = 4,
                 gather_distributed: bool = False, check_radius: bool = True):
        super().__init__()
        _validate(type(self).__name__, method, order, gather_distributed=gather_distributed,
                  check_radius=check_radius, eps=(eps, 0.0, True), mu=(mu, 0.0, False))
        self.eps, self.mu, self.method, self.order = eps, mu, method, order
        self.gather_distributed, self.check_radius = gather_distributed, check_radius


class EMPSSLLoss(_ViewsLoss):
    """EMP-SSL's total loss over patches; see :func:`matrixinfo.functional.emp_ssl_loss`.

    ``forward(*views)`` takes the ``n`` patch embeddings, each ``(B, d)``.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import EMPSSLLoss
        >>> views = torch.randn(4, 16, 8, dtype=torch.float64)
        >>> EMPSSLLoss()(*views).shape
        torch.Size([])
    """

    _fn = staticmethod(Fm.emp_ssl_loss)
    _options = ("eps", "invariance_weight", "tcr_weight", "method", "order", "gather_distributed", "check_radius")

    def __init__(self, *, eps: float = 0.2, invariance_weight: float = 200.0, tcr_weight: float = 1.0,
                 method: str = "exact", order: int = 4, gather_distributed: bool = False, check_radius: bool = True):
        super().__init__()
        _validate(type(self).__name__, method, order, gather_distributed=gather_distributed,
                  check_radius=check_radius, eps=(eps, 0.0, True),
                  invariance_weight=(invariance_weight, 0.0, False), tcr_weight=(tcr_weight, 0.0, False))
        self.eps, self.invariance_weight, self.tcr_weight = eps, invariance_weight, tcr_weight
        self.method, self.order = method, order
        self.gather_distributed, self.check_radius = gather_distributed, check_radius


class MECLoss(_PairLoss):
    """Maximum entropy coding loss (paper eq. 8) as the MEC authors optimize it;
    see :func:`matrixinfo.functional.mec_loss`.

    With no arguments it is the authors' per-pair loss (``eps`` = epsilon^2 = 64,
    Taylor order 4). For their lambda warm-up set the attribute ``lam_scale``
    each epoch, from 1/8 rising linearly to 1 over the first 10 epochs::

        criterion.lam_scale = min(1.0, 1 / 8 + (1 - 1 / 8) * epoch / 10)

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import MECLoss
        >>> z, p = torch.randn(2, 64, 8, dtype=torch.float64)
        >>> MECLoss()(z, p).shape
        torch.Size([])
    """

    _fn = staticmethod(Fm.mec_loss)
    _options = ("eps", "lam_scale", "order", "method", "gather_distributed", "check_radius")

    def __init__(self, *, eps: float = 64.0, lam_scale: float = 1.0, order: int = 4, method: str = "taylor",
                 gather_distributed: bool = False, check_radius: bool = True):
        super().__init__()
        _validate(type(self).__name__, method, order, gather_distributed=gather_distributed,
                  check_radius=check_radius, eps=(eps, 0.0, True), lam_scale=(lam_scale, 0.0, True, 1.0))
        self.eps, self.lam_scale, self.order, self.method = eps, lam_scale, order, method
        self.gather_distributed, self.check_radius = gather_distributed, check_radius
