r"""Conventions of every functional loss, and the argument handling of the matrix ones.

The argument handling and precision policy of the matrix-information losses
(:mod:`._matrix_ssl` and :mod:`._coding_rate`) are here; the trace machinery
itself is in :mod:`matrixinfo._trace`.

Conventions shared by every loss of :mod:`matrixinfo.functional`:

* Embeddings are ``(B, d)``, rows are samples (the paper writes ``d x B``).
  Where a method distinguishes its branches, the online branch comes first and
  the target branch second. No loss detaches an input: stop-gradients are the
  caller's (``target.detach()``), as in the authors' training loops.
* Every function returns a 0-d tensor to be minimized. With
  ``return_terms=True`` it returns ``(loss, terms)`` instead (CorInfoMax:
  ``(loss, new_state, terms)``): ``terms`` is a ``dict`` of 0-d detached
  tensors of the loss's dtype, the unweighted terms that the forward computed
  anyway (no recomputation, no host read), and the loss is the weighted sum of
  them that its docstring states under "Terms". A loss of one term returns it
  under its name. With ``gather_distributed=True`` the terms are global, as
  the loss value is: the same on every process.
* Precision: the package's policy (:class:`matrixinfo._spectral.precision`).
  float32 and float64 inputs are computed in their own precision (mixed: the
  promoted dtype). float16 and bfloat16 inputs are computed in float32 with
  autocast disabled, and the loss is returned in float32, as autocast does for
  its own losses. Normalizations therefore never underflow in half precision
  (lightly issue 1259).
* ``gather_distributed=True`` makes a loss that uses batch statistics (means,
  covariances, negatives) see the global batch of all ``torch.distributed``
  processes, with gradients that are exact after DDP's averaging: W processes
  with ``B/W`` samples each give the value and the parameter gradients of one
  process holding all ``B`` samples. Processes may hold different numbers of
  samples, zero included. Batch statistics come from all-reduced moments
  when ``d <= B`` and from all-gathered rows otherwise (see
  :doc:`/distributed`). Without an initialized process group the flag does
  nothing.

The matrix-information losses. Every loss there is a trace of a matrix logarithm of a
covariance-like matrix :math:`M` plus a shift, :math:`\operatorname{tr}\log(M + \mu I)`,
or a trace of a product with one. Two methods compute it:

``method="taylor"``
    The Mercator series of :func:`matrixinfo.matrix_log` around the identity,
    as in the authors' code. It is never formed as a ``d x d`` matrix: with
    :math:`X = M + (\mu - 1) I` the binomial theorem turns
    :math:`\sum_k (-1)^{k+1} X^k / k` into :math:`\sum_j \alpha_j M^j`, and only
    the traces :math:`\operatorname{tr} M^j` (or :math:`\operatorname{tr} P M^j`)
    are needed. These are inner products of powers up to
    :math:`\lceil \mathrm{order}/2 \rceil` (:math:`\operatorname{tr} M^{a+b} =
    \langle M^a, (M^b)^\top \rangle`), taken on the smaller of the ``B x B``
    and ``d x d`` sides (the nonzero spectra agree). The series converges iff
    the spectral radius of :math:`X` is below 1; outside, a
    :class:`RuntimeWarning` is raised (one host read per call; pass
    ``check_radius=False`` to skip it). With ``check_radius=False`` no loss
    here reads a value on the host, whatever the method: the exact paths'
    checks are skipped too (a failed Cholesky factorization, which only
    non-finite input causes, then gives NaN instead of the LU fallback).

``method="exact"``
    Log-determinants by Sylvester's identity on the smaller side
    (:func:`matrixinfo.sylvester_logdet`) wherever the weight matrix is a
    multiple of the identity; the eigh matrix logarithm with its
    Daleckii-Krein backward otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .. import _distributed, _spectral
from .._checks import MatrixInfoValueError, check_choice, check_embeddings, check_flag, check_int

_METHODS = ("taylor", "exact")


def _common_checks(fn: str, method, order) -> None:
    check_choice(fn, "method", method, _METHODS)
    check_int(fn, "order", order, 1)


def _prepare(
    fn: str, gather_distributed: bool, *zs: torch.Tensor, dim=None, min_rows: int = 2, check_radius: bool = True
):
    """Check the flags, dispatch the batch, and cast and normalize the rows.

    The distributed dispatch is :func:`matrixinfo._distributed.batch` (rows
    gathered, or moments to all-reduce when ``dim <= B_global``); then the
    rows cast to the dtype of the work (:class:`matrixinfo._spectral.precision`
    of all inputs) and l2-normalized.
    """
    check_flag(fn, "gather_distributed", gather_distributed)
    check_flag(fn, "check_radius", check_radius)
    batch = _distributed.batch(fn, gather_distributed, *zs, dim=dim, min_rows=min_rows)
    policy = _spectral.precision(*zs)
    return batch, tuple(F.normalize(z, dim=1) for z in policy.cast(*batch.rows))


def _run(ref: torch.Tensor, compute, terms: Sequence[str] | None = None):
    """Run ``compute()`` under the precision policy of ``ref``.

    The rows are already in the dtype of the work, so autocast off is what it adds. The result stays in
    that dtype: float32 for half-precision inputs, so that the loss is not
    rounded to 3 significant digits. ``terms``: the names of the loss's terms
    when the caller asked for them (``compute`` then returns ``(loss, terms)``).
    """
    if ref.device.type == "meta":
        # Shape inference (meta tensors, e.g. FSDP initialization): a 0-d loss
        # of the compute dtype, connected to the graph; nothing is read on the host.
        zero = ref.sum() * 0.0
        return zero if terms is None else (zero, {name: zero.detach() for name in terms})
    with _spectral.precision(ref):
        return compute()


def _with_terms(loss: torch.Tensor, **terms: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss, terms)``: each term detached, in the loss's dtype (see the module docstring).

    Callers write ``_with_terms(loss, a=..., b=...) if return_terms else loss``,
    so that the default call builds nothing.
    """
    return loss, {name: t.detach().to(loss.dtype) for name, t in terms.items()}


def _check_views(fn: str, views: Sequence[torch.Tensor], gather_distributed: bool = False) -> None:
    if len(views) == 0:
        raise MatrixInfoValueError(f"{fn}: expected at least one view of shape (B, d), got none.")
    names = [f"views[{i}]" for i in range(len(views))]
    check_embeddings(fn, names, *views, min_rows=_distributed.local_min_rows(gather_distributed))
