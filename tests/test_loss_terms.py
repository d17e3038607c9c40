"""Loss terms for logging: ``return_terms=True`` on every loss (module and functional).

Driven by ``tests/loss_registry.py`` (every loss, every variant):

* the default call is unchanged: a tensor, equal (``torch.equal``) to the loss
  returned with the terms, with the same gradients;
* the terms are detached 0-d tensors of the loss's dtype, under the names the
  docstring gives, and the documented weighted sum of them is the loss
  (``RELATIONS``, one line per loss: a new loss fails here until it has one);
* each term of the main losses against an independent NumPy float64
  transcription of that term's formula (no library code);
* no recomputation: counted under a ``TorchDispatchMode``, the call with the
  terms issues no matrix product, factorization, eigendecomposition,
  transcendental or host read beyond those of the default call, only a few
  cheap ops on tensors already computed (``ALLOWED_EXTRA``);
* ``torch.compile(fullgraph=True)`` returns the eager terms.

Under ``torch.distributed`` the terms equal those of one process holding the
whole batch: ``tests/test_distributed.py``.
"""

from __future__ import annotations

import inspect
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from _tolerances import RTOL64
from loss_registry import LossCase, all_cases, llm_inputs, n_views, params
from scipy.special import log_softmax, logsumexp
from torch.utils._python_dispatch import TorchDispatchMode

import matrixinfo.functional as MF
import matrixinfo.losses as ML
from matrixinfo import MatrixInfoValueError

B, D = 16, 5

# loss = the weighted sum of the terms, as each functional's docstring states it;
# k: the functional's keyword arguments (its defaults updated with the case's).
RELATIONS = {
    "barlow_twins_loss": lambda t, k: t["on_diagonal"] + k["lambda_param"] * t["off_diagonal"],
    "vicreg_loss": lambda t, k: (
        k["lambda_param"] * t["invariance"] + k["mu_param"] * t["variance"] + k["nu_param"] * t["covariance"]
    ),
    "corinfomax_loss": lambda t, k: k["alpha"] * t["invariance"] + t["covariance"],
    "simclr_loss": lambda t, k: t["alignment"] + t["uniformity"],
    "negative_cosine_similarity_loss": lambda t, k: -t["cosine_similarity"],
    "byol_loss": lambda t, k: 2.0 - 2.0 * t["cosine_similarity"],
    "spectral_contrastive_loss": lambda t, k: (t["alignment"] + t["uniformity"]) / k["mu"],
    "alignment_loss": lambda t, k: t["alignment"],
    "uniformity_loss": lambda t, k: t["uniformity"],
    "tcr_loss": lambda t, k: t["tcr"],
    "emp_tcr_loss": lambda t, k: -k["mu"] * t["log_det"],
    "emp_ssl_loss": lambda t, k: k["tcr_weight"] * t["tcr"] + k["invariance_weight"] * t["invariance"],
    "mec_loss": lambda t, k: t["mec"],
    "matrix_kl_uniformity_loss": lambda t, k: t["uniformity"],
    "matrix_kl_alignment_loss": lambda t, k: t["alignment"],
    "matrix_ssl_loss": lambda t, k: t["uniformity"] + k["gamma"] * t["alignment"],
    "uniformity_mce_loss": lambda t, k: t["uniformity_mce"],
    "uniformity_mkl_loss": lambda t, k: t["uniformity_mkl"],
    "matrix_llm_loss": lambda t, k: t["cross_entropy"] + k["mce_weight"] * t["matrix_cross_entropy"],
}

# The term names of each loss (the keys its docstring lists).
NAMES = {
    "barlow_twins_loss": {"on_diagonal", "off_diagonal"},
    "vicreg_loss": {"invariance", "variance", "covariance"},
    "corinfomax_loss": {"invariance", "covariance"},
    "simclr_loss": {"alignment", "uniformity"},
    "negative_cosine_similarity_loss": {"cosine_similarity"},
    "byol_loss": {"cosine_similarity"},
    "spectral_contrastive_loss": {"alignment", "uniformity"},
    "alignment_loss": {"alignment"},
    "uniformity_loss": {"uniformity"},
    "tcr_loss": {"tcr"},
    "emp_tcr_loss": {"log_det"},
    "emp_ssl_loss": {"tcr", "invariance"},
    "mec_loss": {"mec"},
    "matrix_kl_uniformity_loss": {"uniformity"},
    "matrix_kl_alignment_loss": {"alignment"},
    "matrix_ssl_loss": {"uniformity", "alignment"},
    "uniformity_mce_loss": {"uniformity_mce"},
    "uniformity_mkl_loss": {"uniformity_mkl"},
    "matrix_llm_loss": {"cross_entropy", "matrix_cross_entropy"},
}


# --------------------------------------------------------------------------- #
# Inputs and calls                                                             #
# --------------------------------------------------------------------------- #
def _has(case: LossCase, option: str) -> bool:
    return option in inspect.signature(getattr(MF, case.functional)).parameters


def _kwargs(case: LossCase, **overrides) -> dict:
    """The case's settings, without the Taylor radius check (it only warns)."""
    extra = {"check_radius": False} if _has(case, "check_radius") else {}
    return {**case.kwargs, **extra, **overrides}


def _inputs(case: LossCase, *, dtype=torch.float64, seed: int = 0, grad: bool = False) -> list[torch.Tensor]:
    if case.kind == "llm":
        logits, target, embedding = llm_inputs(dtype=dtype, seed=seed)
        target[3] = -100  # an ignored token: the token means skip it
        out = [logits, target, embedding]
    else:
        g = torch.Generator().manual_seed(seed)
        base = torch.randn(B, D, generator=g, dtype=torch.float64)
        out = [
            (base + 0.5 * torch.randn(B, D, generator=g, dtype=torch.float64)).to(dtype) for _ in range(n_views(case))
        ]
    return [x.requires_grad_(True) if grad and x.is_floating_point() else x for x in out]


def _module(case: LossCase, **overrides) -> torch.nn.Module:
    return case.build(D, **_kwargs(case, **overrides))


def _functional_kwargs(case: LossCase, **overrides) -> dict:
    """Every keyword argument of the functional: its defaults updated with the case's."""
    params_ = inspect.signature(getattr(MF, case.functional)).parameters
    defaults = {n: p.default for n, p in params_.items() if p.default is not inspect.Parameter.empty}
    return {**defaults, **_kwargs(case, **overrides)}


def _call_functional(case: LossCase, inputs, **kw):
    return getattr(MF, case.functional)(*inputs, **_kwargs(case), **kw)


def _loss_and_terms(case: LossCase, inputs, **overrides):
    """``(loss, terms)`` of a fresh module."""
    return _module(case, **overrides)(*inputs, return_terms=True)


def test_every_functional_loss_takes_return_terms_and_has_a_relation():
    losses = [n for n in MF.__all__ if callable(getattr(MF, n)) and n.endswith("_loss")]
    assert losses, "no functional losses found"
    for name in losses:
        assert "return_terms" in inspect.signature(getattr(MF, name)).parameters, name
        assert inspect.signature(getattr(MF, name)).parameters["return_terms"].kind is inspect.Parameter.KEYWORD_ONLY
        assert name in RELATIONS and name in NAMES, f"{name}: add its weighted sum to RELATIONS and NAMES"
    for name in ML.__all__:
        forward = inspect.signature(getattr(ML, name).forward).parameters
        assert forward["return_terms"].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert forward["return_terms"].default is False, name


# --------------------------------------------------------------------------- #
# 1-2. Default unchanged; terms detached 0-d of the loss's dtype; gradients    #
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("case", params())
def test_default_return_is_unchanged_and_terms_are_detached(case):
    inputs = _inputs(case, grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        default = _module(case)(*inputs)
        loss, terms = _loss_and_terms(case, inputs)
        functional_default = _call_functional(case, inputs)
        functional = _call_functional(case, inputs, return_terms=True)
    assert isinstance(default, torch.Tensor) and default.ndim == 0
    assert torch.equal(default, loss)
    # The functional: the same, with the state in the middle for a stateful loss.
    if case.returns_state:
        assert len(functional_default) == 2 and len(functional) == 3
        assert torch.equal(functional_default[0], functional[0])
        torch.testing.assert_close(functional_default[1], functional[1], rtol=0, atol=0)
    else:
        assert isinstance(functional_default, torch.Tensor) and torch.equal(functional_default, functional[0])
    assert isinstance(terms, dict) and set(terms) == NAMES[case.functional]
    assert set(functional[-1]) == set(terms)
    for name, term in terms.items():
        assert isinstance(term, torch.Tensor) and term.ndim == 0, name
        assert not term.requires_grad and term.grad_fn is None, name
        assert term.dtype == loss.dtype, name
        assert torch.equal(term, functional[-1][name]), name
    # The gradients of the loss are those of the default call.
    differentiable = [x for x in inputs if x.requires_grad]
    g_default = torch.autograd.grad(default, differentiable)
    g_terms = torch.autograd.grad(loss, differentiable)
    for a, b in zip(g_default, g_terms):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("case", params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_terms_have_the_dtype_of_the_loss(case, dtype):
    inputs = _inputs(case, dtype=dtype)
    if case.kind == "llm" and dtype == torch.bfloat16:
        inputs = [x.to(torch.bfloat16) if x.is_floating_point() else x for x in inputs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        default = _module(case)(*inputs)
        loss, terms = _loss_and_terms(case, inputs)
    assert torch.equal(default, loss)
    expected = torch.float32  # half precision gives a float32 loss; float32 stays float32
    assert loss.dtype == expected
    for name, term in terms.items():
        assert term.dtype == expected and term.ndim == 0 and not term.requires_grad, name


def test_return_terms_must_be_a_flag():
    z = torch.randn(8, 3, dtype=torch.float64)
    with pytest.raises(MatrixInfoValueError, match="vicreg_loss: expected return_terms to be True or False"):
        MF.vicreg_loss(z, z, return_terms="yes")
    with pytest.raises(MatrixInfoValueError, match="tcr_loss: expected return_terms to be True or False"):
        ML.TCRLoss()(z, return_terms=1)


# --------------------------------------------------------------------------- #
# 3. The weighted sum of the terms is the loss (every loss, every variant)     #
# --------------------------------------------------------------------------- #
# Settings with weights away from 1, so that a weight applied to the wrong term shows.
WEIGHTED = {
    "BarlowTwinsLoss": {"lambda_param": 0.3},
    "VICRegLoss": {"lambda_param": 2.0, "mu_param": 3.0, "nu_param": 5.0},
    "CorInfoMaxLoss": {"alpha": 7.0},
    "SpectralContrastiveLoss": {"mu": 2.5},
    "EMPTCRLoss": {"mu": 0.7},
    "EMPSSLLoss": {"invariance_weight": 3.0, "tcr_weight": 0.5},
    "MatrixSSLLoss": {"gamma": 0.4},
    "MatrixLLMLoss": {"mce_weight": 0.3},
}


# Every case with its defaults, and with WEIGHTED where the loss has weights.
_WEIGHT_CASES = [pytest.param(p.values[0], False, id=f"{p.id}-defaults") for p in params()] + [
    pytest.param(p.values[0], True, id=f"{p.id}-weighted") for p in params() if p.values[0].cls_name in WEIGHTED
]


@pytest.mark.parametrize(("case", "weighted"), _WEIGHT_CASES)
def test_weighted_sum_of_the_terms_is_the_loss(case, weighted):
    overrides = WEIGHTED[case.cls_name] if weighted else {}
    inputs = _inputs(case, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        loss, terms = _loss_and_terms(case, inputs, **overrides)
    kw = _functional_kwargs(case, **overrides)
    total = RELATIONS[case.functional](terms, kw)
    # Relative to the sum of the weighted terms' sizes: the loss may be a
    # difference of larger terms; the one rounding of each product and sum
    # is ~1e-16 of those sizes.
    relation = RELATIONS[case.functional]
    zeros = {n: torch.zeros_like(v) for n, v in terms.items()}
    scale = abs(float(loss)) + sum(abs(float(relation({**zeros, n: v}, kw))) for n, v in terms.items())
    assert abs(float(total) - float(loss)) <= 1e-12 * scale, (float(total), float(loss), terms)


def test_matrix_ssl_without_alignment_weight_leaves_the_alignment_term_out():
    z, p = _inputs(next(c for c in all_cases() if c.cls_name == "MatrixSSLLoss"))
    loss, terms = ML.MatrixSSLLoss(gamma=0.0, check_radius=False)(z, p, return_terms=True)
    assert set(terms) == {"uniformity"} and torch.equal(terms["uniformity"], loss.detach())
    logits, target, embedding = llm_inputs()
    loss, terms = MF.matrix_llm_loss(logits, target, embedding, mce_weight=0.0, return_terms=True)
    assert set(terms) == {"cross_entropy"} and torch.equal(terms["cross_entropy"], loss)


def test_matrix_llm_without_tokens_gives_zero_terms():
    logits, embedding = torch.zeros(0, 20, dtype=torch.float64), torch.randn(20, 6, dtype=torch.float64)
    loss, terms = ML.MatrixLLMLoss()(logits, torch.zeros(0, dtype=torch.long), embedding, return_terms=True)
    assert float(loss) == 0.0 and set(terms) == NAMES["matrix_llm_loss"]
    assert all(float(t) == 0.0 and t.ndim == 0 for t in terms.values())


def test_meta_tensors_give_the_term_names():
    z = torch.empty(8, 4, device="meta")
    loss, terms = MF.emp_ssl_loss(z, z, return_terms=True)
    assert loss.device.type == "meta" and set(terms) == {"tcr", "invariance"}
    loss, terms = MF.matrix_ssl_loss(z, z, return_terms=True)
    assert set(terms) == {"uniformity", "alignment"} and all(t.ndim == 0 for t in terms.values())


# --------------------------------------------------------------------------- #
# 3. Each term against an independent NumPy float64 transcription              #
# --------------------------------------------------------------------------- #
def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().numpy().astype(np.float64)


def _unit(z: np.ndarray) -> np.ndarray:
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def _logm_spd(M: np.ndarray) -> np.ndarray:
    w, U = np.linalg.eigh((M + M.T) / 2)
    return (U * np.log(w)) @ U.T


def _logdet(M: np.ndarray) -> float:
    sign, value = np.linalg.slogdet(M)
    assert sign > 0
    return float(value)


def _check_terms(terms: dict, expected: dict) -> None:
    assert set(terms) == set(expected)
    for name, value in expected.items():
        got = float(terms[name])
        assert abs(got - value) <= RTOL64 * max(1.0, abs(value)), (name, got, value)


def _pair():
    g = np.random.default_rng(11)
    z1 = g.standard_normal((B, D))
    z2 = z1 + 0.5 * g.standard_normal((B, D))
    return z1, z2


def test_vicreg_terms_against_numpy():
    z1, z2 = _pair()
    eps = 1e-4
    invariance = np.mean((z1 - z2) ** 2)
    variance = 0.0
    covariance = 0.0
    for z in (z1, z2):
        variance += np.mean(np.maximum(0.0, 1.0 - np.sqrt(np.var(z, axis=0, ddof=1) + eps))) / 2
        C = np.cov(z, rowvar=False)
        covariance += (np.sum(C**2) - np.sum(np.diag(C) ** 2)) / D
    _, terms = ML.VICRegLoss()(torch.tensor(z1), torch.tensor(z2), return_terms=True)
    _check_terms(terms, {"invariance": invariance, "variance": variance, "covariance": covariance})


def test_barlow_twins_terms_against_numpy():
    z1, z2 = _pair()

    def standardize(z):
        return (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)  # BatchNorm1d(affine=False), training mode

    c = standardize(z1).T @ standardize(z2) / B
    on = sum((1 - c[i, i]) ** 2 for i in range(D))
    off = sum(c[i, j] ** 2 for i in range(D) for j in range(D) if i != j)
    _, terms = ML.BarlowTwinsLoss()(torch.tensor(z1), torch.tensor(z2), return_terms=True)
    _check_terms(terms, {"on_diagonal": on, "off_diagonal": off})


def test_corinfomax_terms_against_numpy():
    z1, z2 = _pair()
    alpha, eps, f = 500.0, 1e-6, 0.01
    logdets = 0.0
    for z in (z1, z2):  # from the initial state: identity covariance, zero mean
        m = (1 - f) * z.mean(0)
        R = f * np.eye(D) + (1 - f) * (z - m).T @ (z - m) / B
        logdets += _logdet(R + eps * np.eye(D))
    _, terms = ML.CorInfoMaxLoss(D)(torch.tensor(z1), torch.tensor(z2), return_terms=True)
    _check_terms(terms, {"invariance": np.mean((z1 - z2) ** 2), "covariance": -logdets / D})
    assert alpha == ML.CorInfoMaxLoss(D).alpha


def test_simclr_and_spectral_contrastive_terms_against_numpy():
    z1, z2 = _pair()
    tau = 0.5
    n = np.concatenate([_unit(z1), _unit(z2)])
    s = n @ n.T / tau
    positive = [(a + B) % (2 * B) for a in range(2 * B)]
    alignment = -np.mean([s[a, positive[a]] for a in range(2 * B)])
    uniformity = np.mean([logsumexp(np.delete(s[a], a)) for a in range(2 * B)])
    _, terms = ML.SimCLRLoss(temperature=tau)(torch.tensor(z1), torch.tensor(z2), return_terms=True)
    _check_terms(terms, {"alignment": alignment, "uniformity": uniformity})

    mu = 2.0  # rows longer than sqrt(mu) are scaled back onto that sphere

    def project(z):
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        return np.where(norms > np.sqrt(mu), z * np.sqrt(mu) / norms, z)

    p1, p2 = project(z1), project(z2)
    assert (np.linalg.norm(z1, axis=1) > np.sqrt(mu)).any()
    alignment = -2.0 / B * sum(p1[i] @ p2[i] for i in range(B))
    uniformity = sum((p1[i] @ p2[j]) ** 2 for i in range(B) for j in range(B) if i != j) / (B * (B - 1))
    _, terms = ML.SpectralContrastiveLoss(mu=mu)(torch.tensor(z1), torch.tensor(z2), return_terms=True)
    _check_terms(terms, {"alignment": alignment, "uniformity": uniformity})


def _matrix_ssl_oracle(z, p, formulation, lam=1.0, mu=1.0):
    """Uniformity and alignment of eqs. 20-21 (exact), rows l2-normalized then centered."""
    zc, pc = _unit(z), _unit(p)
    zc, pc = zc - zc.mean(0), pc - pc.mean(0)
    n = B if formulation == "official" else B - 1
    C = pc.T @ zc / n
    eye = np.eye(D)
    trace_log = np.sum(np.log(np.linalg.eigvals(C + mu * eye))).real  # tr log of a non-symmetric matrix
    Ppp, Qzz = pc.T @ pc / n + mu * eye, zc.T @ zc / n + mu * eye
    if formulation == "official":
        uniformity = -lam * trace_log
        alignment = -np.trace(Ppp @ _logm_spd(Qzz))
    else:
        uniformity = -(1 / D + mu) * trace_log + np.trace(C) + D * mu
        alignment = np.trace(Ppp @ _logm_spd(Ppp) - Ppp @ _logm_spd(Qzz) - Ppp + Qzz)
    return uniformity, alignment


@pytest.mark.parametrize("formulation", ["official", "paper"])
def test_matrix_ssl_terms_against_numpy(formulation):
    z, p = _pair()
    uniformity, alignment = _matrix_ssl_oracle(z, p, formulation)
    criterion = ML.MatrixSSLLoss(method="exact", formulation=formulation, gamma=0.7)
    _, terms = criterion(torch.tensor(z), torch.tensor(p), return_terms=True)
    _check_terms(terms, {"uniformity": uniformity, "alignment": alignment})
    # The single-term losses give the same numbers under the same names.
    opts = {"method": "exact", "formulation": formulation}
    _, u = ML.MatrixKLUniformityLoss(**opts)(torch.tensor(z), torch.tensor(p), return_terms=True)
    _, a = ML.MatrixKLAlignmentLoss(**opts)(torch.tensor(z), torch.tensor(p), return_terms=True)
    _check_terms({**u, **a}, {"uniformity": uniformity, "alignment": alignment})


def _tcr_oracle(z, eps=0.2):
    u = _unit(z)
    return -0.5 * _logdet(np.eye(D) + D / (B * eps) * u.T @ u)


def test_tcr_emp_tcr_and_emp_ssl_terms_against_numpy():
    g = np.random.default_rng(5)
    base = g.standard_normal((B, D))
    views = [base + 0.4 * g.standard_normal((B, D)) for _ in range(3)]
    tv = [torch.tensor(v) for v in views]
    tcr = np.mean([_tcr_oracle(v) for v in views])
    _, terms = ML.TCRLoss()(*tv, return_terms=True)
    _check_terms(terms, {"tcr": tcr})
    units = [_unit(v) for v in views]
    mean = sum(units) / 3
    cosines = [u[b] @ mean[b] / (np.linalg.norm(u[b]) * np.linalg.norm(mean[b])) for u in units for b in range(B)]
    _, terms = ML.EMPSSLLoss()(*tv, return_terms=True)
    _check_terms(terms, {"tcr": tcr, "invariance": -np.mean(cosines)})
    concatenated = np.concatenate(units, axis=1)  # (B, 3 D): eq. 9's identity is 3 D x 3 D
    log_det = _logdet(np.eye(3 * D) + D / (B * 0.2) * concatenated.T @ concatenated)
    _, terms = ML.EMPTCRLoss()(*tv, return_terms=True)
    _check_terms(terms, {"log_det": log_det})


def test_mec_term_against_numpy():
    z, p = _pair()
    eps = 64.0
    lam = D / (B * eps)
    zu, pu = _unit(z), _unit(p)
    expected = -_logdet(np.eye(D) + lam * pu.T @ zu) / (B * lam)
    _, terms = ML.MECLoss(method="exact")(torch.tensor(z), torch.tensor(p), return_terms=True)
    _check_terms(terms, {"mec": expected})


def test_matrix_llm_terms_against_numpy():
    logits, target, embedding = llm_inputs(seed=2)
    target[[1, 6]] = -100
    L, t, E = logits.numpy(), target.numpy(), _unit(embedding.numpy())
    kept = [i for i in range(len(t)) if t[i] != -100]
    logq = log_softmax(L, axis=1)
    cross_entropy = np.mean([-logq[i, t[i]] for i in kept])
    eps = 1e-6
    mce = []
    for i in kept:
        q = np.exp(logq[i])
        Q = sum(q[j] * np.outer(E[j], E[j]) for j in range(len(q))) + eps * np.eye(E.shape[1])
        P = np.outer(E[t[i]], E[t[i]])
        mce.append(-np.trace(P @ _logm_spd(Q)) + np.trace(Q))
    _, terms = ML.MatrixLLMLoss(method="exact", mce_weight=0.5)(logits, target, embedding, return_terms=True)
    _check_terms(terms, {"cross_entropy": cross_entropy, "matrix_cross_entropy": np.mean(mce)})


# --------------------------------------------------------------------------- #
# 4. No recomputation                                                          #
# --------------------------------------------------------------------------- #
class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


# What building the terms may add: detaching, aliasing, and a few cheap
# reductions and scalar operations on tensors the forward already computed (the
# contrastive losses sum their two parts separately; Matrix-LLM takes the token
# means of its two per-token parts). Nothing else: no product, factorization,
# eigendecomposition, exp/log or host read.
ALLOWED_EXTRA = {
    "detach",
    "alias",
    "view",
    "_to_copy",
    "sum",
    "add",
    "neg",
    "div",
    "mul",
    "where",
    "zeros_like",
    "clamp_min",
    "stack",
    "unbind",
    "select",
    "scalar_tensor",
    "lift_fresh",
    "empty",
    "zeros",
    "full",  # the scalar of a torch.where (the NaN policy)
}


def test_op_counter_sees_the_heavy_ops():
    x = torch.randn(4, 4, dtype=torch.float64)
    with _CountOps() as counter:
        torch.linalg.eigh(x + x.T)
        x @ x
    assert counter.ops["linalg_eigh"] + counter.ops["_linalg_eigh"] >= 1 and counter.ops["mm"] == 1


@pytest.mark.parametrize("case", params())
def test_terms_add_no_recomputation(case):
    inputs = _inputs(case, grad=True)
    with _CountOps() as default_ops:
        _module(case)(*inputs)
    with _CountOps() as terms_ops:
        _module(case)(*inputs, return_terms=True)
    extra = terms_ops.ops - default_ops.ops
    assert set(extra) <= ALLOWED_EXTRA, f"{case.id}: the terms added {dict(extra)}"
    assert not (default_ops.ops - terms_ops.ops), f"{case.id}: ops removed {dict(default_ops.ops - terms_ops.ops)}"
    # A bound on the cheap extras: a handful per term.
    assert sum(extra.values()) <= 12 * len(NAMES[case.functional]), f"{case.id}: {dict(extra)}"


# --------------------------------------------------------------------------- #
# 5. torch.compile                                                             #
# --------------------------------------------------------------------------- #
# Few and small: compiling is slow here. aot_eager, as the suite's other
# compile tests (fullgraph tracing and AOT autograd, without code generation).
COMPILED = {
    "VICRegLoss": {},
    "BarlowTwinsLoss": {},
    "MatrixSSLLoss": {"check_radius": False},
    "TCRLoss": {},
}


@pytest.mark.parametrize("name", sorted(COMPILED))
def test_compiled_terms_match_eager(name):
    torch._dynamo.reset()
    cls = getattr(ML, name)
    g = torch.Generator().manual_seed(8)
    xs = [torch.randn(B, D, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)]  # a pair, 2 views
    criterion = cls(**COMPILED[name])
    compiled = torch.compile(criterion, fullgraph=True, backend="aot_eager")
    loss, terms = compiled(*xs, return_terms=True)
    eager_loss, eager_terms = criterion(*xs, return_terms=True)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-12, atol=1e-14)
    assert set(terms) == set(eager_terms)
    for k in terms:
        assert not terms[k].requires_grad
        torch.testing.assert_close(terms[k], eager_terms[k], rtol=1e-12, atol=1e-14)
    # The default call still compiles to the loss alone.
    torch.testing.assert_close(compiled(*xs), eager_loss, rtol=1e-12, atol=1e-14)
