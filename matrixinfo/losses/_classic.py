r"""Classic self-supervised losses as drop-in :class:`torch.nn.Module`\ s.

Each class documents its constructor and its shapes; its formula is written
once, in its functional twin of :mod:`matrixinfo.functional`, and shown in the
class docstring from there. Hyperparameters are keyword-only, named as in
lightly where lightly has the loss, and validated when the module is built.
"""

from __future__ import annotations

import torch

from .._checks import MatrixInfoValueError, check_flag, check_int, check_number, shape_str
from ..functional import _contrastive, _redundancy
from ._base import _Loss

__all__ = [
    "BYOLLoss",
    "BarlowTwinsLoss",
    "CorInfoMaxLoss",
    "NegativeCosineSimilarityLoss",
    "SimCLRLoss",
    "SpectralContrastiveLoss",
    "VICRegLoss",
]


class BarlowTwinsLoss(_Loss):
    r"""Barlow Twins loss (Zbontar et al. 2021; paper eq. 4).

    <formula>

    Reproduces the authors' code (facebookresearch/barlowtwins) with the defaults.

    Args:
        lambda_param: weight of the off-diagonal (redundancy-reduction) term,
            ``>= 0``. Default 0.0051, the authors' value (lightly's is 5e-3).
        gather_distributed: standardize and correlate over the global batch of
            all processes (as the authors do with synchronized batch norm). Default False.

    Shape:
        - ``z1``, ``z2``: ``(B, d)`` with ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import BarlowTwinsLoss
        >>> z = torch.tensor([[1.0, 2.0], [2.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
        >>> round(float(BarlowTwinsLoss()(z, z)), 6)
        0.00255
    """

    functional = staticmethod(_redundancy.barlow_twins_loss)

    def __init__(self, *, lambda_param: float = 0.0051, gather_distributed: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        self.lambda_param = check_number(name, "lambda_param", lambda_param, minimum=0.0)
        self.gather_distributed = check_flag(name, "gather_distributed", gather_distributed)

    def forward(
        self, z1: torch.Tensor, z2: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one view pair.

        Args:
            z1: ``(B, d)`` embeddings of the first view.
            z2: ``(B, d)`` embeddings of the second view.
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(z1, z2, return_terms=return_terms, **self._options())


class VICRegLoss(_Loss):
    r"""VICReg loss (Bardes et al. 2022; paper eq. 5).

    <formula>

    Reproduces the authors' code (facebookresearch/vicreg) with the defaults.

    Args:
        lambda_param: weight of the invariance (MSE) term, ``>= 0``. Default 25.
        mu_param: weight of the variance (hinge on the standard deviation)
            term, ``>= 0``. Default 25.
        nu_param: weight of the covariance term, ``>= 0``. Default 1.
        gather_distributed: compute every term over the global batch. Default False.
        eps: ``>= 0``, added to the variance before the square root. Default 1e-4.

    Shape:
        - ``z1``, ``z2``: ``(B, d)`` with ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import VICRegLoss
        >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
        >>> bool(VICRegLoss(mu_param=0.0)(z, z) == 0)  # aligned and decorrelated
        True
    """

    functional = staticmethod(_redundancy.vicreg_loss)

    def __init__(
        self,
        *,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = False,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.lambda_param = check_number(name, "lambda_param", lambda_param, minimum=0.0)
        self.mu_param = check_number(name, "mu_param", mu_param, minimum=0.0)
        self.nu_param = check_number(name, "nu_param", nu_param, minimum=0.0)
        self.gather_distributed = check_flag(name, "gather_distributed", gather_distributed)
        self.eps = check_number(name, "eps", eps, minimum=0.0)

    def forward(
        self, z1: torch.Tensor, z2: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one view pair.

        Args:
            z1: ``(B, d)`` embeddings of the first view.
            z2: ``(B, d)`` embeddings of the second view.
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(z1, z2, return_terms=return_terms, **self._options())


class SimCLRLoss(_Loss):
    r"""SimCLR's NT-Xent loss (Chen et al. 2020; paper eq. 1).

    <formula>

    Reproduces the definition shared by lightly's ``NTXentLoss``, solo-learn
    and pytorch-metric-learning at equal temperature.

    Args:
        temperature: softmax temperature :math:`\tau > 0`. Default 0.5 (lightly's).
        gather_distributed: take the negatives from the global batch; the value
            is then the full-batch value on every process. Default False.

    Shape:
        - ``z1``, ``z2``: ``(B, d)`` with ``B >= 2``; rows need not be normalized.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import SimCLRLoss
        >>> z = torch.eye(3, dtype=torch.float64)
        >>> loss = SimCLRLoss()
        >>> bool(loss(z, z) < loss(z, z.roll(1, dims=0)))  # aligned views cost less
        True
    """

    functional = staticmethod(_contrastive.simclr_loss)

    def __init__(self, *, temperature: float = 0.5, gather_distributed: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        self.temperature = check_number(name, "temperature", temperature, minimum=0.0, strict=True)
        self.gather_distributed = check_flag(name, "gather_distributed", gather_distributed)

    def forward(
        self, z1: torch.Tensor, z2: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one view pair (symmetric in the views).

        Args:
            z1: ``(B, d)`` embeddings of the first view.
            z2: ``(B, d)`` embeddings of the second view.
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(z1, z2, return_terms=return_terms, **self._options())


class NegativeCosineSimilarityLoss(_Loss):
    r"""SimSiam's negative cosine similarity (Chen & He 2021; paper eq. 2).

    <formula>

    Reproduces the authors' per-pair loss (facebookresearch/simsiam). It has
    no hyperparameters. The target is not detached by the loss: pass
    ``target.detach()`` for SimSiam's stop-gradient.

    Shape:
        - ``online``: ``(B, d)`` predictor output; ``target``: ``(B, d)``.
        - Output: ``()`` in ``[-1, 1]``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import NegativeCosineSimilarityLoss
        >>> p = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> NegativeCosineSimilarityLoss()(p, 5 * p)
        tensor(-1., dtype=torch.float64)
    """

    functional = staticmethod(_contrastive.negative_cosine_similarity_loss)
    min_batch = 1

    def __init__(self) -> None:
        super().__init__()

    def forward(
        self, online: torch.Tensor, target: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one (prediction, target) pair.

        Args:
            online: ``(B, d)`` predictor output.
            target: ``(B, d)`` the other branch's projection (not detached here).
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(online, target, return_terms=return_terms)


class BYOLLoss(_Loss):
    r"""BYOL's loss ``2 - 2 cos`` (Grill et al. 2020; paper eq. 3).

    <formula>

    Reproduces the authors' per-pair loss (google-deepmind/deepmind-research,
    ``byol``). It has no hyperparameters. The target (the EMA network's
    projection) is not detached by the loss: compute it under
    ``torch.no_grad()`` or detach it.

    Shape:
        - ``online``: ``(B, d)`` predictor output; ``target``: ``(B, d)``.
        - Output: ``()`` in ``[0, 4]``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import BYOLLoss
        >>> p = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> BYOLLoss()(p, 5 * p)
        tensor(0., dtype=torch.float64)
    """

    functional = staticmethod(_contrastive.byol_loss)
    min_batch = 1

    def __init__(self) -> None:
        super().__init__()

    def forward(
        self, online: torch.Tensor, target: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one (prediction, target) pair.

        Args:
            online: ``(B, d)`` predictor output.
            target: ``(B, d)`` the EMA network's projection (not detached here).
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(online, target, return_terms=return_terms)


class SpectralContrastiveLoss(_Loss):
    r"""Spectral contrastive loss (HaoChen et al. 2021).

    <formula>

    The paper discusses it (sections 3.1 and 5.1) but gives it no numbered equation.

    Reproduces the authors' code (jhaochenz96/spectral_contrastive_learning,
    ``models/spectral.py``) with the defaults.

    Args:
        mu: ``> 0``; rows are projected into the ball of radius ``sqrt(mu)``
            and the loss is divided by ``mu``. Default 1 (the authors' CIFAR
            value; ImageNet 10).
        gather_distributed: pair each process's rows with the global batch. Default False.

    Shape:
        - ``z1``, ``z2``: ``(B, d)`` with ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import SpectralContrastiveLoss
        >>> SpectralContrastiveLoss()(torch.eye(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64))
        tensor(-2., dtype=torch.float64)
    """

    functional = staticmethod(_contrastive.spectral_contrastive_loss)

    def __init__(self, *, mu: float = 1.0, gather_distributed: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        self.mu = check_number(name, "mu", mu, minimum=0.0, strict=True)
        self.gather_distributed = check_flag(name, "gather_distributed", gather_distributed)

    def forward(
        self, z1: torch.Tensor, z2: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one view pair.

        Args:
            z1: ``(B, d)`` embeddings of the first view.
            z2: ``(B, d)`` embeddings of the second view.
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(z1, z2, return_terms=return_terms, **self._options())


class CorInfoMaxLoss(_Loss):
    r"""CorInfoMax loss with its running estimates (Ozsoy et al. 2022; paper eq. 7).

    <formula>

    Reproduces the authors' code (serdarozsoy/corinfomax-ssl, ``loss.py``)
    with the defaults.

    The running covariances and means of both branches are float64 buffers
    ``R1``, ``R2`` (``(dim, dim)``, initially the identity) and ``mu1``,
    ``mu2`` (``(dim,)``, initially zero): they travel with ``.to(device)``, are
    saved in ``state_dict`` and restored by ``load_state_dict``. They are
    updated by every ``forward`` in training mode and left unchanged in
    evaluation mode (``.eval()``), like batch-norm statistics. ``.half()`` or
    ``.to(dtype)`` on the loss would convert them too: keep the loss module
    out of such calls, the estimates are meant to stay float64.

    Args:
        dim: embedding dimension ``d``, an integer ``>= 1`` (sizes the running estimates).
        alpha: weight of the mean squared error, ``>= 0``. Default 500.
        eps: diagonal regularization of the covariances, ``> 0``. Default 1e-6.
        forgetting: weight of the history in the running estimates, in ``[0, 1]``. Default 0.01.
        gather_distributed: estimate over the global batch, so that every
            process holds the same running estimates. Default False.

    Shape:
        - ``z1``, ``z2``: ``(B, dim)`` with ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import CorInfoMaxLoss
        >>> loss_fn = CorInfoMaxLoss(2, forgetting=0.0, eps=1e-12)
        >>> z = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
        >>> bool(abs(loss_fn(z, z)) < 1e-10)  # batch covariance I: log det 0
        True
        >>> loss_fn.R1
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)
    """

    functional = staticmethod(_redundancy.corinfomax_loss)
    needs_dim = True
    stateful = True

    R1: torch.Tensor
    R2: torch.Tensor
    mu1: torch.Tensor
    mu2: torch.Tensor

    def __init__(
        self,
        dim: int,
        *,
        alpha: float = 500.0,
        eps: float = 1e-6,
        forgetting: float = 0.01,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.dim = check_int(name, "dim", dim, 1)
        self.alpha = check_number(name, "alpha", alpha, minimum=0.0)
        self.eps = check_number(name, "eps", eps, minimum=0.0, strict=True)
        self.forgetting = check_number(name, "forgetting", forgetting, minimum=0.0)
        if self.forgetting > 1.0:
            raise MatrixInfoValueError(f"{name}: expected forgetting <= 1, got {forgetting!r}.")
        self.gather_distributed = check_flag(name, "gather_distributed", gather_distributed)
        initial = _redundancy.CorInfoMaxState.initial(dim)
        for field, tensor in zip(_redundancy.CorInfoMaxState._fields, initial):
            self.register_buffer(field, tensor)

    def forward(
        self, z1: torch.Tensor, z2: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one view pair; in training mode it also updates the running estimates.

        Args:
            z1: ``(B, dim)`` embeddings of the first view.
            z2: ``(B, dim)`` embeddings of the second view.
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.

        Raises:
            MatrixInfoValueError: ``z1`` is not ``(B, dim)``.
        """
        if isinstance(z1, torch.Tensor) and z1.ndim == 2 and z1.shape[1] != self.dim:
            raise MatrixInfoValueError(
                f"{type(self).__name__}: expected z1 of shape (B, {self.dim}) for dim = {self.dim}, "
                f"got {shape_str(z1.shape)}."
            )
        state = _redundancy.CorInfoMaxState(self.R1, self.R2, self.mu1, self.mu2)
        out = self._twin(z1, z2, state, return_terms=return_terms, **self._options())
        loss, new_state = out[0], out[1]
        if self.training:
            with torch.no_grad():
                for buffer, value in zip(state, new_state):
                    buffer.copy_(value)
        return (loss, out[2]) if return_terms else loss

    def reset_state(self) -> None:
        """Restore the initial estimates: identity covariances, zero means."""
        with torch.no_grad():
            for buffer, value in zip(
                (self.R1, self.R2, self.mu1, self.mu2), _redundancy.CorInfoMaxState.initial(self.dim)
            ):
                buffer.copy_(value)
