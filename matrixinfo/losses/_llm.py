r"""nn.Module wrapper of the Matrix-LLM loss (paper appendix B, eq. 23)."""

from __future__ import annotations

import torch

from .. import functional as Fm
from .._checks import MatrixInfoValueError, check_choice, check_flag, check_int, check_number
from ._base import _Loss

__all__ = ["MatrixLLMLoss"]


class MatrixLLMLoss(_Loss):
    r"""Cross-entropy plus matrix cross-entropy over token embeddings (paper eq. 23).

    <formula>

    It reproduces the paper's definition for language models (appendix B; no
    authors' code is public), and ``method="exact"`` is checked against SciPy in
    the tests.

    Args:
        mce_weight: weight :math:`w \ge 0` of the matrix cross-entropy term. Default 1 (eq. 23).
        method: ``"lanczos"`` (default: ``steps`` Lanczos steps from the
            target's embedding and Gauss quadrature, ``2 * steps - 1 + min(steps, 3)``
            logits-sized matmuls; first derivatives only), ``"topk"`` (the
            ``top_k`` most probable tokens exactly, the rest in a
            ``rank``-dimensional subspace), ``"subspace"`` (the rest projected
            onto a shared basis plus the target's own direction, with a
            trace-matched isotropic remainder; first derivatives only, not
            under vmap) or ``"exact"`` (the full ``(d, d)`` matrices). The
            measured errors of each are in :func:`matrixinfo.functional.matrix_llm_loss`.
        top_k: number of most probable tokens kept exactly by ``"subspace"`` and ``"topk"``, an integer ``>= 1``.
            Default 32.
        rank: dimension ``>= 0`` of the shared basis of the other tokens
            (``"subspace"`` and ``"topk"``; 0 keeps an isotropic rest only). Default 32.
        steps: number ``>= 1`` of Lanczos steps of ``"lanczos"``. Default 4.
        eps: :math:`\varepsilon > 0` added to the covariances. Default 1e-6.
        ignore_index: target value whose positions are skipped (class-index
            targets), any integer. Default -100, as :class:`torch.nn.CrossEntropyLoss`.
        detach_embedding: stop the MCE term's gradient into ``embedding``. Default False.

    Shape:
        - ``logits``: ``(N, n)`` (or ``(*, n)``, flattened) over a vocabulary of ``n`` tokens.
        - ``target``: ``(N,)`` class indices or ``(N, n)`` probabilities.
        - ``embedding``: ``(n, d)``, e.g. the LM head's weight.
        - Output: ``()``, to minimize.

    Examples:
        >>> import torch
        >>> from matrixinfo.losses import MatrixLLMLoss
        >>> logits = torch.randn(6, 20, dtype=torch.float64)
        >>> labels = torch.tensor([0, 3, 5, -100, 19, 2])
        >>> head = torch.randn(20, 8, dtype=torch.float64)
        >>> MatrixLLMLoss()(logits, labels, head).shape
        torch.Size([])
    """

    functional = staticmethod(Fm.matrix_llm_loss)
    inputs = "llm"
    variants = {
        "": {},
        "topk": {"method": "topk"},
        "subspace": {"method": "subspace"},
        "exact": {"method": "exact"},
    }

    def __init__(
        self,
        *,
        mce_weight: float = 1.0,
        method: str = "lanczos",
        top_k: int = 32,
        rank: int = 32,
        steps: int = 4,
        eps: float = 1e-6,
        ignore_index: int = -100,
        detach_embedding: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_number(name, "mce_weight", mce_weight, minimum=0.0)
        check_choice(name, "method", method, ("lanczos", "subspace", "topk", "exact"))
        check_int(name, "top_k", top_k, 1)
        check_int(name, "rank", rank, 0)
        check_int(name, "steps", steps, 1)
        check_number(name, "eps", eps, minimum=0.0, strict=True)
        self.mce_weight, self.method, self.top_k, self.rank, self.eps = mce_weight, method, top_k, rank, eps
        self.steps = steps
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise MatrixInfoValueError(f"{name}: expected ignore_index to be an integer, got {ignore_index!r}.")
        self.ignore_index = ignore_index
        self.detach_embedding = check_flag(name, "detach_embedding", detach_embedding)

    @classmethod
    def example_inputs(
        cls,
        batch: int = 12,
        dim: int = 6,
        *,
        views: int | None = None,
        dtype: torch.dtype = torch.float64,
        seed: int = 0,
    ) -> tuple[torch.Tensor, ...]:
        """Representative inputs: ``(batch, 20)`` logits, ``(batch,)`` labels and a ``(20, dim)`` embedding.

        ``views`` is unused (the signature is the base class's).
        """
        g = torch.Generator().manual_seed(seed)
        vocabulary = 20
        logits = torch.randn(batch, vocabulary, generator=g, dtype=dtype)
        target = torch.randint(0, vocabulary, (batch,), generator=g)
        embedding = torch.randn(vocabulary, dim, generator=g, dtype=dtype)
        return logits, target, embedding

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, embedding: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one batch of token predictions.

        Args:
            logits: ``(N, n)`` unnormalized scores.
            target: ``(N,)`` class indices or ``(N, n)`` probabilities.
            embedding: ``(n, d)`` token embeddings; pass the LM head's weight,
                e.g. ``criterion(logits, labels, model.lm_head.weight)``.
            return_terms: also return the terms of the loss, named in the functional twin's docstring.

        Returns:
            0-d tensor to minimize; with ``return_terms=True``, ``(loss, terms)``, ``terms`` a dict of
            detached 0-d tensors.
        """
        return self._twin(logits, target, embedding, return_terms=return_terms, **self._options())
