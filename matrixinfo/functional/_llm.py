r"""Matrix-LLM loss: token cross-entropy plus matrix cross-entropy over token
embeddings (paper appendix B, eq. 23).

No code was released by the paper's authors (REFERENCES.md section 2); this
is a reference implementation of eq. 23, and the choices the paper leaves
open (normalization, regularization of :math:`\log Q`, reduction, the
scalable approximation) are ours and documented in :func:`matrix_llm_loss`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _spectral
from .._checks import (
    MatrixInfoValueError,
    check_choice,
    check_int,
    check_number,
    check_same_device,
    check_tensor,
    shape_str,
)
from ..core import matrix_cross_entropy

__all__ = ["matrix_llm_loss"]

_METHODS = ("topk", "exact")


# --------------------------------------------------------------------------- #
# phi(G) = log(I + G) G^{-1} for symmetric PSD G, with a Daleckii-Krein backward
# --------------------------------------------------------------------------- #
def _phi(x: torch.Tensor) -> torch.Tensor:
    """``log1p(x) / x`` with ``phi(0) = 1`` (accurate for small ``x``: log1p)."""
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.ones_like(x), torch.log1p(safe) / safe)


def _phi_prime(x: torch.Tensor) -> torch.Tensor:
    """``phi'(x) = (x / (1 + x) - log1p(x)) / x^2``; a Taylor series near 0
    (``sum_k (-1)^k k x^(k-1) / (k + 1)``, 8 terms, error < 1e-17 for |x| < 1e-2)."""
    small = x.abs() < 1e-2
    xs = torch.where(small, torch.ones_like(x), x)
    direct = (xs / (1 + xs) - torch.log1p(xs)) / (xs * xs)
    series = torch.zeros_like(x)
    xp = torch.ones_like(x)
    for k in range(1, 9):
        series = series + ((-1) ** k * k / (k + 1)) * xp
        xp = xp * x
    return torch.where(small, series, direct)


def _phi_divided_difference(w: torch.Tensor) -> torch.Tensor:
    """``(phi(a) - phi(b)) / (a - b)``; ``phi'`` at the midpoint when
    ``|a - b| <= eps^(1/3) * max(1, |a|, |b|)`` (truncation ~ delta^2 phi''' / 24
    and cancellation ~ eps / delta, both ~ eps^(2/3))."""
    a = w.unsqueeze(-1)
    b = w.unsqueeze(-2)
    d = a - b
    tau = torch.finfo(w.dtype).eps ** (1.0 / 3.0) * torch.maximum(torch.ones_like(d), torch.maximum(a.abs(), b.abs()))
    close = d.abs() <= tau
    d_safe = torch.where(close, torch.ones_like(d), d)
    return torch.where(close, _phi_prime(0.5 * (a + b)), (_phi(a) - _phi(b)) / d_safe)


class _Phi(torch.autograd.Function):
    @staticmethod
    def forward(ctx, G: torch.Tensor):  # type: ignore[override]
        w, U = torch.linalg.eigh(_spectral.symmetrize(G))
        w = w.clamp_min(0)  # G is a Gram matrix: PSD up to rounding
        ctx.save_for_backward(w, U)
        return (U * _phi(w).unsqueeze(-2)) @ U.mT

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        w, U = ctx.saved_tensors
        inner = U.mT @ _spectral.symmetrize(grad) @ U
        return U @ (_phi_divided_difference(w) * inner) @ U.mT


# --------------------------------------------------------------------------- #
# The loss                                                                     #
# --------------------------------------------------------------------------- #
def _check(fn, logits, target, embedding, method, top_k, mce_weight, eps, ignore_index):
    check_tensor(fn, "logits", logits)
    check_tensor(fn, "embedding", embedding)
    if logits.ndim < 2 or logits.shape[-1] < 2:
        raise MatrixInfoValueError(
            f"{fn}: expected logits to have shape (N, n) with n >= 2 (or (*, n)), got {shape_str(logits.shape)}."
        )
    n = logits.shape[-1]
    if embedding.ndim != 2 or embedding.shape[0] != n:
        raise MatrixInfoValueError(
            f"{fn}: expected embedding to have shape (n, d) with n = {n} (the vocabulary of logits), "
            f"got {shape_str(embedding.shape)}."
        )
    if not isinstance(target, torch.Tensor):
        raise MatrixInfoValueError(f"{fn}: expected target to be a torch.Tensor, got {type(target).__name__}.")
    batch = logits.shape[:-1]
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise MatrixInfoValueError(
                f"{fn}: expected target probabilities of shape {shape_str(logits.shape)} like logits, "
                f"got {shape_str(target.shape)}."
            )
    else:
        if target.dtype == torch.bool or target.is_complex() or target.shape != batch:
            raise MatrixInfoValueError(
                f"{fn}: expected target to be class indices of shape {shape_str(batch)} (integer) or "
                f"probabilities of shape {shape_str(logits.shape)}, got {shape_str(target.shape)} {target.dtype}."
            )
        valid = target[target != ignore_index]
        if valid.numel() and bool(((valid < 0) | (valid >= n)).any()):
            bad = int(valid[(valid < 0) | (valid >= n)][0])
            raise MatrixInfoValueError(
                f"{fn}: expected target indices in [0, {n}) or ignore_index={ignore_index}, got {bad}."
            )
    check_same_device(fn, ("logits", "target", "embedding"), logits, target, embedding)
    check_choice(fn, "method", method, _METHODS)
    check_int(fn, "top_k", top_k, 1)
    check_number(fn, "mce_weight", mce_weight, minimum=0.0)
    check_number(fn, "eps", eps, minimum=0.0, strict=True)


def _target_support(target: torch.Tensor, soft: bool, top_k: int):
    """Indices ``(N, t)``, weights ``(N, t)`` and the mass left out ``(N,)``."""
    if not soft:
        return target.unsqueeze(-1), torch.ones_like(target, dtype=torch.float32).unsqueeze(-1), None
    k = min(top_k, target.shape[-1])
    weights, idx = target.topk(k, dim=-1)
    rest = (target.sum(-1) - weights.sum(-1)).clamp_min(0)
    return idx, weights, rest


def _mce_topk(q, E, idx_t, w_t, rest_t, top_k, eps):
    r"""``-tr(P log Qt) + tr(Qt)`` per token, with
    ``Qt = E_K^T diag(q_K) E_K + alpha I``, ``alpha = (1 - sum q_K) / d + eps``."""
    N, n = q.shape
    d = E.shape[1]
    k = min(top_k, n)
    q_k, idx_k = q.topk(k, dim=-1)
    alpha = (1.0 - q_k.sum(-1)).clamp_min(0) / d + eps  # (N,)
    E_k = E[idx_k]  # (N, k, d)
    Fk = q_k.clamp_min(0).sqrt().unsqueeze(-1) * E_k / alpha.sqrt()[:, None, None]  # A = F / sqrt(alpha)
    G = Fk @ Fk.mT  # (N, k, k)
    phiG = _Phi.apply(G)
    # e_t^T log(Qt) e_t = log(alpha) |e_t|^2 + h^T phi(G) h,  h = A e_t.
    E_t = E[idx_t]  # (N, t, d)
    h = Fk @ E_t.mT  # (N, k, t)
    quad = (h * (phiG @ h)).sum(-2)  # (N, t)
    log_alpha = torch.log(alpha)
    per_target = log_alpha[:, None] * E_t.square().sum(-1) + quad
    tr_p_log_q = (w_t * per_target).sum(-1)
    if rest_t is not None:
        # Target mass outside its top-k, spread isotropically: (r / d) tr log Qt.
        trace_log = d * log_alpha + torch.log1p(torch.linalg.eigvalsh(G).clamp_min(0)).sum(-1)
        tr_p_log_q = tr_p_log_q + rest_t / d * trace_log
    tr_q = (q * E.square().sum(-1)).sum(-1) + d * eps
    return -tr_p_log_q + tr_q


def _mce_exact(q, E, target, soft, eps):
    d = E.shape[1]
    Q = torch.einsum("nd,Nn,ne->Nde", E, q, E) + eps * torch.eye(d, dtype=q.dtype, device=q.device)
    if soft:
        P = torch.einsum("nd,Nn,ne->Nde", E, target, E)
    else:
        e = E[target]
        P = e.unsqueeze(-1) * e.unsqueeze(-2)
    return matrix_cross_entropy(P, Q)


def matrix_llm_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    embedding: torch.Tensor,
    *,
    mce_weight: float = 1.0,
    method: str = "topk",
    top_k: int = 64,
    eps: float = 1e-6,
    ignore_index: int = -100,
) -> torch.Tensor:
    r"""Cross-entropy plus matrix cross-entropy for language models (paper eq. 23).

    For each token with target distribution :math:`p` (one-hot for class
    indices) and prediction :math:`q = \operatorname{softmax}(\text{logits})`,
    with the rows :math:`e_i` of ``embedding`` l2-normalized:

    .. math::
        P = \sum_i p_i e_i e_i^\top, \quad Q = \sum_j q_j e_j e_j^\top, \quad
        \mathcal{L} = \mathrm{CE}(p, q) + w\,\mathrm{MCE}(P, Q + \varepsilon I),

    :math:`\mathrm{MCE}(P, Q) = -\operatorname{tr}(P \log Q) + \operatorname{tr} Q`,
    averaged over the tokens whose target is not ``ignore_index`` (both terms).
    For a one-hot target, :math:`\operatorname{tr}(P \log Q) = e_y^\top \log(Q) e_y`.

    Our choices, where eq. 23 is silent:

    * **Regularization**: :math:`Q` has rank at most ``min(n, d)`` and is
      near-singular for a peaked softmax; :math:`\log` is taken of
      :math:`Q + \varepsilon I` (``eps = 1e-6``), which bounds the MCE term by
      about :math:`-\log\varepsilon \approx 13.8` per token.
    * **Normalization**: rows of ``embedding`` are l2-normalized inside the
      loss (gradients flow through the normalization), so :math:`\operatorname{tr} Q = 1`.
    * **Gradients** flow to ``logits`` (through :math:`q`) and to
      ``embedding`` (through :math:`P` and :math:`Q`).

    Methods:

    ``"exact"``
        Forms :math:`P` and :math:`Q` (``(N, d, d)``) and uses the eigh
        matrix logarithm with its Daleckii-Krein backward
        (:func:`matrixinfo.matrix_cross_entropy`). Cost :math:`O(N n d^2 + N d^3)`:
        the reference, for small vocabularies.

    ``"topk"`` (default)
        Never forms a ``d x d`` matrix. :math:`Q` is approximated by its
        ``top_k`` most probable tokens plus the remaining probability mass
        :math:`r` spread isotropically,
        :math:`\tilde Q = E_K^\top \operatorname{diag}(q_K) E_K + \alpha I`,
        :math:`\alpha = r/d + \varepsilon` (the isotropic term has the trace of
        the part it replaces). Since :math:`\tilde Q = \alpha (I + A^\top A)` with
        :math:`A = \operatorname{diag}(\sqrt{q_K}) E_K / \sqrt\alpha` (``k x d``),
        :math:`e^\top \log\tilde Q\, e = \log\alpha\,\|e\|^2 + (Ae)^\top \varphi(AA^\top) (Ae)`
        with :math:`\varphi(x) = \log(1+x)/x` evaluated by a ``k x k`` eigh
        per token (Daleckii-Krein backward). Probability targets are treated
        the same way (their top ``top_k`` entries plus an isotropic rest).
        :math:`\operatorname{tr} Q` is exact. Cost
        :math:`O(N k^2 d + N k^3)`. The approximation is exact when the softmax
        has at most ``top_k`` nonzero entries, and accurate when the mass
        outside the top ``k`` is small or spread over many embeddings that are
        isotropic on average; its measured error against ``"exact"`` is in the
        docs (peaked and flat softmaxes, random and anisotropic embeddings).

    Args:
        logits: ``(N, n)`` (or ``(*, n)``, flattened) unnormalized scores.
        target: ``(N,)`` class indices (``ignore_index`` skipped) or ``(N, n)``
            probabilities.
        embedding: ``(n, d)`` token embeddings (pass the LM head's weight).
        mce_weight: weight :math:`w` of the MCE term (``1.0`` as in eq. 23).
        method: ``"topk"`` or ``"exact"``.
        top_k: number of tokens kept by ``"topk"``.
        eps: :math:`\varepsilon > 0`.
        ignore_index: target value to skip (class-index targets).

    Returns:
        0-d tensor to minimize (NaN-free; 0 with no non-ignored token).

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import matrix_llm_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> logits = torch.randn(4, 10, generator=g, dtype=torch.float64)
        >>> target = torch.tensor([1, 2, -100, 9])
        >>> E = torch.randn(10, 3, generator=g, dtype=torch.float64)
        >>> exact = matrix_llm_loss(logits, target, E, method="exact")
        >>> topk = matrix_llm_loss(logits, target, E, top_k=10)  # k = n: no approximation
        >>> bool(torch.isclose(exact, topk, rtol=1e-9))
        True
    """
    fn = "matrix_llm_loss"
    _check(fn, logits, target, embedding, method, top_k, mce_weight, eps, ignore_index)
    n = logits.shape[-1]
    soft = target.is_floating_point()
    logits = logits.reshape(-1, n)
    target = target.reshape(-1, n) if soft else target.reshape(-1)
    out_dtype = logits.dtype
    work = _spectral.compute_dtype(torch.promote_types(logits.dtype, embedding.dtype))
    with _spectral.full_precision(logits.device.type):
        logits = logits.to(work)
        E = F.normalize(embedding.to(work), dim=1)
        if soft:
            keep = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
            target = target.to(work)
        else:
            keep = target != ignore_index
            logits, target = logits[keep], target[keep]
        if logits.shape[0] == 0:
            return (embedding.sum() * 0 + logits.sum() * 0).to(out_dtype)
        logq = torch.log_softmax(logits, dim=-1)
        ce = -(target * logq).sum(-1) if soft else -logq.gather(-1, target[:, None]).squeeze(-1)
        value = ce
        if mce_weight != 0:
            q = logq.exp()
            if method == "exact":
                mce = _mce_exact(q, E, target, soft, eps)
            else:
                idx_t, w_t, rest_t = _target_support(target, soft, top_k)
                mce = _mce_topk(q, E, idx_t, w_t.to(work), rest_t, top_k, eps)
            value = value + mce_weight * mce
        return value.mean().to(out_dtype)
