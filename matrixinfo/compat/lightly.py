r"""lightly's loss classes under lightly's names, signatures and values.

Changing ``from lightly.loss import X`` to
``from matrixinfo.compat.lightly import X`` changes nothing else in a training
script: the constructors take lightly 1.6's parameters with the same names,
order and defaults (positional calls work, ``BarlowTwinsLoss(5e-3)``), and
``forward`` takes lightly's argument names (``z_a, z_b``; ``out0, out1``;
``x0, x1``; ``z_views``). The values are lightly's, with one deliberate
exception: the coding-rate term of :class:`EMPSSLLoss` has the EMP-SSL
authors' sign (lightly 1.6's has the opposite sign, which rewards collapse).

Each class is a thin wrapper over :mod:`matrixinfo.functional` (or
:func:`matrixinfo.sylvester_logdet` for :class:`EMPSSLLoss`), so it inherits
its float32 computation of half-precision inputs and its exact distributed
gradients. Options matrixinfo does not implement (NTXentLoss's memory bank,
VICReg inputs with more than two dimensions) raise :class:`NotImplementedError`
naming the option. Invalid values raise :class:`matrixinfo.MatrixInfoValueError`
(a :class:`ValueError`, as lightly raises).

The main API, :mod:`matrixinfo.losses`, keeps its own names and the authors'
defaults (for example ``BarlowTwinsLoss(lambda_param=0.0051)``, keyword-only);
the mapping is on the page :doc:`/coming_from_lightly`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import _spectral
from .._checks import (
    MatrixInfoValueError,
    check_embeddings,
    check_flag,
    check_int,
    check_number,
    check_tensor,
    shape_str,
)
from ..core import sylvester_logdet
from ..functional import _contrastive, _redundancy

__all__ = [
    "BarlowTwinsLoss",
    "EMPSSLLoss",
    "NTXentLoss",
    "NegativeCosineSimilarity",
    "VICRegLoss",
]


class BarlowTwinsLoss(nn.Module):
    r"""lightly's ``BarlowTwinsLoss(lambda_param=5e-3, gather_distributed=False)``.

    Each view is standardized per feature over the batch as
    ``BatchNorm1d(affine=False)`` does in training (biased variance,
    :math:`\epsilon = 10^{-5}`), :math:`c = \frac1B \hat Z_a^\top \hat Z_b`, and

    .. math:: \mathcal{L} = \sum_i (1 - c_{ii})^2 + \lambda \sum_{i \ne j} c_{ij}^2 .

    The value is :func:`matrixinfo.functional.barlow_twins_loss`; only the
    default differs from :class:`matrixinfo.losses.BarlowTwinsLoss` (lightly's
    5e-3 instead of the authors' 0.0051).

    Args:
        lambda_param: weight :math:`\lambda \ge 0` of the redundancy-reduction
            (off-diagonal) term. Default 5e-3, lightly's.
        gather_distributed: standardize and correlate over the global batch of
            all processes; gradients are exact after DDP's averaging.

    Shape:
        - ``z_a``, ``z_b``: ``(B, d)`` with ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.compat.lightly import BarlowTwinsLoss
        >>> z = torch.tensor([[1.0, 2.0], [2.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
        >>> loss = BarlowTwinsLoss(5e-3)(z, z)  # positional, as in lightly
        >>> bool(loss > 0)
        True
    """

    def __init__(self, lambda_param: float = 5e-3, gather_distributed: bool = False) -> None:
        super().__init__()
        self.lambda_param = check_number("BarlowTwinsLoss", "lambda_param", lambda_param, minimum=0.0)
        self.gather_distributed = check_flag("BarlowTwinsLoss", "gather_distributed", gather_distributed)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """Barlow Twins loss of two views.

        Args:
            z_a: ``(B, d)`` projections of the first views.
            z_b: ``(B, d)`` projections of the second views.

        Returns:
            0-d tensor to minimize.
        """
        return _redundancy.barlow_twins_loss(
            z_a, z_b, lambda_param=self.lambda_param, gather_distributed=self.gather_distributed
        )


class VICRegLoss(nn.Module):
    r"""lightly's ``VICRegLoss(lambda_param=25.0, mu_param=25.0, nu_param=1.0, gather_distributed=False, eps=0.0001)``.

    .. math::

        \mathcal{L} = \lambda\, \mathrm{MSE}(Z_a, Z_b)
        + \mu\, \tfrac12 \big(v(Z_a) + v(Z_b)\big) + \nu \big(c(Z_a) + c(Z_b)\big),

    with :math:`v(Z) = \frac1d \sum_k \max(0, 1 - \sqrt{\sigma_k^2 + \epsilon})`
    (unbiased variances) and :math:`c(Z)` the sum of the squared off-diagonal
    entries of the covariance (divided by :math:`B - 1`) divided by ``d``: the
    VICReg authors' definition, the same as lightly's. The value is
    :func:`matrixinfo.functional.vicreg_loss`.

    With ``gather_distributed=True`` lightly averages the invariance term per
    process and gathers the embeddings for the other two; matrixinfo gathers
    for all three. The gradients after DDP's averaging are the same; the value
    of the invariance term is the global mean instead of the local one.

    Args:
        lambda_param: weight of the invariance (MSE) term, ``>= 0``.
        mu_param: weight of the variance term, ``>= 0``.
        nu_param: weight of the covariance term, ``>= 0``.
        gather_distributed: compute over the global batch of all processes.
        eps: added to the variances before the square root, ``>= 0``.

    Shape:
        - ``z_a``, ``z_b``: ``(B, d)`` with ``B >= 2``. lightly also accepts
          ``(B, ..., d)``; that raises :class:`NotImplementedError` here.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.compat.lightly import VICRegLoss
        >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
        >>> hinge = 1 - (2 / 3 + 1e-4) ** 0.5  # each feature has unbiased variance 2/3
        >>> bool(torch.isclose(VICRegLoss()(z, z), torch.tensor(25 * hinge, dtype=torch.float64)))
        True
    """

    def __init__(
        self,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = False,
        eps: float = 0.0001,
    ) -> None:
        super().__init__()
        name = "VICRegLoss"
        self.lambda_param = check_number(name, "lambda_param", lambda_param, minimum=0.0)
        self.mu_param = check_number(name, "mu_param", mu_param, minimum=0.0)
        self.nu_param = check_number(name, "nu_param", nu_param, minimum=0.0)
        self.gather_distributed = check_flag(name, "gather_distributed", gather_distributed)
        self.eps = check_number(name, "eps", eps, minimum=0.0)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """VICReg loss of two views.

        Args:
            z_a: ``(B, d)`` embeddings of the first views.
            z_b: ``(B, d)`` embeddings of the second views.

        Returns:
            0-d tensor to minimize.

        Raises:
            NotImplementedError: inputs with more than two dimensions.
        """
        for name, z in (("z_a", z_a), ("z_b", z_b)):
            if isinstance(z, torch.Tensor) and z.ndim > 2:
                raise NotImplementedError(
                    f"VICRegLoss: inputs of shape (batch_size, ..., dim) are not supported; expected "
                    f"{name} of shape (B, d), got {shape_str(z.shape)}. Flatten the middle dimensions "
                    "into the batch if that is what you mean."
                )
        return _redundancy.vicreg_loss(
            z_a,
            z_b,
            lambda_param=self.lambda_param,
            mu_param=self.mu_param,
            nu_param=self.nu_param,
            gather_distributed=self.gather_distributed,
            eps=self.eps,
        )


def _memory_bank_entries(size) -> int:
    """The number of stored negatives in lightly's ``memory_bank_size``.

    It is an int, or a ``(num_features, dim)`` sequence.
    """
    if isinstance(size, Sequence) and not isinstance(size, (str, bytes)) and len(size) >= 1:
        size = size[0]
    return check_int("NTXentLoss", "memory_bank_size", size, 0)


class NTXentLoss(nn.Module):
    r"""lightly's ``NTXentLoss(temperature=0.5, memory_bank_size=0, gather_distributed=False)``.

    SimCLR's NT-Xent: the ``2B`` rows of both views are l2-normalized, each is
    scored against the other ``2B - 1`` by cosine similarity over
    :math:`\tau`, and the loss is the mean cross-entropy of picking its
    positive (the same sample in the other view):

    .. math:: \mathcal{L} = \frac{1}{2B} \sum_{a=1}^{2B}
              \Big[-s_{a,p(a)} + \log \sum_{k \ne a} e^{s_{ak}}\Big],
              \qquad s_{ak} = \frac{\hat z_a^\top \hat z_k}{\tau}.

    The value is :func:`matrixinfo.functional.simclr_loss`.

    Args:
        temperature: :math:`\tau > 0`. lightly raises ``ValueError`` for
            ``|temperature| < 1e-8``; matrixinfo also for a negative one.
        memory_bank_size: must be 0 (or ``(0, dim)``): the memory bank (MoCo
            negatives) is not implemented and raises
            :class:`NotImplementedError`.
        gather_distributed: take the negatives from the global batch of all
            processes.

    Raises:
        NotImplementedError: a nonzero ``memory_bank_size``.
        MatrixInfoValueError: ``temperature <= 0``.

    Shape:
        - ``out0``, ``out1``: ``(B, d)`` with ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import math
        >>> import torch
        >>> from matrixinfo.compat.lightly import NTXentLoss
        >>> z = torch.eye(3, dtype=torch.float64)
        >>> # each positive scores 1/0.5 = 2, the 4 negatives 0
        >>> bool(abs(NTXentLoss()(z, z) - (math.log(math.exp(2) + 4) - 2)) < 1e-12)
        True
    """

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size: int | Sequence[int] = 0,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        name = "NTXentLoss"
        if _memory_bank_entries(memory_bank_size) != 0:
            raise NotImplementedError(
                f"NTXentLoss: memory_bank_size={memory_bank_size!r} asks for a memory bank of negatives "
                "(MoCo), which matrixinfo does not implement; use memory_bank_size=0 (in-batch negatives, "
                "SimCLR) or lightly's own NTXentLoss."
            )
        self.temperature = check_number(name, "temperature", temperature, minimum=0.0, strict=True)
        self.memory_bank_size = memory_bank_size
        self.gather_distributed = check_flag(name, "gather_distributed", gather_distributed)

    def forward(self, out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
        """NT-Xent loss of two views with in-batch negatives.

        Args:
            out0: ``(B, d)`` projections of the first views.
            out1: ``(B, d)`` projections of the second views.

        Returns:
            0-d tensor to minimize.
        """
        return _contrastive.simclr_loss(
            out0, out1, temperature=self.temperature, gather_distributed=self.gather_distributed
        )


class NegativeCosineSimilarity(nn.Module):
    r"""lightly's ``NegativeCosineSimilarity(dim=1, eps=1e-8)`` (SimSiam).

    The mean over all positions of minus the cosine similarity along ``dim``,
    as :func:`torch.nn.functional.cosine_similarity` defines it:

    .. math:: \mathcal{L} = -\operatorname{mean}
              \frac{x_0 \cdot x_1}{\max(\|x_0\|, \epsilon)\, \max(\|x_1\|, \epsilon)} .

    For ``(B, d)`` inputs with ``dim=1`` (or ``-1``) and the default ``eps``
    the value is :func:`matrixinfo.functional.negative_cosine_similarity_loss`;
    other shapes (broadcast like torch's function) are flattened to rows
    along ``dim`` first. The loss does not detach ``x1``: the stop-gradient is
    the caller's, as in lightly.

    Args:
        dim: the dimension along which the cosine similarity is taken.
        eps: floor :math:`\epsilon > 0` of each norm.

    Shape:
        - ``x0``, ``x1``: broadcastable tensors with at least one dimension.
        - Output: ``()``, to minimize, in ``[-1, 1]``.

    Examples:
        >>> import torch
        >>> from matrixinfo.compat.lightly import NegativeCosineSimilarity
        >>> p = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> z = torch.tensor([[3.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
        >>> NegativeCosineSimilarity()(p, z)  # -(1 + 1/sqrt(2)) / 2
        tensor(-0.8536, dtype=torch.float64)
    """

    def __init__(self, dim: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        name = "NegativeCosineSimilarity"
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise MatrixInfoValueError(f"{name}: expected dim to be an int, got {dim!r}.")
        self.dim = dim
        self.eps = check_number(name, "eps", eps, minimum=0.0, strict=True)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """Minus the mean cosine similarity of ``x0`` and ``x1`` along ``dim``.

        Args:
            x0: first tensor (for SimSiam, the predictor output).
            x1: second tensor, broadcastable with ``x0``.

        Returns:
            0-d tensor to minimize.
        """
        name = "NegativeCosineSimilarity"
        check_tensor(name, "x0", x0)
        check_tensor(name, "x1", x1)
        try:
            shape = torch.broadcast_shapes(x0.shape, x1.shape)
        except RuntimeError:
            raise MatrixInfoValueError(
                f"{name}: expected x0 and x1 of broadcastable shapes, got {shape_str(x0.shape)} "
                f"and {shape_str(x1.shape)}."
            ) from None
        if len(shape) == 0 or not -len(shape) <= self.dim < len(shape):
            raise MatrixInfoValueError(
                f"{name}: expected dim in [-{len(shape)}, {len(shape) - 1}] for inputs of shape "
                f"{shape_str(shape)}, got dim={self.dim}."
            )
        rows0 = x0.expand(shape).movedim(self.dim, -1).reshape(-1, shape[self.dim])
        rows1 = x1.expand(shape).movedim(self.dim, -1).reshape(-1, shape[self.dim])
        if self.eps == _contrastive._NORM_EPS and rows0.shape[0] >= 2:
            return _contrastive.negative_cosine_similarity_loss(rows0, rows1)
        with _spectral.precision(rows0, rows1) as policy:
            a, b = policy.cast(rows0, rows1)
            norms = torch.linalg.vector_norm(a, dim=1).clamp_min(self.eps)
            norms = norms * torch.linalg.vector_norm(b, dim=1).clamp_min(self.eps)
            return -((a * b).sum(dim=1) / norms).mean()


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"of shape {shape_str(value.shape)}"
    if isinstance(value, Sequence):
        return f"of length {len(value)}"
    return repr(value)


class EMPSSLLoss(nn.Module):
    r"""lightly's ``EMPSSLLoss(tcr_eps=0.2, inv_coef=200.0)``, with the EMP-SSL authors' sign.

    For ``n`` views (patches) :math:`Z_v` of shape ``(B, d)``, as given (not
    normalized by the loss, as in lightly: the EMP-SSL model normalizes its
    projections), and their mean :math:`\bar z_b = \frac1n \sum_v z_{v,b}`:

    .. math::

        \mathcal{L} = -\frac{1}{2n} \sum_{v=1}^{n}
            \log\det\Big(I_d + \frac{d}{B\,\epsilon} Z_v^\top Z_v\Big)
        - \frac{w}{n B} \sum_{v=1}^{n} \sum_{b=1}^{B} \cos(z_{v,b}, \bar z_b),

    with :math:`\epsilon` = ``tcr_eps`` (already the square, as in the
    authors' code) and :math:`w` = ``inv_coef``.

    **Sign.** The coding-rate term is the negative log-determinant, as in the
    EMP-SSL authors' code (tsb0601/EMP-SSL) and the paper's eq. 6: minimizing
    the loss maximizes the coding rate and penalizes collapse. lightly 1.6's
    ``EMPSSLLoss`` adds ``+0.5 logdet``, which rewards collapse; this class
    therefore differs from lightly's value by ``-2 x`` lightly's coding-rate
    term and otherwise agrees with it. The invariance term is lightly's.

    The log-determinant is :func:`matrixinfo.sylvester_logdet` (Cholesky on
    the smaller of ``d`` and ``B``). :func:`matrixinfo.functional.emp_ssl_loss`
    is the same loss on l2-normalized rows.

    Args:
        tcr_eps: :math:`\epsilon > 0` of the coding rate (the square; default 0.2).
        inv_coef: weight :math:`w \ge 0` of the invariance term (default 200).

    Shape:
        - ``z_views``: a list of ``n >= 1`` tensors of shape ``(B, d)``, ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.compat.lightly import EMPSSLLoss
        >>> loss_fn = EMPSSLLoss(tcr_eps=0.2, inv_coef=200.0)
        >>> spread = [torch.eye(4, dtype=torch.float64).repeat(2, 1)] * 2
        >>> collapsed = [torch.ones(8, 4, dtype=torch.float64) / 2] * 2
        >>> bool(loss_fn(spread) < loss_fn(collapsed))  # collapse is penalized
        True
    """

    def __init__(self, tcr_eps: float = 0.2, inv_coef: float = 200.0) -> None:
        super().__init__()
        self.tcr_eps = check_number("EMPSSLLoss", "tcr_eps", tcr_eps, minimum=0.0, strict=True)
        self.inv_coef = check_number("EMPSSLLoss", "inv_coef", inv_coef, minimum=0.0)

    def forward(self, z_views: list[torch.Tensor]) -> torch.Tensor:
        """EMP-SSL loss of a list of views.

        Args:
            z_views: list of ``n >= 1`` patch embeddings, each ``(B, d)``.

        Returns:
            0-d tensor to minimize.
        """
        name = "EMPSSLLoss"
        if isinstance(z_views, torch.Tensor) or not isinstance(z_views, Sequence) or len(z_views) == 0:
            raise MatrixInfoValueError(
                f"{name}: expected z_views to be a non-empty list of (B, d) tensors, got "
                f"{type(z_views).__name__} {_describe(z_views)}."
            )
        names = [f"z_views[{i}]" for i in range(len(z_views))]
        check_embeddings(name, names, *z_views)
        with _spectral.precision(*z_views) as policy:
            z = torch.stack(policy.cast(*z_views))  # (n, B, d)
            _, B, d = z.shape
            logdet = sylvester_logdet(z.mT, scale=d / (B * self.tcr_eps))  # (n,)
            tcr = -0.5 * logdet.mean()
            invariance = -F.cosine_similarity(z, z.mean(dim=0, keepdim=True), dim=-1).mean()
            return tcr + self.inv_coef * invariance
