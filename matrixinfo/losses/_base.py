"""What every loss module shares: the link to its functional twin and what tests, examples and benchmarks need.

A loss class is a thin :class:`torch.nn.Module`: an explicit ``__init__`` that
validates and stores its hyperparameters, and a ``forward`` that calls the
functional twin through :meth:`_Loss._twin`, passing its keyword-only
``return_terms`` on (every twin takes it: checked when the class is defined).
The class attributes below tell
the test registry, the examples and the benchmarks how to build and call it,
so that adding a loss touches its functional and its module only (see
``docs/contributing.rst``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import ClassVar

import torch
from torch import nn

from .._checks import warnings_owned_by

#: Where the description of a Google-style docstring ends.
_SECTION = re.compile(r"^(Args|Arguments|Returns|Raises|Examples?|References|Notes?|Warnings?|Shape|Yields):\s*$")
#: The line of a class docstring replaced by the functional twin's description (the formula).
FORMULA_MARKER = "<formula>"


def _description(fn: Callable) -> str:
    """The text of ``fn``'s docstring between its summary line and its first section."""
    lines = inspect.cleandoc(fn.__doc__ or "").splitlines()[1:]
    out = []
    for line in lines:
        if _SECTION.match(line):
            break
        out.append(line)
    return "\n".join(out).strip("\n")


class _Loss(nn.Module):
    """Base of every loss module (private: the public classes are the losses)."""

    #: The functional twin in :mod:`matrixinfo.functional` that ``forward`` calls; the formula is written there.
    functional: ClassVar[Callable]
    #: How ``forward`` is called: ``"pair"`` ``(z1, z2)``, ``"views"`` ``(*views)`` or ``"llm"``
    #: ``(logits, target, embedding)``.
    inputs: ClassVar[str] = "pair"
    #: Whether the constructor takes the embedding dimension as its first argument.
    needs_dim: ClassVar[bool] = False
    #: The smallest batch ``B`` it accepts: 1 for a per-sample mean, 2 where statistics over the batch are taken.
    min_batch: ClassVar[int] = 2
    #: Whether the functional twin takes and returns a running state (``(loss, new_state)``).
    stateful: ClassVar[bool] = False
    #: Named constructor settings that together reach every code path (the tests run each one);
    #: ``""`` names the defaults.
    variants: ClassVar[Mapping[str, Mapping[str, object]]] = {"": {}}
    #: Further functionals whose formulas the class docstring shows after the twin's (terms of a sum).
    formula_terms: ClassVar[tuple[Callable, ...]] = ()
    #: The latest warning of this loss (shown once per instance; see :class:`matrixinfo.MatrixInfoWarning`).
    last_warning = None

    #: The constructor's named parameters, and its keyword-only ones (passed to the functional); read once, here.
    _parameter_names: ClassVar[tuple[str, ...]] = ()
    _option_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
        cls._parameter_names = tuple(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        cls._option_names = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)
        doc = cls.__dict__.get("__doc__")
        twin = cls.__dict__.get("functional")
        if doc and twin is not None and FORMULA_MARKER in doc:
            text = ""
            for i, term in enumerate((twin, *cls.__dict__.get("formula_terms", ()))):
                fn = getattr(term, "__func__", term)
                heading = "Formula (written once, in" if i == 0 else "One of its terms (from"
                text += f"{heading} :func:`matrixinfo.functional.{fn.__name__}`):\n\n"
                text += _description(fn) + "\n\n"
            indented = "\n".join(("    " + line) if line.strip() else "" for line in text.splitlines())
            cls.__doc__ = doc.replace("    " + FORMULA_MARKER, indented.rstrip("\n"))
        if twin is not None and "return_terms" not in inspect.signature(twin).parameters:
            name = getattr(twin, "__name__", repr(twin))
            raise TypeError(
                f"{cls.__name__}: its functional twin {name} must take return_terms (docs/contributing.rst)."
            )
        init = cls.__dict__.get("__init__")
        if init is not None and not init.__doc__:
            init.__doc__ = f"Build the loss from the arguments listed under Args in :class:`{cls.__name__}`."

    @classmethod
    def make(cls, dim: int, **kwargs) -> _Loss:
        """An instance for ``(B, dim)`` embeddings: ``dim`` is passed only to losses that need it."""
        return cls(dim, **kwargs) if cls.needs_dim else cls(**kwargs)

    @classmethod
    def example_inputs(
        cls,
        batch: int = 32,
        dim: int = 8,
        *,
        views: int | None = None,
        dtype: torch.dtype = torch.float64,
        seed: int = 0,
    ) -> tuple[torch.Tensor, ...]:
        """Representative inputs of ``forward``: correlated ``(batch, dim)`` views of one batch.

        ``views`` defaults to 2 (3 for multi-view losses). Matrix-LLM overrides this.
        """
        g = torch.Generator().manual_seed(seed)
        n = views if views is not None else (3 if cls.inputs == "views" else 2)
        base = torch.randn(batch, dim, generator=g, dtype=dtype)
        return tuple(base + 0.5 * torch.randn(batch, dim, generator=g, dtype=dtype) for _ in range(n))

    def _options(self) -> dict[str, object]:
        """The constructor's keyword options, as stored (``dim`` aside)."""
        return {k: getattr(self, k) for k in type(self)._option_names}

    def _twin(self, *inputs, return_terms: bool = False, **options):
        """Call the functional twin; its warnings are shown once per instance (``last_warning``).

        ``return_terms`` is passed on: with True the twin returns ``(loss, terms)``
        (a stateful twin ``(loss, new_state, terms)``), which ``forward`` returns
        as ``(loss, terms)``. See "Loss terms" in ``docs/contributing.rst``.
        """
        fn = type(self).functional
        options["return_terms"] = return_terms
        if torch.compiler.is_compiling():  # a compiled graph reads nothing on the host, so it never warns
            return fn(*inputs, **options)
        with warnings_owned_by(self):
            return fn(*inputs, **options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in type(self)._parameter_names)


def views_of(views: tuple) -> tuple:
    """``forward(*views)`` also accepts one sequence of views."""
    if len(views) == 1 and isinstance(views[0], (list, tuple)):
        return tuple(views[0])
    return views
