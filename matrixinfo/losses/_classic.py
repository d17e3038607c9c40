"""Classic self-supervised losses as drop-in :class:`torch.nn.Module`s.

Each ``forward`` calls its functional twin in :mod:`matrixinfo.functional`,
whose docstring holds the formula, the authors' definition and the defaults.
Hyperparameters are keyword-only, named as in lightly where lightly has the
loss, and validated when the module is built.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import MatrixInfoValueError, check_flag, check_int, check_number, shape_str
from ..functional import _classic

__all__ = [
    "BYOLLoss",
    "BarlowTwinsLoss",
    "CorInfoMaxLoss",
    "NegativeCosineSimilarityLoss",
    "SimCLRLoss",
    "SpectralContrastiveLoss",
    "VICRegLoss",
]


_check_flag = check_flag  # one check for every flag of the package


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss; see :func:`matrixinfo.functional.barlow_twins_loss`.

    Args:
        lambda_param: weight of the off-diagonal (redundancy-reduction) term,
            ``>= 0``. Default 0.0051 is the authors' value; lightly's default
            is 5e-3.
        gather_distributed: standardize and correlate over the global batch of
            all processes (as the authors do with synchronized batch norm).

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

    def __init__(self, *, lambda_param: float = 0.0051, gather_distributed: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        self.lambda_param = check_number(name, "lambda_param", lambda_param, minimum=0.0)
        self.gather_distributed = _check_flag(name, "gather_distributed", gather_distributed)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return _classic.barlow_twins_loss(
            z1, z2, lambda_param=self.lambda_param, gather_distributed=self.gather_distributed
        )

    def extra_repr(self) -> str:
        return f"lambda_param={self.lambda_param}, gather_distributed={self.gather_distributed}"


class VICRegLoss(nn.Module):
    """VICReg loss; see :func:`matrixinfo.functional.vicreg_loss`.

    Args:
        lambda_param: weight of the invariance (MSE) term, default 25.
        mu_param: weight of the variance term, default 25.
        nu_param: weight of the covariance term, default 1.
        gather_distributed: compute every term over the global batch.
        eps: added to the variance before the square root, default 1e-4.

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
        self.gather_distributed = _check_flag(name, "gather_distributed", gather_distributed)
        self.eps = check_number(name, "eps", eps, minimum=0.0)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return _classic.vicreg_loss(
            z1,
            z2,
            lambda_param=self.lambda_param,
            mu_param=self.mu_param,
            nu_param=self.nu_param,
            gather_distributed=self.gather_distributed,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"lambda_param={self.lambda_param}, mu_param={self.mu_param}, nu_param={self.nu_param}, "
            f"gather_distributed={self.gather_distributed}, eps={self.eps}"
        )


class SimCLRLoss(nn.Module):
    """SimCLR's NT-Xent loss; see :func:`matrixinfo.functional.simclr_loss`.

    Args:
        temperature: softmax temperature ``> 0``, default 0.5 (lightly's).
        gather_distributed: take the negatives from the global batch; the value
            is then the full-batch value on every process.

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

    def __init__(self, *, temperature: float = 0.5, gather_distributed: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        self.temperature = check_number(name, "temperature", temperature, minimum=0.0, strict=True)
        self.gather_distributed = _check_flag(name, "gather_distributed", gather_distributed)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return _classic.simclr_loss(z1, z2, temperature=self.temperature, gather_distributed=self.gather_distributed)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"


class NegativeCosineSimilarityLoss(nn.Module):
    """SimSiam's negative cosine similarity; see
    :func:`matrixinfo.functional.negative_cosine_similarity_loss`.

    No hyperparameters. The target is not detached by the loss: pass
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

    def forward(self, online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _classic.negative_cosine_similarity_loss(online, target)


class BYOLLoss(nn.Module):
    """BYOL's loss ``2 - 2 cos``; see :func:`matrixinfo.functional.byol_loss`.

    No hyperparameters. The target (the EMA network's projection) is not
    detached by the loss: compute it under ``torch.no_grad()`` or detach it.

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

    def forward(self, online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _classic.byol_loss(online, target)


class SpectralContrastiveLoss(nn.Module):
    """Spectral contrastive loss; see
    :func:`matrixinfo.functional.spectral_contrastive_loss`.

    Args:
        mu: ``> 0``; rows are projected into the ball of radius ``sqrt(mu)``
            and the loss is divided by ``mu``. Default 1 (the authors' CIFAR
            value; ImageNet 10).
        gather_distributed: pair each process's rows with the global batch.

    Shape:
        - ``z1``, ``z2``: ``(B, d)`` with ``B >= 2``.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import SpectralContrastiveLoss
        >>> SpectralContrastiveLoss()(torch.eye(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64))
        tensor(-2., dtype=torch.float64)
    """

    def __init__(self, *, mu: float = 1.0, gather_distributed: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        self.mu = check_number(name, "mu", mu, minimum=0.0, strict=True)
        self.gather_distributed = _check_flag(name, "gather_distributed", gather_distributed)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return _classic.spectral_contrastive_loss(z1, z2, mu=self.mu, gather_distributed=self.gather_distributed)

    def extra_repr(self) -> str:
        return f"mu={self.mu}, gather_distributed={self.gather_distributed}"


class CorInfoMaxLoss(nn.Module):
    """CorInfoMax loss with its running estimates; see
    :func:`matrixinfo.functional.corinfomax_loss`.

    The running covariances and means of both branches are float64 buffers
    ``R1``, ``R2`` (``(dim, dim)``, initially the identity) and ``mu1``,
    ``mu2`` (``(dim,)``, initially zero): they travel with ``.to(device)``, are
    saved in ``state_dict`` and restored by ``load_state_dict``. They are
    updated by every ``forward`` in training mode and left unchanged in
    evaluation mode (``.eval()``), like batch-norm statistics. ``.half()`` or
    ``.to(dtype)`` on the loss would convert them too: keep the loss module
    out of such calls, the estimates are meant to stay float64.

    Args:
        dim: embedding dimension ``d``.
        alpha: weight of the mean squared error, default 500.
        eps: diagonal regularization of the covariances, default 1e-6.
        forgetting: weight of the history in the running estimates, default 0.01.
        gather_distributed: estimate over the global batch, so that every
            process holds the same running estimates.

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
        self.gather_distributed = _check_flag(name, "gather_distributed", gather_distributed)
        initial = _classic.CorInfoMaxState.initial(dim)
        for field, tensor in zip(_classic.CorInfoMaxState._fields, initial):
            self.register_buffer(field, tensor)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if isinstance(z1, torch.Tensor) and z1.ndim == 2 and z1.shape[1] != self.dim:
            raise MatrixInfoValueError(
                f"{type(self).__name__}: expected z1 of shape (B, {self.dim}) for dim = {self.dim}, "
                f"got {shape_str(z1.shape)}."
            )
        state = _classic.CorInfoMaxState(self.R1, self.R2, self.mu1, self.mu2)
        loss, new_state = _classic.corinfomax_loss(
            z1,
            z2,
            state,
            alpha=self.alpha,
            eps=self.eps,
            forgetting=self.forgetting,
            gather_distributed=self.gather_distributed,
        )
        if self.training:
            with torch.no_grad():
                for buffer, value in zip(state, new_state):
                    buffer.copy_(value)
        return loss

    def reset_state(self) -> None:
        """Restore the initial estimates: identity covariances, zero means."""
        with torch.no_grad():
            for buffer, value in zip(
                (self.R1, self.R2, self.mu1, self.mu2), _classic.CorInfoMaxState.initial(self.dim)
            ):
                buffer.copy_(value)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, alpha={self.alpha}, eps={self.eps}, forgetting={self.forgetting}, "
            f"gather_distributed={self.gather_distributed}"
        )
