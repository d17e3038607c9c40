"""Classic losses against independent NumPy transcriptions of their authors'
definitions (REFERENCES.md section 5), plus the properties that pin their
signs and conventions.

The oracles below are written from the formulas, in plain float64 NumPy with
loops or library routines (``np.cov``, ``np.var``, ``scipy.special.logsumexp``,
``np.linalg.slogdet``) that the implementation does not use.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from _tolerances import ATOL64, GRADCHECK_LOSSES, RTOL64
from scipy.special import logsumexp

import matrixinfo.functional as MF
from matrixinfo.losses import (
    BarlowTwinsLoss,
    BYOLLoss,
    CorInfoMaxLoss,
    NegativeCosineSimilarityLoss,
    SimCLRLoss,
    SpectralContrastiveLoss,
    VICRegLoss,
)


def _pair(B=12, d=5, seed=0, noise=0.3, scale=1.0):
    g = np.random.default_rng(seed)
    z1 = scale * g.standard_normal((B, d))
    z2 = z1 + noise * g.standard_normal((B, d))
    return z1, z2


def _t(x):
    return torch.as_tensor(x, dtype=torch.float64)


def _close(actual, expected):
    np.testing.assert_allclose(float(actual), expected, rtol=RTOL64, atol=ATOL64)


# --------------------------------------------------------------------------- #
# NumPy oracles, written from the authors' definitions                         #
# --------------------------------------------------------------------------- #
def np_barlow_twins(z1, z2, lam):
    B, d = z1.shape

    def batchnorm(z):  # BatchNorm1d(affine=False), training mode
        return (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + 1e-5)

    c = np.einsum("bi,bj->ij", batchnorm(z1), batchnorm(z2)) / B
    total = 0.0
    for i in range(d):
        for j in range(d):
            total += (1.0 - c[i, i]) ** 2 if i == j else lam * c[i, j] ** 2
    return total


def np_vicreg_parts(z1, z2, eps=1e-4):
    """(invariance, variance term as the authors define it, covariance term)."""
    d = z1.shape[1]
    invariance = np.mean((z1 - z2) ** 2)
    hinges = [np.mean(np.maximum(0.0, 1.0 - np.sqrt(z.var(axis=0, ddof=1) + eps))) for z in (z1, z2)]
    variance = (hinges[0] + hinges[1]) / 2  # the AVERAGE over the views
    covariance = 0.0
    for z in (z1, z2):
        C = np.cov(z, rowvar=False)  # divides by B - 1
        covariance += (np.sum(C**2) - np.sum(np.diag(C) ** 2)) / d
    return invariance, variance, covariance, hinges


def np_vicreg(z1, z2, lam=25.0, mu=25.0, nu=1.0, eps=1e-4):
    inv, var, cov, _ = np_vicreg_parts(z1, z2, eps)
    return lam * inv + mu * var + nu * cov


def np_nt_xent(z1, z2, tau):
    B = z1.shape[0]
    Z = np.concatenate([z1, z2])
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    total = 0.0
    for a in range(2 * B):
        positive = (a + B) % (2 * B)
        sims = {k: Z[a] @ Z[k] / tau for k in range(2 * B) if k != a}
        total += -sims[positive] + logsumexp(list(sims.values()))
    return total / (2 * B)


def np_negative_cosine(p, z):
    return -np.mean([p[i] @ z[i] / (np.linalg.norm(p[i]) * np.linalg.norm(z[i])) for i in range(len(p))])


def np_byol(p, z):
    # The left-hand side of eq. 3: squared distance of the normalized rows.
    pn = p / np.linalg.norm(p, axis=1, keepdims=True)
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    return np.mean(np.sum((pn - zn) ** 2, axis=1))


def np_spectral_contrastive(z1, z2, mu):
    def project(z):
        out = z.copy()
        for i, row in enumerate(z):
            norm = np.sqrt(np.sum(row**2))
            if norm > np.sqrt(mu):
                out[i] = row * np.sqrt(mu) / norm
        return out

    a, b = project(z1), project(z2)
    B = len(a)
    first = -2.0 / B * sum(a[i] @ b[i] for i in range(B))
    second = sum((a[i] @ b[j]) ** 2 for i in range(B) for j in range(B) if i != j) / (B * (B - 1))
    return (first + second) / mu


def np_corinfomax_steps(batches, alpha, eps, f):
    """Losses of consecutive calls, and the final (R1, R2, m1, m2)."""
    d = batches[0][0].shape[1]
    R = [np.eye(d), np.eye(d)]
    m = [np.zeros(d), np.zeros(d)]
    losses = []
    for z1, z2 in batches:
        B = len(z1)
        logdet = 0.0
        for v, z in enumerate((z1, z2)):
            m[v] = f * m[v] + (1 - f) * z.mean(axis=0)
            outer = sum(np.outer(z[b] - m[v], z[b] - m[v]) for b in range(B)) / B
            R[v] = f * R[v] + (1 - f) * outer
            sign, value = np.linalg.slogdet(R[v] + eps * np.eye(d))
            assert sign > 0  # test-internal sanity of the oracle, not user input
            logdet += value
        losses.append(alpha * np.mean((z1 - z2) ** 2) - logdet / d)
    return losses, (R[0], R[1], m[0], m[1])


# --------------------------------------------------------------------------- #
# Against the authors' definitions                                             #
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("lam", [0.0051, 5e-3, 0.3])
@pytest.mark.parametrize("shape", [(12, 5), (4, 9)])
def test_barlow_twins_matches_authors_definition(lam, shape):
    z1, z2 = _pair(*shape, seed=1)
    _close(MF.barlow_twins_loss(_t(z1), _t(z2), lambda_param=lam), np_barlow_twins(z1, z2, lam))


def test_barlow_twins_standardization_is_batchnorm_in_training_mode():
    z1, z2 = (_t(x) for x in _pair(16, 6, seed=2, scale=3.0))
    bn = torch.nn.BatchNorm1d(6, affine=False, dtype=torch.float64).train()
    c = bn(z1).T @ bn(z2) / 16
    eye = torch.eye(6, dtype=torch.bool)
    expected = ((1 - c.diagonal()) ** 2).sum() + 0.0051 * c[~eye].pow(2).sum()
    _close(BarlowTwinsLoss()(z1, z2), float(expected))


def test_barlow_twins_lambda_default_is_the_authors_and_lightly_value_documented():
    # One default (the authors' 0.0051); lightly's 5e-3 is documented next to it.
    assert inspect.signature(MF.barlow_twins_loss).parameters["lambda_param"].default == 0.0051
    assert BarlowTwinsLoss().lambda_param == 0.0051
    for doc in (MF.barlow_twins_loss.__doc__, BarlowTwinsLoss.__doc__):
        assert "0.0051" in doc and "5e-3" in doc


@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)])
def test_vicreg_matches_authors_definition(weights):
    # scale 0.4: feature standard deviations below 1, so the hinge is active.
    z1, z2 = _pair(10, 6, seed=3, scale=0.4)
    lam, mu, nu = weights
    got = MF.vicreg_loss(_t(z1), _t(z2), lambda_param=lam, mu_param=mu, nu_param=nu)
    _close(got, np_vicreg(z1, z2, lam, mu, nu))


def test_vicreg_variance_term_is_the_average_over_views_not_solo_learns_sum():
    # Deliberate choice: the original averages the two views' hinges; solo-learn
    # adds them, which doubles the variance term. We compute the original.
    z1, z2 = _pair(10, 6, seed=4, scale=0.4)
    inv, var, cov, hinges = np_vicreg_parts(z1, z2)
    solo_learn = 25 * inv + 25 * (hinges[0] + hinges[1]) + cov
    original = 25 * inv + 25 * var + cov
    got = float(MF.vicreg_loss(_t(z1), _t(z2)))
    assert var > 0.1  # the hinge is active, so the two conventions differ
    np.testing.assert_allclose(got, original, rtol=RTOL64)
    assert abs(got - solo_learn) > 1.0
    np.testing.assert_allclose(solo_learn - got, 25 * var, rtol=1e-10)


@pytest.mark.parametrize("temperature", [0.5, 0.1, 1.7])
@pytest.mark.parametrize("shape", [(6, 4), (3, 8)])
def test_simclr_matches_nt_xent_definition(temperature, shape):
    z1, z2 = _pair(*shape, seed=5, noise=0.8)
    _close(MF.simclr_loss(_t(z1), _t(z2), temperature=temperature), np_nt_xent(z1, z2, temperature))


def test_simclr_is_invariant_to_row_scaling_and_symmetric_in_views():
    z1, z2 = (_t(x) for x in _pair(6, 4, seed=6, noise=0.8))
    scales = torch.linspace(0.1, 10, 6, dtype=torch.float64)[:, None]
    base = MF.simclr_loss(z1, z2)
    torch.testing.assert_close(MF.simclr_loss(scales * z1, z2), base, rtol=1e-12, atol=0)
    torch.testing.assert_close(MF.simclr_loss(z2, z1), base, rtol=1e-12, atol=0)


def test_simclr_half_precision_normalization_does_not_underflow():
    # lightly issue 1259: with tiny rows, ||z||^2 underflows in float16. We
    # normalize in float32, so the float16 loss equals the float32 loss on
    # the same (float16-representable) values.
    z1, z2 = (_t(x) * 1e-4 for x in _pair(8, 4, seed=7, noise=0.5))
    h1, h2 = z1.half(), z2.half()
    assert float((h1.float() ** 2).sum(1).min()) > 0 and float((h1 * h1).sum(1).min()) == 0
    got = MF.simclr_loss(h1, h2)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    expected = np_nt_xent(h1.double().numpy(), h2.double().numpy(), 0.5)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_negative_cosine_and_byol_match_definitions():
    p, z = _pair(9, 5, seed=8, noise=1.0)
    _close(MF.negative_cosine_similarity_loss(_t(p), _t(z)), np_negative_cosine(p, z))
    _close(MF.byol_loss(_t(p), _t(z)), np_byol(p, z))
    # eq. 3 vs eq. 2: BYOL = 2 + 2 * (negative cosine), per sample.
    torch.testing.assert_close(
        MF.byol_loss(_t(p), _t(z)), 2 + 2 * MF.negative_cosine_similarity_loss(_t(p), _t(z)), rtol=0, atol=1e-15
    )


def test_negative_cosine_and_byol_do_not_detach_the_target():
    p, z = (_t(x).requires_grad_() for x in _pair(6, 3, seed=9))
    for loss in (NegativeCosineSimilarityLoss(), BYOLLoss()):
        gp, gz = torch.autograd.grad(loss(p, z), (p, z))
        assert gz.abs().sum() > 0 and gp.abs().sum() > 0
        # Swapping the arguments swaps the gradients: online/target only name roles.
        gz2, gp2 = torch.autograd.grad(loss(z, p), (z, p))
        torch.testing.assert_close(gp2, gp, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("mu", [1.0, 10.0, 0.3])
@pytest.mark.parametrize("scale", [0.2, 3.0])
def test_spectral_contrastive_matches_authors_definition(mu, scale):
    # scale 3 puts most rows outside the ball of radius sqrt(mu); 0.2 inside.
    z1, z2 = _pair(7, 4, seed=10, scale=scale, noise=0.5)
    _close(MF.spectral_contrastive_loss(_t(z1), _t(z2), mu=mu), np_spectral_contrastive(z1, z2, mu))


@pytest.mark.parametrize("forgetting", [0.01, 0.0, 0.5])
def test_corinfomax_matches_authors_definition_over_several_steps(forgetting):
    batches = [_pair(10, 4, seed=s, noise=0.5) for s in (11, 12, 13)]
    expected, (R1, R2, m1, m2) = np_corinfomax_steps(batches, alpha=500.0, eps=1e-6, f=forgetting)
    state = None
    module = CorInfoMaxLoss(4, forgetting=forgetting)
    for (z1, z2), value in zip(batches, expected, strict=True):
        got, state = MF.corinfomax_loss(_t(z1), _t(z2), state, forgetting=forgetting)
        _close(got, value)
        # The module's buffers carry the same state from call to call.
        torch.testing.assert_close(module(_t(z1), _t(z2)), got, rtol=0, atol=0)
    for tensor, ref in zip(state, (R1, R2, m1, m2), strict=True):
        np.testing.assert_allclose(tensor.numpy(), ref, rtol=1e-12, atol=1e-14)
    for buffer, tensor in zip((module.R1, module.R2, module.mu1, module.mu2), state, strict=True):
        torch.testing.assert_close(buffer, tensor, rtol=0, atol=0)
        assert not tensor.requires_grad and tensor.dtype == torch.float64


def test_corinfomax_history_carries_no_gradient_current_batch_does():
    z1, z2 = (_t(x).requires_grad_() for x in _pair(8, 3, seed=14))
    _, state = MF.corinfomax_loss(z1, z2)
    assert all(not t.requires_grad for t in state)
    R1 = state.R1.clone().requires_grad_()
    loss, _ = MF.corinfomax_loss(z1, z2, state._replace(R1=R1))
    g_hist, g_z1 = torch.autograd.grad(loss, (R1, z1), allow_unused=True)
    assert g_hist is None and g_z1.abs().sum() > 0


def test_corinfomax_state_dict_round_trip_and_eval_mode():
    batches = [tuple(_t(x) for x in _pair(10, 4, seed=s)) for s in (15, 16)]
    a = CorInfoMaxLoss(4)
    a(*batches[0])
    b = CorInfoMaxLoss(4)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"R1", "R2", "mu1", "mu2"}
    torch.testing.assert_close(b(*batches[1]), a(*batches[1]), rtol=0, atol=0)
    before = [t.clone() for t in (a.R1, a.R2, a.mu1, a.mu2)]
    a.eval()
    a(*batches[0])
    for t, ref in zip((a.R1, a.R2, a.mu1, a.mu2), before, strict=True):
        assert torch.equal(t, ref)
    a.train().reset_state()
    assert torch.equal(a.R1, torch.eye(4, dtype=torch.float64)) and torch.equal(
        a.mu2, torch.zeros(4, dtype=torch.float64)
    )


def test_corinfomax_rejects_a_state_of_the_wrong_dimension():
    z = _t(_pair(6, 3, seed=17)[0])
    with pytest.raises(
        ValueError, match=r"corinfomax_loss: expected state\.R1 to have shape \(3, 3\) for d = 3, got \(4, 4\)"
    ):
        MF.corinfomax_loss(z, z, MF.CorInfoMaxState.initial(3)._replace(R1=torch.eye(4, dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"CorInfoMaxLoss: expected z1 of shape \(B, 5\) for dim = 5, got \(6, 3\)"):
        CorInfoMaxLoss(5)(z, z)


# --------------------------------------------------------------------------- #
# Gradients                                                                    #
# --------------------------------------------------------------------------- #
_GRADCHECK = {
    "barlow_twins": lambda a, b: MF.barlow_twins_loss(a, b, lambda_param=0.3),
    "vicreg": lambda a, b: MF.vicreg_loss(a, b),
    "simclr": lambda a, b: MF.simclr_loss(a, b, temperature=0.7),
    "negative_cosine": MF.negative_cosine_similarity_loss,
    "byol": MF.byol_loss,
    # scale 1.5 below puts some rows outside the unit ball: the projection is differentiated too.
    "spectral_contrastive": lambda a, b: MF.spectral_contrastive_loss(a, b),
    "corinfomax": lambda a, b: MF.corinfomax_loss(
        a,
        b,
        MF.CorInfoMaxState(
            torch.tensor([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 0.5]], dtype=torch.float64),
            torch.eye(3, dtype=torch.float64),
            torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64),
            torch.zeros(3, dtype=torch.float64),
        ),
        alpha=2.0,
        forgetting=0.3,
    )[0],
}


@pytest.mark.parametrize("name", sorted(_GRADCHECK))
def test_gradcheck_float64(name):
    z1, z2 = (_t(x).requires_grad_() for x in _pair(5, 3, seed=18, scale=0.8, noise=0.5))
    assert torch.autograd.gradcheck(_GRADCHECK[name], (z1, z2), **GRADCHECK_LOSSES)


# --------------------------------------------------------------------------- #
# Signs: aligned beats shuffled, collapse is not rewarded                      #
# --------------------------------------------------------------------------- #
_LOSSES = {
    "barlow_twins": lambda a, b: BarlowTwinsLoss()(a, b),
    "vicreg": lambda a, b: VICRegLoss()(a, b),
    "simclr": lambda a, b: SimCLRLoss()(a, b),
    "negative_cosine": lambda a, b: NegativeCosineSimilarityLoss()(a, b),
    "byol": lambda a, b: BYOLLoss()(a, b),
    "spectral_contrastive": lambda a, b: SpectralContrastiveLoss()(a, b),
    "corinfomax": lambda a, b: CorInfoMaxLoss(a.shape[1])(a, b),
}


@pytest.mark.parametrize("name", sorted(_LOSSES))
def test_aligned_views_cost_less_than_shuffled_views(name):
    z1, z2 = (_t(x) for x in _pair(32, 8, seed=19, noise=0.1))
    shuffled = z2[torch.randperm(32, generator=torch.Generator().manual_seed(0))]
    assert _LOSSES[name](z1, z2) < _LOSSES[name](z1, shuffled)


@pytest.mark.parametrize("name", ["barlow_twins", "vicreg", "simclr", "spectral_contrastive", "corinfomax"])
def test_collapse_is_not_rewarded(name):
    # A spread, aligned batch must beat a collapsed, aligned one.
    spread = _t(_pair(32, 8, seed=20)[0])
    spread = spread / spread.norm(dim=1, keepdim=True)  # unit rows, inside every projection ball
    collapsed = spread[:1].expand(32, 8).clone()
    assert _LOSSES[name](spread, spread) < _LOSSES[name](collapsed, collapsed)


@pytest.mark.parametrize("name", ["negative_cosine", "byol"])
def test_alignment_only_losses_reach_their_minimum_on_collapse(name):
    # SimSiam/BYOL are the first-order TCR term (eq. 18): alignment only. A
    # collapsed batch attains the minimum; predictor and stop-gradient, not the
    # loss, prevent collapse. Pinned so that the documented behaviour is tested.
    collapsed = torch.ones(8, 4, dtype=torch.float64)
    minimum = {"negative_cosine": -1.0, "byol": 0.0}[name]
    torch.testing.assert_close(_LOSSES[name](collapsed, collapsed), torch.tensor(minimum, dtype=torch.float64))


def test_hyperparameters_are_validated_in_init():
    with pytest.raises(ValueError, match=r"BarlowTwinsLoss: expected lambda_param >= 0.0, got -1.0"):
        BarlowTwinsLoss(lambda_param=-1.0)
    with pytest.raises(ValueError, match=r"SimCLRLoss: expected temperature > 0.0, got 0.0"):
        SimCLRLoss(temperature=0.0)
    with pytest.raises(ValueError, match=r"VICRegLoss: expected eps >= 0.0, got -1e-05"):
        VICRegLoss(eps=-1e-5)
    with pytest.raises(ValueError, match=r"SpectralContrastiveLoss: expected mu > 0.0, got -2.0"):
        SpectralContrastiveLoss(mu=-2.0)
    with pytest.raises(ValueError, match=r"CorInfoMaxLoss: expected forgetting <= 1, got 1.5"):
        CorInfoMaxLoss(4, forgetting=1.5)
    with pytest.raises(ValueError, match=r"CorInfoMaxLoss: expected dim to be an integer >= 1, got 0"):
        CorInfoMaxLoss(0)
    with pytest.raises(TypeError, match=r"VICRegLoss: expected mu_param to be a real number, got '25'"):
        VICRegLoss(mu_param="25")
    with pytest.raises(ValueError, match=r"SimCLRLoss: expected gather_distributed to be True or False, got 1"):
        SimCLRLoss(gather_distributed=1)
