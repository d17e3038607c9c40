r"""Matrix-LLM loss: token cross-entropy plus matrix cross-entropy over token
embeddings (paper appendix B, eq. 23).

No code was released by the paper's authors (their Matrix-LLM repository
holds only a README); this
is a reference implementation of eq. 23, and the choices the paper leaves
open (normalization, regularization of :math:`\log Q`, reduction, the
scalable approximation) are ours and documented in :func:`matrix_llm_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _spectral
from .._checks import (
    MatrixInfoSecondDerivativeError,
    MatrixInfoValueError,
    check_choice,
    check_flag,
    check_int,
    check_not_meta,
    check_number,
    check_same_device,
    check_tensor,
    shape_str,
)
from ..core import matrix_cross_entropy
from ._common import _with_terms

__all__ = ["matrix_llm_loss"]

_METHODS = ("lanczos", "subspace", "topk", "exact")


# --------------------------------------------------------------------------- #
# phi(G) = log(I + G) G^{-1} for symmetric PSD G, with a Daleckii-Krein backward
# --------------------------------------------------------------------------- #
def _phi(x: torch.Tensor) -> torch.Tensor:
    """``log1p(x) / x`` with ``phi(0) = 1`` (accurate for small ``x``: log1p)."""
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.ones_like(x), torch.log1p(safe) / safe)


def _phi_prime(x: torch.Tensor) -> torch.Tensor:
    """``phi'(x) = (x / (1 + x) - log1p(x)) / x^2``; a Taylor series near 0
    (``sum_k (-1)^k k x^(k-1) / (k + 1)``, 8 terms, error < 1e-17 for |x| < 1e-2).
    """
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
    and cancellation ~ eps / delta, both ~ eps^(2/3)).
    """
    a = w.unsqueeze(-1)
    b = w.unsqueeze(-2)
    d = a - b
    tau = torch.finfo(w.dtype).eps ** (1.0 / 3.0) * torch.maximum(torch.ones_like(d), torch.maximum(a.abs(), b.abs()))
    close = d.abs() <= tau
    d_safe = torch.where(close, torch.ones_like(d), d)
    return torch.where(close, _phi_prime(0.5 * (a + b)), (_phi(a) - _phi(b)) / d_safe)


class _Phi(torch.autograd.Function):
    """``phi(G) = log(I + G) G^{-1}`` for symmetric PSD ``G``, with a
    Daleckii-Krein backward ``U (DD_phi o (U^T sym(grad) U)) U^T``: finite at
    repeated eigenvalues, where autograd through eigh is NaN.

    ``G`` has rank at most ``d`` and usually more rows, so it has repeated
    zero eigenvalues: second derivatives through ``eigh`` would be NaN there,
    and those of the Daleckii-Krein formula need second divided differences.
    The backward is therefore :class:`_PhiBackward`, whose own backward raises
    :class:`~matrixinfo.MatrixInfoSecondDerivativeError` (before, the saved
    ``w, U`` were used as constants and the Hessian was silently wrong).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(G: torch.Tensor):  # type: ignore[override]
        w, U = torch.linalg.eigh(_spectral.symmetrize(G))
        # G is PSD up to rounding. phi is analytic on (-1, inf): rounding noise
        # below 0 is kept, so that the function stays smooth at 0.
        w = w.clamp_min(-0.5)
        return (U * _phi(w).unsqueeze(-2)) @ U.mT, w, U

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        (G,) = inputs
        _, w, U = output
        ctx.mark_non_differentiable(w, U)
        ctx.save_for_backward(G, w, U)

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _gw, _gU):  # type: ignore[override]
        G, w, U = ctx.saved_tensors
        return _PhiBackward.apply(grad, G, w, U)


class _PhiBackward(torch.autograd.Function):
    """The first derivative of :class:`_Phi`; differentiating it raises."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, G, w, U):  # type: ignore[override]
        inner = U.mT @ _spectral.symmetrize(grad) @ U
        return U @ (_phi_divided_difference(w) * inner) @ U.mT

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        pass

    @staticmethod
    def backward(ctx, *_):  # type: ignore[override]
        raise MatrixInfoSecondDerivativeError(
            "matrix_llm_loss: second derivatives are not supported on the method='topk' path; "
            "use method='exact' (its eigh matrix logarithm is twice differentiable)."
        )


class _PackedOuter(torch.autograd.Function):
    """Rows ``y_a y_b`` for ``a <= b`` of each row ``y`` of ``Y`` (``(n, m(m+1)/2)``).

    Autograd through ``Y[:, rows] * Y[:, cols]`` scatters the gradient back
    with an index-put, the slowest step of the top-k path. Here the gradient
    is ``S y`` per row, with ``S`` the symmetric ``m x m`` matrix of the
    incoming gradient (off-diagonal entries shared, the diagonal doubled):
    a gather and a batched matrix-vector product, differentiable operations
    on ``Y`` and the incoming gradient (second derivatives are exact).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(Y, rows, cols, position):  # type: ignore[override]
        return Y[:, rows] * Y[:, cols]

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        Y, rows, cols, position = ctx.saved_tensors
        n, m = Y.shape
        S = grad[:, position.reshape(-1)].reshape(n, m, m)
        S = S + torch.diag_embed(S.diagonal(dim1=-2, dim2=-1))  # d(y_a^2)/dy_a = 2 y_a
        return (S @ Y.unsqueeze(-1)).squeeze(-1), None, None, None


# --------------------------------------------------------------------------- #
# The loss                                                                     #
# --------------------------------------------------------------------------- #
def _check(fn, logits, target, embedding, method, top_k, mce_weight, eps, ignore_index):
    check_tensor(fn, "logits", logits)
    check_tensor(fn, "embedding", embedding)
    check_not_meta(fn, "logits", logits)
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
        # One host read (skipped while torch.compile traces, where it would break the graph).
        bad = (target != ignore_index) & ((target < 0) | (target >= n))
        if _spectral.host_reads_allowed() and bool(bad.any()):
            bad = int(target[bad][0])
            raise MatrixInfoValueError(
                f"{fn}: expected target indices in [0, {n}) or ignore_index={ignore_index}, got {bad}."
            )
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise MatrixInfoValueError(f"{fn}: expected ignore_index to be an integer, got {ignore_index!r}.")
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


def _residual_basis(E: torch.Tensor, weights: torch.Tensor, rank: int) -> torch.Tensor:
    """Orthonormal ``(d, rank)`` basis of the top eigenvectors of the
    probability-weighted embedding second moment ``E^T diag(weights) E`` over
    the ``2d`` heaviest tokens (shared by all tokens; held constant: no
    gradient flows through it).
    """
    with torch.no_grad():
        # The 2d heaviest tokens estimate the weighted second moment well
        # enough for a basis, at a fraction of the n x d^2 cost.
        keep = min(E.shape[0], 2 * E.shape[1])
        w, idx = weights.topk(keep)
        E_s = E[idx]
        M = E_s.mT @ (w.unsqueeze(-1) * E_s)
        _, U = torch.linalg.eigh(M)
        return U[:, -rank:]


def _mce_topk(q, E, idx_t, w_t, rest_t, top_k, rank, eps, token_weight=None):
    r"""``-tr(P log Qt) + tr(Qt)`` per token, with ``Qt`` the top-k tokens
    plus the rest of ``Q`` compressed onto a shared rank-``rank`` subspace and
    an isotropic remainder; see :func:`matrix_llm_loss`.
    """
    N, n = q.shape
    d = E.shape[1]
    k = min(top_k, n)
    q_k, idx_k = q.topk(k, dim=-1)
    # The target tokens are kept too (their own direction matters most in
    # e_t^T log Q e_t): weight q_t unless already among the top k.
    already = (idx_t.unsqueeze(-1) == idx_k.unsqueeze(-2)).any(-1)
    q_t = torch.where(already, torch.zeros_like(w_t), q.gather(-1, idx_t))
    idx_kept = torch.cat([idx_k, idx_t], dim=-1)
    q_kept = torch.cat([q_k, q_t], dim=-1)
    q_rest = q.scatter(-1, idx_kept, 0.0)  # (N, n): the mass outside the kept tokens
    r = q_rest.sum(-1)
    # Qt = alpha I + W^T W with rows W = [diag(sqrt q_kept) E_kept ; L^T U^T].
    # Only the small blocks of G = W W^T / alpha and h = W e_t / sqrt(alpha)
    # are formed: no (N, rows, d) tensor beyond the gathered E_kept.
    E_kept = E[idx_kept]  # (N, s, d)
    E_t = E[idx_t]  # (N, t, d)
    sq = q_kept.clamp_min(0).sqrt()  # (N, s)
    G_blocks = [[sq.unsqueeze(-1) * (E_kept @ E_kept.mT) * sq.unsqueeze(-2)]]
    h_blocks = [sq.unsqueeze(-1) * (E_kept @ E_t.mT)]  # (N, s, t)
    m = min(rank, d - 1) if k < n else 0
    if m > 0:
        # Tokens of weight 0 (ignore_index) do not shape the basis.
        mean_rest = q_rest.mean(0) if token_weight is None else (token_weight[:, None] * q_rest).mean(0)
        U = _residual_basis(E, mean_rest, m)  # (d, m)
        Y = E @ U  # (n, m)
        # C = U^T Q_rest U = Y^T diag(q_rest) Y per token, from the m(m+1)/2
        # distinct products y_a y_b: one (N, n) @ (n, m(m+1)/2) matmul.
        rows_i, cols_i = torch.triu_indices(m, m, device=q.device)
        position = torch.empty(m, m, dtype=torch.long, device=q.device)
        position[rows_i, cols_i] = torch.arange(rows_i.numel(), device=q.device)
        position[cols_i, rows_i] = position[rows_i, cols_i]
        packed = q_rest @ _PackedOuter.apply(Y, rows_i, cols_i, position)  # (N, m(m+1)/2)
        C = packed[:, position.reshape(-1)].reshape(N, m, m)
        # The remainder is spread over all d directions (its trace is kept):
        # then the subspace part needs only a Cholesky factor of C.
        beta = (r - C.diagonal(dim1=-2, dim2=-1).sum(-1)).clamp_min(0) / d
        eye = torch.eye(m, dtype=q.dtype, device=q.device)
        jitter = torch.finfo(q.dtype).eps * (r[:, None, None] + torch.finfo(q.dtype).tiny)
        L = torch.linalg.cholesky(C + jitter * eye)  # C = L L^T
        G12 = (sq.unsqueeze(-1) * Y[idx_kept]) @ L  # F U L, (N, s, m)
        G_blocks = [[G_blocks[0][0], G12], [G12.mT, L.mT @ L]]
        h_blocks.append(L.mT @ Y[idx_t].mT)  # (N, m, t)
        alpha = beta + eps
    else:
        alpha = r / d + eps
    G = torch.cat([torch.cat(row, dim=-1) for row in G_blocks], dim=-2) / alpha[:, None, None]
    h = torch.cat(h_blocks, dim=-2) / alpha.sqrt()[:, None, None]
    phiG = _Phi.apply(G)[0]
    # e_t^T log(Qt) e_t = log(alpha) |e_t|^2 + h^T phi(G) h.
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
    return matrix_cross_entropy(P, Q, check_radius=False)  # Q is PSD by construction: no PSD check, no host read


def matrix_llm_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    embedding: torch.Tensor,
    *,
    mce_weight: float = 1.0,
    method: str = "lanczos",
    top_k: int = 32,
    rank: int = 32,
    steps: int = 4,
    eps: float = 1e-6,
    ignore_index: int = -100,
    detach_embedding: bool = False,
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
      ``embedding`` (through :math:`P` and :math:`Q`), unless
      ``detach_embedding=True``.

    .. warning::
        Eq. 23 has a trivial minimizer through the embedding: if every
        normalized row :math:`e_i` points the same way, :math:`Q = e e^\top` and
        :math:`\mathrm{MCE}(P, Q + \varepsilon I) \approx 1`, its floor, whatever
        the prediction. Training a character-level model from scratch with
        gradients into the LM head (``examples/char_lm.py``) found it within
        100-150 steps: the head's effective rank fell to 1.3 (16 under plain
        CE) and held-out CE was 0.37 nats/char worse. With
        ``detach_embedding=True`` the MCE term only shapes the predictions and
        the head trains under CE alone (0.014 nats/char from plain CE there).
        The paper fine-tunes a pre-trained model and does not say whether the
        head receives this gradient.

    The four methods:

    ``"lanczos"`` (default)
        Per token, ``steps`` Lanczos steps on :math:`A = Q + \varepsilon I`
        started from :math:`e_y` give a ``steps``-square tridiagonal
        :math:`T` and Gauss quadrature,
        :math:`e_y^\top \log(A)\, e_y \approx e_1^\top \log(T)\, e_1`
        (Golub & Meurant, *Matrices, Moments and Quadrature*, 2010). A step is
        one ``(N, d) @ (d, n)`` product (the size of the logits matmul) and one
        ``(N, n) @ (n, d)`` product for all tokens at once; the backward is the
        Krylov approximation of the exact gradient,
        :math:`V L_{\log}(T, e_1 e_1^\top) V^\top` (Frechet derivative at the
        Ritz values, truncated to its 3 eigenpairs of largest modulus for
        the embedding rows: one GEMM of ``min(steps, 3)`` logits matmuls,
        all eigenpairs where the Krylov space is invariant) and
        :math:`2 V \log(T) e_1` for the target's embedding. In all,
        ``2 * steps - 1 + min(steps, 3)`` logits-sized matmuls besides those of cross-entropy;
        never a ``d x d`` matrix, and the normalized ``(n, d)`` embedding is
        not formed either (row norms enter as weights :math:`q_j / \|e_j\|^2`).
        Exact (to rounding) once the Krylov space is invariant:
        ``steps >= d``, or ``steps > n``. Its accuracy follows the spread of
        the spectrum of :math:`Q` seen from :math:`e_y`. Measured against
        ``"exact"`` in float64 (``n = 2048, d = 64``, 8 tokens, and
        ``n = 8192, d = 512``, 4 tokens; isotropic and anisotropic
        embeddings; logits of standard deviation 0.1, 1, 3, 8; targets
        uniformly random or drawn from the softmax), relative errors of the
        loss / logits gradient / embedding gradient, worst case per regime:

        ===============================  ======================  ======================  ======================
        regime                           ``steps=4`` (default)   ``steps=8``             ``"topk"``
        ===============================  ======================  ======================  ======================
        flat (std 0.1, 1), isotropic     8e-6 / 2e-4 / 1.9%      3e-9 / 3e-6 / 0.03%     1e-2 / 3e-2 / 220%
        flat, anisotropic                9e-4 / 3e-3 / 14%       1e-4 / 5e-4 / 4%        3e-2 / 3e-2 / 83%
        std 3                            2e-2 / 3e-2 / 83%       4e-3 / 1e-2 / 40%       2e-2 / 4e-2 / 78%
        std 8, target from the softmax   4e-3 / 3e-2 / 39%       3e-4 / 4e-3 / 8%        6e-5 / 8e-4 / 3%
        std 8, improbable target         7e-2 / 4e-1 / 380%      4e-2 / 3e-1 / 260%      1e-2 / 2e-1 / 56%
        ===============================  ======================  ======================  ======================

        The benchmark's case (``n = 8192, d = 512``, logits of standard
        deviation 1) is the first row. Where a peaked softmax meets an
        improbable target, the spectrum seen by :math:`e_y` spans decades
        (from :math:`\varepsilon` to the top probabilities) and a few
        quadrature nodes cannot follow :math:`\log` over it: use ``"exact"``
        for small vocabularies, or more ``steps``. In float32 the same method
        is within 4e-8 (flat softmax) to 3e-5 (logits of standard deviation
        8-20) of its float64 value, its gradients within 5e-6 to 3e-3
        (``n = 2048, d = 64``). Probability targets use
        the ``"topk"`` computation below. First derivatives only: a double backward raises
        :class:`~matrixinfo.MatrixInfoSecondDerivativeError`. Cost:
        ``benchmarks/README.md``.

    ``"exact"``
        Forms :math:`P` and :math:`Q` (``(N, d, d)``) and uses the eigh
        matrix logarithm with its Daleckii-Krein backward
        (:func:`matrixinfo.matrix_cross_entropy`). Cost :math:`O(N n d^2 + N d^3)`:
        the reference, for small vocabularies.

    ``"subspace"``
        Never forms a ``d x d`` matrix per token; no per-token ``(n, d)``
        tensor either. Per token, :math:`K` is the ``top_k`` most probable
        tokens other than the target, :math:`R = \sum_{j \notin K} q_j e_j e_j^\top`
        the rest (the target included), :math:`\Pi` the orthogonal projector
        onto :math:`\operatorname{span}(U, e_y)`: a shared ``d x rank`` basis
        :math:`U` (dominant eigenvectors of :math:`E^\top \operatorname{diag}(\bar q_R) E`
        by two steps of subspace iteration on the ``2d`` heaviest tokens, held
        constant for the gradient)
        plus the target's own embedding, and

        .. math::
            \tilde Q = \sum_{j \in K} q_j e_j e_j^\top + \Pi R \Pi + \beta (I - \Pi) + \varepsilon I,
            \quad \beta = \frac{\operatorname{tr} R - \operatorname{tr} \Pi R \Pi}{d - \operatorname{rank} \Pi} .

        :math:`\Pi R \Pi` is exact per token: its ``rank + 1`` square
        coordinates need :math:`E U` (shared), the products :math:`y_a y_b` of
        :math:`Y = EU` (one ``(N, n) @ (n, rank (rank+1)/2)`` matmul) and
        :math:`E e_y` for every token (one ``(N, d) @ (d, n)`` matmul, the size
        of the logits matmul): so :math:`e_y^\top \tilde Q e_y = e_y^\top Q e_y`,
        and the gradient of every token's embedding sees its overlap with the
        target. :math:`e_y^\top \log\tilde Q\, e_y` is then one
        ``(top_k + rank + 1)``-square eigh per token (Daleckii-Krein backward,
        finite at repeated eigenvalues; first derivatives only: a double
        backward raises). Exact when ``top_k >= n - 1``, unless the target
        lies nearly inside :math:`\operatorname{span} U` (possible when ``rank`` is
        close to ``d``): the Gram-Schmidt of :math:`e_y` against :math:`U` then
        loses accuracy (0.9% off at ``d = 7, rank = 5`` in our tests).
        Probability targets use the ``"topk"`` computation below.
        Measured against ``"exact"`` in float64 (``n = 2048, d = 64`` and
        ``n = 4096, d = 128``, 8 tokens, Gaussian logits scaled by 8, 3, 1 and
        0.1, isotropic and anisotropic embeddings, targets uniformly random
        or drawn from the softmax), with ``top_k=16, rank=16``: loss within
        1.5% (0.3% with the defaults on the test cases), logits gradient
        within 12%, embedding gradient 3-44% (10-15% for flat softmaxes, where
        ``"topk"`` is 100-230% off: there its rest tokens see only the shared
        subspace). What is still missing is :math:`(I - \Pi) R e_y`, the rest's
        action on the target outside the basis: one more logits-sized matmul
        and its backward. Cost and memory: ``benchmarks/README.md``. Its
        basis is held constant, so its gradient is a first-order surrogate:
        second derivatives raise :class:`~matrixinfo.MatrixInfoSecondDerivativeError`,
        and it refuses to run under ``torch.func.vmap`` (a library error).

    ``"topk"``
        Never forms a ``d x d`` matrix per token. :math:`Q` is split into the
        kept tokens :math:`K` (the ``top_k`` most probable ones and the target
        tokens) and the rest :math:`Q_{\mathrm{rest}} = \sum_{j \notin K} q_j e_j e_j^\top`,
        which is compressed onto a shared orthonormal basis :math:`U`
        (``d x rank``: the top eigenvectors of :math:`E^\top \operatorname{diag}(\bar q_{\mathrm{rest}}) E`,
        held constant for the gradient) with an isotropic remainder:

        .. math::
            \tilde Q = E_K^\top \operatorname{diag}(q_K) E_K + U C U^\top + (\beta + \varepsilon) I,
            \quad C = U^\top Q_{\mathrm{rest}} U, \quad
            \beta = \frac{\operatorname{tr} Q_{\mathrm{rest}} - \operatorname{tr} C}{d} .

        :math:`C` is exact per token (one ``(N, n) @ (n, rank (rank+1)/2)``
        matmul), and the isotropic remainder has the trace of what it
        replaces. With a Cholesky factor :math:`C = L L^\top`,
        :math:`\tilde Q = \alpha (I + A^\top A)` with :math:`\alpha = \beta + \varepsilon`
        and :math:`A = [\operatorname{diag}(\sqrt{q_K}) E_K;\, L^\top U^\top] / \sqrt\alpha`
        (``k + t + rank`` rows), and
        :math:`e^\top \log\tilde Q\, e = \log\alpha\,\|e\|^2 + (Ae)^\top \varphi(AA^\top) (Ae)`,
        :math:`\varphi(x) = \log(1+x)/x`, evaluated by one small eigh per
        token with a Daleckii-Krein backward (finite at repeated eigenvalues);
        only the small blocks of :math:`AA^\top` and :math:`Ae` are formed.
        Probability targets keep their top ``top_k`` entries and spread the
        rest isotropically. :math:`\operatorname{tr} Q` is exact. It is exact
        when ``top_k >= n``. Measured against ``"exact"`` in float64 (N = 8
        tokens; ``n = 2048, d = 64`` and ``n = 4096, d = 128``; Gaussian logits
        at temperatures 8, 3, 1, 0.1; isotropic random embeddings and
        anisotropic ones with a decaying spectrum and a common direction;
        targets uniformly random or drawn from the softmax itself): at most
        1.0% relative error of the loss (2.6% of the MCE term alone), the
        worst cases being near-uniform softmaxes over isotropic embeddings;
        with targets drawn from the softmax at most 0.76%, and below 0.01%
        for peaked ones. With ``rank=0`` (isotropic rest only) the error
        reaches 22% for flat softmaxes over anisotropic embeddings.
        Gradients (``n = 512, d = 16``): 2.3% relative error for the logits,
        13% for the embedding (the rest tokens' embeddings only see the
        compressed residual); up to 230% for the embedding with flat
        softmaxes at ``n = 2048, d = 64``. These figures are for
        ``top_k=32, rank=32`` (the defaults of ``top_k`` and ``rank``).

        In float32 the ``"exact"`` path is limited by the eigenvalue floor of
        :func:`matrixinfo.matrix_log` (``d * 1.2e-7 * lambda_max``, larger than
        ``eps``): compute references in float64. The ``"topk"`` path keeps the
        small eigenvalues exactly (``alpha`` is explicit) and matched the
        float64 reference to 4e-8 in float32 on a peaked case.

    With a Hugging Face-style causal LM (``out.logits`` of shape ``(B, T, n)``,
    labels equal to the input ids with ``-100`` on skipped positions, shifted
    inside the model, the LM head tied to the input embedding), shift and
    flatten as the model does and pass the head's weight as the embedding
    (``examples/hf_style_step.py`` runs this with a minimal model of the same
    interface)::

        out = model(input_ids)
        n = out.logits.shape[-1]
        loss = matrix_llm_loss(out.logits[:, :-1].reshape(-1, n), labels[:, 1:].reshape(-1),
                               model.get_output_embeddings().weight, mce_weight=0.1)

    Fine-tune a pre-trained model this way (the paper's setting,
    ``examples/finetune_lm.py``); from scratch, with gradients into a head
    that is also the input embedding, the collapse described in the warning
    above is reachable: pass ``detach_embedding=True`` there.

    Args:
        logits: ``(N, n)`` (or ``(*, n)``, flattened) unnormalized scores.
        target: ``(N,)`` class indices (``ignore_index`` skipped) or ``(N, n)``
            probabilities.
        embedding: ``(n, d)`` token embeddings (pass the LM head's weight).
        mce_weight: weight :math:`w` of the MCE term (``1.0`` as in eq. 23).
        method: ``"lanczos"``, ``"subspace"``, ``"topk"`` or ``"exact"``.
        top_k: number of most probable tokens kept exactly (``"subspace"``,
            ``"topk"``).
        rank: dimension of the shared subspace for the rest (``"subspace"``,
            ``"topk"``; 0 for none).
        steps: Lanczos steps (``"lanczos"``), ``>= 1``; each costs two logits-sized
            matmuls forward and, up to three steps, one backward.
        eps: :math:`\varepsilon > 0`.
        ignore_index: target value to skip (class-index targets).
        detach_embedding: stop the MCE term's gradient into ``embedding``
            (see the warning above).
        return_terms: also return the terms, ``(loss, terms)``.

    Returns:
        0-d tensor to minimize (0 with no non-ignored token); float32 for
        half-precision inputs. With ``return_terms=True``, ``(loss, terms)``:
        ``terms["cross_entropy"]`` and ``terms["matrix_cross_entropy"]`` are
        the two token means (over the tokens whose target is not
        ``ignore_index``; the MCE as the chosen ``method`` computes it),
        detached, with ``loss = cross_entropy + mce_weight *
        matrix_cross_entropy``. With ``mce_weight = 0`` the MCE is not
        computed and not returned.

    Examples:
        >>> import torch
        >>> from matrixinfo.functional import matrix_llm_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> logits = torch.randn(4, 10, generator=g, dtype=torch.float64)
        >>> target = torch.tensor([1, 2, -100, 9])
        >>> E = torch.randn(10, 3, generator=g, dtype=torch.float64)
        >>> exact = matrix_llm_loss(logits, target, E, method="exact")
        >>> default = matrix_llm_loss(logits, target, E, top_k=9)  # every other token kept: exact
        >>> bool(torch.isclose(exact, default, rtol=1e-9))
        True
    """
    fn = "matrix_llm_loss"
    _check(fn, logits, target, embedding, method, top_k, mce_weight, eps, ignore_index)
    check_int(fn, "rank", rank, 0)
    check_int(fn, "steps", steps, 1)
    check_flag(fn, "detach_embedding", detach_embedding)
    check_flag(fn, "return_terms", return_terms)
    n = logits.shape[-1]
    soft = target.is_floating_point()
    logits = logits.reshape(-1, n)
    # Any integer dtype of class indices (uint8, int32, ...) is read as int64, which gather needs.
    target = target.reshape(-1, n) if soft else target.reshape(-1).long()
    with _spectral.precision(logits, embedding) as policy:
        work = policy.dtype
        # Non-finite policy (docs/numerics.rst): NaN out, without a host read.
        lanczos = method == "lanczos" and not soft and mce_weight != 0
        # The "lanczos" path reads the embedding's finiteness off its row norms (which it needs anyway).
        norm = torch.linalg.vector_norm(embedding.detach(), dim=1).to(work) if lanczos else None
        checked = (logits, embedding, target) if soft else (logits, norm if lanczos else embedding)
        bad = ~torch.stack([torch.isfinite(t).all() for t in checked]).all()
        logits = torch.where(torch.isfinite(logits), logits, 0.0).to(work)
        if not lanczos:  # the "lanczos" path guards its small eigenproblems itself (no (n, d) copy here)
            embedding = torch.where(torch.isfinite(embedding), embedding, 0.0)
        if soft:
            target = torch.where(torch.isfinite(target), target, 0.0)
        raw = (embedding.detach() if detach_embedding else embedding).to(work)
        if soft:
            keep = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
            target = target.to(work)
        else:
            keep = target != ignore_index
            # Ignored tokens are computed with a stand-in class and masked out
            # below: no boolean indexing, whose output shape would need a host read.
            target = torch.where(keep, target, torch.zeros_like(target))
        if logits.shape[0] == 0:
            zero = embedding.to(work).sum() * 0 + logits.sum() * 0
            names = ("cross_entropy", "matrix_cross_entropy") if mce_weight != 0 else ("cross_entropy",)
            return _with_terms(zero, **dict.fromkeys(names, zero)) if return_terms else zero
        logq = torch.log_softmax(logits, dim=-1)
        ce = -(target * logq).sum(-1) if soft else -logq.gather(-1, target[:, None]).squeeze(-1)
        value = ce
        if mce_weight != 0:
            q = logq.exp()
            # The "lanczos" path normalizes the rows inside (the normalized (n, d) matrix is never formed).
            E = None if lanczos else F.normalize(raw, dim=1)
            if method == "exact":
                mce = _mce_exact(q, E, target, soft, eps)
            elif lanczos:
                from ._llm_lanczos import mce_lanczos

                mce = mce_lanczos(q, raw, norm, target, steps, eps)
            elif method == "subspace" and not soft:
                from ._llm_subspace import first_order_only, mce_subspace

                if any(torch._C._functorch.is_batchedtensor(t) for t in (q, E)):
                    raise MatrixInfoValueError(
                        "matrix_llm_loss: method='subspace' does not run under torch.func.vmap (its shared basis "
                        "and jitter selection are per call); use method='topk' or method='exact'."
                    )
                # Its basis is held constant, so its backward is a first-order surrogate: a second
                # derivative (through q or E) is refused rather than returned wrong.
                mce = mce_subspace(first_order_only(q), first_order_only(E), target.unsqueeze(-1), top_k, rank, eps)
            else:  # "topk", and "subspace" with probability targets
                idx_t, w_t, rest_t = _target_support(target, soft, top_k)
                mce = _mce_topk(q, E, idx_t, w_t.to(work), rest_t, top_k, rank, eps, None if soft else keep.to(work))
            value = value + mce_weight * mce

        def token_mean(x):
            if soft:
                return _spectral.nan_where(bad, x.mean())
            return _spectral.nan_where(bad, torch.where(keep, x, torch.zeros_like(x)).sum() / keep.sum().clamp_min(1))

        loss = token_mean(value)
        if not return_terms:
            return loss
        # The terms: token means of the per-token parts that the loss summed (detached, the loss's dtype).
        terms = {"cross_entropy": ce} if mce_weight == 0 else {"cross_entropy": ce, "matrix_cross_entropy": mce}
        return _with_terms(loss, **{name: token_mean(t) for name, t in terms.items()})
