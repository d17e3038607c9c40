"""Matrix-LLM loss (paper eq. 23) against a NumPy/SciPy float64 oracle."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from matrixinfo.functional import matrix_llm_loss
from matrixinfo.losses import MatrixLLMLoss

RTOL64 = 1e-10
# The default method approximates Q (top-k tokens + a rank-32 subspace + an
# isotropic rest); the accuracy target against the exact method is 1e-2.
APPROX_RTOL = 1e-2


def oracle(logits, target, E, eps=1e-6, mce_weight=1.0, ignore_index=-100):
    """CE + w * MCE(P, Q + eps I) per eq. 23, averaged over kept tokens."""
    logits = np.asarray(logits, dtype=float)
    E = np.asarray(E, dtype=float)
    E = E / np.linalg.norm(E, axis=1, keepdims=True)
    n, d = E.shape
    target = np.asarray(target)
    total, count = 0.0, 0
    for i in range(logits.shape[0]):
        if target.ndim == 1 and target[i] == ignore_index:
            continue
        q = np.exp(logits[i] - logits[i].max())
        q /= q.sum()
        p = target[i] if target.ndim == 2 else np.eye(n)[target[i]]
        P = (E.T * p) @ E
        Q = (E.T * q) @ E + eps * np.eye(d)
        ce = -np.sum(p * np.log(q))
        mce = np.trace(-P @ scipy.linalg.logm(Q).real + Q)
        total += ce + mce_weight * mce
        count += 1
    return total / count


def case(N, n, d, temp=1.0, seed=0, aniso=False):
    g = torch.Generator().manual_seed(seed)
    E = torch.randn(n, d, generator=g, dtype=torch.float64)
    if aniso:
        E = E * torch.logspace(0, -2, d, dtype=torch.float64) + 0.5 * torch.randn(
            1, d, generator=g, dtype=torch.float64
        )
    logits = temp * torch.randn(N, n, generator=g, dtype=torch.float64)
    target = torch.randint(0, n, (N,), generator=g)
    return logits, target, E


def test_exact_matches_oracle_with_ignore_index():
    logits, target, E = case(6, 12, 4, seed=1)
    target[2] = -100
    got = matrix_llm_loss(logits, target, E, method="exact")
    assert abs(got.item() - oracle(logits, target, E)) < RTOL64 * abs(got.item())


def test_exact_soft_targets_match_oracle_and_one_hot_equals_indices():
    logits, target, E = case(5, 10, 3, seed=2)
    g = torch.Generator().manual_seed(3)
    soft = torch.softmax(torch.randn(5, 10, generator=g, dtype=torch.float64), dim=-1)
    got = matrix_llm_loss(logits, soft, E, method="exact")
    assert abs(got.item() - oracle(logits, soft.numpy(), E)) < RTOL64 * abs(got.item())
    onehot = torch.nn.functional.one_hot(target, 10).double()
    for method in ("exact", "topk"):
        a = matrix_llm_loss(logits, onehot, E, method=method)
        b = matrix_llm_loss(logits, target, E, method=method)
        assert abs(a.item() - b.item()) < RTOL64 * abs(b.item())


def test_topk_is_exact_when_it_keeps_the_whole_vocabulary():
    logits, target, E = case(8, 16, 5, seed=4)
    exact = matrix_llm_loss(logits, target, E, method="exact")
    topk = matrix_llm_loss(logits, target, E, method="topk", top_k=16)
    assert abs(topk.item() - exact.item()) < RTOL64 * abs(exact.item())


@pytest.mark.parametrize("temp", [8.0, 3.0, 1.0, 0.1], ids=["peaked", "medium", "flat", "very-flat"])
@pytest.mark.parametrize("aniso", [False, True], ids=["isotropic", "anisotropic"])
def test_topk_is_within_one_percent_of_exact(temp, aniso):
    logits, target, E = case(6, 2048, 64, temp=temp, seed=5, aniso=aniso)
    exact = matrix_llm_loss(logits, target, E, method="exact").item()
    topk = matrix_llm_loss(logits, target, E, method="topk").item()
    assert abs(topk - exact) < APPROX_RTOL * abs(exact)


def test_mce_weight_zero_is_cross_entropy():
    logits, target, E = case(7, 9, 3, seed=6)
    target[0] = -100
    got = matrix_llm_loss(logits, target, E, mce_weight=0.0)
    ref = torch.nn.functional.cross_entropy(logits, target, ignore_index=-100)
    assert abs(got.item() - ref.item()) < 1e-14


def test_all_ignored_gives_zero_with_finite_gradients():
    logits, target, E = case(3, 8, 2, seed=7)
    logits.requires_grad_(True)
    E.requires_grad_(True)
    value = matrix_llm_loss(logits, torch.full((3,), -100), E)
    value.backward()
    assert value.item() == 0.0 and torch.all(logits.grad == 0) and torch.all(E.grad == 0)


# The top-k path divides by alpha = rest/d + eps; with eps = 1e-6 and no rest
# its intermediates reach 1e6 and the float64 forward carries ~1e-11 noise,
# which gradcheck's finite differences amplify past their tolerance. A larger
# eps keeps the check about the derivative, not about rounding.
@pytest.mark.parametrize(
    "kw",
    [dict(method="exact"), dict(method="topk", top_k=8, eps=1e-2), dict(method="topk", top_k=3, rank=0)],
    ids=["exact", "topk-whole-vocab", "topk-isotropic-rest"],
)
def test_gradcheck_logits_and_embedding(kw):
    logits, target, E = case(3, 8, 3, seed=8)
    target[1] = -100
    logits.requires_grad_(True)
    E.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: matrix_llm_loss(a, target, b, **kw), (logits, E))


def test_gradients_flow_and_are_close_to_exact():
    """The approximation's gradient error is measured, not hidden. At these
    sizes (n = 512, d = 16, defaults) we measured 2.3% (logits) and 12.9%
    (embedding: the rest tokens' embeddings only see the compressed residual)."""
    logits, target, E = case(4, 512, 16, temp=2.0, seed=9)
    grads = {}
    for method in ("exact", "topk"):
        a = logits.clone().requires_grad_(True)
        b = E.clone().requires_grad_(True)
        matrix_llm_loss(a, target, b, method=method).backward()
        grads[method] = (a.grad, b.grad)
    (gl_exact, ge_exact), (gl_topk, ge_topk) = grads["exact"], grads["topk"]
    assert torch.isfinite(gl_topk).all() and torch.isfinite(ge_topk).all()
    assert (gl_topk - gl_exact).norm() < 0.05 * gl_exact.norm()
    assert (ge_topk - ge_exact).norm() < 0.2 * ge_exact.norm()


def test_repeated_embeddings_give_finite_gradients():
    """Orthonormal, repeated embeddings and a uniform softmax: every
    eigenvalue repeats. Autograd through eigh would be NaN here."""
    E = torch.eye(4, dtype=torch.float64).repeat(2, 1).requires_grad_(True)  # n = 8, d = 4
    logits = torch.zeros(2, 8, dtype=torch.float64, requires_grad=True)
    for method in ("exact", "topk"):
        value = matrix_llm_loss(logits, torch.tensor([0, 5]), E, method=method, top_k=4)
        gl, ge = torch.autograd.grad(value, (logits, E))
        assert torch.isfinite(value) and torch.isfinite(gl).all() and torch.isfinite(ge).all()


def test_module_equals_functional_and_flattens_leading_dims():
    logits, target, E = case(6, 10, 4, seed=10)
    a = MatrixLLMLoss(top_k=4, rank=2)(logits, target, E)
    b = matrix_llm_loss(logits, target, E, top_k=4, rank=2)
    assert torch.equal(a, b)
    c = matrix_llm_loss(logits.reshape(2, 3, 10), target.reshape(2, 3), E, top_k=4, rank=2)
    assert abs(c.item() - b.item()) < 1e-14


def test_autocast_bfloat16_is_close_to_float32():
    logits, target, E = case(8, 256, 16, seed=11)
    head = torch.nn.Linear(16, 256, bias=False)
    with torch.no_grad():
        head.weight.copy_(E.float())
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(12))
    ref = matrix_llm_loss(head(x), target, head.weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = matrix_llm_loss(head(x), target, head.weight)
    assert torch.isfinite(got)
    # bf16 logits carry ~3 significant digits: 1e-2 relative is the bound.
    assert abs(got.item() - ref.item()) < 1e-2 * abs(ref.item())


def test_bad_input_messages():
    logits, target, E = case(4, 10, 3, seed=13)
    with pytest.raises(ValueError, match=r"matrix_llm_loss: expected embedding to have shape \(n, d\) with n = 10"):
        matrix_llm_loss(logits, target, E[:9])
    with pytest.raises(ValueError, match=r"matrix_llm_loss: expected target to be class indices of shape \(4,\)"):
        matrix_llm_loss(logits, target[:3], E)
    with pytest.raises(
        ValueError, match=r"matrix_llm_loss: expected target indices in \[0, 10\) or ignore_index=-100, got 10"
    ):
        matrix_llm_loss(logits, torch.tensor([0, 1, 10, 2]), E)
    with pytest.raises(ValueError, match=r"matrix_llm_loss: expected target probabilities of shape \(4, 10\)"):
        matrix_llm_loss(logits, torch.rand(4, 9, dtype=torch.float64), E)
    with pytest.raises(ValueError, match=r"matrix_llm_loss: expected logits to have shape \(N, n\)"):
        matrix_llm_loss(logits[0], target, E)
    with pytest.raises(TypeError, match=r"matrix_llm_loss: expected logits to have a real floating dtype"):
        matrix_llm_loss(logits.long(), target, E)
    with pytest.raises(
        ValueError,
        match=r"MatrixLLMLoss: expected method to be one of 'lanczos', 'subspace', 'topk', 'exact', got 'full'",
    ):
        MatrixLLMLoss(method="full")


@pytest.mark.parametrize("method", ["exact", "topk"])
def test_detach_embedding_keeps_the_value_and_stops_only_the_embedding_gradient(method):
    logits, target, E = case(4, 12, 3, seed=14)
    a = logits.clone().requires_grad_(True)
    b = E.clone().requires_grad_(True)
    v_detached = matrix_llm_loss(a, target, b, method=method, detach_embedding=True)
    grad_logits_detached, grad_embedding = torch.autograd.grad(v_detached, (a, b), allow_unused=True)
    assert grad_embedding is None
    a2 = logits.clone().requires_grad_(True)
    v = matrix_llm_loss(a2, target, b, method=method)
    grad_logits = torch.autograd.grad(v, a2)[0]
    assert v.item() == v_detached.item()
    assert torch.allclose(grad_logits, grad_logits_detached, rtol=0, atol=0)


def test_trivial_minimizer_through_the_embedding_is_real():
    """All rows parallel: MCE(P, Q + eps I) is at its floor ~1 whatever the prediction
    (the documented warning); a spread embedding scores higher for the same logits."""
    logits = torch.randn(5, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(15))
    target = torch.tensor([0, 3, 5, 7, 9])
    parallel = torch.ones(10, 4, dtype=torch.float64)
    spread = torch.randn(10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(16))
    ce = torch.nn.functional.cross_entropy(logits, target).item()
    mce_parallel = matrix_llm_loss(logits, target, parallel, method="exact").item() - ce
    mce_spread = matrix_llm_loss(logits, target, spread, method="exact").item() - ce
    assert abs(mce_parallel - 1.0) < 1e-4 and mce_spread > mce_parallel + 0.5
