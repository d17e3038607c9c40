"""matrixinfo.compat.lightly: lightly 1.6's signatures and values.

The expected signatures are transcribed from lightly's documented constructors
(``lightly/loss/*.py``, release 1.6) and the expected values are independent
NumPy float64 transcriptions of the formulas those classes document: the
Barlow Twins, VICReg, NT-Xent, negative-cosine and EMP-SSL losses.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

from matrixinfo import MatrixInfoValueError
from matrixinfo.compat import lightly as compat

P = inspect.Parameter.POSITIONAL_OR_KEYWORD

# lightly 1.6: (name, default) in order; every parameter positional-or-keyword.
LIGHTLY_INIT = {
    "BarlowTwinsLoss": [("lambda_param", 5e-3), ("gather_distributed", False)],
    "VICRegLoss": [
        ("lambda_param", 25.0),
        ("mu_param", 25.0),
        ("nu_param", 1.0),
        ("gather_distributed", False),
        ("eps", 0.0001),
    ],  # fmt: skip
    "NTXentLoss": [("temperature", 0.5), ("memory_bank_size", 0), ("gather_distributed", False)],
    "NegativeCosineSimilarity": [("dim", 1), ("eps", 1e-8)],
    "EMPSSLLoss": [("tcr_eps", 0.2), ("inv_coef", 200.0)],
}
LIGHTLY_FORWARD = {
    "BarlowTwinsLoss": ["z_a", "z_b"],
    "VICRegLoss": ["z_a", "z_b"],
    "NTXentLoss": ["out0", "out1"],
    "NegativeCosineSimilarity": ["x0", "x1"],
    "EMPSSLLoss": ["z_views"],
}


@pytest.mark.parametrize("name", sorted(LIGHTLY_INIT))
def test_constructor_signature_is_lightlys(name):
    params = list(inspect.signature(getattr(compat, name).__init__).parameters.values())[1:]
    assert [(p.name, p.default) for p in params] == LIGHTLY_INIT[name]
    assert all(p.kind is P for p in params)
    # positional construction with lightly's defaults, and the attributes lightly has
    module = getattr(compat, name)(*[default for _, default in LIGHTLY_INIT[name]])
    for attr, default in LIGHTLY_INIT[name]:
        assert getattr(module, attr) == default


@pytest.mark.parametrize("name", sorted(LIGHTLY_FORWARD))
def test_forward_argument_names_are_lightlys(name):
    params = list(inspect.signature(getattr(compat, name).forward).parameters)[1:]
    assert params == LIGHTLY_FORWARD[name]
    assert getattr(compat, name).forward.__doc__  # not torch's "Should be overridden"


def test_all_names():
    assert sorted(compat.__all__) == sorted(LIGHTLY_INIT)


# --------------------------------------------------------------------------- NumPy oracles


def _np_barlow(a, b, lam):
    def standardize(z):
        c = z - z.mean(0)
        return c / np.sqrt((c**2).mean(0) + 1e-5)  # BatchNorm1d in training: biased variance, eps 1e-5

    c = standardize(a).T @ standardize(b) / a.shape[0]
    on = np.sum((1 - np.diag(c)) ** 2)
    off = np.sum(c**2) - np.sum(np.diag(c) ** 2)
    return on + lam * off


def _np_vicreg(a, b, lam, mu, nu, eps):
    B, d = a.shape
    inv = np.mean((a - b) ** 2)

    def var(z):
        return np.mean(np.maximum(0.0, 1 - np.sqrt(z.var(0, ddof=1) + eps)))

    def cov(z):
        c = np.cov(z, rowvar=False)  # divides by B - 1
        return (np.sum(c**2) - np.sum(np.diag(c) ** 2)) / d

    return lam * inv + mu * 0.5 * (var(a) + var(b)) + nu * (cov(a) + cov(b))


def _np_ntxent(a, b, t):
    z = np.concatenate([a, b])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    B = a.shape[0]
    total = 0.0
    for i in range(2 * B):
        j = (i + B) % (2 * B)
        logits = [z[i] @ z[k] / t for k in range(2 * B) if k != i]
        total += -z[i] @ z[j] / t + math.log(sum(math.exp(x) for x in logits))
    return total / (2 * B)


def _np_negcos(x0, x1, dim, eps):
    x0, x1 = np.broadcast_arrays(x0, x1)
    n0 = np.maximum(np.linalg.norm(x0, axis=dim), eps)
    n1 = np.maximum(np.linalg.norm(x1, axis=dim), eps)
    return -np.mean(np.sum(x0 * x1, axis=dim) / (n0 * n1))


def _np_emp_lightly_parts(views, tcr_eps):
    """lightly's two terms: +0.5 mean logdet (its sign) and -mean cosine to the mean view."""
    n, (B, d) = len(views), views[0].shape
    logdets = [np.linalg.slogdet(np.eye(d) + d / (B * tcr_eps) * z.T @ z)[1] for z in views]
    mean = sum(views) / n
    cos = [np.sum(z * mean, axis=1) / (np.linalg.norm(z, axis=1) * np.linalg.norm(mean, axis=1)) for z in views]
    return 0.5 * np.mean(logdets), -np.mean(cos)


def _pair(seed, B=12, d=5, scale=1.0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((B, d)) * scale
    return a, a + 0.5 * rng.standard_normal((B, d))


def _t(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype)


@pytest.mark.parametrize("lam", [5e-3, 0.2])
def test_barlow_twins_value(lam):
    a, b = _pair(0, scale=3.0)
    got = compat.BarlowTwinsLoss(lam)(_t(a), _t(b))
    assert float(got) == pytest.approx(_np_barlow(a, b, lam), rel=1e-10)
    # default is lightly's 5e-3, not the authors' 0.0051
    assert float(compat.BarlowTwinsLoss()(_t(a), _t(b))) == pytest.approx(_np_barlow(a, b, 5e-3), rel=1e-10)


def test_vicreg_value():
    a, b = _pair(1, scale=0.4)  # variances below 1, so the hinge is active
    got = compat.VICRegLoss()(z_a=_t(a), z_b=_t(b))
    assert float(got) == pytest.approx(_np_vicreg(a, b, 25.0, 25.0, 1.0, 1e-4), rel=1e-10)
    got = compat.VICRegLoss(1.0, 2.0, 3.0, False, 0.01)(_t(a), _t(b))
    assert float(got) == pytest.approx(_np_vicreg(a, b, 1.0, 2.0, 3.0, 0.01), rel=1e-10)


def test_vicreg_more_than_two_dims_is_not_implemented():
    z = torch.randn(4, 3, 5)
    with pytest.raises(NotImplementedError, match="VICRegLoss.*batch_size, ..., dim"):
        compat.VICRegLoss()(z, z)


@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_ntxent_value(temperature):
    a, b = _pair(2)
    got = compat.NTXentLoss(temperature)(out0=_t(a), out1=_t(b))
    assert float(got) == pytest.approx(_np_ntxent(a, b, temperature), rel=1e-10)


@pytest.mark.parametrize("size", [4096, (4096, 128), [65536, 5]])
def test_ntxent_memory_bank_is_not_implemented(size):
    with pytest.raises(NotImplementedError, match="memory_bank_size"):
        compat.NTXentLoss(memory_bank_size=size)


def test_ntxent_disabled_memory_bank_and_bad_temperature():
    a, b = _pair(3)
    expected = _np_ntxent(a, b, 0.5)
    assert float(compat.NTXentLoss(0.5, (0, 5))(_t(a), _t(b))) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="NTXentLoss: expected temperature"):
        compat.NTXentLoss(temperature=0.0)


@pytest.mark.parametrize(
    ("shape0", "shape1", "dim", "eps"),
    [
        ((8, 6), (8, 6), 1, 1e-8),
        ((8, 6), (8, 6), -1, 1e-8),
        ((8, 6), (8, 6), 0, 1e-8),
        ((3, 4, 6), (3, 4, 6), 2, 1e-8),
        ((3, 4, 6), (4, 6), 1, 0.5),  # broadcast, an eps that bites on small norms
        ((1, 6), (1, 6), 1, 1e-8),  # a single pair
    ],
)
def test_negative_cosine_similarity_value(shape0, shape1, dim, eps):
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal(shape0) * 0.3
    x1 = rng.standard_normal(shape1) * 0.3
    got = compat.NegativeCosineSimilarity(dim, eps)(x0=_t(x0), x1=_t(x1))
    assert float(got) == pytest.approx(_np_negcos(x0, x1, dim, eps), rel=1e-10)


def test_negative_cosine_similarity_bad_dim():
    with pytest.raises(MatrixInfoValueError, match="NegativeCosineSimilarity: expected dim"):
        compat.NegativeCosineSimilarity(dim=3)(torch.randn(4, 5), torch.randn(4, 5))


@pytest.mark.parametrize("n_views", [1, 3])
def test_emp_ssl_value_has_lightlys_invariance_and_the_authors_tcr_sign(n_views):
    rng = np.random.default_rng(5)
    base = rng.standard_normal((16, 6))
    views = [base + 0.7 * rng.standard_normal((16, 6)) for _ in range(n_views)]  # not unit norm
    lightly_tcr, lightly_inv = _np_emp_lightly_parts(views, 0.2)
    got = compat.EMPSSLLoss()(z_views=[_t(v) for v in views])
    # lightly's value is lightly_tcr + 200 * lightly_inv; the coding rate's sign is the authors'
    assert float(got) == pytest.approx(-lightly_tcr + 200.0 * lightly_inv, rel=1e-10)
    got = compat.EMPSSLLoss(0.5, 3.0)([_t(v) for v in views])
    tcr, inv = _np_emp_lightly_parts(views, 0.5)
    assert float(got) == pytest.approx(-tcr + 3.0 * inv, rel=1e-10)


def test_emp_ssl_penalizes_collapse():
    spread = [torch.eye(6, dtype=torch.float64).repeat(2, 1)] * 2
    collapsed = [torch.ones(12, 6, dtype=torch.float64) / math.sqrt(6)] * 2
    loss = compat.EMPSSLLoss(inv_coef=0.0)
    assert float(loss(spread)) < float(loss(collapsed))


def test_emp_ssl_bad_views():
    with pytest.raises(MatrixInfoValueError, match="EMPSSLLoss: expected z_views"):
        compat.EMPSSLLoss()([])
    with pytest.raises(MatrixInfoValueError, match="EMPSSLLoss: expected z_views"):
        compat.EMPSSLLoss()(torch.randn(2, 8, 4))


@pytest.mark.parametrize("name", sorted(LIGHTLY_INIT))
def test_gradients_are_finite_in_float32(name):
    torch.manual_seed(0)
    a = torch.randn(16, 8, requires_grad=True)
    b = torch.randn(16, 8)
    module = getattr(compat, name)()
    loss = module([a, b]) if name == "EMPSSLLoss" else module(a, b)
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(a.grad).all()


def test_bad_hyperparameters_name_the_class_and_argument():
    with pytest.raises(MatrixInfoValueError, match="BarlowTwinsLoss: expected lambda_param"):
        compat.BarlowTwinsLoss(-1.0)
    with pytest.raises(MatrixInfoValueError, match="VICRegLoss: expected gather_distributed"):
        compat.VICRegLoss(25.0, 25.0, 1.0, "yes")
    with pytest.raises(MatrixInfoValueError, match="EMPSSLLoss: expected tcr_eps"):
        compat.EMPSSLLoss(0.0)
