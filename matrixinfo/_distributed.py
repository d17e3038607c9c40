"""Autograd-aware collectives across ``torch.distributed`` processes.

Losses that use batch statistics (means, covariances, standardization, the
negatives of NT-Xent) must see the global batch of all W processes. With
``gather_distributed=True`` a loss asks :func:`batch` for it, which returns a
:class:`Batch` on one of two paths, chosen once per call:

*row path* (``B_global < dim``, or no process group)
    The ``(B_local, d)`` rows of all processes are concatenated along dim 0
    (:func:`gather`). Per process: ``B_global * d`` memory, and the loss is
    computed on the ``B x B`` side.

*moment path* (``dim <= B_global``)
    Each process forms its local sums (``sum z``, ``sum z^T z``, the cross
    terms a loss needs) and all-reduces them (:meth:`Batch.reduce`): ``O(dim^2)``
    memory and communication per process, whatever W, and ``B_local * dim^2``
    flops instead of ``B_global * dim^2``.

``dim`` is the size of the loss's ``d x d`` side (``n d`` for the concatenated
views of EMP-TCR). A loss is written once against :class:`Batch`: on the row
path and without a process group ``reduce`` is the identity on sums taken over
the (gathered) rows.

Why the backward sums: every process computes the same global loss ``L``.
Process ``r``'s own rows (or its local sums) receive ``dL/dz_r`` from each of
the W copies of the loss, so the backward of the gather is a reduce-scatter
(sum, then the local slice) and the backward of the all-reduce an all-reduce
(sum): ``W * dL/dz_r``. DDP then divides by W. A plain ``all_gather`` or
``all_reduce`` carries no gradient to the other processes' rows, and the
result is W times too small (lightly issue 1977; barlowtwins issue 8).

Both collectives are torch's functional collectives
(``torch.distributed._functional_collectives``), whose ``all_reduce`` (sum)
and ``all_gather_single_autograd`` carry exactly these backwards and trace
under ``torch.compile(fullgraph=True)``.

Ragged batches: processes may hold different numbers of rows, zero
included. :func:`batch` first all-gathers the local row counts (W integers)
and reads them on the host: one small collective and one device-host
synchronization per loss call, which also decides the path. The row gather
pads every process to the largest count, gathers, and drops the padding (its
gradient is discarded by the same indexing). Under ``torch.compile`` the
counts cannot be read during tracing: the local batches are then assumed to
be of equal size (``B_global = W * B_local``, no host read), as with
``drop_last=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ._checks import MatrixInfoValueError

__all__: list[str] = []

# Test switch: None chooses by size; "rows" or "moments" forces a path on
# every process (it must be set alike on all of them).
_force_path: str | None = None


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _compiling() -> bool:
    return torch.compiler.is_compiling()


def local_min_rows(gather_distributed: bool, min_rows: int = 2) -> int:
    """Rows each process must hold: ``min_rows`` alone, none when the loss sees
    the global batch (which :func:`batch` then checks)."""
    return 0 if gather_distributed and is_active() else min_rows


def sizes(rows: int, device: torch.device) -> list[int]:
    """Local row counts of all processes (one all-gather of W integers and a
    host read; under ``torch.compile``, ``rows`` for every process)."""
    world = dist.get_world_size()
    if _compiling():
        return [rows] * world
    mine = torch.tensor([rows], dtype=torch.int64, device=device)
    parts = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(parts, mine)
    return [int(p) for p in torch.cat(parts).tolist()]


def _all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Sum over processes; the backward sums the gradients too."""
    from torch.distributed import _functional_collectives as funcol

    out = funcol.all_reduce(x.contiguous(), "sum", dist.group.WORLD)
    return funcol.wait_tensor(out) if hasattr(funcol, "wait_tensor") else out


def gather(x: torch.Tensor, counts: Sequence[int] | None = None) -> torch.Tensor:
    """Concatenate ``x`` over all processes along dim 0 (identity when not
    distributed); ``counts`` are the processes' row counts (see :func:`sizes`)."""
    if not is_active():
        return x
    from torch.distributed import _functional_collectives as funcol

    counts = list(counts) if counts is not None else sizes(x.shape[0], x.device)
    top = max(counts)
    padded = F.pad(x, (0, 0) * (x.ndim - 1) + (0, top - x.shape[0])) if x.shape[0] < top else x
    out = funcol.all_gather_single_autograd(padded.contiguous(), 0, dist.group.WORLD)
    if hasattr(funcol, "wait_tensor"):
        out = funcol.wait_tensor(out)
    if all(c == top for c in counts):
        return out
    return torch.cat([out[r * top : r * top + c] for r, c in enumerate(counts)])


class Batch:
    """The global batch of a loss, as rows or through all-reduced sums.

    Attributes:
        rows: the ``(B, d)`` tensors: the global rows (row path, or no process
            group) or this process's rows (moment path).
        n: the global number of rows, a Python int.
        moments: True on the moment path.
    """

    def __init__(self, rows: tuple, n: int, moments: bool):
        self.rows, self.n, self.moments = rows, n, moments

    def reduce(self, *local_sums: torch.Tensor) -> tuple:
        """Sums over the global batch of sums over :attr:`rows`: one packed
        all-reduce on the moment path, the identity otherwise."""
        if not self.moments:
            return local_sums
        dtype = local_sums[0].dtype
        for t in local_sums[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
        flat = _all_reduce(torch.cat([t.to(dtype).reshape(-1) for t in local_sums]))
        out, start = [], 0
        for t in local_sums:
            out.append(flat[start : start + t.numel()].reshape(t.shape).to(t.dtype))
            start += t.numel()
        return tuple(out)

    def sums(self, *xs: torch.Tensor) -> tuple:
        """``x.sum(0)`` over the global batch for each ``(B, ...)`` tensor."""
        return self.reduce(*(x.sum(dim=0) for x in xs))


def batch(fn: str, gather_distributed: bool, *zs: torch.Tensor, dim: int | None = None, min_rows: int = 2) -> Batch:
    """The moments-or-rows dispatch: which path a loss takes (see the module
    docstring). ``dim``: the size of the loss's ``d x d`` side (default ``d``)."""
    B, d = zs[0].shape
    if not (gather_distributed and is_active()):
        return Batch(zs, B, False)
    counts = sizes(B, zs[0].device)
    n = sum(counts)
    if n < min_rows:
        raise MatrixInfoValueError(
            f"{fn}: expected the global batch of all processes to have B >= {min_rows} rows, got {n} "
            f"(rows per process: {counts})."
        )
    moments = (d if dim is None else dim) <= n if _force_path is None else _force_path == "moments"
    if moments:
        return Batch(zs, n, True)
    return Batch(tuple(gather(z, counts) for z in zs), n, False)


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) of a value that every process then uses identically.

    The backward sums the incoming gradients over the processes too: each of
    the W processes computes the same global loss from the sum, so each local
    summand receives the gradient of all W copies, and DDP's division by W
    restores the exact gradient (the same argument as
    :func:`matrixinfo._distributed.gather`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor):  # type: ignore[override]
        y = x.clone().contiguous()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.clone().contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def _rows_against_global(gather_distributed: bool, *zs: torch.Tensor):
    """For row-wise losses (NT-Xent, spectral contrastive): the gathered
    tensors, the global index of the first local row, and whether a process
    group is active. Each process then computes the rows of its own samples
    against the global batch and the partial sums are added over processes
    (``_SumOverProcesses``): ``B_local x B`` work per process instead of
    ``B x B``. Local batches may differ in size (the offset is the number of
    rows of the lower ranks)."""
    if gather_distributed and is_active():
        counts = sizes(zs[0].shape[0], zs[0].device)
        gathered = tuple(gather(z, counts) for z in zs)
        return gathered, sum(counts[: dist.get_rank()]), True
    return zs, 0, False
