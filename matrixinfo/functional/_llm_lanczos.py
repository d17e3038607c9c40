r"""The ``"lanczos"`` method of :func:`matrixinfo.functional.matrix_llm_loss`.

Per token, with :math:`A = Q + \varepsilon I`, :math:`Q = E^\top \operatorname{diag}(q) E`
(rows of :math:`E` normalized) and the target's embedding :math:`b = e_y`,
``steps`` Lanczos steps started from :math:`b` give the tridiagonal
:math:`T = V^\top A V` (``V`` an orthonormal basis of the Krylov space
:math:`\operatorname{span}\{b, Ab, \dots\}`), and Gauss quadrature (Golub & Meurant,
*Matrices, Moments and Quadrature*, 2010, ch. 6-7):

.. math::
    b^\top \log(A)\, b \approx \|b\|^2\, e_1^\top \log(T)\, e_1 .

Each step costs one ``(N, d) @ (d, n)`` product (``E v`` for every token at
once, the size of the logits matmul) and, but for the last, one
``(N, n) @ (n, d)`` product; no ``d x d`` matrix, no per-token eigh but that
of the ``steps``-square ``T``.

The backward is the Krylov approximation of the exact gradient,
:math:`\partial / \partial A = V L_{\log}(T, \|b\|^2 e_1 e_1^\top) V^\top`
(:math:`L_{\log}` the Frechet derivative, by divided differences of ``log`` at
the Ritz values), and :math:`\partial / \partial b = 2 \|b\| V \log(T) e_1`.
For the embedding rows the ``steps x steps`` matrix is truncated to its
``_BACKWARD_RANK`` eigenpairs of largest modulus: ``min(steps, 3)`` more
logits-sized products in one GEMM. Both are exact once the Krylov space is
invariant whatever the data (``steps >= d`` or ``steps > n``: then no
truncation either).

The embedding is used as given: its row norms enter through the weights
:math:`q_j / \|e_j\|^2`, so the normalized ``(n, d)`` matrix is never formed
(nor its backward).
"""

from __future__ import annotations

import torch

from .. import _spectral
from .._checks import MatrixInfoSecondDerivativeError
from .._lanczos import tridiagonal

__all__: list[str] = []

#: Eigenpairs of the per-token ``steps x steps`` gradient matrix kept for the embedding's direct gradient.
_BACKWARD_RANK = 3
#: Rows with a smaller norm are scaled by ``1 / _NORM_FLOOR`` instead, as :func:`torch.nn.functional.normalize` does.
_NORM_FLOOR = 1e-12


class _LanczosLogQuadrature(torch.autograd.Function):
    """Per token ``tr(Q) - b^T log(Q + eps I) b`` by Gauss quadrature; see the module docstring.

    Inputs: ``q`` ``(N, n)`` probabilities, ``E`` ``(n, d)`` raw embedding
    (rows normalized inside), ``target`` ``(N,)`` class indices (the start
    vectors are the targets' normalized rows), ``norm`` ``(n,)`` the row norms of ``E``
    (computed by the caller, who also reads their finiteness), ``eps``, ``steps``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(q, E, target, norm, eps, steps):  # type: ignore[override]
        b = E[target] / norm[target].clamp_min(_NORM_FLOOR).unsqueeze(-1)
        u = norm.clamp_min(_NORM_FLOOR).square().reciprocal()  # 1 / ||e_j||^2 (n,)
        qu = q * u  # weights of the raw rows: Q = E^T diag(q u) E
        beta0 = torch.linalg.vector_norm(b, dim=-1)
        tiny = torch.finfo(q.dtype).tiny
        v = b / beta0.clamp_min(tiny).unsqueeze(-1)
        vectors, products, alphas, betas = [v], [], [], []
        scale = torch.zeros_like(beta0)
        tol = 64 * torch.finfo(q.dtype).eps
        for k in range(steps):
            W = v @ E.mT  # (N, n): e_j^T v for every token, the logits-sized product
            products.append(W)
            qW = qu * W
            alpha = torch.linalg.vecdot(qW, W) + eps
            alphas.append(alpha)
            if k == steps - 1:
                break
            r = qW @ E + (eps - alpha).unsqueeze(-1) * v
            if k > 0:
                r = r - betas[-1].unsqueeze(-1) * vectors[-2]
            for w in vectors:  # full reorthogonalization (steps is small)
                r = r - torch.linalg.vecdot(r, w).unsqueeze(-1) * w
            beta = torch.linalg.vector_norm(r, dim=-1)
            scale = torch.maximum(scale, alpha.abs() + beta)
            # Breakdown (the Krylov space is invariant): the next vector is 0
            # and T decouples; the quadrature is then exact.
            alive = beta > tol * scale
            beta = torch.where(alive, beta, torch.zeros_like(beta))
            betas.append(beta)
            v = torch.where(alive.unsqueeze(-1), r / torch.where(alive, beta, 1.0).unsqueeze(-1), 0.0)
            vectors.append(v)
        T = tridiagonal(alphas, betas)
        # Non-finite input: the caller returns NaN; LAPACK must not see it.
        theta, U = torch.linalg.eigh(torch.where(torch.isfinite(T), T, 0.0))
        # T is a compression of Q + eps I: its eigenvalues are >= eps but for rounding.
        theta = theta.clamp_min(0.5 * eps)
        first = U[..., 0, :]  # (N, m): the first components of the eigenvectors
        quad = beta0.square() * torch.linalg.vecdot(first * first, torch.log(theta))
        trace = q @ (norm.square() * u) + E.shape[1] * eps
        # Token-major (N, m, .) stacks: the backward's per-token m x m products are then one bmm.
        return trace - quad, torch.stack(vectors, 1), torch.stack(products, 1), theta, U, beta0, u, qu

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        q, E, target, norm, eps, steps = inputs
        _, V, W, theta, U, beta0, u, qu = output
        ctx.mark_non_differentiable(V, W, theta, U, beta0, u, qu)
        ctx.save_for_backward(q, E, target, V, W, theta, U, beta0, u, qu, norm)

    @staticmethod
    def backward(ctx, grad, *_):  # type: ignore[override]
        return (*_LanczosBackward.apply(grad, *ctx.saved_tensors), None, None, None, None)


class _LanczosBackward(torch.autograd.Function):
    """The first derivative of :class:`_LanczosLogQuadrature`; differentiating it raises."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, q, E, target, V, W, theta, U, beta0, u, qu, norm):  # type: ignore[override]
        first = U[..., 0, :]
        # d(-b^T log(A) b)/dA ~ V G V^T with G = -||b||^2 L_log(T, e1 e1^T), per token (N, m, m).
        inner = _spectral.log_divided_difference(theta) * (first.unsqueeze(-1) * first.unsqueeze(-2))
        G = -(grad * beta0.square())[:, None, None] * (U @ inner @ U.mT)
        GW = torch.bmm(G, W)  # (N, m, n): G V^T e_j for every raw row e_j
        g_raw = torch.linalg.vecdot(W, GW, dim=1)  # e_j^T (V G V^T) e_j (N, n)
        # Q = E^T diag(q u) E: through q, through E directly, and through u = 1 / ||e_j||^2.
        norm2 = norm.square()
        grad_q = g_raw * u + grad.unsqueeze(-1) * (norm2 * u)  # tr(Q) = sum_j q_j ||e_j||^2 u_j
        # The direct path through E needs V G V^T e_j for every row: with G truncated to its
        # _BACKWARD_RANK eigenpairs of largest modulus, one GEMM of that many (not m) logits-sized
        # matmuls. G is close to rank one for a flat softmax (A near a multiple of I: L_log(T, e1 e1^T)
        # ~ e1 e1^T / theta), where keeping 2 changed the embedding gradient by < 1e-3 of its norm; a
        # peaked softmax over anisotropic embeddings needed 3 (2: 2.1e-2, 3: 7.0e-4, all 4: 6.5e-4 from
        # exact, on the float64 grid of the docstring).
        # Where the Krylov space is invariant whatever the data (steps >= d, or steps > n), all m are
        # kept, so that the gradient is exact there.
        m, n, d = W.shape[1], W.shape[2], V.shape[2]
        rank = m if m >= min(d, n + 1) else min(_BACKWARD_RANK, m)
        lam, P = torch.linalg.eigh(G)
        top = lam.abs().topk(rank, dim=-1).indices  # (N, r)
        P_r = P.gather(-1, top.unsqueeze(-2).expand(-1, P.shape[-2], -1))  # (N, m, r)
        A = torch.bmm((P_r * lam.gather(-1, top).unsqueeze(-2)).mT, W).mul_(qu.unsqueeze(1))  # (N, r, n)
        V_r = torch.bmm(P_r.mT, V)  # (N, r, d)
        # u_j = 1 / ||e_j||^2 above the floor: du/de_j = -2 u_j^2 e_j (0 below it, where tr Q moves instead).
        through_u = (q * g_raw).sum(0) * u  # sum_N q_Nj g_Nj u_j
        trace_grad = 2.0 * (grad @ q) * u  # d tr(Q) / d e_j below the floor
        coef = torch.where(norm > _NORM_FLOOR, -2.0 * through_u * u, trace_grad)
        # Through Q = E^T diag(q u) E directly: 2 sum_N qu_Nj V_N G_N V_N^T e_j, one GEMM (n, N r) @ (N r, d).
        grad_E = torch.addmm(E * coef.unsqueeze(-1), A.flatten(0, 1).mT, V_r.flatten(0, 1), alpha=2.0)
        # d(-b^T log(A) b)/db = -2 log(A) b ~ -2 ||b|| V U diag(log theta) U^T e1, then through
        # b = e_y / ||e_y|| (F.normalize) into the target rows.
        coeff = (U @ (torch.log(theta) * first).unsqueeze(-1)).squeeze(-1)  # (N, m)
        grad_b = (-2.0 * grad * beta0).unsqueeze(-1) * torch.linalg.vecdot(coeff.unsqueeze(-1), V, dim=1)
        norm_t = norm[target]
        b = E[target] / norm_t.clamp_min(_NORM_FLOOR).unsqueeze(-1)
        radial = torch.where(norm_t > _NORM_FLOOR, torch.linalg.vecdot(grad_b, b), 0.0)
        grad_e = (grad_b - radial.unsqueeze(-1) * b) / norm_t.clamp_min(_NORM_FLOOR).unsqueeze(-1)
        grad_E.index_add_(0, target, grad_e)
        return grad_q, grad_E

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        pass

    @staticmethod
    def backward(ctx, *_):  # type: ignore[override]
        raise MatrixInfoSecondDerivativeError(
            "matrix_llm_loss: second derivatives are not supported on the method='lanczos' path; "
            "use method='exact' (its eigh matrix logarithm is twice differentiable)."
        )


def mce_lanczos(
    q: torch.Tensor, E: torch.Tensor, norm: torch.Tensor, target: torch.Tensor, steps: int, eps: float
) -> torch.Tensor:
    """``tr(Q) - e_y^T log(Q + eps I) e_y + d eps`` per token, by ``steps`` Lanczos steps.

    ``E`` is the raw embedding (rows normalized inside), ``norm`` its row norms (no gradient);
    ``target`` holds class indices ``(N,)``.
    """
    return _LanczosLogQuadrature.apply(q, E, target, norm, eps, steps)[0]
