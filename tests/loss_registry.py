"""How to build and call every loss of :mod:`matrixinfo.losses`, for the
cross-cutting tests (``test_losses_common.py``, ``test_distributed.py``, ...).

Nothing here is written per loss: the cases are derived from
``matrixinfo.losses.__all__`` and each class's own attributes (see
``docs/contributing.rst``):

* ``inputs``: the call kind, ``"pair"`` (``loss(z1, z2)``, online first),
  ``"views"`` (``loss(*views)``; the tests pass three) or ``"llm"``
  (``loss(logits, target, embedding)``; not an embedding loss, so the
  embedding-input tests do not apply);
* ``variants``: named constructor settings, one case each (every ``method``
  of the matrix losses, so that exact and Taylor paths are both exercised);
* ``functional``: the twin, compared with the module;
* ``needs_dim`` / ``stateful``: the constructor takes ``dim`` first / the twin
  returns ``(loss, new_state)``;
* distributed support is read from the constructor's ``gather_distributed``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch

import matrixinfo.functional
import matrixinfo.losses

KINDS = ("pair", "views", "llm")


@dataclasses.dataclass(frozen=True)
class LossCase:
    cls_name: str
    id: str
    functional: str  # name in matrixinfo.functional; also the name in error messages
    kind: str = "pair"
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    taylor: bool = False  # may warn (RuntimeWarning) outside the series' convergence radius
    distributed: bool = True  # has a gather_distributed option
    needs_dim: bool = False  # constructor takes the embedding dimension first
    returns_state: bool = False  # the functional twin returns (loss, new_state)

    @property
    def available(self) -> bool:
        return hasattr(matrixinfo.losses, self.cls_name)

    def build(self, d: int | None = None, **overrides) -> torch.nn.Module:
        cls = getattr(matrixinfo.losses, self.cls_name)
        kwargs = {**self.kwargs, **overrides}
        return cls(d, **kwargs) if self.needs_dim else cls(**kwargs)

    def call(self, module: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return module(*inputs)

    def call_functional(self, inputs: Sequence[torch.Tensor], **overrides) -> torch.Tensor:
        fn = getattr(matrixinfo.functional, self.functional)
        out = fn(*inputs, **{**self.kwargs, **overrides})
        return out[0] if self.returns_state else out


def cases_of(cls_name: str) -> tuple[LossCase, ...]:
    """One case per variant the class declares."""
    cls = getattr(matrixinfo.losses, cls_name)
    distributed = "gather_distributed" in inspect.signature(cls).parameters
    out = []
    for suffix, kwargs in cls.variants.items():
        out.append(
            LossCase(
                cls_name,
                f"{cls_name}[{suffix}]" if suffix else cls_name,
                cls.functional.__name__,
                cls.inputs,
                dict(kwargs),
                taylor=kwargs.get("method") == "taylor",
                distributed=distributed,
                needs_dim=cls.needs_dim,
                returns_state=cls.stateful,
            )
        )
    return tuple(out)


REGISTRY: dict[str, tuple[LossCase, ...]] = {name: cases_of(name) for name in matrixinfo.losses.__all__}


def all_cases() -> list[LossCase]:
    return [case for cases in REGISTRY.values() for case in cases]


def params(*, kinds: Sequence[str] = KINDS, distributed: bool | None = None) -> list:
    """``pytest.param`` per case of the given kinds."""
    return [
        pytest.param(case, id=case.id)
        for case in all_cases()
        if case.kind in kinds and (distributed is None or case.distributed == distributed)
    ]


def available(*, kinds: Sequence[str] = KINDS, distributed: bool | None = None) -> list[LossCase]:
    return [
        case for case in all_cases() if case.kind in kinds and (distributed is None or case.distributed == distributed)
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
