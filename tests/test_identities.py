"""The statements of the paper, checked numerically in float64.

One test per statement, named after it. The library (matrixinfo) computes one
side; an independent NumPy/SciPy computation is the oracle. Each statement is
tested as printed; where the printed form does not hold, one test shows the
failure (the discrepancy is asserted to be large) and another checks the
corrected form tightly. ``docs/errata.rst`` summarizes the outcome.

Conventions: embeddings are ``Z`` of shape ``(B, d)``, rows are samples, rows
are l2-normalized. The paper writes ``Z`` as ``d x B``, so its ``Z Z^T / B``
(``d x d``) is ``Z.T @ Z / B`` here.

Run ``pytest -s tests/test_identities.py`` to print the maximal error measured
for each statement (the numbers quoted in docs/errata.rst).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg as sla
import torch
from _tolerances import FAILS_BY, GRAD_RTOL, MC_SIGMAS
from _tolerances import RTOL64 as RTOL
from hypothesis import given, settings
from hypothesis import strategies as st

from matrixinfo import (
    effective_rank,
    matrix_cross_entropy,
    matrix_entropy,
    matrix_kl_divergence,
    sylvester_logdet,
    von_neumann_entropy,
)

# ---------------------------------------------------------------------------
F64 = torch.float64
MAX_ERRORS: dict[str, float] = {}
MIN_MISSES: dict[str, float] = {}


def record(statement: str, err: float) -> float:
    """Keep the largest error seen for a statement that holds."""
    MAX_ERRORS[statement] = max(MAX_ERRORS.get(statement, 0.0), float(err))
    return err


def record_miss(statement: str, miss: float) -> float:
    """Keep the smallest miss seen for a printed statement that fails."""
    MIN_MISSES[statement] = min(MIN_MISSES.get(statement, np.inf), float(miss))
    return miss


@pytest.fixture(scope="module", autouse=True)
def _print_max_errors():
    yield
    for title, table in (("maximal error (holds)", MAX_ERRORS), ("smallest miss (fails as printed)", MIN_MISSES)):
        if table:
            print(f"\n{title}, per statement:")
            for name in sorted(table):
                print(f"  {name:70s} {table[name]:.2e}")


# ---------------------------------------------------------------------------
# Constructive inputs and oracles.


def random_orthogonal(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def from_eigenvalues(lam, seed: int) -> np.ndarray:
    q = random_orthogonal(len(lam), seed)
    a = (q * np.asarray(lam, dtype=np.float64)) @ q.T
    return (a + a.T) / 2


@st.composite
def psd_matrices(draw, n_max=6, min_rank=None, log10_cond=3.0):
    """Symmetric PSD matrices Q diag(lambda) Q^T: eigenvalues in
    [10**-log10_cond, 1] times a scale in [1e-2, 1e2], with n - rank exact zeros
    (full rank when min_rank is None)."""
    n = draw(st.integers(2, n_max))
    rank = n if min_rank is None else draw(st.integers(min(min_rank, n), n))
    exps = draw(st.lists(st.floats(0.0, 1.0), min_size=rank, max_size=rank))
    scale = 10.0 ** draw(st.floats(-2.0, 2.0))
    lam = [scale * 10.0 ** (-log10_cond * e) for e in exps] + [0.0] * (n - rank)
    return from_eigenvalues(lam, draw(st.integers(0, 2**32 - 1)))


# log10 of the eigenvalues of a second matrix Q (the first n are used).
Q_EXPONENTS = st.lists(st.floats(-2, 1), min_size=6, max_size=6)


def unit_rows(b: int, d: int, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal((b, d))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def logm_real(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "logm result may be inaccurate", RuntimeWarning)
        out = sla.logm(a)
    assert np.abs(np.imag(out)).max(initial=0.0) < 1e-12
    return np.real(out)


def shannon(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def tcr_oracle(z: np.ndarray, eps: float) -> float:
    """L_TCR = -1/2 logdet(I_d + d/(B eps^2) Z^T Z), rows are samples (eq. 6)."""
    b, d = z.shape
    sign, logdet = np.linalg.slogdet(np.eye(d) + d / (b * eps**2) * z.T @ z)
    assert sign > 0
    return -0.5 * logdet


def tcr_library(z, eps: float) -> torch.Tensor:
    z = torch.as_tensor(z, dtype=F64)
    b, d = z.shape
    return -0.5 * sylvester_logdet(z, scale=d / (b * eps**2))


def as_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to(F64).numpy()
    return np.asarray(x, dtype=np.float64)


def rel(got, ref) -> float:
    """max |got - ref| / max(1, max |ref|)."""
    got, ref = as_array(got), as_array(ref)
    return float(np.max(np.abs(got - ref)) / max(1.0, float(np.max(np.abs(ref)))))


def t(a) -> torch.Tensor:
    return torch.as_tensor(a, dtype=F64)


def sym(a: torch.Tensor) -> torch.Tensor:
    return (a + a.mT) / 2


# ---------------------------------------------------------------------------
# Section 3.


@settings(max_examples=15)
@given(p=psd_matrices(min_rank=1), q_seed=st.integers(0, 2**32 - 1), q_exps=Q_EXPONENTS)
def test_def_3_1_and_3_2_reduce_to_von_neumann_quantities_for_unit_trace(p, q_seed, q_exps):
    """For unit-trace P, Q: ME(P) = VNE(P) + 1 and MKL(P || Q) = tr(P log P - P log Q),
    the quantum relative entropy (>= 0). The remark after Def. 3.2 prints
    QKL = -tr(P log P - P log Q), which is <= 0: a sign slip."""
    p = p / np.trace(p)
    q = from_eigenvalues(10.0 ** np.array(q_exps[: len(p)]), q_seed)
    q = q / np.trace(q)
    w = np.linalg.eigvalsh(p)
    vne = shannon(np.clip(w, 0, None))
    plogp = -vne
    qkl = plogp - np.trace(p @ logm_real(q))  # the quantum relative entropy, oracle
    err = max(rel(matrix_entropy(t(p)), vne + 1), rel(matrix_kl_divergence(t(p), t(q)), qkl))
    assert record("Defs. 3.1/3.2 (unit trace: ME = VNE + 1, MKL = quantum KL)", err) <= RTOL
    assert qkl >= -RTOL  # so the printed -tr(P log P - P log Q) = -qkl is <= 0


@settings(max_examples=20)
@given(p=psd_matrices(min_rank=1), q_seed=st.integers(0, 2**32 - 1), q_exps=Q_EXPONENTS)
def test_def_3_3_mce_equals_mkl_plus_me(p, q_seed, q_exps):
    """MCE(P, Q) = MKL(P || Q) + ME(P) = tr(-P log Q + Q), P PSD (possibly singular)."""
    q = from_eigenvalues(10.0 ** np.array(q_exps[: len(p)]), q_seed)
    oracle = -np.trace(p @ logm_real(q)) + np.trace(q)
    mce = matrix_cross_entropy(t(p), t(q))
    via_kl = matrix_kl_divergence(t(p), t(q)) + matrix_entropy(t(p))
    err = max(rel(mce, oracle), rel(via_kl, oracle))
    assert record("Def. 3.3", err) <= RTOL, (np.linalg.eigvalsh(p), np.linalg.eigvalsh(q))


@settings(max_examples=20)
@given(b=st.integers(2, 40), d=st.integers(2, 12), seed=st.integers(0, 2**32 - 1))
def test_prop_3_6_matrix_entropy_equals_log_d_plus_1_minus_kl_to_uniform(b, d, seed):
    """ME(Z^T Z / B) = -MKL(Z^T Z / B || I/d) + log d + 1 for unit-norm rows
    (B < d, a singular covariance, included)."""
    z = unit_rows(b, d, seed)
    c = t(z.T @ z / b)
    me = matrix_entropy(c)
    rhs = -matrix_kl_divergence(c, torch.eye(d, dtype=F64) / d) + np.log(d) + 1
    oracle = shannon(np.linalg.svd(z, compute_uv=False) ** 2 / b) + 1  # trace 1
    err = max(rel(me, rhs), rel(me, oracle))
    assert record("Prop. 3.6 (ME = -MKL(. || I/d) + log d + 1)", err) <= RTOL


@settings(max_examples=20)
@given(b=st.integers(2, 40), d=st.integers(2, 12), seed=st.integers(0, 2**32 - 1))
def test_prop_3_6_effective_rank_equals_exp_me_minus_1_and_exp_vne(b, d, seed):
    """erank(Z^T Z / B) = exp(ME(Z^T Z / B) - 1) = exp(VNE(Z^T Z / B)).
    The oracle is the entropy of the squared singular values of Z itself."""
    z = unit_rows(b, d, seed)
    c = t(z.T @ z / b)
    s2 = np.linalg.svd(z, compute_uv=False) ** 2
    oracle = np.exp(shannon(s2 / s2.sum()))
    values = [effective_rank(c), torch.exp(matrix_entropy(c) - 1), torch.exp(von_neumann_entropy(c))]
    err = max(rel(v, oracle) for v in values)
    assert record("Prop. 3.6 (erank = exp(ME - 1) = exp(VNE))", err) <= RTOL


# ---------------------------------------------------------------------------
# Section 4: minimization properties and the gradient used in their proof.


@settings(max_examples=20)
@given(p=psd_matrices(), q_seed=st.integers(0, 2**32 - 1), q_exps=Q_EXPONENTS)
def test_prop_4_1_mkl_is_nonnegative_and_zero_only_at_q_equals_p(p, q_seed, q_exps):
    """MKL(P || Q) >= 0 with equality only at Q = P. Quantitatively (Bregman form
    of MKL, with D log(X) >= 1/lambda_max(X)):
    MKL(P || Q) >= ||P - Q||_F^2 / (2 max(lambda_max(P), lambda_max(Q))) > 0 for Q != P."""
    q = from_eigenvalues(10.0 ** np.array(q_exps[: len(p)]), q_seed)
    mkl = float(matrix_kl_divergence(t(p), t(q)))
    top = max(np.linalg.eigvalsh(p).max(), np.linalg.eigvalsh(q).max())
    bound = np.linalg.norm(p - q) ** 2 / (2 * top)
    # bound > 0 exactly when Q != P (hypothesis also draws Q = P = I).
    assert mkl >= bound * (1 - 1e-9) - RTOL * max(1.0, np.abs(p).max()), (mkl, bound)
    at_p = float(matrix_kl_divergence(t(p), t(p)))
    assert record("Props. 4.1/4.2 (MKL(P || P) = 0)", abs(at_p) / max(1.0, np.trace(p))) <= RTOL


def _kl_gradient_at(p: np.ndarray, q: np.ndarray, fn=matrix_kl_divergence) -> np.ndarray:
    qt = t(q).requires_grad_()
    fn(t(p), sym(qt)).backward()
    return qt.grad.numpy()


@pytest.mark.parametrize("case", ["generic", "I/d", "repeated", "ill-conditioned"])
def test_prop_4_1_and_4_2_gradient_vanishes_at_q_equals_p(case):
    """Q = P is a stationary point of MKL(P || .) and of MCE(P, .), including at
    exactly repeated eigenvalues (where plain eigh autograd is NaN)."""
    p = {
        "generic": from_eigenvalues([2.0, 1.0, 0.5, 0.1], 1),
        "I/d": np.eye(4) / 4,
        "repeated": from_eigenvalues([1.0, 1.0, 1.0, 0.2], 2),
        "ill-conditioned": from_eigenvalues([1.0, 0.5, 0.0, 0.0], 3) + 1e-3 * np.eye(4),
    }[case]
    for fn in (matrix_kl_divergence, matrix_cross_entropy):
        g = _kl_gradient_at(p, p, fn)
        assert record("Props. 4.1/4.2 (gradient at Q = P)", np.abs(g).max()) <= RTOL, (fn.__name__, g)


@settings(max_examples=25)
@given(p=psd_matrices(), q_seed=st.integers(0, 2**32 - 1), q_exps=Q_EXPONENTS)
def test_prop_4_2_mce_is_minimized_at_q_equals_p(p, q_seed, q_exps):
    """MCE(P, Q) - MCE(P, P) = MKL(P || Q) >= 0: the minimizer over Q > 0 is P."""
    q = from_eigenvalues(10.0 ** np.array(q_exps[: len(p)]), q_seed)
    gap = float(matrix_cross_entropy(t(p), t(q)) - matrix_cross_entropy(t(p), t(p)))
    lp, up = np.linalg.eigh(p)
    plogp = (up * lp * np.log(lp)) @ up.T
    mkl_oracle = np.trace(plogp - p @ logm_real(q) - p + q)
    assert gap >= 0
    assert record("Prop. 4.2 (MCE(P,Q) - MCE(P,P) = MKL)", rel(gap, mkl_oracle)) <= RTOL


def _frechet_log(q: np.ndarray, e: np.ndarray) -> np.ndarray:
    """L_log(Q, E) from log [[Q, E], [0, Q]] = [[log Q, L(Q, E)], [0, log Q]]
    (Higham, Functions of Matrices, 2008, eq. (3.16)): an oracle that shares
    nothing with the library's eigendecomposition."""
    n = len(q)
    block = np.block([[q, e], [np.zeros_like(q), q]])
    return logm_real(block)[:n, n:]


def _mce_gradient_oracle(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Gradient of Q -> tr(-P log Q + Q) on symmetric matrices, one symmetric
    direction E_ij = (e_i e_j^T + e_j e_i^T)/2 at a time."""
    n = len(q)
    grad = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            e = np.zeros((n, n))
            e[i, j] += 0.5
            e[j, i] += 0.5
            grad[i, j] = grad[j, i] = -np.trace(p @ _frechet_log(q, e)) + np.trace(e)
    return grad


@pytest.mark.parametrize("seed", range(6))
def test_prop_4_1_proof_gradient_formula_fails_for_noncommuting_p_q(seed):
    """The proofs of Props. 4.1/4.2 use grad_Q MKL = grad_Q MCE = I - P Q^{-1}.
    For P, Q that do not commute this is wrong (it is not even symmetric); the
    gradient is I - D log(Q)[P] (adjoint Frechet derivative, Daleckii-Krein)."""
    rng = np.random.default_rng(seed)
    n = 4
    p = from_eigenvalues(np.exp(rng.uniform(np.log(0.05), np.log(5.0), n)), 100 + seed)
    q = from_eigenvalues(np.exp(rng.uniform(np.log(0.05), np.log(5.0), n)), 200 + seed)
    assert np.abs(p @ q - q @ p).max() > 0.1  # they do not commute
    oracle = _mce_gradient_oracle(p, q)
    for fn in (matrix_kl_divergence, matrix_cross_entropy):
        err = rel(_kl_gradient_at(p, q, fn), oracle)
        assert record("Props. 4.1/4.2 proof: autograd gradient vs Frechet oracle", err) <= GRAD_RTOL
    printed = np.eye(n) - p @ np.linalg.inv(q)
    assert np.abs(printed - printed.T).max() > FAILS_BY  # not symmetric
    miss = rel((printed + printed.T) / 2, oracle)  # even its symmetric part misses
    assert record_miss("Props. 4.1/4.2 proof: printed gradient I - P Q^-1", miss) > FAILS_BY


def test_prop_4_1_proof_gradient_formula_holds_when_p_q_commute():
    rng = np.random.default_rng(0)
    n = 5
    p = from_eigenvalues(rng.uniform(0.1, 2.0, n), 7)
    q = from_eigenvalues(rng.uniform(0.1, 2.0, n), 7)  # same eigenvectors
    printed = np.eye(n) - p @ np.linalg.inv(q)
    err = max(rel(_kl_gradient_at(p, q), printed), rel(_mce_gradient_oracle(p, q), printed))
    assert record("Props. 4.1/4.2 proof: I - P Q^-1 for commuting P, Q", err) <= GRAD_RTOL


# ---------------------------------------------------------------------------
# Theorem 4.4: uniformity losses and TCR.


def _uniformity_losses(z: np.ndarray, eps: float):
    b, d = z.shape
    lam = eps**2 / d
    eye = torch.eye(d, dtype=F64)
    p = (1.0 / d + lam) * eye
    q = t(z.T @ z / b) + lam * eye
    return float(matrix_cross_entropy(p, q)), float(matrix_kl_divergence(p, q)), lam


def _thm_4_4_printed(d, lam, tcr):
    return ((1 + d * lam) * (-np.log(lam) + 1 + 2 * tcr), (1 + d * lam) * (np.log((1 + d * lam) / (lam * d)) + 2 * tcr))


def _thm_4_4_corrected(d, lam, tcr):
    return (
        (1 + d * lam) * (-np.log(lam) + 1 + (2 / d) * tcr),
        (1 + d * lam) * (np.log((1 + d * lam) / (lam * d)) + (2 / d) * tcr),
    )


@pytest.mark.parametrize("b,d,eps", [(32, 8, 0.5), (8, 16, 0.2), (64, 4, 1.0), (16, 16, 0.05)])
def test_thm_4_4_as_printed_fails(b, d, eps):
    """As printed, L_UMCE = (1 + d lam)(-log lam + 1 + 2 L_TCR): the factor of
    L_TCR is off by d (the proof multiplies 2 L_TCR by (1 + d lam) instead of
    (1/d + lam)). The miss is exactly (1 + d lam)(2 - 2/d) L_TCR."""
    z = unit_rows(b, d, seed=b * d)
    umce, umkl, lam = _uniformity_losses(z, eps)
    tcr = tcr_oracle(z, eps)
    printed_mce, printed_mkl = _thm_4_4_printed(d, lam, tcr)
    miss = min(abs(umce - printed_mce), abs(umkl - printed_mkl))  # the losses are O(1)..O(10)
    assert record_miss("Thm. 4.4 as printed (absolute miss)", miss) > FAILS_BY * max(abs(umce), 1.0)
    explained = (1 + d * lam) * (2 - 2 / d) * tcr
    assert rel(printed_mce - umce, explained) <= RTOL and rel(printed_mkl - umkl, explained) <= RTOL


@settings(max_examples=20)
@given(
    b=st.integers(2, 48),
    d=st.integers(1, 16),
    log_eps=st.floats(np.log(0.05), np.log(2.0)),
    seed=st.integers(0, 2**32 - 1),
)
def test_thm_4_4_corrected_umce_and_umkl_in_terms_of_tcr(b, d, log_eps, seed):
    """L_UMCE = (1 + d lam)(-log lam + 1 + (2/d) L_TCR) and
    L_UMKL = (1 + d lam)(log((1 + d lam)/(lam d)) + (2/d) L_TCR), lam = eps^2/d,
    for unit-norm rows (tr(Z^T Z / B) = 1), any B and d."""
    eps = float(np.exp(log_eps))
    z = unit_rows(b, d, seed)
    umce, umkl, lam = _uniformity_losses(z, eps)
    tcr = tcr_oracle(z, eps)
    want_mce, want_mkl = _thm_4_4_corrected(d, lam, tcr)
    err = max(rel(umce, want_mce), rel(umkl, want_mkl), rel(tcr_library(z, eps), tcr))
    assert record("Thm. 4.4 corrected", err) <= RTOL, (b, d, eps)


# ---------------------------------------------------------------------------
# Theorem 4.5: the TCR minimizer on the product of spheres.


def _riemannian_descent(z: np.ndarray, eps: float, steps: int = 3000, lr: float = 0.3) -> np.ndarray:
    """Gradient descent on the product of unit spheres with the NumPy gradient of
    TCR, -c Z (I + c Z^T Z)^{-1} with c = d/(B eps^2), projected on the tangent
    spaces, and rows renormalized after each step."""
    b, d = z.shape
    c = d / (b * eps**2)
    for _ in range(steps):
        g = -c * z @ np.linalg.inv(np.eye(d) + c * z.T @ z)
        g -= np.sum(g * z, axis=1, keepdims=True) * z
        z = z - (lr / c) * g
        z /= np.linalg.norm(z, axis=1, keepdims=True)
    return z


def _riemannian_gradient_library(z: np.ndarray, eps: float) -> np.ndarray:
    zt = t(z).requires_grad_()
    tcr_library(zt, eps).backward()
    g = zt.grad.numpy()
    return g - np.sum(g * z, axis=1, keepdims=True) * z


def _union_of_orthonormal_bases(b: int, d: int, seed: int) -> np.ndarray:
    """A unit-norm tight frame (Z^T Z = (B/d) I) for d dividing B."""
    return np.concatenate([random_orthogonal(d, seed + k) for k in range(b // d)])


@pytest.mark.parametrize("b,d,eps", [(8, 4, 0.5), (12, 3, 0.3), (6, 6, 1.0), (7, 3, 0.5), (10, 4, 0.2)])
def test_thm_4_5_tcr_minimizer_is_isotropic_when_b_ge_d(b, d, eps):
    """For B >= d the minimum of TCR over unit-norm rows is -(d/2) log(1 + 1/eps^2),
    attained exactly when Z^T Z / B = I/d (a unit-norm tight frame)."""
    minimum = -(d / 2) * np.log1p(1 / eps**2)
    if b % d == 0:
        frame = _union_of_orthonormal_bases(b, d, seed=b)
        err = max(rel(tcr_library(frame, eps), minimum), np.abs(_riemannian_gradient_library(frame, eps)).max())
        assert record("Thm. 4.5 (B >= d): tight frame value and Riemannian gradient", err) <= RTOL
    worst_gap = np.inf
    for seed in range(40):
        worst_gap = min(worst_gap, float(tcr_library(unit_rows(b, d, seed), eps)) - minimum)
    assert worst_gap > 0
    for seed in range(2):  # descent from random starts reaches the isotropic minimizer
        z = _riemannian_descent(unit_rows(b, d, 1000 + seed), eps)
        err = max(np.abs(z.T @ z / b - np.eye(d) / d).max(), rel(tcr_library(z, eps), minimum))
        # 1e-8: the descent stops after 3000 steps (linear convergence), not at round-off.
        assert record("Thm. 4.5 (B >= d): descent from random starts", err) <= 1e-8, err


@pytest.mark.parametrize("b,d,eps", [(3, 6, 0.5), (5, 8, 0.3), (2, 16, 1.0)])
def test_thm_4_5_as_printed_fails_when_b_lt_d(b, d, eps):
    """For B < d, Z^T Z / B has rank <= B < d, so Z^T Z / B = I/d is unattainable
    (distance >= sqrt(d - B)/d), and the printed minimum value is below every
    attainable value. The minimizer is orthonormal rows, Z Z^T = I_B, with
    L_TCR = -(B/2) log(1 + d/(B eps^2))."""
    printed_minimum = -(d / 2) * np.log1p(1 / eps**2)
    minimum = -(b / 2) * np.log1p(d / (b * eps**2))
    gap = minimum - printed_minimum
    assert record_miss("Thm. 4.5 as printed, B < d (attainable min - printed min)", gap) > FAILS_BY
    orthonormal = random_orthogonal(d, seed=b)[:b]
    err = max(rel(tcr_library(orthonormal, eps), minimum), np.abs(_riemannian_gradient_library(orthonormal, eps)).max())
    for seed in range(40):
        assert float(tcr_library(unit_rows(b, d, seed), eps)) > minimum
    z = _riemannian_descent(unit_rows(b, d, 7), eps)
    assert np.linalg.norm(z.T @ z / b - np.eye(d) / d) >= np.sqrt(d - b) / d * (1 - 1e-12)
    assert record("Thm. 4.5 corrected, B < d: orthonormal rows", err) <= RTOL
    err = max(np.abs(z @ z.T - np.eye(b)).max(), rel(tcr_library(z, eps), minimum))
    assert record("Thm. 4.5 corrected, B < d: descent from a random start", err) <= 1e-8  # as above


# ---------------------------------------------------------------------------
# Proposition 4.6 and eq. (19).


@pytest.mark.parametrize("b,d", [(16, 6), (4, 9)])
def test_prop_4_6_tcr_second_order_taylor_remainder_is_third_order(b, d):
    """L_TCR = -d/(2 B eps^2) tr(Z Z^T) + d^2/(4 B^2 eps^4) tr(Z Z^T Z Z^T) + R with
    R = -(1/6) tr(X^3) (1 + O(||X||)), X = d/(B eps^2) Z Z^T: halving the scale
    of X divides R by 8."""
    z = unit_rows(b, d, seed=d)
    gram = z.T @ z
    top = np.linalg.eigvalsh(gram).max()
    remainders = []
    for scale in (0.1, 0.05, 0.025, 0.0125):
        eps = np.sqrt(d * top / (b * scale))  # ||X||_2 = scale
        x = d / (b * eps**2) * gram
        taylor2 = -d / (2 * b * eps**2) * np.trace(z @ z.T) + d**2 / (4 * b**2 * eps**4) * np.trace(gram @ gram)
        remainder = float(tcr_library(z, eps)) - taylor2
        leading = -np.trace(x @ x @ x) / 6
        # The next term is +tr(X^4)/8, at most (3/4) ||X|| times the leading one.
        assert abs(remainder / leading - 1) <= scale, (scale, remainder, leading)
        remainders.append(remainder)
    ratios = [r0 / r1 for r0, r1 in zip(remainders, remainders[1:], strict=False)]
    assert all(abs(r / 8 - 1) < 0.1 for r in ratios), ratios
    record("Prop. 4.6 (|R / (-(1/6) tr X^3) - 1| at ||X|| = 0.0125)", abs(remainders[-1] / leading - 1))


@pytest.mark.parametrize("b,d,seed", [(12, 5, 0), (6, 10, 1), (40, 8, 2)])
def test_eq_19_mec_as_matrix_cross_entropy(b, d, seed):
    """L_MEC = -mu logdet(I + c Z1 Z2^T) = mu (MCE(I, I + c Z1 Z2^T) - tr(I + c Z1 Z2^T))
    = mu (MCE(I, .) - d - c tr(Z1^T Z2)), c = d/(B eps^2); paper's Z1 Z2^T is
    Z1.T @ Z2 here, a non-symmetric matrix."""
    z1, z2 = unit_rows(b, d, seed), unit_rows(b, d, seed + 50)
    cross = z1.T @ z2
    mu = 1.3
    # eps such that rho(c Z1^T Z2) = 0.5, so the Taylor log of the library converges.
    eps = np.sqrt(d * np.abs(np.linalg.eigvals(cross)).max() / (b * 0.5))
    c = d / (b * eps**2)
    q = np.eye(d) + c * cross
    assert np.abs(q - q.T).max() > 1e-3  # genuinely non-symmetric
    sign, logdet = np.linalg.slogdet(q)
    assert sign > 0
    mec = -mu * logdet
    assert rel(mec, -mu * np.trace(logm_real(q))) <= RTOL  # tr log Q = log det Q, the oracle agrees
    mce = float(matrix_cross_entropy(torch.eye(d, dtype=F64), t(q), method="taylor", order=80))
    first = mu * (mce - np.trace(q))
    second = mu * (mce - d - c * np.trace(z1 @ z2.T))  # tr(Z1 Z2^T) over samples = tr(Z1^T Z2)
    library_logdet = -mu * float(sylvester_logdet(t(z1.T), t(z2.T), scale=c))
    err = max(rel(first, mec), rel(second, mec), rel(library_logdet, mec))
    assert record("eq. (19)", err) <= RTOL
    # method="eigh" reads only the symmetric part of Q, so it is not MEC's MCE:
    # det(sym Q) < |det Q| for non-normal Q with sym Q > 0 (Ostrowski-Taussky).
    mce_sym = float(matrix_cross_entropy(torch.eye(d, dtype=F64), t(q)))
    assert mce_sym > mce + 1e-8


@pytest.mark.parametrize("rho", [2.0, 5.0, 50.0])
def test_eq_19_holds_outside_the_taylor_radius_with_the_exact_log(rho):
    """The identity needs the principal log of Q = I + c Z1 Z2^T, not its Taylor
    series: it holds for rho(c Z1 Z2^T) > 1 when Q has no eigenvalue on (-inf, 0]."""
    b, d = 20, 6
    # Two views of the same samples (Z2 = Z1 + noise, renormalized), as in MEC.
    z1 = unit_rows(b, d, 3)
    z2 = z1 + 0.3 * unit_rows(b, d, 4)
    z2 /= np.linalg.norm(z2, axis=1, keepdims=True)
    cross = z1.T @ z2
    c = rho / np.abs(np.linalg.eigvals(cross)).max()
    q = np.eye(d) + c * cross
    ev = np.linalg.eigvals(q)
    assert not np.any((np.abs(ev.imag) < 1e-12) & (ev.real <= 0))
    oracle = -np.trace(logm_real(q))  # MCE(I, Q) - tr Q
    err = rel(-float(sylvester_logdet(t(z1.T), t(z2.T), scale=c)), oracle)
    assert record("eq. (19)", err) <= RTOL


# ---------------------------------------------------------------------------
# Section 5 and Appendix C.


@settings(max_examples=25)
@given(m=st.integers(1, 7), n=st.integers(1, 7), seed=st.integers(0, 2**32 - 1))
def test_lemma_5_2_frobenius_norm_and_trace(m, n, seed):
    """||P - Q||_F^2 = ||P||_F^2 + ||Q||_F^2 - 2 tr(P^T Q), any real P, Q of one shape;
    with unit-norm rows this gives eq. (3): ||Z1 - Z2||_F^2 = 2B - 2 tr(Z1 Z2^T)."""
    rng = np.random.default_rng(seed)
    p, q = rng.standard_normal((m, n)), rng.standard_normal((m, n))
    lhs = float(torch.linalg.matrix_norm(t(p) - t(q)) ** 2)
    rhs = np.sum(p**2) + np.sum(q**2) - 2 * np.trace(p.T @ q)
    z1, z2 = unit_rows(m, n, seed), unit_rows(m, n, seed + 1)
    byol = float(torch.linalg.matrix_norm(t(z1) - t(z2)) ** 2)
    err = max(rel(lhs, rhs), rel(byol, 2 * m - 2 * np.trace(z1 @ z2.T)))
    assert record("Lemma 5.2", err) <= RTOL


def _sphere_samples(n: int, d: int, seed: int, axis_scale: float = 1.0) -> np.ndarray:
    g = np.random.default_rng(seed).standard_normal((n, d))
    g[:, 0] *= axis_scale  # 1.0: uniform on the sphere (normalized isotropic Gaussian)
    return g / np.linalg.norm(g, axis=1, keepdims=True)


@pytest.mark.parametrize("d", [3, 8])
def test_lemma_c_1_uniform_sphere_has_mean_zero_and_second_moment_identity_over_d(d):
    """For x uniform on S^{d-1}: E x = 0 and E x x^T = I/d. Monte Carlo with N
    samples; the CLT standard errors are sqrt(1/(d N)) for the mean,
    sqrt(2(d-1)/(d^2 (d+2) N)) on the diagonal (Var x_i^2 = 3/(d(d+2)) - 1/d^2)
    and sqrt(1/(d(d+2) N)) off it (E x_i^2 x_j^2 = 1/(d(d+2)))."""
    n = 200_000
    x = _sphere_samples(n, d, seed=d)
    mean, second = x.mean(axis=0), x.T @ x / n
    se_mean = np.sqrt(1 / (d * n))
    se = np.full((d, d), np.sqrt(1 / (d * (d + 2) * n)))
    np.fill_diagonal(se, np.sqrt(2 * (d - 1) / (d**2 * (d + 2) * n)))
    z_mean = np.abs(mean).max() / se_mean
    z_second = (np.abs(second - np.eye(d) / d) / se).max()
    record(f"Lemma C.1 (largest deviation in standard errors, d={d})", max(z_mean, z_second))
    assert z_mean <= MC_SIGMAS and z_second <= MC_SIGMAS, (z_mean, z_second)
    # Library side: the matrix KL divergence to I/d is at the Monte Carlo noise
    # level, ~ (d/2) E||S - I/d||_F^2 for small deviations.
    noise = (d / 2) * np.sum(se**2)
    assert float(matrix_kl_divergence(t(second), torch.eye(d, dtype=F64) / d)) <= 10 * noise
    # The test has power: a mildly anisotropic distribution is rejected by far.
    y = _sphere_samples(n, d, seed=d, axis_scale=1.1)
    assert (np.abs(y.T @ y / n - np.eye(d) / d) / se).max() > 3 * MC_SIGMAS


@settings(max_examples=25)
@given(b=st.integers(2, 30), d1=st.integers(1, 6), d2=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_lemma_c_2_cross_covariance_via_centering_matrix(b, d1, d2, seed):
    """C(Z1, Z2) = 1/(B-1) Z1 H_B Z2^T (paper's d x B), i.e. Z1^T H_B Z2 / (B-1)
    here, with H_B = I_B - 1 1^T / B symmetric and idempotent; oracle numpy.cov."""
    rng = np.random.default_rng(seed)
    z1, z2 = rng.standard_normal((b, d1)), rng.standard_normal((b, d2)) + 3.0
    h = torch.eye(b, dtype=F64) - torch.ones(b, b, dtype=F64) / b
    cov = t(z1).T @ h @ t(z2) / (b - 1)
    oracle = np.cov(z1.T, z2.T)[:d1, d1:]
    err = max(rel(cov.numpy(), oracle), rel((h @ h).numpy(), h.numpy()), rel(h.T.numpy(), h.numpy()))
    assert record("Lemma C.2", err) <= RTOL


def test_thm_5_1_full_effective_rank_and_unit_trace_force_isotropy():
    """x on S^{d-1}: tr C(x) = 1 - ||E x||^2 <= 1, so tr C >= 1 forces E x = 0 and
    tr C = 1; erank(C) = d forces equal eigenvalues, so C = I/d."""
    rng = np.random.default_rng(0)
    d = 5
    worst = 0.0
    for trial in range(20):  # discrete distributions on the sphere: points and weights
        x = unit_rows(12, d, trial)
        w = rng.dirichlet(np.ones(12))
        mu = w @ x
        c = (x - mu).T @ ((x - mu) * w[:, None])
        worst = max(worst, abs(np.trace(c) - (1 - mu @ mu)))
        assert float(effective_rank(t(c))) <= d * (1 + 1e-12)
    # A symmetric distribution (+-union of orthonormal bases): mean 0, C = I/d, erank d.
    x = np.concatenate([_union_of_orthonormal_bases(2 * d, d, seed=3), -_union_of_orthonormal_bases(2 * d, d, seed=3)])
    c = x.T @ x / len(x) - np.outer(x.mean(0), x.mean(0))
    worst = max(worst, np.abs(c - np.eye(d) / d).max(), rel(effective_rank(t(c)), d))
    assert record("Thm. 5.1", worst) <= RTOL
    # erank = d only at C proportional to I: a trace-free perturbation lowers it,
    # quadratically in its size.
    e = from_eigenvalues([1.0, -1.0, 0.5, -0.5, 0.0], seed=1)
    drops = [d - float(effective_rank(t(np.eye(d) / d + s * e))) for s in (1e-2, 5e-3)]
    assert drops[0] > 0 and drops[1] > 0 and abs(drops[0] / drops[1] - 4) < 0.1, drops


# ---------------------------------------------------------------------------
# Appendix E.


def _simplex_etf(k: int, d: int, seed: int) -> np.ndarray:
    """K unit vectors in R^d (columns, d >= K - 1) forming a simplex ETF: the
    columns of M = sqrt(K/(K-1)) H_K (Def. D.1) expressed in an orthonormal basis
    of the sum-zero hyperplane, then mapped isometrically into R^d."""
    h = np.eye(k) - np.ones((k, k)) / k
    m = np.sqrt(k / (k - 1)) * h
    basis = np.linalg.svd(h)[0][:, : k - 1]  # orthonormal basis of 1^perp
    isometry = random_orthogonal(d, seed)[:, : k - 1]
    return isometry @ (basis.T @ m)


@pytest.mark.parametrize("k,d", [(3, 2), (4, 3), (6, 5), (6, 9), (10, 9), (10, 12)])
def test_thm_e_3_etf_gram_has_effective_rank_k_minus_1(k, d):
    """The Gram matrix of a simplex ETF is K/(K-1) H_K with effective rank K - 1;
    this needs only d >= K - 1 (the paper assumes d >= K)."""
    h = np.eye(k) - np.ones((k, k)) / k
    m = np.sqrt(k / (k - 1)) * h
    err = max(rel(m.T @ m, k / (k - 1) * h), rel(m @ m.T, k / (k - 1) * h))  # Def. D.1
    z = _simplex_etf(k, d, seed=k + d)
    gram = z.T @ z
    off = gram[~np.eye(k, dtype=bool)]
    err = max(err, np.abs(np.linalg.norm(z, axis=0) - 1).max(), np.abs(z.mean(axis=1)).max())
    err = max(err, np.abs(off + 1 / (k - 1)).max(), rel(gram, k / (k - 1) * h))
    ev = np.clip(np.linalg.eigvalsh(gram), 0, None)
    oracle = np.exp(shannon(ev / ev.sum()))
    err = max(err, rel(effective_rank(t(gram)), k - 1), rel(oracle, k - 1))
    assert record("Thm. E.3", err) <= RTOL
    # Converse direction: another Gram matrix of K mean-zero unit vectors
    # (diag 1, G 1 = 0, PSD) has effective rank below K - 1. For K >= 4,
    # E = u v^T + v u^T with u = e1 - e2, v = e3 - e4 keeps diag 0 and E 1 = 0.
    if k >= 4:
        u, v = np.zeros(k), np.zeros(k)
        u[[0, 1]], v[[2, 3]] = (1, -1), (1, -1)
        for step in (0.1, 0.3):
            g = k / (k - 1) * h + step * (np.outer(u, v) + np.outer(v, u))
            assert np.linalg.eigvalsh(g).min() > -1e-12 and np.allclose(np.diag(g), 1) and np.allclose(g.sum(1), 0)
            assert float(effective_rank(t(g))) < k - 1 - 1e-4


def _class_data(k: int, per_class: int, d: int, within: float, seed: int):
    """Balanced classes with centered class means (global mean 0) and samples
    = class mean + within-class noise centered per class (class means exact)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, d)) * np.linspace(2.0, 0.5, d)
    means -= means.mean(axis=0)
    noise = within * rng.standard_normal((k, per_class, d))
    noise -= noise.mean(axis=1, keepdims=True)
    samples = (means[:, None, :] + noise).reshape(k * per_class, d)
    return means, samples


@pytest.mark.parametrize("k,d", [(4, 16), (10, 6)])
def test_thm_e_5_class_mean_covariance_and_gram_have_same_effective_rank(k, d):
    """With balanced classes and global mean 0, the covariance of the class means
    (1/K) sum mu_c mu_c^T = M M^T / K and their Gram matrix M^T M share their
    nonzero eigenvalues up to the factor K, so their effective ranks agree; so
    does the Gram matrix of all samples when within-class variance is zero."""
    means, samples = _class_data(k, per_class=7, d=d, within=0.0, seed=k)
    between = means.T @ means / k
    s = np.linalg.svd(means, compute_uv=False) ** 2  # oracle: from the means directly
    oracle = np.exp(shannon(s / s.sum()))
    values = [effective_rank(t(between)), effective_rank(t(means @ means.T)), effective_rank(t(samples @ samples.T))]
    err = max(rel(v, oracle) for v in values)
    assert record("Thm. E.5 (class-mean Gram; or zero within-class variance)", err) <= RTOL


def test_thm_e_5_fails_for_the_sample_gram_with_within_class_variance():
    """With within-class variance, the Gram matrix of all samples has the spectrum
    of the total scatter (between + within), not of the between-class covariance:
    the effective ranks differ by far."""
    k, d = 4, 16
    means, samples = _class_data(k, per_class=10, d=d, within=0.5, seed=1)
    between = float(effective_rank(t(means.T @ means / k)))
    sample_gram = float(effective_rank(t(samples @ samples.T)))
    assert between <= k - 1 + 1e-9  # centered class means span at most K - 1 dimensions
    assert record_miss("Thm. E.5 for the sample Gram (erank difference)", sample_gram - between) > 1.0
