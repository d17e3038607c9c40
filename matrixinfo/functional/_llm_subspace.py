r"""The ``"subspace"`` method of :func:`matrixinfo.functional.matrix_llm_loss`.

Per token, :math:`Q = \sum_j q_j e_j e_j^\top` is replaced by

.. math::
    \tilde Q = \sum_{j \in K} q_j e_j e_j^\top + \Pi R \Pi + (\beta + \varepsilon) I,
    \qquad R = \sum_{j \notin K} q_j e_j e_j^\top,

where :math:`K` holds the ``top_k`` most probable non-target tokens, :math:`\Pi`
is the orthogonal projector onto :math:`\mathcal B = \operatorname{span}(U, e_y)`
(a shared ``d x rank`` basis :math:`U` plus the target's own embedding) and
:math:`\beta = (\operatorname{tr} R - \operatorname{tr} \Pi R \Pi) / d` keeps the
trace. The target direction is exact: :math:`e_y^\top \tilde Q e_y = e_y^\top Q e_y`,
and the gradient of the rest tokens sees :math:`e_j^\top e_y` through one
``(N, d) @ (d, n)`` product, the cost of one logits matmul. With
:math:`\tilde Q = \alpha (I + A^\top A)`, :math:`e^\top \log \tilde Q\, e =
\log\alpha \|e\|^2 + (Ae)^\top \varphi(AA^\top)(Ae)` on a
``(top_k + rank + t)``-square matrix per token, as the ``"topk"`` method does.
"""

from __future__ import annotations

import torch

from .. import _spectral
from .._checks import MatrixInfoSecondDerivativeError
from . import _llm

__all__: list[str] = []


def _shared_basis(E: torch.Tensor, weights: torch.Tensor, rank: int, iterations: int = 2) -> torch.Tensor:
    """Orthonormal ``(d, rank)`` basis of the dominant eigenvectors of
    ``E^T diag(weights) E``, estimated on the ``2d`` heaviest tokens by
    subspace iteration (``iterations`` products of ``2d * d * rank`` each; no
    ``d x d`` matrix, no eigh), started from the embeddings of the ``rank``
    heaviest tokens. Held constant: no gradient flows through it.
    """
    with torch.no_grad():
        w, idx = weights.topk(min(weights.shape[0], 2 * E.shape[1]))
        E_s = E[idx]
        V = torch.linalg.qr(E_s[:rank].mT).Q
        for _ in range(iterations):
            V = torch.linalg.qr(E_s.mT @ (w.unsqueeze(-1) * (E_s @ V))).Q
        return V


class _Log1p(torch.autograd.Function):
    """``log(I + G)`` for symmetric ``G`` with eigenvalues in ``(-1, inf)``, by
    eigh, with a Daleckii-Krein backward (divided differences of ``log1p``,
    finite at repeated eigenvalues). First derivatives only: the backward is
    :class:`_Log1pBackward`, whose own backward raises
    :class:`~matrixinfo.MatrixInfoSecondDerivativeError`.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(G: torch.Tensor):  # type: ignore[override]
        w, U = torch.linalg.eigh(_spectral.symmetrize(G))
        w = w.clamp_min(-0.999)  # rounding only: exact eigenvalues are > -1
        return (U * torch.log1p(w).unsqueeze(-2)) @ U.mT, w, U

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        _, w, U = output
        ctx.save_for_backward(w, U)
        ctx.mark_non_differentiable(w, U)

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _gw, _gU):  # type: ignore[override]
        w, U = ctx.saved_tensors
        return _Log1pBackward.apply(grad, w, U)


class _FirstOrderOnly(torch.autograd.Function):
    """Identity whose backward is :class:`_Log1pBackward`-like: the gradient
    passes once; differentiating it again raises.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x):  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        pass

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return _Refuse.apply(grad)


class _Refuse(torch.autograd.Function):
    """Identity on a gradient; its own backward raises."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad):  # type: ignore[override]
        return grad.view_as(grad)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        pass

    @staticmethod
    def backward(ctx, *_):  # type: ignore[override]
        raise MatrixInfoSecondDerivativeError(
            "matrix_llm_loss: second derivatives are not supported on the method='subspace' path; "
            "use method='exact' (its eigh matrix logarithm is twice differentiable)."
        )


def first_order_only(x: torch.Tensor) -> torch.Tensor:
    """``x``, with a backward that refuses to be differentiated (see :class:`_Refuse`)."""
    return _FirstOrderOnly.apply(x) if x.requires_grad else x


class _Log1pBackward(torch.autograd.Function):
    """The first derivative of :class:`_Log1p`; differentiating it raises."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, w, U):  # type: ignore[override]
        inner = U.mT @ _spectral.symmetrize(grad) @ U
        return U @ (_spectral.log_divided_difference(1.0 + w) * inner) @ U.mT

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        pass

    @staticmethod
    def backward(ctx, *_):  # type: ignore[override]
        raise MatrixInfoSecondDerivativeError(
            "matrix_llm_loss: second derivatives are not supported on the method='subspace' path; "
            "use method='exact' (its eigh matrix logarithm is twice differentiable)."
        )


def _jittered_cholesky(H: torch.Tensor) -> torch.Tensor:
    """Cholesky factor of ``H + j I`` for a PSD Gram matrix ``H`` (entries
    <= 1), singular when ``k + b > d`` or tokens are parallel. ``j`` is the
    first of ``10 s eps * eps^(-i/3)``, ``i = 0..3`` (``s`` the size: above
    rounding, below the accuracy that matters) whose factorization succeeds,
    chosen per matrix without a host read: the four trial factorizations run
    as one batch without gradient, then one factorization with the chosen
    jitter carries the gradient.
    """
    eps = torch.finfo(H.dtype).eps
    eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    jitters = 10 * H.shape[-1] * eps * (eps ** (-1.0 / 3.0)) ** torch.arange(4, dtype=H.dtype, device=H.device)
    with torch.no_grad():
        trials = H.detach().unsqueeze(0) + jitters.view(-1, *([1] * H.dim())) * eye
        ok = torch.linalg.cholesky_ex(trials)[1] == 0  # (4, *batch)
        first = torch.where(ok.any(0), ok.to(torch.int64).argmax(0), ok.shape[0] - 1)
        jitter = jitters[first]
    return torch.linalg.cholesky_ex(H + jitter[..., None, None] * eye)[0]


def mce_subspace(q, E, idx_t, top_k, rank, eps):
    """``-e_y^T log(Qt) e_y + tr(Qt)`` per token (``(N,)``) for class-index
    targets ``idx_t`` ``(N, 1)``; ``q`` ``(N, n)`` the softmax, ``E`` ``(n, d)``
    the normalized embeddings. (Written for ``t`` target columns, as the
    basis bookkeeping is the same; probability targets use ``"topk"``.)
    """
    N, n = q.shape
    d = E.shape[1]
    t = idx_t.shape[1]
    dt, dev = q.dtype, q.device
    # K: the top_k most probable tokens that are not targets (targets live in B).
    k = max(0, min(top_k, n - t))
    q_k, idx_k = q.scatter(-1, idx_t, -1.0).topk(k, dim=-1)
    q_k = q_k.clamp_min(0)
    q_rest = q.scatter(-1, idx_k, 0.0)  # (N, n), the targets included
    r = q_rest.sum(-1)
    E_k, E_t = E[torch.cat([idx_k, idx_t], -1)].split([k, t], dim=-2)  # (N, k, d), (N, t, d): one gather
    m = max(0, min(rank, d - t - 1, n))
    # B = [U, e_t] (d, m + t). Its Gram K_B and the compression C' = B^T R B.
    Z = E_t @ E.mT  # (N, t, n): e_t . e_j, one logits-sized product
    Zq = Z * q_rest.unsqueeze(-2)
    C_tt = Zq @ Z.mT  # (N, t, t)
    G_tt = E_t @ E_t.mT
    if m > 0:
        U = _shared_basis(E, q_rest.mean(0), m)
        Y = E @ U  # (n, m)
        rows_i, cols_i = torch.triu_indices(m, m, device=dev)
        position = torch.empty(m, m, dtype=torch.long, device=dev)
        position[rows_i, cols_i] = torch.arange(rows_i.numel(), device=dev)
        position[cols_i, rows_i] = position[rows_i, cols_i]
        packed = q_rest @ _llm._PackedOuter.apply(Y, rows_i, cols_i, position)
        C_uu = packed[:, position.reshape(-1)].reshape(N, m, m)
        C_tu = Zq @ Y  # (N, t, m)
        Y_t = Y[idx_t]  # (N, t, m) = e_t^T U
        Cp = torch.cat([torch.cat([C_uu, C_tu.mT], -1), torch.cat([C_tu, C_tt], -1)], -2)
        eye_m = torch.eye(m, dtype=dt, device=dev).expand(N, m, m)
        KB = torch.cat([torch.cat([eye_m, Y_t.mT], -1), torch.cat([Y_t, G_tt], -1)], -2)
        EkB = torch.cat([E_k @ U, E_k @ E_t.mT], -1)  # (N, k, m + t)
    else:
        Cp, KB, EkB = C_tt, G_tt, E_k @ E_t.mT
        Y_t = E_t.new_zeros(N, t, 0)
    b = m + t
    # An orthonormal basis O = B L_B^{-T} of span B, from K_B + delta I = L_B L_B^T
    # (delta keeps parallel targets, or a target inside span U, solvable; then
    # O O^T = B (K_B + delta I)^{-1} B^T = T, 0 <= T <= I, stands for the projector).
    # The rest becomes T R T + beta (I - T) with the trace of R.
    delta = torch.finfo(dt).eps ** (2.0 / 3.0)
    # K_B = [[I, Y_t^T], [Y_t, G_tt]] has the Cholesky factor [[I, 0], [Y_t, L_s]]
    # with L_s L_s^T = G_tt - Y_t Y_t^T + delta I (Gram-Schmidt of the targets
    # against U): only a t x t factor, a square root for class-index targets.
    schur = G_tt - Y_t @ Y_t.mT + delta * torch.eye(t, dtype=dt, device=dev)
    L_s = schur.clamp_min(delta).sqrt() if t == 1 else torch.linalg.cholesky(schur)
    L_B_low = torch.cat([Y_t, L_s], -1)  # rows m.. of L_B, (N, t, b)

    def inv_l(X):  # L_B^{-1} X, blockwise
        top, low = X[..., :m, :], X[..., m:, :] - Y_t @ X[..., :m, :]
        low = low / L_s if t == 1 else torch.linalg.solve_triangular(L_s, low, upper=False)
        return torch.cat([top, low], -2)

    C = inv_l(inv_l(Cp).mT)  # O^T R O = L_B^{-1} C' L_B^{-T}
    OtO = inv_l(inv_l(KB).mT)  # = I up to delta
    tr_T = OtO.diagonal(dim1=-2, dim2=-1).sum(-1)
    tr_TRT = (C * OtO).sum((-2, -1))
    beta = (r - tr_TRT).clamp_min(0) / (d - tr_T).clamp_min(1.0)
    alpha = beta + eps
    # Qt = alpha I + V S V^T with V = [E_k^T, O], S = diag(q_k) (+) (C - beta O^T O):
    # S may be indefinite, Qt > 0. With H = V^T V = R^T R and e = V c,
    # e^T f(Qt) e = (R c)^T f(alpha I + R S R^T) (R c).
    S_B = C - beta[:, None, None] * OtO
    zkb = torch.zeros(N, k, b, dtype=dt, device=dev)
    S = torch.cat([torch.cat([torch.diag_embed(q_k), zkb], -1), torch.cat([zkb.mT, S_B], -1)], -2)
    EkO = inv_l(EkB.mT).mT  # E_k O
    H = torch.cat([torch.cat([E_k @ E_k.mT, EkO], -1), torch.cat([EkO.mT, OtO], -1)], -2)
    L_H = _jittered_cholesky(H)  # R = L_H^T
    # e_t = B u_{m+t} = O L_B^T u_{m+t}: c = (0, row m+t of L_B).
    c = torch.cat([torch.zeros(N, k, t, dtype=dt, device=dev), L_B_low.mT], -2)  # (N, k + b, t)
    Rc = L_H.mT @ c
    G = (L_H.mT @ S @ L_H) / alpha[:, None, None]
    quad = (Rc * (_Log1p.apply(G)[0] @ Rc)).sum(-2)  # (N, t)
    log_alpha = torch.log(alpha)
    per_target = log_alpha[:, None] * E_t.square().sum(-1) + quad
    tr_p_log_q = per_target.sum(-1)
    # tr Q = sum_j q_j |e_j|^2. The rows are l2-normalized (|e_j| = 1, or 0),
    # so its gradient with respect to them vanishes once projected through the
    # normalization: E is detached here (one (n, d) pass fewer each way).
    tr_q = q @ E.detach().square().sum(-1) + d * eps
    return -tr_p_log_q + tr_q
