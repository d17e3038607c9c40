"""Reliability under bad or unusual input: warnings, non-finite values,
argument validation, meta tensors, checkpoints, B = 1, mixed dtypes and the
Taylor log on non-normal matrices."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from loss_registry import all_cases, llm_inputs

import matrixinfo
import matrixinfo.functional as Fm
import matrixinfo.losses as L
import matrixinfo.metrics
from matrixinfo import MatrixInfoValueError, MatrixInfoWarning
from matrixinfo.metrics import CovarianceAccumulator

F64 = torch.float64


def _views(case, z1, z2):
    return (z1, z2) if case.kind == "pair" else (z1, z2, z2.clone())


def _build(case, d=8):
    return case.build(d) if case.needs_dim else case.build()


# --------------------------------------------------------------------------- #
# Item 3: one warning category, quiet by default                               #
# --------------------------------------------------------------------------- #
def test_training_loop_sees_the_taylor_warning_once_per_loss_instance():
    # Before: 254-462 RuntimeWarnings in such a loop (the figure in the message
    # defeats Python's once-per-text registry).
    torch.manual_seed(0)
    loss = L.TCRLoss(method="taylor")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own default action
        for _ in range(1000):
            loss(torch.randn(16, 8, dtype=F64))  # far outside the radius
    assert len(caught) == 1
    assert caught[0].category is MatrixInfoWarning
    assert loss.last_warning.startswith("tcr_loss: the Taylor series")
    other = L.TCRLoss(method="taylor")  # a second instance warns once too
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            other(torch.randn(16, 8, dtype=F64))
    assert len(caught) == 1


def test_latest_figure_stays_available():
    loss = L.TCRLoss(method="taylor")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("default")
        loss(torch.eye(4, dtype=F64).repeat(2, 1))
        first = loss.last_warning
        loss(torch.ones(8, 4, dtype=F64))  # a different radius estimate
    assert loss.last_warning != first and "tcr_loss" in loss.last_warning


def test_ignore_filter_on_the_category_silences_every_library_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=MatrixInfoWarning)
        L.TCRLoss(method="taylor")(torch.randn(16, 8, dtype=F64))
        matrixinfo.matrix_log(4 * torch.eye(3, dtype=F64), method="taylor")
        matrixinfo.matrix_entropy(torch.diag(torch.tensor([1.0, -1.0], dtype=F64)))
        matrixinfo.sylvester_logdet(torch.eye(3, dtype=F64), -2 * torch.eye(3, dtype=F64))
    assert caught == []


def test_every_library_warning_is_a_matrixinfo_warning():
    with pytest.warns(MatrixInfoWarning, match="outside its convergence radius"):
        matrixinfo.matrix_log(4 * torch.eye(3, dtype=F64), method="taylor")
    with pytest.warns(MatrixInfoWarning, match="not positive semi-definite"):
        matrixinfo.matrix_log(torch.diag(torch.tensor([1.0, -1.0], dtype=F64)))
    with pytest.warns(MatrixInfoWarning, match="not positive"):
        matrixinfo.sylvester_logdet(torch.eye(3, dtype=F64), -2 * torch.eye(3, dtype=F64))


# --------------------------------------------------------------------------- #
# Item 4: NaN/inf give NaN, never a LAPACK error or a warning                  #
# --------------------------------------------------------------------------- #
NON_FINITE = [pytest.param(float("nan"), id="nan"), pytest.param(float("inf"), id="inf")]


def _spd(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n, generator=g, dtype=F64)
    return X @ X.mT + torch.eye(n, dtype=F64)


CORE = {
    "matrix_log": lambda A, B: matrixinfo.matrix_log(A),
    "matrix_log[taylor]": lambda A, B: matrixinfo.matrix_log(A / 10, method="taylor"),
    "matrix_entropy": lambda A, B: matrixinfo.matrix_entropy(A),
    "von_neumann_entropy": lambda A, B: matrixinfo.von_neumann_entropy(A),
    "effective_rank": lambda A, B: matrixinfo.effective_rank(A),
    "matrix_cross_entropy[P]": lambda A, B: matrixinfo.matrix_cross_entropy(A, B),
    "matrix_cross_entropy[Q]": lambda A, B: matrixinfo.matrix_cross_entropy(B, A),
    "matrix_kl_divergence[P]": lambda A, B: matrixinfo.matrix_kl_divergence(A, B),
    "matrix_kl_divergence[Q]": lambda A, B: matrixinfo.matrix_kl_divergence(B, A),
    "sylvester_logdet": lambda A, B: matrixinfo.sylvester_logdet(A),
    "sylvester_logdet[Y]": lambda A, B: matrixinfo.sylvester_logdet(B, A),
}


@pytest.mark.parametrize("bad", NON_FINITE)
@pytest.mark.parametrize("name", sorted(CORE))
def test_core_functions_return_nan_for_non_finite_matrices(name, bad):
    # Before: _LinAlgError from eigh/svd for NaN; silently 0 or finite for inf.
    good = _spd(seed=1)
    A = torch.stack([_spd(), _spd(seed=2)])
    A[1, 0, 1] = bad
    out = CORE[name](A, good)  # pytest turns any warning into an error
    flat = out.reshape(2, -1)
    assert torch.isnan(flat[1]).all()
    assert torch.isfinite(flat[0]).all()  # the finite batch element is untouched
    clean = CORE[name](A[:1], good).reshape(1, -1)
    torch.testing.assert_close(flat[:1], clean, rtol=1e-12, atol=1e-12)


def test_effective_rank_of_an_all_inf_matrix_is_nan_not_zero():
    assert torch.isnan(matrixinfo.effective_rank(torch.full((3, 3), float("inf"), dtype=F64)))


def _loss_ids():
    return [pytest.param(c, id=c.id) for c in all_cases()]


@pytest.mark.parametrize("bad", NON_FINITE)
@pytest.mark.parametrize("case", _loss_ids())
def test_every_loss_returns_nan_for_non_finite_input(case, bad):
    # Before: _LinAlgError from MatrixSSLLoss(method="exact"), the exact
    # alignment, CorInfoMax and Matrix-LLM, after misleading warnings.
    g = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MatrixInfoWarning)  # Taylor radius warnings of the clean views
        if case.kind == "llm":
            logits, target, embedding = llm_inputs()
            logits[0, 0] = bad
            out = case.build()(logits, target, embedding)
            out_f = case.call_functional((logits, target, embedding))
        else:
            z1 = torch.randn(16, 8, generator=g, dtype=F64)
            z2 = torch.randn(16, 8, generator=g, dtype=F64)
            z1[2, 3] = bad
            out = _build(case)(*_views(case, z1, z2))
            out = out[0] if isinstance(out, tuple) else out
            out_f = case.call_functional(_views(case, z1, z2), **({"state": None} if case.returns_state else {}))
    assert torch.isnan(out) and torch.isnan(out_f)


@pytest.mark.parametrize("case", [c for c in _loss_ids() if c.values[0].kind != "llm"])
def test_non_finite_input_does_not_warn(case):
    # All views hold the bad value, so any warning would be about it.
    z = torch.randn(16, 8, dtype=F64)
    z[0, 0] = float("inf")
    out = _build(case)(*_views(case, z, z.clone()))  # check_radius on (the default): any warning fails
    out = out[0] if isinstance(out, tuple) else out
    assert torch.isnan(out)


# --------------------------------------------------------------------------- #
# Item 5: arguments                                                            #
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "make, pattern",
    [
        (
            lambda: L.MatrixLLMLoss(detach_embedding="False"),
            r"MatrixLLMLoss: expected detach_embedding to be True or False, got 'False'",
        ),
        (
            lambda: L.MatrixSSLLoss(check_radius="no"),
            r"MatrixSSLLoss: expected check_radius to be True or False, got 'no'",
        ),
        (
            lambda: L.TCRLoss(gather_distributed="yes"),
            r"TCRLoss: expected gather_distributed to be True or False, got 'yes'",
        ),
        (lambda: L.MECLoss(check_radius=0), r"MECLoss: expected check_radius to be True or False, got 0"),
        (lambda: L.MatrixSSLLoss(mu=float("inf")), r"MatrixSSLLoss: expected mu to be a finite real number, got inf"),
        (lambda: L.TCRLoss(eps=float("inf")), r"TCRLoss: expected eps to be a finite real number, got inf"),
        (lambda: L.VICRegLoss(mu_param=float("-inf")), r"VICRegLoss: expected mu_param to be a finite"),
        (lambda: L.MECLoss(lam_scale=2.0), r"MECLoss: expected lam_scale <= 1.0, got 2.0"),
        (lambda: L.MatrixLLMLoss(ignore_index=1.5), r"MatrixLLMLoss: expected ignore_index to be an integer, got 1.5"),
    ],
)
def test_constructors_reject_bad_arguments(make, pattern):
    with pytest.raises(MatrixInfoValueError, match=pattern):
        make()


def test_functionals_reject_bad_flags_and_numbers():
    z = torch.randn(8, 4, dtype=F64)
    with pytest.raises(MatrixInfoValueError, match=r"matrix_ssl_loss: expected check_radius to be True or False"):
        Fm.matrix_ssl_loss(z, z, check_radius="no")
    with pytest.raises(MatrixInfoValueError, match=r"tcr_loss: expected gather_distributed to be True or False"):
        Fm.tcr_loss(z, gather_distributed="yes")
    with pytest.raises(MatrixInfoValueError, match=r"simclr_loss: expected gather_distributed to be True or False"):
        Fm.simclr_loss(z, z, gather_distributed="yes")
    with pytest.raises(MatrixInfoValueError, match=r"matrix_kl_uniformity_loss: expected mu to be a finite"):
        Fm.matrix_kl_uniformity_loss(z, z, mu=float("inf"))
    with pytest.raises(MatrixInfoValueError, match=r"mec_loss: expected lam_scale <= 1.0, got 2.0"):
        Fm.mec_loss(z, z, lam_scale=2.0)
    logits, target, embedding = llm_inputs()
    with pytest.raises(MatrixInfoValueError, match=r"matrix_llm_loss: expected detach_embedding to be True or False"):
        Fm.matrix_llm_loss(logits, target, embedding, detach_embedding="False")


@pytest.mark.parametrize(
    "call, pattern",
    [
        (
            lambda: matrixinfo.matrix_log(torch.eye(2), check_radius="no"),
            r"matrix_log: expected check_radius to be True or False",
        ),
        (
            lambda: matrixinfo.matrix_kl_divergence(torch.eye(2), torch.eye(2), check_radius=1),
            r"matrix_kl_divergence: expected check_radius to be True or False, got 1",
        ),
        (
            lambda: matrixinfo.von_neumann_entropy(torch.eye(2), normalize="yes"),
            r"von_neumann_entropy: expected normalize",
        ),
        (
            lambda: CovarianceAccumulator(2).update(torch.eye(2)).covariance(center="False"),
            r"CovarianceAccumulator.covariance: expected center to be True or False, got 'False'",
        ),
        (
            lambda: matrixinfo.metrics.covariance_effective_rank(torch.eye(3), center=None),
            r"covariance_effective_rank: expected center to be True or False, got None",
        ),
        (
            lambda: CovarianceAccumulator(2, device="gpu"),
            r"CovarianceAccumulator: expected device to be a torch.device or a device string, got 'gpu'",
        ),
    ],
)
def test_core_and_metric_flags_must_be_bool(call, pattern):
    with pytest.raises(MatrixInfoValueError, match=pattern):
        call()


def test_matrix_llm_loss_reads_any_integer_target_dtype():
    # Before: torch's gather() dtype error for uint8.
    logits, target, embedding = llm_inputs()
    expected = Fm.matrix_llm_loss(logits, target, embedding)
    for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32):
        got = L.MatrixLLMLoss()(logits, target.to(dtype), embedding)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- #
# Item 6: meta tensors                                                         #
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "case", [c for c in _loss_ids() if c.values[0].cls_name not in ("CorInfoMaxLoss", "MatrixLLMLoss")]
)
def test_embedding_losses_infer_shapes_on_meta(case):
    z = torch.empty(16, 8, device="meta", dtype=torch.float32, requires_grad=True)
    out = _build(case)(*_views(case, z, z))
    assert out.device.type == "meta" and out.shape == () and out.dtype == torch.float32
    out.backward()
    assert z.grad.shape == z.shape


def test_host_reading_functions_say_they_need_data_on_meta():
    z = torch.empty(16, 8, device="meta", dtype=F64)
    with pytest.raises(
        MatrixInfoValueError,
        match=r"CovarianceAccumulator.update: expected batch on a device with data, got a meta tensor",
    ):
        CovarianceAccumulator(8, device="meta").update(z)
    with pytest.raises(MatrixInfoValueError, match=r"matrix_entropy: expected the input on a device with data"):
        matrixinfo.matrix_entropy(torch.empty(4, 4, device="meta"))
    with pytest.raises(MatrixInfoValueError, match=r"corinfomax_loss: expected z1 on a device with data"):
        L.CorInfoMaxLoss(8).to("meta")(z, z)
    with pytest.raises(MatrixInfoValueError, match=r"matrix_llm_loss: expected logits on a device with data"):
        L.MatrixLLMLoss()(
            torch.empty(6, 20, device="meta"),
            torch.zeros(6, dtype=torch.long, device="meta"),
            torch.empty(20, 4, device="meta"),
        )


# --------------------------------------------------------------------------- #
# Item 8: checkpointing CovarianceAccumulator                                  #
# --------------------------------------------------------------------------- #
def test_resumed_accumulator_equals_the_uninterrupted_one_exactly():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(int(n), 5, generator=g, dtype=torch.float32) + 3.0 for n in (7, 1, 12, 4, 9)]
    straight = CovarianceAccumulator(5)
    for b in batches:
        straight.update(b)
    first = CovarianceAccumulator(5)
    for b in batches[:2]:
        first.update(b)
    buffer = io.BytesIO()
    torch.save({"epoch": 3, "metric": first.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["metric"]
    resumed = CovarianceAccumulator(5).load_state_dict(state)
    for b in batches[2:]:
        resumed.update(b)
    assert resumed.count == straight.count == 33
    # Same operations on the same numbers in the same order: bit-equal on any CPU.
    assert torch.equal(resumed.covariance(), straight.covariance())
    assert torch.equal(resumed.mean, straight.mean)


def test_state_dict_holds_tensors_and_plain_numbers_and_map_location_decides_the_device():
    acc = CovarianceAccumulator(3).update(torch.randn(4, 3, dtype=F64))
    state = acc.state_dict()
    assert all(isinstance(v, (torch.Tensor, int, bool)) for v in state.values())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True, map_location="meta")
    resumed = CovarianceAccumulator(3).load_state_dict(loaded)
    assert resumed.state_dict()["mean"].device.type == "meta"
    with pytest.raises(MatrixInfoValueError, match=r"load_state_dict: expected state of dim 4, got dim 3"):
        CovarianceAccumulator(4).load_state_dict(state)


# --------------------------------------------------------------------------- #
# Item 9: B = 1 for per-sample means                                           #
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "cls, fn", [(L.BYOLLoss, Fm.byol_loss), (L.NegativeCosineSimilarityLoss, Fm.negative_cosine_similarity_loss)]
)
def test_per_sample_mean_losses_accept_one_sample(cls, fn):
    online = torch.tensor([[3.0, 4.0]], dtype=F64)
    target = torch.tensor([[4.0, 3.0]], dtype=F64)
    cosine = 24.0 / 25.0  # independent: (3*4 + 4*3) / (5 * 5)
    value = cls()(online, target)
    assert torch.equal(value, fn(online, target))
    if cls is L.BYOLLoss:
        assert math.isclose(float(value), 2.0 - 2.0 * cosine, rel_tol=1e-12)
    else:
        assert math.isclose(float(value), -cosine, rel_tol=1e-12)


# --------------------------------------------------------------------------- #
# Item 10: mixed dtypes follow torch's type promotion                          #
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("case", [c for c in _loss_ids() if c.values[0].kind != "llm"])
def test_mixed_dtypes_compute_in_the_promoted_dtype(case):
    # Before: the matrix losses computed in the first view's dtype (float32).
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(16, 8, generator=g, dtype=F64)
    z2 = torch.randn(16, 8, generator=g, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MatrixInfoWarning)
        mixed = _build(case)(*_views(case, z1.float(), z2))
        both = _build(case)(*_views(case, z1.float().double(), z2))
    mixed = mixed[0] if isinstance(mixed, tuple) else mixed
    both = both[0] if isinstance(both, tuple) else both
    assert mixed.dtype == torch.result_type(z1.float(), z2) == F64
    torch.testing.assert_close(mixed, both, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- #
# Item 11: the Taylor log on non-normal input                                  #
# --------------------------------------------------------------------------- #
def _al_mohy_higham_experiment_1():
    # The upper-triangular 4 x 4 test matrix of Al-Mohy & Higham (2012),
    # experiment 1, also in SciPy's logm tests: rho(A - I) is about 0.70.
    A = np.triu(np.full((4, 4), 3e4), 1)
    A[np.diag_indices(4)] = [3.2346e-1, 3.0089e-1, 3.2210e-1, 3.0744e-1]
    return A


def test_taylor_log_error_on_a_non_normal_matrix_exceeds_the_normal_bound():
    # Pins the figure quoted in the docstring of matrix_log and docs/numerics.rst.
    A = _al_mohy_higham_experiment_1()
    with warnings.catch_warnings():
        # SciPy's own accuracy estimate on this matrix is about 1e-7 relative
        # (it warns above 1000 eps): ample for an error of order 1 measured here.
        warnings.simplefilter("ignore", RuntimeWarning)
        exact = scipy.linalg.logm(A)
    rho = max(abs(np.linalg.eigvals(A - np.eye(4))))
    assert 0.69 < rho < 0.71  # inside the radius: no warning
    errors = {}
    for order in (4, 64):
        approx = matrixinfo.matrix_log(torch.tensor(A), method="taylor", order=order).numpy()
        errors[order] = np.linalg.norm(approx - exact) / np.linalg.norm(exact)
    assert rho**5 / 5 < 0.04 < 0.5 < errors[4]  # measured 0.91 against a normal-matrix bound of 0.033
    assert errors[64] < 1e-6  # measured 1.7e-8


def test_once_per_instance_warning_machinery_does_not_break_fullgraph_compile():
    # The loss modules attribute warnings to themselves through a context
    # variable; inside torch.compile that step is skipped (a compiled graph
    # reads nothing on the host, so it cannot warn).
    loss = L.MatrixKLAlignmentLoss(method="taylor", check_radius=False)
    z = torch.randn(16, 8, dtype=F64, generator=torch.Generator().manual_seed(0))
    compiled = torch.compile(loss, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(z, z + 0.1), loss(z, z + 0.1), rtol=1e-12, atol=1e-12)
