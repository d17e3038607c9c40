"""Input validation shared by the whole package.

Every check runs before any computation and raises one of the library's own
exceptions, which subclass the builtin :class:`ValueError` / :class:`TypeError`
so that ``except ValueError`` keeps working. Messages have the form
``"<function>: expected <argument> to <expectation>, got <what was given>."``.

Checks here only look at shapes, dtypes and devices: they never read tensor
data, so they cost nothing and never synchronize a GPU.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
import warnings
from collections.abc import Iterable, Sequence

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
    """  # noqa: E501 - a doctest's expected output is one line


class MatrixInfoWarning(RuntimeWarning):
    """The category of every warning matrixinfo emits (suspect numerics).

    Subclasses :class:`RuntimeWarning`. Silence them all with
    ``warnings.filterwarnings("ignore", category=MatrixInfoWarning)``.

    A loss module shows a given warning once per instance; the latest message
    (with the latest figure) stays in its ``last_warning`` attribute. A function
    called directly shows it once per calling line, as Python's ``"default"``
    action would if the figure did not change the message. Under the
    ``"always"`` or ``"error"`` actions every occurrence is shown.

    Examples:
        >>> import warnings
        >>> import torch
        >>> from matrixinfo import MatrixInfoWarning
        >>> from matrixinfo.losses import TCRLoss
        >>> loss = TCRLoss(method="taylor")
        >>> z = torch.eye(4, dtype=torch.float64).repeat(2, 1)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("default")
        ...     for _ in range(5):
        ...         _ = loss(z)
        >>> [w.category.__name__ for w in caught]
        ['MatrixInfoWarning']
        >>> loss.last_warning.startswith("tcr_loss: the Taylor series")
        True
        >>> issubclass(MatrixInfoWarning, RuntimeWarning)
        True
    """


class MatrixInfoSecondDerivativeError(RuntimeError):
    """A second derivative was asked of a path that does not provide one.

    Raised when a gradient computed with ``create_graph=True`` is
    differentiated again through a path whose hand-written backward is not
    itself differentiable (the ``"lanczos"``, ``"topk"`` and ``"subspace"``
    paths of :func:`matrixinfo.functional.matrix_llm_loss`), instead of returning a
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
        matrix_llm_loss: second derivatives are not supported on the method='lanczos' path
    """


def shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_tensor(fn: str, name: str, x) -> torch.Tensor:
    """``x`` must be a real floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise MatrixInfoTypeError(f"{fn}: expected {name} to be a torch.Tensor, got {type(x).__name__}.")
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
            f"{fn}: expected {name} to be a square matrix of shape (*, n, n), got shape {shape_str(x.shape)}."
        )
    if x.shape[-1] == 0:
        raise MatrixInfoValueError(f"{fn}: expected {name} to have n >= 1, got shape {shape_str(x.shape)}.")
    return x


def check_matrix(fn: str, name: str, x) -> torch.Tensor:
    """``x`` must be a real floating tensor of shape ``(*, m, n)``."""
    check_tensor(fn, name, x)
    if x.ndim < 2 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise MatrixInfoValueError(
            f"{fn}: expected {name} to be a matrix of shape (*, m, n) with m, n >= 1, got shape {shape_str(x.shape)}."
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
        listing = ", ".join(f"{n} on {d}" for n, d in zip(names, devices, strict=False))
        raise MatrixInfoValueError(f"{fn}: expected all inputs on one device, got {listing}.")


def check_not_meta(fn: str, name: str, x: torch.Tensor) -> None:
    """Functions that read values on the host (or whose output shape depends
    on the data) cannot run on the meta device: say so instead of torch's
    ``Tensor.item() cannot be called on meta tensors``."""
    if x.device.type == "meta":
        raise MatrixInfoValueError(
            f"{fn}: expected {name} on a device with data, got a meta tensor; {fn} reads values "
            "on the host, so it supports no shape inference on meta tensors (the matrix losses do)."
        )


def check_choice(fn: str, name: str, value, allowed: Sequence[str]) -> str:
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise MatrixInfoValueError(f"{fn}: expected {name} to be one of {listed}, got {value!r}.")
    return value


def check_int(fn: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MatrixInfoValueError(f"{fn}: expected {name} to be an integer >= {minimum}, got {value!r}.")
    return value


def check_number(
    fn: str,
    name: str,
    value,
    *,
    minimum: float | None = None,
    strict: bool = False,
    maximum: float | None = None,
) -> float:
    """A finite real number (a Python or NumPy scalar, not a bool), optionally
    ``>= minimum`` (``> minimum`` if ``strict``) and ``<= maximum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MatrixInfoTypeError(f"{fn}: expected {name} to be a real number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise MatrixInfoValueError(f"{fn}: expected {name} to be a finite real number, got {value!r}.")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        op = ">" if strict else ">="
        raise MatrixInfoValueError(f"{fn}: expected {name} {op} {minimum}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise MatrixInfoValueError(f"{fn}: expected {name} <= {maximum}, got {value!r}.")
    return value


def check_flag(fn: str, name: str, value) -> bool:
    """A real ``bool`` (``True``/``False``, NumPy's ``bool_`` too): config files
    yield strings such as ``"False"``, which are true in Python."""
    if type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    raise MatrixInfoValueError(f"{fn}: expected {name} to be True or False, got {value!r}.")


# The loss module a warning belongs to (set by the modules' forward), so that
# a training loop sees each warning of a loss instance once.
_OWNER: contextvars.ContextVar = contextvars.ContextVar("matrixinfo_warning_owner", default=None)
_SEEN_SITES: set = set()


@contextlib.contextmanager
def warnings_owned_by(module):
    """Attribute the warnings emitted inside the block to ``module``."""
    token = _OWNER.set(module)
    try:
        yield
    finally:
        _OWNER.reset(token)


def _action(message: str, module: str, lineno: int) -> str:
    """The action of the first warnings filter matching a MatrixInfoWarning
    (the logic of :func:`warnings.warn`, without its once-per-text registry)."""
    for action, msg, cat, mod, ln in warnings.filters:
        if (
            issubclass(MatrixInfoWarning, cat)
            and (msg is None or msg.match(message))
            and (mod is None or mod.match(module))
            and (ln == 0 or ln == lineno)
        ):
            return action
    return warnings.defaultaction


def warn(message: str, key: str | None = None) -> None:
    """Emit a :class:`MatrixInfoWarning` attributed to the first caller outside
    matrixinfo (and torch's autograd/module machinery), whatever the depth of
    the call inside the library.

    ``key`` names the kind of warning (by default the first 60 characters of
    the message, which hold the function and the kind, not the figures).
    Inside a loss module's ``forward`` (:func:`warnings_owned_by`) the
    message is stored as the module's ``last_warning`` and shown once per
    module and key; otherwise once per calling line and key. Filters with the
    ``"always"`` or ``"error"`` action see every occurrence."""
    level = 2  # stacklevel 2 is warn()'s caller, frame _getframe(1)
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not (module == "matrixinfo" or module.startswith(("matrixinfo.", "torch."))):
            break
        frame = frame.f_back
        level += 1
    key = key if key is not None else message[:60]  # the figures come later in every message
    owner = _OWNER.get()
    if owner is not None:
        try:
            object.__setattr__(owner, "last_warning", message)
            seen = owner.__dict__.setdefault("_matrixinfo_warned", set())
        except (AttributeError, TypeError):  # an object without a __dict__
            owner, seen = None, _SEEN_SITES
    else:
        seen = _SEEN_SITES
    if frame is not None:
        where = (frame.f_globals.get("__name__", ""), frame.f_code.co_filename, frame.f_lineno)
    else:
        where = ("", "", 0)
    if _action(message, where[0], where[2]) not in ("always", "error"):
        tag = key if owner is not None else (key, where[1], where[2])
        if tag in seen:
            return
        seen.add(tag)
    warnings.warn(message, MatrixInfoWarning, stacklevel=level)


def check_embeddings(fn: str, names: Sequence[str], *zs, min_rows: int = 2) -> None:
    """Embeddings must be floating ``(B, d)`` tensors with ``B >= min_rows``, of
    one shape and on one device."""
    for name, z in zip(names, zs, strict=False):
        check_tensor(fn, name, z)
        if z.ndim != 2 or z.shape[0] < min_rows or z.shape[1] < 1:
            raise MatrixInfoValueError(
                f"{fn}: expected {name} to have shape (B, d) with B >= {min_rows} and d >= 1, got {shape_str(z.shape)}."
            )
    shapes = [tuple(z.shape) for z in zs]
    if any(s != shapes[0] for s in shapes[1:]):
        listing = " and ".join(f"{n} {shape_str(s)}" for n, s in zip(names, shapes, strict=False))
        raise MatrixInfoValueError(f"{fn}: expected inputs of the same shape (B, d), got {listing}.")
    check_same_device(fn, names, *zs)
