"""Tests of :mod:`matrixinfo.core`, one public function at a time.

Oracles are SciPy/NumPy in float64 (``scipy.linalg.logm``, ``numpy.linalg.eigh``,
``numpy.linalg.slogdet``, ``numpy.linalg.svd``), never the library's own formula
written a second time. Matrices are built constructively as
``Q diag(lambda) Q^T`` with a chosen condition number (no filtering).
The statements of the paper are tested in ``tests/test_identities.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg as sla
import torch
from _tolerances import AUTOCAST_RTOL, FLOAT32_MAX_COND, GRADCHECK, RTOL
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck, gradgradcheck

import matrixinfo
from matrixinfo import (
    MatrixInfoTypeError,
    MatrixInfoValueError,
    effective_rank,
    matrix_cross_entropy,
    matrix_entropy,
    matrix_kl_divergence,
    matrix_log,
    sylvester_logdet,
    von_neumann_entropy,
)

# ---------------------------------------------------------------------------
F64 = torch.float64
F32 = torch.float32


# ---------------------------------------------------------------------------
# Constructive inputs and float64 oracles.


def random_orthogonal(n: int, seed: int) -> np.ndarray:
    """Haar-distributed orthogonal matrix (QR of a Gaussian with the sign fix)."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def from_eigenvalues(lam, seed: int) -> np.ndarray:
    """``Q diag(lam) Q^T``, exactly symmetric."""
    lam = np.asarray(lam, dtype=np.float64)
    q = random_orthogonal(lam.shape[-1], seed)
    a = (q * lam) @ q.T
    return (a + a.T) / 2


def spectrum(n: int, log10_cond: float, log10_scale: float, fractions) -> np.ndarray:
    """Eigenvalues ``scale * cond**(-f)`` with ``f = 0`` and ``f = 1`` present, so
    that the largest is ``scale`` and the condition number is exactly ``cond``."""
    f = np.array([0.0, *fractions, 1.0][:n]) if n >= 2 else np.zeros(1)
    return 10.0**log10_scale * 10.0 ** (-log10_cond * f)


@st.composite
def spd_cases(draw, n_max=8, max_log10_cond=6.0, log10_scale=(-4.0, 4.0)):
    """(A, eigenvalues) with A SPD of size 1..n_max, condition number up to
    10**max_log10_cond and largest eigenvalue in 10**log10_scale. Hypothesis's
    habit of drawing boundary values gives exactly repeated eigenvalues too."""
    n = draw(st.integers(1, n_max))
    fractions = draw(st.lists(st.floats(0.0, 1.0), min_size=max(n - 2, 0), max_size=max(n - 2, 0)))
    lam = spectrum(n, draw(st.floats(0.0, max_log10_cond)), draw(st.floats(*log10_scale)), fractions)
    return from_eigenvalues(lam, draw(st.integers(0, 2**32 - 1))), lam


def spd_numpy(n: int, seed: int, cond: float = 10.0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed + 1000)
    fractions = rng.uniform(0.0, 1.0, max(n - 2, 0))
    return from_eigenvalues(spectrum(n, np.log10(cond), np.log10(scale), fractions), seed)


def spd(n: int, seed: int, dtype=F64, batch=(), cond: float = 10.0, scale: float = 1.0) -> torch.Tensor:
    count = int(np.prod(batch)) if batch else 1
    mats = [spd_numpy(n, seed + 17 * i, cond, scale) for i in range(count)]
    return torch.tensor(np.stack(mats).reshape(*batch, n, n), dtype=dtype)


def to_np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(F64).numpy()


def logm_ref(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        # scipy warns when its own error estimate exceeds ~1e-13 (seen: 9.5e-13);
        # the comparison below is what decides.
        warnings.filterwarnings("ignore", "logm result may be inaccurate", RuntimeWarning)
        out = sla.logm(a)
    assert np.abs(np.imag(out)).max(initial=0.0) < 1e-12, "logm oracle returned a complex log"
    return np.real(out)


def xlogx_sum(w: np.ndarray) -> float:
    w = w[w > 0]
    return float(np.sum(w * np.log(w)))


def entropy_ref(a):
    return -xlogx_sum(np.linalg.eigvalsh(a)) + np.trace(a)


def vne_ref(a):
    w = np.clip(np.linalg.eigvalsh(a), 0.0, None)
    return -xlogx_sum(w / w.sum()) if w.sum() > 0 else 0.0


def mce_ref(p, q):
    return -np.trace(p @ logm_ref(q)) + np.trace(q)


def mkl_ref(p, q):
    return xlogx_sum(np.linalg.eigvalsh(p)) - np.trace(p @ logm_ref(q)) - np.trace(p) + np.trace(q)


def erank_ref(a):
    s = np.linalg.svd(a, compute_uv=False)
    if s.sum() == 0:
        return 0.0
    return float(np.exp(-xlogx_sum(s / s.sum())))


def rel_err(got, ref) -> float:
    got = to_np(got) if isinstance(got, torch.Tensor) else np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(got - ref)) / max(1.0, float(np.max(np.abs(ref)))))


def assert_close(got, ref, dtype, context=""):
    err = rel_err(got, ref)
    assert err <= RTOL[dtype], f"relative error {err:.3g} > {RTOL[dtype]:g} ({dtype}); {context}"


def sym(a: torch.Tensor) -> torch.Tensor:
    return (a + a.mT) / 2


# Every one-matrix and two-matrix function of the core, with its oracle.
UNARY = {
    "matrix_log": (matrix_log, logm_ref),
    "matrix_entropy": (matrix_entropy, entropy_ref),
    "von_neumann_entropy": (von_neumann_entropy, vne_ref),
    "effective_rank": (effective_rank, erank_ref),
}
BINARY = {
    "matrix_kl_divergence": (matrix_kl_divergence, mkl_ref),
    "matrix_cross_entropy": (matrix_cross_entropy, mce_ref),
}
ALL_NAMES = [*UNARY, *BINARY, "sylvester_logdet"]


def call(name: str, *mats: torch.Tensor) -> torch.Tensor:
    """The function ``name`` on SPD input(s) of one shape: binary functions get
    (P, Q); sylvester_logdet gets X (square here) with a fixed scale."""
    if name in UNARY:
        return UNARY[name][0](mats[0])
    if name in BINARY:
        return BINARY[name][0](mats[0], mats[1])
    return sylvester_logdet(mats[0], scale=0.7)


def inputs_for(name: str, n: int, dtype, batch=(), seed: int = 0):
    count = 2 if name in BINARY else 1
    return [spd(n, seed + 101 * i, dtype, batch) for i in range(count)]


# ---------------------------------------------------------------------------
# matrix_log: reference, round trip, equivariance.


@settings(max_examples=30)
@given(case=spd_cases(max_log10_cond=6.0, log10_scale=(-4.0, 4.0)))
def test_matrix_log_matches_scipy_logm_float64_across_scales(case):
    a, lam = case
    assert_close(matrix_log(torch.tensor(a)), logm_ref(a), F64, f"eigenvalues {lam}")


@settings(max_examples=15)
@given(case=spd_cases(n_max=6, max_log10_cond=np.log10(FLOAT32_MAX_COND), log10_scale=(-4.0, 4.0)))
def test_matrix_log_matches_scipy_logm_float32(case):
    a, lam = case
    a32 = torch.tensor(a, dtype=F32)
    out = matrix_log(a32)
    assert out.dtype == F32
    assert_close(out, logm_ref(to_np(sym(a32))), F32, f"eigenvalues {lam}")


@settings(max_examples=15)
@given(case=spd_cases(max_log10_cond=4.0, log10_scale=(-4.0, 4.0)))
def test_matrix_log_round_trips_through_scipy_expm(case):
    a, lam = case
    back = sla.expm(to_np(matrix_log(torch.tensor(a))))
    err = np.abs(back - a).max() / np.abs(a).max()
    assert err <= RTOL[F64], f"expm(log A) != A: {err:.3g}; eigenvalues {lam}"


def test_matrix_log_of_scaled_matrix_shifts_by_log_scale():
    a = spd(5, seed=3, cond=100.0)
    eye = torch.eye(5, dtype=F64)
    for c in (1e-4, 0.37, 1e4):
        assert_close(matrix_log(c * a), to_np(matrix_log(a) + np.log(c) * eye), F64, f"c={c}")


def test_matrix_log_reads_only_the_symmetric_part():
    a = spd(4, seed=5)
    skew = torch.tensor(np.triu(np.ones((4, 4)), 1), dtype=F64)
    skew = skew - skew.T
    assert_close(matrix_log(a + 0.3 * skew), to_np(matrix_log(a)), F64)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_matrix_log_floor_is_n_eps_lambda_max(dtype):
    """Eigenvalues above n * eps * lambda_max are kept exactly; zero eigenvalues
    are raised to that floor (diagonal input: eigh is exact there)."""
    eps = torch.finfo(dtype).eps
    small = 1e-13 if dtype == F64 else 1e-5  # 1e3 times above the floor
    for top in (1e-3, 1.0, 1e3):
        a = torch.diag(torch.tensor([top, top * small, 0.0], dtype=dtype))
        expected = np.log([top, top * small, 3 * eps * top])
        got = to_np(torch.diagonal(matrix_log(a)))
        assert np.allclose(got, expected, rtol=RTOL[dtype], atol=0.0), (got, expected)
    # The all-zero matrix: the reference scale is sqrt(tiny), so the floor's
    # reciprocal (the derivative of log) stays finite.
    got = matrix_log(torch.zeros(3, 3, dtype=dtype))
    assert torch.allclose(got, np.log(3 * eps * np.sqrt(torch.finfo(dtype).tiny)) * torch.eye(3, dtype=dtype))


def test_matrix_log_warns_on_indefinite_input_and_not_on_rounding_noise():
    a = torch.tensor(from_eigenvalues([2.0, 1.0, -0.5], seed=1))
    with pytest.warns(RuntimeWarning, match=r"matrix_log: the input is not positive semi-definite"):
        matrix_log(a)
    # A float32 rank-deficient covariance: eigenvalues ~ -1e-7 are rounding noise, no warning.
    z = torch.tensor(np.random.default_rng(0).standard_normal((8, 32)), dtype=F32)
    cov = z.T @ z / 8
    assert float(torch.linalg.eigvalsh(cov).min()) < 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.isfinite(matrix_log(cov)).all()


# ---------------------------------------------------------------------------
# matrix_log(method="taylor").


def symmetric_near_identity(n, seed, rho, extreme=-1.0):
    """``I + X`` with X symmetric, rho(X) = rho attained at the eigenvalue
    ``extreme * rho`` and the other eigenvalues spread inside (-rho, rho)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([[extreme * rho], rng.uniform(-rho, rho, n - 1)])
    return np.eye(n) + from_eigenvalues(x, seed), x


@pytest.mark.parametrize("rho", [0.3, 0.9])
def test_taylor_log_converges_to_logm_inside_radius(rho):
    a, _ = symmetric_near_identity(5, seed=2, rho=rho)
    # The tail after `order` terms is <= rho**(order+1) / ((order+1)(1-rho)) <= 1e-16.
    order = 40 if rho < 0.5 else 320
    assert_close(matrix_log(torch.tensor(a), method="taylor", order=order), logm_ref(a), F64, f"rho={rho}")


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_taylor_log_error_falls_monotonically_at_rate_rho_to_order_plus_one(rho):
    a, x = symmetric_near_identity(6, seed=4, rho=rho)
    exact = logm_ref(a)
    errors = []
    for order in range(1, 16):
        err = np.linalg.norm(to_np(matrix_log(torch.tensor(a), method="taylor", order=order)) - exact, 2)
        # For symmetric X the error is the series tail on each eigenvalue x of X; at
        # x = -rho every term has the same sign, which gives the lower bound.
        lower = rho ** (order + 1) / (order + 1)
        upper = lower / (1 - rho)
        assert lower * (1 - 1e-9) <= err <= upper * (1 + 1e-9), (order, err, lower, upper, x)
        errors.append(err)
    assert all(e1 < e0 for e0, e1 in zip(errors, errors[1:], strict=False)), errors
    # Successive ratios approach rho (the geometric rate).
    assert abs(errors[-1] / errors[-2] - rho) < 0.1 * rho, errors[-2:]


def test_taylor_log_of_nonsymmetric_matrix_matches_scipy_logm():
    rng = np.random.default_rng(7)
    for n in (2, 5, 8):
        x = rng.standard_normal((n, n))
        x *= 0.5 / np.linalg.norm(x, 2)  # ||X||_2 = 0.5, so the tail after 60 terms < 1e-19
        a = np.eye(n) + x
        assert_close(matrix_log(torch.tensor(a), method="taylor", order=60), logm_ref(a), F64, f"n={n}")


@pytest.mark.parametrize("rho", [1.1, 1.5, 3.0])
@pytest.mark.parametrize("kind", ["symmetric", "nonsymmetric"])
def test_taylor_log_warns_outside_radius(rho, kind):
    if kind == "symmetric":
        a, _ = symmetric_near_identity(5, seed=1, rho=rho, extreme=1.0)
    else:
        x = np.random.default_rng(3).standard_normal((5, 5))
        a = np.eye(5) + x * rho / np.abs(np.linalg.eigvals(x)).max()
    with pytest.warns(RuntimeWarning, match=r"matrix_log: the Taylor series of log\(I \+ X\) is used outside"):
        matrix_log(torch.tensor(a), method="taylor")


@pytest.mark.parametrize("rho", [0.5, 0.9])
@pytest.mark.parametrize("kind", ["symmetric", "nonsymmetric"])
def test_taylor_log_does_not_warn_inside_radius(rho, kind):
    if kind == "symmetric":
        a, _ = symmetric_near_identity(5, seed=1, rho=rho, extreme=1.0)
    else:
        x = np.random.default_rng(3).standard_normal((5, 5))
        a = np.eye(5) + x * rho / np.abs(np.linalg.eigvals(x)).max()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        matrix_log(torch.tensor(a), method="taylor")


def test_taylor_radius_check_is_accurate_on_random_nonsymmetric_matrices():
    """Non-symmetric Q (e.g. the cross-covariance of MEC) has complex eigenvalue
    pairs; the radius estimate must still warn at rho = 1.1 and stay silent at
    0.9. The former one-vector, 32-step estimate warned spuriously at 0.9 for 4
    of these 120 matrices (estimates up to 1.08)."""
    rng = np.random.default_rng(11)
    eye = torch.eye(8, dtype=F64)
    silent_outside, noisy_inside = [], []
    for trial in range(120):
        n = 2 + trial % 7
        x = rng.standard_normal((n, n))
        x /= np.abs(np.linalg.eigvals(x)).max()
        for rho, bucket, expect in ((1.1, silent_outside, True), (0.9, noisy_inside, False)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                matrix_log(eye[:n, :n] + rho * torch.tensor(x), method="taylor", order=1)
            if bool(caught) != expect:
                bucket.append((trial, np.abs(np.linalg.eigvals(x)).round(3)))
    assert not silent_outside and not noisy_inside, (silent_outside, noisy_inside)


def test_taylor_log_check_radius_false_is_silent():
    a, _ = symmetric_near_identity(4, seed=1, rho=2.0, extreme=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        matrix_log(torch.tensor(a), method="taylor", check_radius=False)


@pytest.mark.parametrize("fn", [matrix_cross_entropy, matrix_kl_divergence])
def test_taylor_divergences_warn_outside_radius(fn):
    p = spd(4, seed=1)
    q, _ = symmetric_near_identity(4, seed=1, rho=1.5, extreme=1.0)
    with pytest.warns(RuntimeWarning, match=rf"{fn.__name__}: the Taylor series .* outside its convergence radius"):
        fn(p, torch.tensor(q), method="taylor")


# ---------------------------------------------------------------------------
# Reference tests of the scalar functions.


@settings(max_examples=25)
@given(case=spd_cases(max_log10_cond=6.0, log10_scale=(-4.0, 4.0)))
def test_unary_functions_match_numpy_float64(case):
    a, lam = case
    at = torch.tensor(a)
    for name in ("matrix_entropy", "von_neumann_entropy", "effective_rank"):
        fn, ref = UNARY[name]
        assert_close(fn(at), ref(a), F64, f"{name}, eigenvalues {lam}")
    assert_close(von_neumann_entropy(at, normalize=False), -xlogx_sum(np.linalg.eigvalsh(a)), F64, f"{lam}")


@settings(max_examples=25)
@given(
    p=spd_cases(n_max=6, max_log10_cond=4.0, log10_scale=(-2.0, 2.0)),
    seed=st.integers(0, 2**32 - 1),
    log10_cond=st.floats(0.0, 4.0),
    log10_scale=st.floats(-2.0, 2.0),
)
def test_divergences_match_scipy_float64(p, seed, log10_cond, log10_scale):
    p, lam_p = p
    n = p.shape[0]
    lam_q = spectrum(n, log10_cond, log10_scale, np.random.default_rng(seed).uniform(0, 1, max(n - 2, 0)))
    q = from_eigenvalues(lam_q, seed)
    for name, (fn, ref) in BINARY.items():
        assert_close(fn(torch.tensor(p), torch.tensor(q)), ref(p, q), F64, f"{name}: P eig {lam_p}, Q eig {lam_q}")


@pytest.mark.parametrize("name", ALL_NAMES[1:])
def test_scalar_functions_match_reference_float32(name):
    for seed in range(4):
        mats64 = inputs_for(name, 5, F64, seed=seed)
        mats32 = [m.to(F32) for m in mats64]
        out = call(name, *mats32)
        assert out.dtype == F32
        ref = call(name, *[m.to(F64) for m in mats32])  # float64 on the rounded input...
        arrays = [to_np(m) for m in mats32]
        if name in UNARY:  # ...checked against the numpy/scipy oracle
            assert_close(ref, UNARY[name][1](arrays[0]), F64)
        elif name in BINARY:
            assert_close(ref, BINARY[name][1](*arrays), F64)
        assert_close(out, to_np(ref), F32, f"{name}, seed {seed}")


# ---------------------------------------------------------------------------
# Shapes, dtypes, half precision, autocast.


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)], ids=str)
@pytest.mark.parametrize("name", ALL_NAMES)
def test_output_shape_dtype_and_batch_consistency(name, batch, dtype):
    n = 4
    mats = inputs_for(name, n, dtype, batch, seed=5)
    out = call(name, *mats)
    expected_shape = (*batch, n, n) if name == "matrix_log" else batch
    assert out.shape == expected_shape and out.dtype == dtype
    if batch:  # every batch element equals the unbatched call
        index = (1,) * len(batch)
        single = call(name, *[m[index] for m in mats])
        assert_close(out[index], to_np(single), dtype, name)


@pytest.mark.parametrize("name", list(BINARY))
def test_divergences_broadcast_batch_dimensions(name):
    p = spd(3, seed=1, batch=(2, 1))
    q = spd(3, seed=2, batch=(4,))
    out = BINARY[name][0](p, q)
    assert out.shape == (2, 4)
    assert_close(out[1, 2], BINARY[name][1](to_np(p[1, 0]), to_np(q[2])), F64)


def _half_cases():
    return [(name, dt) for name in [*ALL_NAMES, "taylor_log"] for dt in (torch.float16, torch.bfloat16)]


def _inputs_any(name, n, dtype, batch, seed):
    if name == "taylor_log":  # I + 0.1 S: inside the radius
        return [torch.eye(n, dtype=dtype) + 0.1 * spd(n, seed, dtype, batch)]
    return inputs_for(name, n, dtype, batch, seed)


def _call_any(name, *mats):
    if name == "taylor_log":
        return matrix_log(mats[0], method="taylor")
    return call(name, *mats)


@pytest.mark.parametrize("name,dtype", _half_cases(), ids=str)
def test_half_precision_returns_input_dtype_and_the_float32_result(name, dtype):
    mats = [m.to(dtype) for m in _inputs_any(name, 4, F32, (3,), seed=2)]
    out = _call_any(name, *mats)
    assert out.dtype == dtype
    expected = _call_any(name, *[m.float() for m in mats]).to(dtype)
    assert torch.equal(out, expected), (out, expected)


@pytest.mark.parametrize("name", [*ALL_NAMES, "taylor_log"])
def test_autocast_bfloat16_is_disabled_inside_the_spectral_block(name):
    mats = _inputs_any(name, 6, F32, (2,), seed=4)
    plain = _call_any(name, *mats)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = _call_any(name, *mats)
    assert auto.dtype == F32 and torch.isfinite(auto).all()
    assert rel_err(auto, to_np(plain)) <= AUTOCAST_RTOL


def test_sylvester_logdet_under_autocast_on_bf16_products():
    """Casting alone is not enough under CPU autocast: x.float().T @ x.float() comes
    back in bfloat16 (REFERENCES.md section 7). The core must still compute in
    float32, so the error is far below bfloat16's 4e-3."""
    x = torch.tensor(np.random.default_rng(0).standard_normal((64, 16)), dtype=F32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (x.T @ x).dtype == torch.bfloat16  # the trap this guards against
        auto = sylvester_logdet(x, scale=0.1)
    exact = np.linalg.slogdet(np.eye(16) + 0.1 * to_np(x).T @ to_np(x))[1]
    assert rel_err(auto, exact) <= AUTOCAST_RTOL


# ---------------------------------------------------------------------------
# Gradients: generic, repeated eigenvalues, rank-deficient P.


def _gradcheck(fn, *inputs):
    inputs = tuple(x.detach().clone().to(F64).requires_grad_() for x in inputs)
    assert gradcheck(fn, inputs, **GRADCHECK)


GENERIC_GRAD_FUNCTIONS = {
    "matrix_log": lambda a: matrix_log(sym(a)),
    "matrix_log_taylor": lambda a: matrix_log(
        sym(a) / 4 + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype), method="taylor"
    ),
    "matrix_entropy": lambda a: matrix_entropy(sym(a)),
    "von_neumann_entropy": lambda a: von_neumann_entropy(sym(a)),
    "effective_rank": lambda a: effective_rank(sym(a)),
    "effective_rank_rectangular": lambda a: effective_rank(a[..., :3]),
}


@pytest.mark.parametrize("name", list(GENERIC_GRAD_FUNCTIONS))
def test_gradcheck_generic_unary(name):
    _gradcheck(GENERIC_GRAD_FUNCTIONS[name], spd(4, seed=8, batch=(2,)))


@pytest.mark.parametrize("method", ["eigh", "taylor"])
@pytest.mark.parametrize("name", list(BINARY))
def test_gradcheck_generic_divergences(name, method):
    fn = BINARY[name][0]
    p, q = spd(4, seed=1), spd(4, seed=2)
    if method == "taylor":  # keep rho(Q - I) < 1
        q = q / (2 * torch.linalg.eigvalsh(q).max()) + 0.5 * torch.eye(4, dtype=F64)
    _gradcheck(lambda p, q: fn(sym(p), sym(q), method=method), p, q)


def _plain_eigh_log(a):
    """Plain autograd through torch.linalg.eigh: the thing not to do."""
    w, u = torch.linalg.eigh(a)
    return (u * torch.log(w).unsqueeze(-2)) @ u.mT


def _repeated_eigenvalue_cases():
    n = 4
    z = torch.tensor(random_orthogonal(n, 3)[:2], dtype=F64)  # 2 orthonormal rows
    return {
        "Q=I/d": torch.eye(n, dtype=F64) / n,
        "Q=Z^T Z+eps I, orthonormal rows": z.T @ z + 0.1 * torch.eye(n, dtype=F64),
        "Q=diag(2,2,2,0.5)": torch.diag(torch.tensor([2.0, 2.0, 2.0, 0.5], dtype=F64)),
    }


# Only diagonal inputs: LAPACK returns their eigenvalues exactly (the tridiagonal
# reduction of a diagonal matrix is the matrix itself), so the ties are bit-equal
# on every CPU and BLAS build. For Z^T Z + eps I the computed eigenvalues of the
# repeated pair differ in the last bits from one LAPACK build to another (seen:
# bit-equal on one CPU, 0.09999999999999973 vs 0.10000000000000002 on another),
# and plain autograd then returns finite values on some machines: not a property
# a test may rely on.
_EXACT_TIES = ["Q=I/d", "Q=diag(2,2,2,0.5)"]


@pytest.mark.parametrize("case", _EXACT_TIES)
def test_repeated_eigenvalues_plain_autograd_is_nan(case):
    q = _repeated_eigenvalue_cases()[case]
    p = spd(4, seed=6)
    w = torch.linalg.eigvalsh(q)
    assert (w[1:] == w[:-1]).any(), "the contrast needs bit-equal eigenvalues"
    qp = q.clone().requires_grad_()
    (-(p * _plain_eigh_log(sym(qp))).sum()).backward()
    assert torch.isnan(qp.grad).any()


@pytest.mark.parametrize("case", list(_repeated_eigenvalue_cases()))
def test_repeated_eigenvalues_ours_passes_gradcheck(case):
    """Finite and correct by finite differences, whether or not LAPACK's ties are bit-equal."""
    q = _repeated_eigenvalue_cases()[case]
    p = spd(4, seed=6)
    for name, fn in BINARY.items():
        qo = q.clone().requires_grad_()
        fn[0](p, sym(qo)).backward()
        assert torch.isfinite(qo.grad).all(), name
        _gradcheck(lambda q_, fn=fn: fn[0](p, sym(q_)), q)
    _gradcheck(lambda q_: matrix_log(sym(q_)), q)
    for fn in (matrix_entropy, von_neumann_entropy, effective_rank):
        _gradcheck(lambda q_, fn=fn: fn(sym(q_)), q)


def test_gradcheck_kl_at_p_equals_q_with_repeated_eigenvalues():
    q = torch.eye(4, dtype=F64) / 4
    _gradcheck(lambda p_, q_: matrix_kl_divergence(sym(p_), sym(q_)), q, q.clone())


@pytest.mark.parametrize("r", [1, 2, 3])
def test_gradcheck_rank_deficient_p(r):
    """P = X X^T with X of shape (4, r), r < 4: 0 log 0 terms in tr(P log P)."""
    n = 4
    x = torch.tensor(np.random.default_rng(r).standard_normal((n, r)), dtype=F64)
    q = spd(n, seed=9)
    _gradcheck(lambda x_: matrix_entropy(x_ @ x_.T), x)
    _gradcheck(lambda x_: von_neumann_entropy(x_ @ x_.T), x)
    _gradcheck(lambda x_: effective_rank(x_ @ x_.T), x)
    _gradcheck(lambda x_, q_: matrix_kl_divergence(x_ @ x_.T, sym(q_)), x, q)
    _gradcheck(lambda x_, q_: matrix_cross_entropy(x_ @ x_.T, sym(q_)), x, q)


def test_second_derivatives_are_correct_off_ties():
    """The Daleckii-Krein backward saves w, U without a graph; double backward
    used to return a zero second derivative silently (a wrong Hessian)."""
    a = spd(3, seed=1)
    p = spd(3, seed=2)
    assert gradgradcheck(lambda a_: matrix_cross_entropy(p, sym(a_)), (a.clone().requires_grad_(),), **GRADCHECK)
    assert gradgradcheck(lambda a_: matrix_log(sym(a_)), (a.clone().requires_grad_(),), **GRADCHECK)


# ---------------------------------------------------------------------------
# Bad input: library exceptions that subclass the builtins, precise messages.

_A = torch.eye(3, dtype=F64)

BAD_INPUT = [
    (
        "log non-square",
        lambda: matrix_log(torch.zeros(2, 3)),
        MatrixInfoValueError,
        r"matrix_log: expected A to be a square matrix of shape \(\*, n, n\), got shape \(2, 3\)\.",
    ),
    (
        "log 1-d",
        lambda: matrix_log(torch.zeros(3)),
        MatrixInfoValueError,
        r"matrix_log: expected A to be a square matrix .*got shape \(3,\)\.",
    ),
    (
        "log integer",
        lambda: matrix_log(torch.eye(3, dtype=torch.int64)),
        MatrixInfoTypeError,
        r"matrix_log: expected A to have a real floating dtype .*got torch\.int64\.",
    ),
    (
        "log not a tensor",
        lambda: matrix_log(np.eye(3)),
        MatrixInfoTypeError,
        r"matrix_log: expected A to be a torch\.Tensor, got ndarray\.",
    ),
    (
        "log unknown method",
        lambda: matrix_log(_A, method="pade"),
        MatrixInfoValueError,
        r"matrix_log: expected method to be one of 'eigh', 'taylor', got 'pade'\.",
    ),
    (
        "log order 0",
        lambda: matrix_log(_A, method="taylor", order=0),
        MatrixInfoValueError,
        r"matrix_log: expected order to be an integer >= 1, got 0\.",
    ),
    (
        "log order float",
        lambda: matrix_log(_A, method="taylor", order=2.0),
        MatrixInfoValueError,
        r"matrix_log: expected order to be an integer >= 1, got 2\.0\.",
    ),
    (
        "entropy non-square",
        lambda: matrix_entropy(torch.zeros(2, 3)),
        MatrixInfoValueError,
        r"matrix_entropy: expected A to be a square matrix .*got shape \(2, 3\)\.",
    ),
    (
        "entropy list",
        lambda: matrix_entropy([[1.0]]),
        MatrixInfoTypeError,
        r"matrix_entropy: expected A to be a torch\.Tensor, got list\.",
    ),
    (
        "vne integer",
        lambda: von_neumann_entropy(torch.eye(2, dtype=torch.int32)),
        MatrixInfoTypeError,
        r"von_neumann_entropy: expected A to have a real floating dtype .*got torch\.int32\.",
    ),
    (
        "kl mismatched",
        lambda: matrix_kl_divergence(_A, torch.eye(4, dtype=F64)),
        MatrixInfoValueError,
        r"matrix_kl_divergence: expected P and Q to have the same matrix shape .*got \(3, 3\) and \(4, 4\)\.",
    ),
    (
        "kl batch mismatch",
        lambda: matrix_kl_divergence(torch.zeros(2, 3, 3), torch.zeros(4, 3, 3)),
        MatrixInfoValueError,
        r"matrix_kl_divergence: expected P and Q .*broadcastable batch dimensions, "
        r"got \(2, 3, 3\) and \(4, 3, 3\)\.",
    ),
    (
        "kl unknown method",
        lambda: matrix_kl_divergence(_A, _A, method="exact"),
        MatrixInfoValueError,
        r"matrix_kl_divergence: expected method to be one of 'eigh', 'taylor', got 'exact'\.",
    ),
    (
        "kl order",
        lambda: matrix_kl_divergence(_A, _A, method="taylor", order=-1),
        MatrixInfoValueError,
        r"matrix_kl_divergence: expected order to be an integer >= 1, got -1\.",
    ),
    (
        "ce Q non-square",
        lambda: matrix_cross_entropy(_A, torch.zeros(3, 2, dtype=F64)),
        MatrixInfoValueError,
        r"matrix_cross_entropy: expected Q to be a square matrix .*got shape \(3, 2\)\.",
    ),
    (
        "ce P integer",
        lambda: matrix_cross_entropy(torch.eye(3, dtype=torch.int64), _A),
        MatrixInfoTypeError,
        r"matrix_cross_entropy: expected P to have a real floating dtype .*got torch\.int64\.",
    ),
    (
        "ce unknown method",
        lambda: matrix_cross_entropy(_A, _A, method="svd"),
        MatrixInfoValueError,
        r"matrix_cross_entropy: expected method to be one of 'eigh', 'taylor', got 'svd'\.",
    ),
    (
        "erank 1-d",
        lambda: effective_rank(torch.zeros(3)),
        MatrixInfoValueError,
        r"effective_rank: expected A to be a matrix of shape \(\*, m, n\) with m, n >= 1, got shape \(3,\)\.",
    ),
    (
        "erank integer",
        lambda: effective_rank(torch.zeros(3, 3, dtype=torch.int64)),
        MatrixInfoTypeError,
        r"effective_rank: expected A to have a real floating dtype .*got torch\.int64\.",
    ),
    (
        "sylvester 1-d",
        lambda: sylvester_logdet(torch.zeros(3)),
        MatrixInfoValueError,
        r"sylvester_logdet: expected X to be a matrix of shape \(\*, m, n\) .*got shape \(3,\)\.",
    ),
    (
        "sylvester Y shape",
        lambda: sylvester_logdet(torch.zeros(3, 2), torch.zeros(2, 3)),
        MatrixInfoValueError,
        r"sylvester_logdet: expected X and Y to have the same shape \(\*, n, k\).*got \(3, 2\) and \(2, 3\)\.",
    ),
    (
        "sylvester Y batch",
        lambda: sylvester_logdet(torch.zeros(2, 3, 2), torch.zeros(4, 3, 2)),
        MatrixInfoValueError,
        r"sylvester_logdet: expected X and Y to have the same shape \(\*, n, k\) with "
        r"broadcastable batch dimensions, got \(2, 3, 2\) and \(4, 3, 2\)\.",
    ),
    (
        "sylvester Y integer",
        lambda: sylvester_logdet(torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.int64)),
        MatrixInfoTypeError,
        r"sylvester_logdet: expected Y to have a real floating dtype .*got torch\.int64\.",
    ),
    (
        "sylvester scale",
        lambda: sylvester_logdet(torch.zeros(3, 2), scale="big"),
        MatrixInfoTypeError,
        r"sylvester_logdet: expected scale to be a real number, got 'big'\.",
    ),
    (
        "sylvester scale nan",
        lambda: sylvester_logdet(torch.zeros(3, 2), scale=float("nan")),
        MatrixInfoValueError,
        r"sylvester_logdet: expected scale to be a finite real number, got nan\.",
    ),
]


@pytest.mark.parametrize("call_,exc,match", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_raises_library_error_with_message(call_, exc, match):
    with pytest.raises(exc, match=match) as info:
        call_()
    builtin = ValueError if exc is MatrixInfoValueError else TypeError
    assert isinstance(info.value, builtin)
    assert matrixinfo.MatrixInfoValueError is MatrixInfoValueError


# ---------------------------------------------------------------------------
# No NaN for valid PSD input.


def _psd_edge_cases():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 2))
    z = rng.standard_normal((8, 32))
    return {
        "singular float64": torch.tensor(x @ x.T),
        "zero float64": torch.zeros(5, 5, dtype=F64),
        "rank-deficient float32 covariance": torch.tensor(z.T @ z / 8, dtype=F32),
        "singular float32": torch.tensor(x @ x.T, dtype=F32),
    }


@pytest.mark.parametrize("case", list(_psd_edge_cases()))
def test_no_nan_for_singular_and_zero_psd_input(case):
    a = _psd_edge_cases()[case]
    eye = torch.eye(a.shape[-1], dtype=a.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calls = {
            "matrix_log": lambda a_: matrix_log(a_),
            "matrix_entropy": matrix_entropy,
            "von_neumann_entropy": von_neumann_entropy,
            "effective_rank": effective_rank,
            "kl(A || I)": lambda a_: matrix_kl_divergence(a_, eye),
            "ce(A, I)": lambda a_: matrix_cross_entropy(a_, eye),
            "kl(A || A)": lambda a_: matrix_kl_divergence(a_, a_),
            "kl(I/n || A + I)": lambda a_: matrix_kl_divergence(eye / len(eye), a_ + eye),
            "sylvester": lambda a_: sylvester_logdet(a_, scale=0.5),
        }
        for name, fn in calls.items():
            leaf = a.clone().requires_grad_()
            out = fn(leaf)
            assert torch.isfinite(out).all(), name
            out.sum().backward()
            assert torch.isfinite(leaf.grad).all(), name


def test_singular_psd_values_match_numpy_with_0_log_0():
    x = np.random.default_rng(2).standard_normal((6, 3))
    a = x @ x.T
    at = torch.tensor(a)
    assert_close(matrix_entropy(at), entropy_ref(a), F64)
    assert_close(von_neumann_entropy(at), vne_ref(a), F64)
    assert_close(effective_rank(at), erank_ref(a), F64)
    q = spd_numpy(6, seed=1)
    assert_close(matrix_kl_divergence(at, torch.tensor(q)), mkl_ref(a, q), F64)
    assert_close(matrix_cross_entropy(at, torch.tensor(q)), mce_ref(a, q), F64)
    # tr(P log P) of a singular P = P: the divergence is 0 (not NaN, not -inf).
    assert abs(float(matrix_kl_divergence(at, at))) < 1e-10 * np.trace(a)
    assert float(effective_rank(torch.zeros(3, 3, dtype=F64))) == 0.0


# ---------------------------------------------------------------------------
# sylvester_logdet.


def _big_side_logdet(x, y, c):
    """slogdet of I + c X Y^T on the larger side: n x n if n >= k, else I_k + c Y^T X."""
    n, k = x.shape
    m = np.eye(n) + c * x @ y.T if n >= k else np.eye(k) + c * y.T @ x
    return np.linalg.slogdet(m)


@pytest.mark.parametrize("n,k", [(3, 9), (9, 3), (5, 5)])
@pytest.mark.parametrize("cross", [False, True])
def test_sylvester_logdet_matches_numpy_slogdet_of_big_side(n, k, cross):
    rng = np.random.default_rng(n * 10 + k)
    for c in (1e-3, 0.25, 40.0):
        x = rng.standard_normal((n, k))
        y = x + 0.1 * rng.standard_normal((n, k)) if cross else x
        sign, ref = _big_side_logdet(x, y, c)
        assert sign > 0
        got = sylvester_logdet(torch.tensor(x), torch.tensor(y) if cross else None, scale=c)
        assert_close(got, ref, F64, f"n={n}, k={k}, c={c}")
        got32 = sylvester_logdet(torch.tensor(x, dtype=F32), torch.tensor(y, dtype=F32) if cross else None, scale=c)
        assert_close(got32, ref, F32, f"float32 n={n}, k={k}, c={c}")


def test_sylvester_logdet_batch_broadcasts_x_and_y():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 4, 6))
    y = x[0, 0] + 0.1 * rng.standard_normal((3, 4, 6))
    got = sylvester_logdet(torch.tensor(x), torch.tensor(y), scale=0.3)
    assert got.shape == (2, 3)
    assert_close(got[1, 2], _big_side_logdet(x[1, 0], y[2], 0.3)[1], F64)


def test_sylvester_logdet_nonpositive_determinant_is_nan_with_warning():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 5))
    y = x + 0.1 * rng.standard_normal((2, 5, 5))
    # Second matrix: X Y^T = X D X^{-1} is non-symmetric with eigenvalues D, so
    # det(I + c X Y^T) = prod(1 + c D) = (1 - 10)(1 + 5)^4 < 0 for c = 10.
    d = np.diag([-1.0, 0.5, 0.5, 0.5, 0.5])
    y[1] = np.linalg.inv(x[1]).T @ d
    c = 10.0
    assert _big_side_logdet(x[0], y[0], c)[0] > 0 and _big_side_logdet(x[1], y[1], c)[0] < 0
    with pytest.warns(RuntimeWarning, match=r"sylvester_logdet: the determinant of I \+ c X Y\^T is not positive"):
        got = sylvester_logdet(torch.tensor(x), torch.tensor(y), scale=c)
    assert torch.isnan(got[1]) and torch.isfinite(got[0])
    assert_close(got[0], _big_side_logdet(x[0], y[0], c)[1], F64)


@pytest.mark.parametrize("n,k", [(3, 6), (6, 3)])
@pytest.mark.parametrize("cross", [False, True])
def test_gradcheck_sylvester_logdet(n, k, cross):
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.standard_normal((n, k)))
    if cross:
        y = x + 0.1 * torch.tensor(rng.standard_normal((n, k)))
        _gradcheck(lambda x_, y_: sylvester_logdet(x_, y_, scale=0.3), x, y)
    else:
        _gradcheck(lambda x_: sylvester_logdet(x_, scale=0.3), x)


def test_warnings_point_at_the_callers_line():
    """A RuntimeWarning from deep inside the library is attributed to the user's
    call site, not to a matrixinfo module (so `-W error` filters and IDEs show
    the user's line), both for core functions and for losses through nn.Module."""
    import warnings

    from matrixinfo.losses import MECLoss

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        matrixinfo.matrix_log(3.0 * torch.eye(3, dtype=torch.float64), method="taylor")
        MECLoss()(torch.ones(64, 256, dtype=torch.float64), torch.ones(64, 256, dtype=torch.float64))
    assert len(caught) == 2
    assert all(issubclass(w.category, RuntimeWarning) and w.filename == __file__ for w in caught)
