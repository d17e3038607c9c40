"""nn.Module wrapper of the Matrix-LLM loss (paper appendix B)."""

from __future__ import annotations

import torch
from torch import nn

from .. import functional as Fm
from .._checks import MatrixInfoValueError, check_choice, check_flag, check_int, check_number

__all__ = ["MatrixLLMLoss"]


class MatrixLLMLoss(nn.Module):
    """Cross-entropy plus matrix cross-entropy over token embeddings (paper eq. 23);
    see :func:`matrixinfo.functional.matrix_llm_loss` for the formula, the
    regularization and the scalable ``"subspace"`` (default) and ``"topk"`` methods.

    ``forward(logits, target, embedding)``: logits ``(N, n)``, target ``(N,)``
    class indices (or ``(N, n)`` probabilities), embedding ``(n, d)`` — pass the
    LM head's weight, e.g. ``criterion(logits, labels, model.lm_head.weight)``.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import MatrixLLMLoss
        >>> logits = torch.randn(6, 20, dtype=torch.float64)
        >>> labels = torch.tensor([0, 3, 5, -100, 19, 2])
        >>> head = torch.randn(20, 8, dtype=torch.float64)
        >>> MatrixLLMLoss()(logits, labels, head).shape
        torch.Size([])
    """

    def __init__(self, *, mce_weight: float = 1.0, method: str = "subspace", top_k: int = 32, rank: int = 16, eps: float = 1e-6,
                 ignore_index: int = -100, detach_embedding: bool = False):
        super().__init__()
        name = type(self).__name__
        check_number(name, "mce_weight", mce_weight, minimum=0.0)
        check_choice(name, "method", method, ("subspace", "topk", "exact"))
        check_int(name, "top_k", top_k, 1)
        check_int(name, "rank", rank, 0)
        check_number(name, "eps", eps, minimum=0.0, strict=True)
        self.mce_weight, self.method, self.top_k, self.rank, self.eps = mce_weight, method, top_k, rank, eps
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise MatrixInfoValueError(f"{name}: expected ignore_index to be an integer, got {ignore_index!r}.")
        self.ignore_index = ignore_index
        self.detach_embedding = check_flag(name, "detach_embedding", detach_embedding)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return Fm.matrix_llm_loss(
            logits, target, embedding, mce_weight=self.mce_weight, method=self.method, top_k=self.top_k,
            rank=self.rank, eps=self.eps, ignore_index=self.ignore_index, detach_embedding=self.detach_embedding,
        )

    def extra_repr(self) -> str:
        return (f"mce_weight={self.mce_weight}, method={self.method!r}, top_k={self.top_k}, rank={self.rank}, eps={self.eps}, "
                f"ignore_index={self.ignore_index}, detach_embedding={self.detach_embedding}")
