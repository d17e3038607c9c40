"""Input validation shared by the whole package.

Every check runs before any computation and raises one of the library's own
exceptions, which subclass the builtin :class:`ValueError` / :class:`TypeError`
so that ``except ValueError`` keeps working. Messages have the form
``"<function>: expected <argument> to <expectation>, got <what was given>."``.

Checks here only look at shapes, dtypes and devices: they never read tensor
data, so they cost nothing and never synchronize a GPU.
"""

from __future__ import annotations

import sys
import warnings
from typing import Iterable, Sequence

import torch

__all__: list[str] = []

_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class MatrixInfoValueError(ValueError):
    """A value or shape given to a matrixinfo function is not acceptable.

    Subclasses :class:`ValueError`; the message names the function, the
    argument, what was expected and what was given.

    Examples:
        >>> import torch
        >>> from matrixinfo import MatrixInfoValueError, matrix_entropy
        >>> try:
        ...     matrix_entropy(torch.zeros(3, 4))
        ... except MatrixInfoValueError as err:
        ...     print(err)
        matrix_entropy: expected A to be a square matrix of shape (*, n, n), got shape (3, 4).
        >>> issubclass(MatrixInfoValueError, ValueError)
        True
    """


class MatrixInfoTypeError(TypeError):
    """A type or dtype given to a matrixinfo function is not acceptable.

    Subclasses :class:`TypeError`.

    Examples:
        >>> import torch
        >>> from matrixinfo import MatrixInfoTypeError, effective_rank
        >>> try:
        ...     effective_rank(torch.eye(3, dtype=torch.int64))
        ... except MatrixInfoTypeError as err:
        ...     print(err)
        effective_rank: expected A to have a real floating dtype (float16, bfloat16, float32 or float64), got torch.int64.
    """


class MatrixInfoSecondDerivativeError(RuntimeError):
    """A second derivative was asked of a path that does not provide one.

    Raised when a gradient computed with ``create_graph=True`` is
    differentiated again through a path whose hand-written backward is not
    itself differentiable (the ``"topk"`` path of
    :func:`matrixinfo.functional.matrix_llm_loss`), instead of returning a
    wrong Hessian-vector product. The first derivative is unaffected. Subclasses
    :class:`RuntimeError`, as autograd's own errors.

    Examples:
        >>> import torch
        >>> from matrixinfo import MatrixInfoSecondDerivativeError
        >>> from matrixinfo.functional import matrix_llm_loss
        >>> logits = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
        >>> E = torch.randn(5, 2, dtype=torch.float64)
        >>> loss = matrix_llm_loss(logits, torch.tensor([0, 1, 2]), E)
        >>> (g,) = torch.autograd.grad(loss, logits, create_graph=True)
        >>> try:
        ...     torch.autograd.grad(g.square().sum(), logits)
        ... except MatrixInfoSecondDerivativeError as err:
        ...     print(str(err).split(";")[0])
        matrix_llm_loss: second derivatives are not supported on the method='topk' path
    """


def shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_tensor(fn: str, name: str, x) -> torch.Tensor:
    """``x`` must be a real floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise MatrixInfoTypeError(
            f"{fn}: expected {name} to be a torch.Tensor, got {type(x).__name__}."
        )
    if x.dtype not in _FLOATING:
        raise MatrixInfoTypeError(
            f"{fn}: expected {name} to have a real floating dtype "
            f"(float16, bfloat16, float32 or float64), got {x.dtype}."
        )
    return x


def check_square(fn: str, name: str, x) -> torch.Tensor:
    """``x`` must be a real floating tensor of shape ``(*, n, n)``."""
    check_tensor(fn, name, x)
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise MatrixInfoValueError(
            f"{fn}: expected {name} to be a square matrix of shape (*, n, n), "
            f"got shape {shape_str(x.shape)}."
        )
    if x.shape[-1] == 0:
        raise MatrixInfoValueError(
            f"{fn}: expected {name} to have n >= 1, got shape {shape_str(x.shape)}."
        )
    return x


def check_matrix(fn: str, name: str, x) -> torch.Tensor:
    """``x`` must be a real floating tensor of shape ``(*, m, n)``."""
    check_tensor(fn, name, x)
    if x.ndim < 2 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise MatrixInfoValueError(
            f"{fn}: expected {name} to be a matrix of shape (*, m, n) with m, n >= 1, "
            f"got shape {shape_str(x.shape)}."
        )
    return x


def check_same_matrix_shape(fn: str, names: tuple[str, str], a: torch.Tensor, b: torch.Tensor) -> None:
    """``a`` and ``b`` must have equal trailing dims and broadcastable batch dims."""
    ok = a.shape[-2:] == b.shape[-2:]
    if ok:
        try:
            torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except RuntimeError:
            ok = False
    if not ok:
        raise MatrixInfoValueError(
            f"{fn}: expected {names[0]} and {names[1]} to have the same matrix shape and "
            f"broadcastable batch dimensions, got {shape_str(a.shape)} and {shape_str(b.shape)}."
        )
    check_same_device(fn, names, a, b)


def check_same_device(fn: str, names: Iterable[str], *tensors: torch.Tensor) -> None:
    devices = [t.device for t in tensors]
    if any(d != devices[0] for d in devices[1:]):
        listing = ", ".join(f"{n} on {d}" for n, d in zip(names, devices))
        raise MatrixInfoValueError(f"{fn}: expected all inputs on one device, got {listing}.")


def check_choice(fn: str, name: str, value, allowed: Sequence[str]) -> str:
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise MatrixInfoValueError(f"{fn}: expected {name} to be one of {listed}, got {value!r}.")
    return value


def check_int(fn: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MatrixInfoValueError(
            f"{fn}: expected {name} to be an integer >= {minimum}, got {value!r}."
        )
    return value


def check_number(fn: str, name: str, value, *, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MatrixInfoTypeError(f"{fn}: expected {name} to be a real number, got {value!r}.")
    value = float(value)
    if value != value:
        raise MatrixInfoValueError(f"{fn}: expected {name} to be a real number, got nan.")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        op = ">" if strict else ">="
        raise MatrixInfoValueError(f"{fn}: expected {name} {op} {minimum}, got {value!r}.")
    return value


def warn(message: str) -> None:
    """Emit a :class:`RuntimeWarning` attributed to the first caller outside
    matrixinfo (and torch's autograd/module machinery), whatever the depth of
    the call inside the library."""
    level = 2  # stacklevel 2 is warn()'s caller, frame _getframe(1)
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not (module == "matrixinfo" or module.startswith(("matrixinfo.", "torch."))):
            break
        frame = frame.f_back
        level += 1
    warnings.warn(message, RuntimeWarning, stacklevel=level)


def check_embeddings(fn: str, names: Sequence[str], *zs, min_rows: int = 2) -> None:
    """Embeddings must be floating ``(B, d)`` tensors with ``B >= min_rows``, of
    one shape and on one device."""
    for name, z in zip(names, zs):
        check_tensor(fn, name, z)
        if z.ndim != 2 or z.shape[0] < min_rows or z.shape[1] < 1:
            raise MatrixInfoValueError(
                f"{fn}: expected {name} to have shape (B, d) with B >= {min_rows} and d >= 1, "
                f"got {shape_str(z.shape)}."
            )
    shapes = [tuple(z.shape) for z in zs]
    if any(s != shapes[0] for s in shapes[1:]):
        listing = " and ".join(f"{n} {shape_str(s)}" for n, s in zip(names, shapes))
        raise MatrixInfoValueError(f"{fn}: expected inputs of the same shape (B, d), got {listing}.")
    check_same_device(fn, names, *zs)
