r"""nn.Module losses of alignment and uniformity on the hypersphere (Wang & Isola, 2020)."""

from __future__ import annotations

import torch

from .._checks import check_number
from ..functional import _hypersphere
from ._base import _Loss, views_of

__all__ = ["AlignmentLoss", "UniformityLoss"]


class AlignmentLoss(_Loss):
    r"""Alignment loss of Wang & Isola (2020, section 4.1) on l2-normalized embeddings.

    <formula>

    Reproduces the authors' ``align_loss`` (SsnL/align_uniform). The paper
    gives it no numbered equation; its section 5.2 names alignment as the
    second property that its losses generalize. Alone it rewards collapse:
    combine it with :class:`UniformityLoss`, as the authors do,
    ``AlignmentLoss()(z1, z2) + UniformityLoss()(z1, z2)``.

    Args:
        alpha: exponent :math:`\alpha > 0` of the distance between positive
            pairs. Default 2 (the authors'); then it equals BYOL's ``2 - 2 cos``.

    Shape:
        - ``z1``, ``z2``: ``(B, d)`` with ``B >= 1``; rows need not be normalized.
        - Output: ``()`` in ``[0, 2^alpha]``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import AlignmentLoss
        >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
        >>> AlignmentLoss()(z, 3 * z)  # the same directions
        tensor(0., dtype=torch.float64)
    """

    functional = staticmethod(_hypersphere.alignment_loss)
    min_batch = 1

    def __init__(self, *, alpha: float = 2.0) -> None:
        super().__init__()
        self.alpha = check_number(type(self).__name__, "alpha", alpha, minimum=0.0, strict=True)

    def forward(
        self, z1: torch.Tensor, z2: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one batch of positive pairs.

        Args:
            z1: ``(B, d)`` embeddings of the first views.
            z2: ``(B, d)`` embeddings of the second views.
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(z1, z2, return_terms=return_terms, **self._options())


class UniformityLoss(_Loss):
    r"""Uniformity loss of Wang & Isola (2020, section 4.1) on l2-normalized embeddings.

    <formula>

    Reproduces the authors' ``uniform_loss`` (SsnL/align_uniform), averaged
    over the views passed. The paper gives it no numbered equation; its
    uniformity losses (eqs. 16-17) are the matrix counterparts.

    Args:
        t: scale :math:`t > 0` of the Gaussian potential. Default 2 (the authors').

    Shape:
        - ``*views``: one or more ``(B, d)`` tensors of the same shape, ``B >= 2``.
        - Output: ``()`` in ``[-4t, 0]``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import UniformityLoss
        >>> square = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
        >>> bool(UniformityLoss()(square) < UniformityLoss()(square[[0, 0, 1, 1]]))  # spread beats clumped
        True
    """

    functional = staticmethod(_hypersphere.uniformity_loss)
    inputs = "views"

    def __init__(self, *, t: float = 2.0) -> None:
        super().__init__()
        self.t = check_number(type(self).__name__, "t", t, minimum=0.0, strict=True)

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
