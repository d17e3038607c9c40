"""How to build and call every loss of :mod:`matrixinfo.losses`, for the
cross-cutting tests (``test_losses_common.py``, ``test_distributed.py``).

Each public loss class has one or more :class:`LossCase` entries (one per
``method`` for the matrix losses, so that exact and Taylor paths are both
exercised). A class named here but not (yet) defined in the package is
skipped by :func:`params`; ``test_registry_covers_every_public_loss`` fails
until the registry and ``matrixinfo.losses.__all__`` name the same classes, so
nothing stays skipped unnoticed.

Call kinds:

``"pair"``
    ``loss(z1, z2)`` with two ``(B, d)`` views, online first.
``"views"``
    ``loss(*views)`` with one or more ``(B, d)`` views (multi-view losses);
    the tests pass several.
``"llm"``
    ``loss(logits, target, embedding)`` (Matrix-LLM). Not an embedding loss:
    the embedding-input tests (degenerate batches, ``check_embeddings``
    errors, distributed gathering) do not apply; the generic ones (0-d output,
    module equals functional, autocast) do.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence

import pytest
import torch

import matrixinfo.functional
import matrixinfo.losses

KINDS = ("pair", "views", "llm")


@dataclasses.dataclass(frozen=True)
class LossCase:
    cls_name: str
    id: str
    functional: Optional[str]  # name in matrixinfo.functional; also the name in error messages
    kind: str = "pair"
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    taylor: bool = False  # may warn (RuntimeWarning) outside the series' convergence radius
    distributed: bool = True  # has a gather_distributed option
    needs_dim: bool = False  # constructor takes the embedding dimension first
    returns_state: bool = False  # the functional twin returns (loss, new_state)

    @property
    def available(self) -> bool:
        return hasattr(matrixinfo.losses, self.cls_name)

    def build(self, d: Optional[int] = None, **overrides) -> torch.nn.Module:
        cls = getattr(matrixinfo.losses, self.cls_name)
        kwargs = {**self.kwargs, **overrides}
        return cls(d, **kwargs) if self.needs_dim else cls(**kwargs)

    def call(self, module: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return module(*inputs)

    def call_functional(self, inputs: Sequence[torch.Tensor], **overrides) -> torch.Tensor:
        fn = getattr(matrixinfo.functional, self.functional)
        out = fn(*inputs, **{**self.kwargs, **overrides})
        return out[0] if self.returns_state else out


def _matrix_cases(cls_name, functional, kind, methods, **kwargs):
    return tuple(
        LossCase(cls_name, f"{cls_name}[{m}]", functional, kind, {**kwargs, "method": m}, taylor=(m == "taylor"))
        for m in methods
    )


REGISTRY: dict[str, tuple[LossCase, ...]] = {
    # Classic losses (matrixinfo/losses/_classic.py).
    "BarlowTwinsLoss": (LossCase("BarlowTwinsLoss", "BarlowTwinsLoss", "barlow_twins_loss"),),
    "VICRegLoss": (LossCase("VICRegLoss", "VICRegLoss", "vicreg_loss"),),
    "SimCLRLoss": (LossCase("SimCLRLoss", "SimCLRLoss", "simclr_loss"),),
    "NegativeCosineSimilarityLoss": (
        LossCase(
            "NegativeCosineSimilarityLoss", "NegativeCosineSimilarityLoss", "negative_cosine_similarity_loss",
            distributed=False,
        ),
    ),
    "BYOLLoss": (LossCase("BYOLLoss", "BYOLLoss", "byol_loss", distributed=False),),
    "SpectralContrastiveLoss": (
        LossCase("SpectralContrastiveLoss", "SpectralContrastiveLoss", "spectral_contrastive_loss"),
    ),
    "CorInfoMaxLoss": (
        LossCase("CorInfoMaxLoss", "CorInfoMaxLoss", "corinfomax_loss", needs_dim=True, returns_state=True),
    ),
    # Matrix-information losses (matrixinfo/losses/_matrix.py): both methods each.
    "MatrixSSLLoss": _matrix_cases("MatrixSSLLoss", "matrix_ssl_loss", "pair", ("taylor", "exact"))
    + (
        LossCase(
            "MatrixSSLLoss", "MatrixSSLLoss[paper-exact]", "matrix_ssl_loss", "pair",
            {"method": "exact", "formulation": "paper"},
        ),
    ),
    "MatrixKLUniformityLoss": _matrix_cases(
        "MatrixKLUniformityLoss", "matrix_kl_uniformity_loss", "pair", ("taylor", "exact")
    ),
    "MatrixKLAlignmentLoss": _matrix_cases(
        "MatrixKLAlignmentLoss", "matrix_kl_alignment_loss", "pair", ("taylor", "exact")
    )
    + (
        LossCase(
            "MatrixKLAlignmentLoss", "MatrixKLAlignmentLoss[paper-exact]", "matrix_kl_alignment_loss", "pair",
            {"method": "exact", "formulation": "paper"},
        ),
    ),
    "UniformityMCELoss": _matrix_cases("UniformityMCELoss", "uniformity_mce_loss", "views", ("exact", "taylor")),
    "UniformityMKLLoss": _matrix_cases("UniformityMKLLoss", "uniformity_mkl_loss", "views", ("exact", "taylor")),
    "TCRLoss": _matrix_cases("TCRLoss", "tcr_loss", "views", ("exact", "taylor")),
    "EMPTCRLoss": _matrix_cases("EMPTCRLoss", "emp_tcr_loss", "views", ("exact", "taylor")),
    "EMPSSLLoss": _matrix_cases("EMPSSLLoss", "emp_ssl_loss", "views", ("exact", "taylor")),
    "MECLoss": _matrix_cases("MECLoss", "mec_loss", "pair", ("taylor", "exact")),
    # Matrix-LLM (matrixinfo/losses/_llm.py): logits, not embeddings.
    "MatrixLLMLoss": tuple(
        LossCase("MatrixLLMLoss", f"MatrixLLMLoss[{m}]", "matrix_llm_loss", "llm", {"method": m}, distributed=False)
        for m in ("topk", "exact")
    ),
}


def all_cases() -> list[LossCase]:
    return [case for cases in REGISTRY.values() for case in cases]


def params(*, kinds: Sequence[str] = KINDS, distributed: Optional[bool] = None) -> list:
    """``pytest.param`` per case of the given kinds; absent classes are skipped."""
    out = []
    for case in all_cases():
        if case.kind not in kinds or (distributed is not None and case.distributed != distributed):
            continue
        marks = () if case.available else (
            pytest.mark.skip(reason=f"{case.cls_name} is not in matrixinfo.losses yet"),
        )
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


def available(*, kinds: Sequence[str] = KINDS, distributed: Optional[bool] = None) -> list[LossCase]:
    return [
        case
        for case in all_cases()
        if case.available and case.kind in kinds and (distributed is None or case.distributed == distributed)
    ]


# --------------------------------------------------------------------------- #
# Inputs                                                                       #
# --------------------------------------------------------------------------- #
def n_views(case: LossCase) -> int:
    """Views passed to a case: 2 for pairs, 3 for multi-view losses."""
    return 3 if case.kind == "views" else 2


def llm_inputs(N: int = 12, n: int = 20, d: int = 6, *, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, n, generator=g, dtype=dtype)
    target = torch.randint(0, n, (N,), generator=g)
    embedding = torch.randn(n, d, generator=g, dtype=dtype)
    return logits, target, embedding
