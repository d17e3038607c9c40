"""Matrix-information losses against independent transcriptions of their
authors' definitions (REFERENCES.md sections 1, 3, 4) and of the paper's.

Oracles:
* values: NumPy/SciPy float64 transcriptions written from the formulas as the
  authors state them (explicit centering matrix H, the full d x d Taylor
  matrix, the B x B power loop of MEC, the d x d log-determinant of EMP-SSL,
  scipy.linalg.logm for the exact logs);
* gradients: a direct torch transcription of the same official formulas (full
  matrices, explicit H), itself checked against central finite differences of
  the NumPy oracle. The library computes traces of powers on the smaller side,
  so the two share no code path.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from _tolerances import FD_RTOL, GRAD_RTOL, RTOL64

import matrixinfo.functional as MF
from matrixinfo import losses as ML

SIZES = [(16, 8), (12, 12), (8, 20)]  # B > d, B = d, B < d


def data(B, d, seed=0, noise=0.3):
    g = np.random.default_rng(seed)
    z = g.standard_normal((B, d))
    p = z + noise * g.standard_normal((B, d))
    return z, p


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


# ----------------------------------------------------------------------------
# Independent transcriptions (NumPy float64)
# ----------------------------------------------------------------------------
def np_normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_taylor_log(A, order):
    X = A - np.eye(A.shape[0])
    out = np.zeros_like(A)
    P = np.eye(A.shape[0])
    for k in range(1, order + 1):
        P = P @ X
        out = out + (-1) ** (k + 1) * P / k
    return out


def np_official_parts(z, p, lam=1.0, mu=1.0, order=4, exact=False):
    """Authors' Matrix-SSL per pair: uniformity and alignment (REFERENCES.md 1)."""
    z, p = np_normalize(z), np_normalize(p)
    B, d = z.shape
    H = np.eye(B) - np.ones((B, B)) / B
    I = np.eye(d)  # noqa: E741 - the identity, named as in the paper
    C_pz = p.T @ H @ z / B
    C_pp = p.T @ H @ p / B
    C_zz = z.T @ H @ z / B
    log = (lambda A: np.real(scipy.linalg.logm(A))) if exact else (lambda A: np_taylor_log(A, order))
    U = -np.trace(lam * I @ log(C_pz + mu * I))
    A = -np.trace((C_pp + mu * I) @ log(C_zz + mu * I))
    return U, A


def np_paper_parts(z, p, mu=1.0):
    """Paper eqs. 20-21 with the shift on both sides, covariance over B - 1, exact logs."""
    z, p = np_normalize(z), np_normalize(p)
    B, d = z.shape
    H = np.eye(B) - np.ones((B, B)) / B
    I = np.eye(d)  # noqa: E741 - the identity, named as in the paper
    logm = lambda A: np.real(scipy.linalg.logm(A))  # noqa: E731
    C = p.T @ H @ z / (B - 1)
    P_u = (1.0 / d + mu) * I
    Q_u = C + mu * I
    U = np.trace(-P_u @ logm(Q_u) + Q_u)  # MCE
    P = p.T @ H @ p / (B - 1) + mu * I
    Q = z.T @ H @ z / (B - 1) + mu * I
    A = np.trace(P @ logm(P) - P @ logm(Q) - P + Q)  # MKL
    return U, A


def np_mec(z, p, eps=64.0, order=4, exact=False):
    """MEC authors' optimized loss: B x B power loop (REFERENCES.md 3)."""
    z, p = np_normalize(z), np_normalize(p)
    B, d = z.shape
    lam = d / (B * eps)
    c = lam * p @ z.T
    if exact:
        return -np.linalg.slogdet(np.eye(B) + c)[1] / lam / B
    power = np.eye(B)
    total = 0.0
    for k in range(1, order + 1):
        power = power @ c
        total += (-1) ** (k + 1) * np.trace(power) / k
    return -total / lam / B


def np_tcr(z, eps=0.2):
    """EMP-SSL TotalCodingRate: d x d log-det, eps already squared (REFERENCES.md 4)."""
    z = np_normalize(z)
    B, d = z.shape
    return -0.5 * np.linalg.slogdet(np.eye(d) + d / (B * eps) * z.T @ z)[1]


def np_umce(z, lam):
    z = np_normalize(z)
    B, d = z.shape
    P = (1 / d + lam) * np.eye(d)
    Q = z.T @ z / B + lam * np.eye(d)
    return np.trace(-P @ scipy.linalg.logm(Q).real + Q)


# Direct torch transcription of the official formulas, for gradients only.
def torch_official_direct(z, p, lam=1.0, mu=1.0, gamma=1.0, order=4):
    z = z / z.norm(dim=1, keepdim=True)
    p = p / p.norm(dim=1, keepdim=True)
    B, d = z.shape
    H = torch.eye(B, dtype=z.dtype) - torch.ones(B, B, dtype=z.dtype) / B
    I = torch.eye(d, dtype=z.dtype)  # noqa: E741 - the identity, named as in the paper

    def log(A):
        X = A - I
        out, P = torch.zeros_like(A), I
        for k in range(1, order + 1):
            P = P @ X
            out = out + (-1) ** (k + 1) * P / k
        return out

    U = -torch.trace(lam * I @ log(p.T @ H @ z / B + mu * I))
    A = -torch.trace((p.T @ H @ p / B + mu * I) @ log(z.T @ H @ z / B + mu * I))
    return U + gamma * A


def torch_mec_direct(z, p, eps=64.0, order=4):
    z = z / z.norm(dim=1, keepdim=True)
    p = p / p.norm(dim=1, keepdim=True)
    B, d = z.shape
    lam = d / (B * eps)
    c = lam * p @ z.T
    power, total = torch.eye(B, dtype=z.dtype), 0.0
    for k in range(1, order + 1):
        power = power @ c
        total = total + (-1) ** (k + 1) * torch.trace(power) / k
    return -total / lam / B


def grad_of(fn, z, p):
    z = t(z).requires_grad_(True)
    fn(z, t(p)).backward()
    return z.grad.numpy()


def fd_grad(f, z, h=1e-6):
    g = np.zeros_like(z)
    for idx in np.ndindex(*z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        g[idx] = (f(zp) - f(zm)) / (2 * h)
    return g


# ----------------------------------------------------------------------------
# Matrix-SSL: official formulation
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("B,d", SIZES)
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6])
def test_matrix_ssl_official_value_matches_authors(B, d, order):
    z, p = data(B, d, seed=B + d + order)
    U, A = np_official_parts(z, p, order=order)
    got = MF.matrix_ssl_loss(t(z), t(p), order=order)
    assert rel(got, U + A) < RTOL64
    assert rel(MF.matrix_kl_uniformity_loss(t(z), t(p), order=order), U) < RTOL64
    assert rel(MF.matrix_kl_alignment_loss(t(z), t(p), order=order), A) < RTOL64


@pytest.mark.parametrize("lam,mu,gamma", [(0.5, 0.5, 1.0), (1.0, 1.0, 0.1), (2.0, 0.8, 0.0)])
def test_matrix_ssl_official_hyperparameters(lam, mu, gamma):
    z, p = data(20, 10, seed=3)
    U, A = np_official_parts(z, p, lam=lam, mu=mu)
    got = MF.matrix_ssl_loss(t(z), t(p), lam=lam, mu=mu, gamma=gamma)
    assert rel(got, U + gamma * A) < RTOL64


@pytest.mark.parametrize("B,d", SIZES)
def test_matrix_ssl_official_gradient_matches_authors(B, d):
    z, p = data(B, d, seed=7)
    ours = grad_of(lambda a, b: MF.matrix_ssl_loss(a, b), z, p)
    ref = grad_of(torch_official_direct, z, p)
    assert rel(ours, ref) < GRAD_RTOL


def test_torch_transcription_agrees_with_numpy_oracle_by_finite_differences():
    z, p = data(6, 4, seed=11)
    ref = grad_of(torch_official_direct, z, p)
    fd = fd_grad(lambda zz: sum(np_official_parts(zz, p)), z)
    assert rel(ref, fd) < FD_RTOL


def test_matrix_ssl_module_defaults_are_the_authors_readme_settings():
    loss = ML.MatrixSSLLoss()
    assert (loss.lam, loss.mu, loss.gamma, loss.order, loss.method, loss.formulation) == (
        1.0,
        1.0,
        1.0,
        4,
        "taylor",
        "official",
    )
    z, p = data(24, 6, seed=5)
    assert torch.equal(loss(t(z), t(p)), MF.matrix_ssl_loss(t(z), t(p)))


@pytest.mark.parametrize("B,d", SIZES)
def test_matrix_ssl_official_exact_matches_logm(B, d):
    z, p = data(B, d, seed=13)
    U, A = np_official_parts(z, p, exact=True)
    got_u = MF.matrix_kl_uniformity_loss(t(z), t(p), method="exact")
    got_a = MF.matrix_kl_alignment_loss(t(z), t(p), method="exact")
    assert rel(got_u, U) < 1e-9  # scipy.logm on a non-symmetric matrix: ~1e-12 accurate
    assert rel(got_a, A) < 1e-9


def test_taylor_order4_accuracy_with_mu_one_and_mu_half():
    """REFERENCES.md section 1: mu = 1 agrees with the exact value to ~6
    decimals; mu = 0.5 is off by about a percent."""
    z, p = data(256, 32, seed=17, noise=0.5)
    for mu, lo, hi in [(1.0, 0.0, 1e-5), (0.5, 1e-3, 5e-2)]:
        taylor = MF.matrix_kl_uniformity_loss(t(z), t(p), mu=mu).item()
        exact = MF.matrix_kl_uniformity_loss(t(z), t(p), mu=mu, method="exact").item()
        err = abs(taylor - exact) / abs(exact)
        assert lo <= err < hi, (mu, err)


# ----------------------------------------------------------------------------
# Matrix-SSL: the paper's formulation
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("B,d", SIZES)
def test_matrix_ssl_paper_formulation_matches_transcription(B, d):
    z, p = data(B, d, seed=19)
    U, A = np_paper_parts(z, p)
    got_u = MF.matrix_kl_uniformity_loss(t(z), t(p), formulation="paper", method="exact")
    got_a = MF.matrix_kl_alignment_loss(t(z), t(p), formulation="paper", method="exact")
    assert rel(got_u, U) < 1e-9
    assert rel(got_a, A) < 1e-9
    # The Taylor path of the same formulation approximates it (mu = 1: close).
    tay = MF.matrix_ssl_loss(t(z), t(p), formulation="paper")
    assert abs(tay.item() - (U + A)) < 1e-3 * abs(U + A)


def test_paper_alignment_is_zero_iff_covariances_agree():
    z, _ = data(30, 5, seed=23)
    same = MF.matrix_kl_alignment_loss(t(z), t(z), formulation="paper", method="exact")
    assert abs(same.item()) < 1e-12
    # A sign flip of every row keeps the covariance: still zero (the broader
    # solution space of eq. 21), though the views are far apart.
    flipped = MF.matrix_kl_alignment_loss(t(z), t(-z), formulation="paper", method="exact")
    assert abs(flipped.item()) < 1e-12
    other = MF.matrix_kl_alignment_loss(t(z), t(data(30, 5, seed=24)[0]), formulation="paper", method="exact")
    assert other.item() > 1e-3


def test_paper_uniformity_minimized_at_identity_over_d():
    """With the shift on both sides, MCE((1/d+mu) I, C + mu I) is smallest at C = I/d."""
    d, mu = 4, 1.0
    f = lambda C: np.trace(-(1 / d + mu) * scipy.linalg.logm(C + mu * np.eye(d)).real + C + mu * np.eye(d))  # noqa
    at = f(np.eye(d) / d)
    g = np.random.default_rng(0)
    for _ in range(20):
        A = g.standard_normal((d, d))
        C = A @ A.T
        C = C / np.trace(C)  # unit trace like normalized, centered embeddings at most
        assert f(C) >= at - 1e-12


# ----------------------------------------------------------------------------
# MEC
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("B,d", [(64, 8), (16, 16), (8, 40)])
@pytest.mark.parametrize("order", [1, 2, 4, 5])
def test_mec_matches_authors_power_loop(B, d, order):
    z, p = data(B, d, seed=B * d + order)
    got = MF.mec_loss(t(z), t(p), order=order, check_radius=False)
    assert rel(got, np_mec(z, p, order=order)) < RTOL64


@pytest.mark.parametrize("B,d", [(64, 8), (8, 40)])
def test_mec_gradient_matches_authors(B, d):
    z, p = data(B, d, seed=29)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ours = grad_of(lambda a, b: MF.mec_loss(a, b), z, p)
    assert rel(ours, grad_of(torch_mec_direct, z, p)) < GRAD_RTOL


def test_mec_first_order_term_is_negative_mean_cosine():
    z, p = data(32, 8, seed=31)
    got = MF.mec_loss(t(z), t(p), order=1)
    cos = np.sum(np_normalize(z) * np_normalize(p), axis=1).mean()
    assert abs(got.item() + cos) < 1e-12


def test_mec_exact_matches_logdet():
    z, p = data(64, 8, seed=37)
    assert rel(MF.mec_loss(t(z), t(p), method="exact"), np_mec(z, p, exact=True)) < RTOL64


def test_mec_collapsed_batch_warns_with_the_documented_radius():
    """REFERENCES.md section 3: collapsed batch, rho(c) = d / eps^2."""
    B, d = 64, 256
    z = np.ones((B, d))
    with pytest.warns(RuntimeWarning, match=r"mec_loss: .*convergence radius.*about 4"):
        MF.mec_loss(t(z), t(z))
    exact = MF.mec_loss(t(z), t(z), method="exact").item()
    assert abs(exact - (-(64.0 / d) * math.log1p(d / 64.0))) < 1e-12
    # With the warm-up scale 1/8 the series is inside its radius: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        MF.mec_loss(t(z), t(z), lam_scale=1 / 8)


def test_mec_module_is_functional():
    z, p = data(16, 8, seed=41)
    assert torch.equal(ML.MECLoss(eps=32.0)(t(z), t(p)), MF.mec_loss(t(z), t(p), eps=32.0))


# ----------------------------------------------------------------------------
# TCR, EMP-TCR, EMP-SSL, uniformity MCE/MKL
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("B,d", [(32, 8), (8, 64)])
@pytest.mark.parametrize("eps", [0.2, 0.5])
def test_tcr_matches_emp_ssl_definition(B, d, eps):
    z, _ = data(B, d, seed=43)
    assert rel(MF.tcr_loss(t(z), eps=eps), np_tcr(z, eps)) < RTOL64


def test_tcr_sign_penalizes_collapse():
    """Minimizing TCR must maximize the coding rate (lightly 1.6's EMPSSLLoss
    has the opposite sign)."""
    spread = np.eye(8).repeat(4, axis=0)
    collapsed = np.ones((32, 8)) + 1e-3 * np.random.default_rng(0).standard_normal((32, 8))
    assert MF.tcr_loss(t(spread)).item() < MF.tcr_loss(t(collapsed)).item() < 0
    # The loss is the NEGATIVE log-det: it is negative for any input.
    assert MF.tcr_loss(t(spread)).item() == pytest.approx(np_tcr(spread), rel=1e-12)


def test_tcr_views_are_averaged():
    z1, z2 = data(16, 8, seed=47)
    assert rel(MF.tcr_loss(t(z1), t(z2)), 0.5 * (np_tcr(z1) + np_tcr(z2))) < RTOL64
    assert torch.equal(ML.TCRLoss()([t(z1), t(z2)]), MF.tcr_loss(t(z1), t(z2)))


def test_tcr_taylor_order2_is_prop_4_6():
    z, _ = data(64, 4, seed=53)
    zn = np_normalize(z)
    B, d = zn.shape
    eps = 200.0  # small X: inside the radius
    c = d / (B * eps)
    G = zn.T @ zn
    second = -c / 2 * np.trace(G) + c**2 / 4 * np.trace(G @ G)
    assert rel(MF.tcr_loss(t(z), eps=eps, method="taylor", order=2), second) < RTOL64


def test_emp_tcr_concatenates_views():
    z1, z2 = data(16, 6, seed=59)
    Z = np.concatenate([np_normalize(z1), np_normalize(z2)], axis=1) / math.sqrt(2)
    B, D = Z.shape
    ref = -0.5 * np.linalg.slogdet(np.eye(D) + D / (B * 0.2) * Z.T @ Z)[1]
    assert rel(MF.emp_tcr_loss(t(z1), t(z2)), ref) < RTOL64


def test_emp_ssl_matches_transcription():
    g = np.random.default_rng(61)
    views = [g.standard_normal((16, 8)) for _ in range(4)]
    normed = [np_normalize(v) for v in views]
    mean = np.mean(normed, axis=0)
    cos = np.mean([np.mean(np.sum(v * mean, axis=1) / np.linalg.norm(mean, axis=1)) for v in normed])
    ref = np.mean([np_tcr(v) for v in views]) - 200.0 * cos
    assert rel(MF.emp_ssl_loss(*map(t, views)), ref) < RTOL64


@pytest.mark.parametrize("B,d", [(32, 8), (8, 24)])
def test_uniformity_mce_and_mkl_match_scipy(B, d):
    z, _ = data(B, d, seed=67)
    lam = 0.3
    ref = np_umce(z, lam)
    assert rel(MF.uniformity_mce_loss(t(z), lam=lam), ref) < 1e-9
    c = 1 / d + lam
    assert rel(MF.uniformity_mkl_loss(t(z), lam=lam), ref - (-d * c * math.log(c) + d * c)) < 1e-9
    tay = MF.uniformity_mce_loss(t(z), lam=lam, method="taylor", order=60, check_radius=False)
    assert abs(tay.item() - ref) < 1e-6 * abs(ref)


def test_uniformity_mce_is_affine_in_tcr_with_corrected_factor():
    """Thm. 4.4 with lambda = eps^2/d, factor 2/d (the paper prints 2)."""
    z, _ = data(40, 10, seed=71)
    d, eps = 10, 0.5
    lam = eps / d
    tcr = MF.tcr_loss(t(z), eps=eps).item()
    umce = MF.uniformity_mce_loss(t(z), lam=lam).item()
    umkl = MF.uniformity_mkl_loss(t(z), lam=lam).item()
    assert umce == pytest.approx((1 + d * lam) * (1 - math.log(lam) + 2 / d * tcr), rel=1e-12)
    assert umkl == pytest.approx((1 + d * lam) * (math.log((1 + d * lam) / (lam * d)) + 2 / d * tcr), rel=1e-12)


# ----------------------------------------------------------------------------
# Gradcheck, radius warnings, degenerate input
# ----------------------------------------------------------------------------
CASES = [
    ("matrix_ssl_loss", dict()),
    ("matrix_ssl_loss", dict(method="exact")),
    ("matrix_ssl_loss", dict(formulation="paper")),
    ("matrix_ssl_loss", dict(formulation="paper", method="exact")),
    ("mec_loss", dict(eps=256.0)),
    ("mec_loss", dict(method="exact")),
]


@pytest.mark.parametrize("name,kw", CASES)
@pytest.mark.parametrize("B,d", [(6, 4), (4, 7)])
def test_pair_losses_gradcheck(name, kw, B, d):
    z, p = data(B, d, seed=73)
    zt = t(z).requires_grad_(True)
    pt = t(p).requires_grad_(True)
    fn = getattr(MF, name)
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, **kw), (zt, pt))


@pytest.mark.parametrize(
    "name,kw",
    [
        ("tcr_loss", {}),
        ("tcr_loss", dict(method="taylor", eps=400.0)),
        ("uniformity_mce_loss", {}),
        ("uniformity_mkl_loss", dict(lam=0.5)),
        ("emp_tcr_loss", {}),
        ("emp_ssl_loss", {}),
    ],
)
def test_view_losses_gradcheck(name, kw):
    z1, z2 = data(5, 7, seed=79)
    a, b = t(z1).requires_grad_(True), t(z2).requires_grad_(True)
    fn = getattr(MF, name)
    assert torch.autograd.gradcheck(lambda x, y: fn(x, y, **kw), (a, b))


def test_matrix_ssl_default_does_not_warn_on_random_embeddings():
    z, p = data(128, 32, seed=83)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        MF.matrix_ssl_loss(t(z), t(p))


def test_matrix_ssl_outside_radius_warns():
    """C(target, online) has eigenvalues in [-1, 1]; with mu in (0, 1] the
    series variable C + (mu - 1) I stays in the disc unless the target is
    anti-aligned: p = -z gives an eigenvalue near -1 - (1 - mu)."""
    g = np.random.default_rng(0)
    v = g.standard_normal(8)
    z = np.outer(np.sign(g.standard_normal(64)), v) + 1e-3 * g.standard_normal((64, 8))
    with pytest.warns(RuntimeWarning, match="matrix_ssl_loss: .*convergence radius.*about 1.5"):
        MF.matrix_ssl_loss(t(z), t(-z), mu=0.5)
    with pytest.warns(RuntimeWarning, match="matrix_kl_uniformity_loss: .*convergence radius"):
        MF.matrix_kl_uniformity_loss(t(z), t(z), mu=2.0)


@pytest.mark.parametrize("method", ["taylor", "exact"])
def test_matrix_ssl_collapsed_batch_is_finite(method):
    z = torch.ones(16, 8, dtype=torch.float64, requires_grad=True)
    value = MF.matrix_ssl_loss(z, torch.ones(16, 8, dtype=torch.float64), method=method)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()


def test_bad_arguments_are_named():
    z = torch.randn(8, 4)
    with pytest.raises(ValueError, match=r"matrix_ssl_loss: expected method to be one of 'taylor', 'exact', got 'eig'"):
        MF.matrix_ssl_loss(z, z, method="eig")
    with pytest.raises(ValueError, match=r"matrix_ssl_loss: expected formulation to be one of"):
        MF.matrix_ssl_loss(z, z, formulation="x")
    with pytest.raises(ValueError, match=r"MECLoss: expected eps > 0.0, got -1.0"):
        ML.MECLoss(eps=-1.0)
    with pytest.raises(ValueError, match=r"tcr_loss: expected at least one view"):
        MF.tcr_loss()
    with pytest.raises(
        ValueError,
        match=r"matrix_ssl_loss: expected inputs of the same shape \(B, d\), got online \(8, 4\) and target \(8, 5\)",
    ):
        MF.matrix_ssl_loss(z, torch.randn(8, 5))
    with pytest.raises(
        ValueError, match=r"matrix_kl_alignment_loss: expected online to have shape \(B, d\) with B >= 3"
    ):
        MF.matrix_kl_alignment_loss(z[:2], z[:2], formulation="paper")
