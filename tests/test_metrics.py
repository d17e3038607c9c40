"""Tests for matrixinfo.metrics.

Oracles are written independently in NumPy/SciPy float64 from the formulas
(two-pass covariance, ``scipy.linalg.eigvalsh``/``np.linalg.svd``,
``scipy.stats.entropy``, ``scipy.linalg.logm``), never by calling the code
under test.
"""

from __future__ import annotations

import math
import re
import sys

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _tolerances import RTOL32, RTOL64
from hypothesis import given
from hypothesis import strategies as st

import matrixinfo.metrics as metrics
import matrixinfo.metrics._common  # noqa: F401  (the block size is patched there)
from matrixinfo import MatrixInfoTypeError, MatrixInfoValueError
from matrixinfo.metrics import (
    CovarianceAccumulator,
    covariance_effective_rank,
    embedding_matrix_entropy,
    inter_class_effective_rank,
    intra_class_effective_rank,
    plot_spectrum,
    rankme,
)

# Tolerances (tests/_tolerances.py) are relative, on the metric or on the covariance's
# Frobenius norm; streamed vs one-shot and rotations / relabelings are float64: RTOL64.


# ----------------------------------------------------------------------------- oracles (NumPy/SciPy)


def np_second_moment(Z, center=True):
    Z = np.asarray(Z, dtype=np.float64)
    if center:
        Z = Z - Z.mean(axis=0)
    return Z.T @ Z / Z.shape[0]


def np_erank_of_eigenvalues(w):
    w = np.clip(np.asarray(w, dtype=np.float64), 0.0, None)
    if w.sum() == 0:
        return 0.0
    return float(np.exp(scipy.stats.entropy(w / w.sum())))


def np_erank(C):
    return np_erank_of_eigenvalues(scipy.linalg.eigvalsh(C))


def np_rankme(Z):
    s = np.linalg.svd(np.asarray(Z, dtype=np.float64), compute_uv=False)
    p = s / s.sum() + 1e-7
    return float(np.exp(-np.sum(p * np.log(p))))


def np_matrix_entropy_normalized(C):
    A = C / np.trace(C)
    return float(np.real(-np.trace(A @ scipy.linalg.logm(A)) + np.trace(A)))


def np_class_stats(Z, labels):
    Z = np.asarray(Z, dtype=np.float64)
    labels = np.asarray(labels)
    out = []
    for c in np.unique(labels):
        Zc = Z[labels == c]
        out.append((Zc.shape[0], Zc.mean(axis=0), Zc))
    return out


def np_intra(Z, labels):
    ranks = [np_erank(np_second_moment(Zc)) for n, _, Zc in np_class_stats(Z, labels) if n >= 2]
    return float(np.mean(ranks))


def np_inter(Z, labels, weighting="classes"):
    stats = np_class_stats(Z, labels)
    mu_g = np.asarray(Z, dtype=np.float64).mean(axis=0)
    K, N = len(stats), sum(n for n, _, _ in stats)
    B = sum((1.0 / K if weighting == "classes" else n / N) * np.outer(m - mu_g, m - mu_g) for n, m, _ in stats)
    return np_erank(B)


def assert_close(actual, expected, rtol, what=""):
    err = abs(actual - expected) / max(1.0, abs(expected))
    assert err <= rtol, f"{what}: got {actual!r}, expected {expected!r}, relative error {err:.3g} > {rtol:g}"


def rel_fro(A, B):
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


def anisotropic(n, d, seed, offset=0.0, dtype=torch.float64):
    """Embeddings with a spread spectrum and a common offset."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, -2, d, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    Z = (torch.randn(n, d, generator=g, dtype=torch.float64) * scales) @ Q.T + offset
    return Z.to(dtype)


def labelled(seed, d=12, sizes=(5, 40, 17, 2, 30)):
    """Classes smaller and larger than d (both code paths), shifted class means."""
    g = torch.Generator().manual_seed(seed)
    parts, labels = [], []
    for c, n in enumerate(sizes):
        mean = 3.0 * torch.randn(d, generator=g, dtype=torch.float64) + 7.0
        scale = torch.rand(d, generator=g, dtype=torch.float64) + 0.1
        parts.append(mean + scale * torch.randn(n, d, generator=g, dtype=torch.float64))
        labels += [10 * c + 3] * n  # arbitrary label values
    perm = torch.randperm(sum(sizes), generator=g)
    return torch.cat(parts)[perm], torch.tensor(labels)[perm]


# ----------------------------------------------------------------------------- API


def test_public_names_sorted_and_documented():
    assert metrics.__all__ == sorted(metrics.__all__)
    for name in metrics.__all__:
        obj = getattr(metrics, name)
        doc = obj.__doc__ or ""
        for section in ("Examples:", ">>>"):
            assert section in doc, f"{name} lacks {section!r} in its docstring"


# ----------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("as_numpy", [False, True], ids=["torch", "numpy"])
@pytest.mark.parametrize("center", [True, False])
def test_covariance_effective_rank_matches_oracle(as_numpy, center):
    Z = anisotropic(300, 20, seed=1, offset=0.5)
    expected = np_erank(np_second_moment(Z.numpy(), center))
    got = covariance_effective_rank(Z.numpy() if as_numpy else Z, center=center)
    assert isinstance(got, float)
    assert_close(got, expected, RTOL64, "covariance_effective_rank")


def test_covariance_effective_rank_float32_and_float16():
    Z = anisotropic(400, 16, seed=2, offset=3.0, dtype=torch.float32)
    expected = np_erank(np_second_moment(Z.double().numpy()))
    assert_close(covariance_effective_rank(Z), expected, RTOL32, "float32")
    Zh = Z.half()
    expected_h = np_erank(np_second_moment(Zh.double().numpy()))
    assert_close(covariance_effective_rank(Zh), expected_h, RTOL32, "float16 (computed in float32)")


def test_rankme_matches_oracle_and_differs_from_covariance_convention():
    Z = anisotropic(200, 24, seed=3, offset=1.0)
    assert_close(rankme(Z), np_rankme(Z.numpy()), RTOL64, "rankme")
    assert_close(rankme(Z.numpy()), np_rankme(Z.numpy()), RTOL64, "rankme numpy")
    # sigma (RankMe) versus sigma^2 (Prop. 3.6): on diag(2, 1) the conventions give p = (2/3, 1/3) and (4/5, 1/5).
    D = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    p = np.array([2 / 3 + 1e-7, 1 / 3 + 1e-7])
    assert_close(rankme(D), float(np.exp(-np.sum(p * np.log(p)))), RTOL64, "rankme diag")
    assert_close(
        covariance_effective_rank(D, center=False),
        float(np.exp(scipy.stats.entropy([0.8, 0.2]))),
        RTOL64,
        "sigma^2 convention",
    )


def test_rankme_wide_and_zero():
    Z = anisotropic(10, 30, seed=4)  # N < d
    assert_close(rankme(Z), np_rankme(Z.numpy()), RTOL64, "rankme N < d")
    assert rankme(torch.zeros(5, 3, dtype=torch.float64)) == 0.0


def test_embedding_matrix_entropy_matches_logm_oracle_and_prop_3_6():
    Z = anisotropic(500, 10, seed=5, offset=2.0)
    for center in (True, False):
        C = np_second_moment(Z.numpy(), center)
        me = embedding_matrix_entropy(Z, center=center)
        assert_close(me, np_matrix_entropy_normalized(C), RTOL64, "ME vs logm")
        # Prop. 3.6: erank = exp(ME - 1) = exp(VNE) for unit trace.
        assert_close(math.exp(me - 1), covariance_effective_rank(Z, center=center), RTOL64, "Prop. 3.6")
    # Isotropic maximum log d + 1: the +-1 design in d = 4 has covariance I exactly.
    H = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float64)
    Zi = torch.cat([H, -H])
    assert_close(embedding_matrix_entropy(Zi), math.log(4) + 1, RTOL64, "isotropic ME")
    assert_close(covariance_effective_rank(Zi), 4.0, RTOL64, "isotropic erank")


def test_constant_embeddings_give_zero():
    Z = torch.full((6, 3), 2.5, dtype=torch.float64)
    assert covariance_effective_rank(Z) == 0.0
    assert embedding_matrix_entropy(Z) == 0.0
    assert covariance_effective_rank(Z[:1]) == 0.0  # a single sample is constant


@pytest.mark.parametrize("as_numpy", [False, True], ids=["torch", "numpy"])
def test_intra_class_effective_rank_matches_oracle(as_numpy):
    Z, y = labelled(seed=6)
    args = (Z.numpy(), y.numpy()) if as_numpy else (Z, y)
    assert_close(intra_class_effective_rank(*args), np_intra(Z.numpy(), y.numpy()), RTOL64, "intra")


@pytest.mark.parametrize("weighting", ["classes", "samples"])
@pytest.mark.parametrize("d", [12, 3], ids=["K<d", "K>d"])
def test_inter_class_effective_rank_matches_oracle(weighting, d):
    Z, y = labelled(seed=7, d=d)
    got = inter_class_effective_rank(Z, y, weighting=weighting)
    assert_close(got, np_inter(Z.numpy(), y.numpy(), weighting), RTOL64, f"inter {weighting}")


def test_inter_class_weightings_differ_on_unbalanced_classes():
    # A deliberate reading of eq. 26: 1/K per class about the sample-weighted global mean.
    Z, y = labelled(seed=8, sizes=(3, 60, 9, 25))
    a = inter_class_effective_rank(Z, y)
    b = inter_class_effective_rank(Z, y, weighting="samples")
    assert abs(a - b) > 1e-3


def test_intra_class_counts_a_collapsed_class_as_zero():
    Z, y = labelled(seed=9, sizes=(6, 20))
    Z = Z.clone()
    Z[y == y[0]] = 1.5  # every sample of one class identical: variability collapse
    others = Z[y != y[0]].numpy()
    expected = (0.0 + np_erank(np_second_moment(others))) / 2
    assert_close(intra_class_effective_rank(Z, y), expected, RTOL64, "collapsed class")


def test_float32_class_metrics():
    Z, y = labelled(seed=10)
    Z32 = Z.float()
    Z64 = Z32.double().numpy()
    assert_close(intra_class_effective_rank(Z32, y), np_intra(Z64, y.numpy()), RTOL32, "intra f32")
    assert_close(inter_class_effective_rank(Z32, y), np_inter(Z64, y.numpy()), RTOL32, "inter f32")


# ----------------------------------------------------------------------------- properties


def test_isotropic_gaussian_effective_rank_approaches_d():
    d = 16
    g = torch.Generator().manual_seed(11)
    previous = 0.0
    for n in (1_000, 10_000, 100_000):
        value = covariance_effective_rank(torch.randn(n, d, generator=g, dtype=torch.float64))
        # The deficit is about d^2 / (2N) (Marchenko-Pastur variance d/N of the eigenvalues).
        assert d - d * d / n < value <= d, (n, value)
        assert value > previous
        previous = value


@pytest.mark.parametrize("K,d", [(5, 8), (4, 4)])
def test_simplex_etf_class_means_give_k_minus_1(K, d):
    g = torch.Generator().manual_seed(12)
    M = math.sqrt(K / (K - 1)) * (torch.eye(K, dtype=torch.float64) - 1.0 / K)  # Def. D.1, columns = means
    U, _ = torch.linalg.qr(torch.randn(d, K, generator=g, dtype=torch.float64))  # partial orthogonal
    offset = 5.0 * torch.randn(d, generator=g, dtype=torch.float64)
    parts, labels = [], []
    for c in range(K):
        noise = torch.randn(7, d, generator=g, dtype=torch.float64)
        noise -= noise.mean(0)  # class means exactly the ETF
        parts.append(offset + 2.0 * U @ M[:, c] + 0.3 * noise)
        labels += [c] * 7
    Z, y = torch.cat(parts), torch.tensor(labels)
    for weighting in ("classes", "samples"):
        assert_close(inter_class_effective_rank(Z, y, weighting=weighting), K - 1.0, RTOL64, "ETF")


def test_invariant_under_label_permutation():
    Z, y = labelled(seed=13)
    g = torch.Generator().manual_seed(14)
    classes = torch.unique(y)
    renamed = classes[torch.randperm(len(classes), generator=g)]
    y2 = renamed[torch.searchsorted(classes, y)]
    rows = torch.randperm(len(y), generator=g)
    for f in (intra_class_effective_rank, inter_class_effective_rank):
        assert_close(f(Z[rows], y2[rows]), f(Z, y), RTOL64, f.__name__)


def test_invariant_under_orthogonal_rotation():
    Z, y = labelled(seed=15)
    g = torch.Generator().manual_seed(16)
    Q, _ = torch.linalg.qr(torch.randn(Z.shape[1], Z.shape[1], generator=g, dtype=torch.float64))
    R = Z @ Q
    for f in (covariance_effective_rank, embedding_matrix_entropy, rankme):
        assert_close(f(R), f(Z), RTOL64, f.__name__)
    for f in (intra_class_effective_rank, inter_class_effective_rank):
        assert_close(f(R, y), f(Z, y), RTOL64, f.__name__)


# ----------------------------------------------------------------------------- streaming


def test_accumulator_matches_two_pass_oracle():
    Z = anisotropic(257, 9, seed=17, offset=-4.0)
    acc = CovarianceAccumulator(9)
    for chunk in torch.split(Z, [100, 1, 0, 56, 100]):
        acc.update(chunk.numpy() if chunk.shape[0] == 1 else chunk)
    assert acc.count == 257
    assert rel_fro(acc.mean, Z.numpy().mean(0)) <= RTOL64
    assert rel_fro(acc.covariance(), np_second_moment(Z.numpy())) <= RTOL64
    assert rel_fro(acc.covariance(center=False), np_second_moment(Z.numpy(), False)) <= RTOL64
    w = scipy.linalg.eigvalsh(np_second_moment(Z.numpy()))[::-1]
    assert rel_fro(acc.spectrum(), w) <= RTOL64
    assert torch.all(acc.spectrum()[:-1] >= acc.spectrum()[1:])
    assert_close(acc.effective_rank(), np_erank_of_eigenvalues(w), RTOL64, "accumulator erank")
    assert_close(
        acc.matrix_entropy(), np_matrix_entropy_normalized(np_second_moment(Z.numpy())), RTOL64, "accumulator ME"
    )
    assert repr(acc) == "CovarianceAccumulator(dim=9, count=257, device=cpu)"


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=8).filter(lambda s: sum(s) > 0),
    order=st.randoms(use_true_random=False),
    offset=st.sampled_from([0.0, 1e3, -1e4]),
)
def test_streaming_equals_one_shot_in_any_split_and_merge_order(sizes, order, offset):
    d = 5
    Z = anisotropic(sum(sizes), d, seed=len(sizes), offset=offset)
    one_shot = CovarianceAccumulator(d).update(Z)
    parts = [CovarianceAccumulator(d).update(chunk) for chunk in torch.split(Z, sizes)]
    order.shuffle(parts)
    while len(parts) > 1:  # merge random pairs: a random merge tree
        i, j = sorted(order.sample(range(len(parts)), 2))
        parts[i].merge(parts.pop(j))
    merged = parts[0]
    sequential = CovarianceAccumulator(d)
    for chunk in torch.split(Z, sizes):
        sequential.update(chunk)
    scale = float(np.linalg.norm(np_second_moment(Z.numpy())))
    for acc in (merged, sequential):
        assert acc.count == one_shot.count
        assert float((acc.covariance() - one_shot.covariance()).norm()) <= RTOL64 * scale
        assert float((acc.mean - one_shot.mean).norm()) <= RTOL64 * max(1.0, float(one_shot.mean.norm()))


def test_one_shot_metrics_equal_streamed_metrics():
    Z = anisotropic(1000, 7, seed=18, offset=10.0)
    acc = CovarianceAccumulator(7)
    for chunk in torch.split(Z, 333):
        acc.update(chunk)
    assert_close(acc.effective_rank(), covariance_effective_rank(Z), RTOL64, "erank")
    assert_close(acc.matrix_entropy(), embedding_matrix_entropy(Z), RTOL64, "ME")


def test_many_blocks_inside_one_batch(monkeypatch):
    # Force the row-block loop to run many times on a small input.
    monkeypatch.setattr(metrics._common, "_BLOCK_BYTES", 8 * 7 * 3)
    monkeypatch.setattr(metrics._common, "_MIN_BLOCK_ROWS", 3)
    Z = anisotropic(100, 7, seed=19, offset=1e4)
    acc = CovarianceAccumulator(7).update(Z)
    assert rel_fro(acc.covariance(), np_second_moment(Z.numpy())) <= 1e-9


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_large_offset_float32_chunks_keep_the_covariance(offset):
    # The raw sum of squares loses everything here in float32 (offset 1e4) and
    # keeps only ~3 digits in float64 at offset 1e6; the centered merge must not.
    d = 32
    Z = anisotropic(20_000, d, seed=20, offset=offset, dtype=torch.float32)
    acc = CovarianceAccumulator(d)
    for chunk in torch.split(Z, [4096, 3, 7000, 8901]):
        acc.update(chunk)
    Z64 = Z.double().numpy()  # the float32 data, exactly
    C = np_second_moment(Z64)  # two-pass float64 oracle
    # Measured (MKL, AVX-512): 1.1e-6 at offset 1e4, the error of the float32 GEMM on the centered data,
    # whose values the offset has quantized to multiples of 2^-10 (the GEMM's rounding errors then
    # stop cancelling). The naive formulas: 2.7e2 (float32) and 1.3e-3 (float64, offset 1e6).
    assert rel_fro(acc.covariance(), C) <= RTOL32
    assert rel_fro(acc.mean, Z64.mean(0)) <= 1e-12
    # The smallest eigenvalues are 1e-4 of the largest, so the erank amplifies that error (8e-6 measured).
    assert_close(acc.effective_rank(), np_erank(C), 10 * RTOL32, "erank with offset")


def test_bf16_autocast_does_not_lower_the_precision():
    # CPU bf16 autocast would turn the float32 GEMMs into bf16 (3 digits) if it were left on.
    Z = anisotropic(300, 8, seed=21, offset=2.0, dtype=torch.float32)
    Zc, y = labelled(seed=27)
    Zc = Zc.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        acc = CovarianceAccumulator(8).update(Z)
        values = [f(Z) for f in (covariance_effective_rank, rankme)]
        values += [f(Zc, y) for f in (intra_class_effective_rank, inter_class_effective_rank)]
    assert rel_fro(acc.covariance(), np_second_moment(Z.double().numpy())) <= RTOL32
    expected = [
        np_erank(np_second_moment(Z.double().numpy())),
        np_rankme(Z.double().numpy()),
        np_intra(Zc.double().numpy(), y.numpy()),
        np_inter(Zc.double().numpy(), y.numpy()),
    ]
    for got, want in zip(values, expected, strict=True):
        assert_close(got, want, RTOL32, "under autocast")


def test_accumulator_reset_and_empty_batch():
    acc = CovarianceAccumulator(3).update(torch.randn(4, 3))
    acc.update(torch.empty(0, 3))
    assert acc.count == 4
    acc.reset()
    assert acc.count == 0
    with pytest.raises(
        MatrixInfoValueError,
        match=re.escape("CovarianceAccumulator.covariance: expected at least 1 sample, got 0; call update() first."),
    ):
        acc.covariance()
    with pytest.raises(MatrixInfoValueError, match=r"CovarianceAccumulator\.mean: expected at least 1 sample"):
        _ = acc.mean


def test_all_reduce_without_process_group_changes_nothing_and_guards_double_reduction():
    Z = anisotropic(50, 4, seed=22)
    acc = CovarianceAccumulator(4).update(Z)
    before = acc.covariance()
    assert acc.all_reduce() is acc
    assert torch.equal(acc.covariance(), before)
    with pytest.raises(MatrixInfoValueError, match=r"CovarianceAccumulator\.all_reduce: .*already holds all processes"):
        acc.all_reduce()
    acc.reset().update(Z).all_reduce()  # reset clears the guard


# ----------------------------------------------------------------------------- torch.distributed (2 real processes)

_DIST_D = 6
_DIST_SPLIT = (37, 91)


def _dist_data():
    return anisotropic(sum(_DIST_SPLIT), _DIST_D, seed=23, offset=1e4)


def _all_reduce_worker(rank, world, init_method, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        Z = _dist_data()
        local = torch.split(Z, _DIST_SPLIT)[rank]
        acc = CovarianceAccumulator(_DIST_D)
        for chunk in torch.split(local, 10):
            acc.update(chunk)
        acc.all_reduce()
        try:
            acc.all_reduce()
            second = ""
        except MatrixInfoValueError as exc:
            second = str(exc)
        # A process that saw no samples (it must still take part).
        lopsided = CovarianceAccumulator(_DIST_D)
        if rank == 0:
            lopsided.update(Z)
        lopsided.all_reduce()
        torch.save(
            {
                "count": acc.count,
                "mean": acc.mean,
                "cov": acc.covariance(),
                "erank": acc.effective_rank(),
                "second": second,
                "lopsided_cov": lopsided.covariance(),
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_all_reduce_across_two_gloo_processes(tmp_path):
    # fork where it is safe (Linux, CPU only, one thread in the workers): spawn would re-import torch,
    # NumPy and SciPy in each child, 3-8 s on a loaded 2-core machine.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    init = f"file://{tmp_path}/rendezvous"
    mp.start_processes(_all_reduce_worker, args=(2, init, str(tmp_path)), nprocs=2, join=True, start_method=method)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    Z = _dist_data().numpy()
    C = np_second_moment(Z)
    for r in results:
        assert r["count"] == Z.shape[0]
        assert rel_fro(r["mean"], Z.mean(0)) <= RTOL64
        assert rel_fro(r["cov"], C) <= RTOL64
        assert rel_fro(r["lopsided_cov"], C) <= RTOL64
        assert_close(r["erank"], np_erank(C), RTOL64, "distributed erank")
        assert "already holds all processes" in r["second"]
    assert torch.equal(results[0]["cov"], results[1]["cov"])  # every process holds the same bits


# ----------------------------------------------------------------------------- plotting


def test_plot_spectrum_headless():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    Z = anisotropic(200, 6, seed=24)
    ax = plot_spectrum(Z, label="Z")
    try:
        assert ax.get_yscale() == "log"
        (line,) = ax.lines
        expected = scipy.linalg.eigvalsh(np_second_moment(Z.numpy()))[::-1]
        assert rel_fro(line.get_ydata(), expected) <= RTOL64
        assert list(line.get_xdata()) == [1, 2, 3, 4, 5, 6]
        assert line.get_label() == "Z"
        # Into a given Axes: an accumulator, and eigenvalues with a zero (left out), normalized.
        plot_spectrum(CovarianceAccumulator(6).update(Z), ax=ax)
        plot_spectrum(np.array([0.0, 3.0, 1.0]), ax=ax, normalize=True)
        assert len(ax.lines) == 3
        assert rel_fro(ax.lines[1].get_ydata(), expected) <= RTOL64
        assert list(ax.lines[2].get_ydata()) == [0.75, 0.25]
    finally:
        plt.close(ax.figure)


def test_plot_spectrum_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=re.escape('pip install "matrixinfo[plot]"')):
        plot_spectrum(torch.randn(10, 3))


# ----------------------------------------------------------------------------- bad input


def test_labels_of_the_wrong_length():
    Z = torch.randn(100, 4, dtype=torch.float64)
    with pytest.raises(
        MatrixInfoValueError,
        match=re.escape("intra_class_effective_rank: expected labels to have shape (N,) with N = 100, got (99,)."),
    ):
        intra_class_effective_rank(Z, torch.zeros(99, dtype=torch.long))
    with pytest.raises(
        MatrixInfoValueError,
        match=re.escape("inter_class_effective_rank: expected labels to have shape (N,) with N = 100, got (100, 1)."),
    ):
        inter_class_effective_rank(Z, np.zeros((100, 1), dtype=np.int64))
    with pytest.raises(ValueError):  # also a builtin ValueError
        intra_class_effective_rank(Z, torch.zeros(99, dtype=torch.long))


def test_labels_must_be_integers():
    with pytest.raises(
        MatrixInfoTypeError,
        match=re.escape("intra_class_effective_rank: expected labels to have an integer dtype, got torch.float32."),
    ):
        intra_class_effective_rank(torch.randn(4, 2), torch.zeros(4))


def test_single_sample_classes_warn_and_are_left_out():
    Z, y = labelled(seed=25, sizes=(10, 1, 20, 1))
    keep = np.isin(y.numpy(), [c for c in np.unique(y.numpy()) if (y.numpy() == c).sum() >= 2])
    expected = np_intra(Z.numpy()[keep], y.numpy()[keep])
    with pytest.warns(
        RuntimeWarning, match=re.escape("intra_class_effective_rank: 2 of 4 classes have a single sample")
    ):
        got = intra_class_effective_rank(Z, y)
    assert_close(got, expected, RTOL64, "singletons left out")


def test_only_single_sample_classes_raise():
    with pytest.raises(
        MatrixInfoValueError,
        match=re.escape(
            "intra_class_effective_rank: expected at least one class with 2 or more samples, "
            "got 3 classes of 1 sample each."
        ),
    ):
        intra_class_effective_rank(torch.randn(3, 2), torch.tensor([0, 1, 2]))


def test_inter_class_needs_two_classes_and_a_known_weighting():
    Z = torch.randn(5, 2)
    with pytest.raises(
        MatrixInfoValueError,
        match=re.escape("inter_class_effective_rank: expected labels with at least 2 distinct classes, got 1."),
    ):
        inter_class_effective_rank(Z, torch.zeros(5, dtype=torch.long))
    with pytest.raises(
        MatrixInfoValueError,
        match=re.escape(
            "inter_class_effective_rank: expected weighting to be one of 'classes', 'samples', got 'sizes'."
        ),
    ):
        inter_class_effective_rank(Z, torch.tensor([0, 0, 1, 1, 1]), weighting="sizes")


@pytest.mark.parametrize("f", [covariance_effective_rank, embedding_matrix_entropy, rankme])
def test_nan_in_embeddings(f):
    Z = torch.randn(20, 3, dtype=torch.float64)
    Z[3, 1] = float("nan")
    Z[7, 0] = float("inf")
    with pytest.raises(
        MatrixInfoValueError,
        match=re.escape(f"{f.__name__}: expected Z to contain only finite values, got 2 NaN or inf entries."),
    ):
        f(Z)


def test_nan_in_class_metrics():
    Z, y = labelled(seed=26)
    Z[0, 0] = float("nan")
    for f in (intra_class_effective_rank, inter_class_effective_rank):
        with pytest.raises(
            MatrixInfoValueError,
            match=re.escape(f"{f.__name__}: expected Z to contain only finite values, got 1 NaN or inf entries."),
        ):
            f(Z, y)


def test_rejected_batch_leaves_the_accumulator_unchanged():
    acc = CovarianceAccumulator(3).update(torch.randn(10, 3, dtype=torch.float64))
    before = acc.covariance()
    bad = torch.randn(5, 3, dtype=torch.float64)
    bad[2, 2] = float("nan")
    with pytest.raises(
        MatrixInfoValueError,
        match=re.escape(
            "CovarianceAccumulator.update: expected batch to contain only finite values, got 1 NaN or inf entries."
        ),
    ):
        acc.update(bad)
    assert acc.count == 10
    assert torch.equal(acc.covariance(), before)


def test_float32_overflow_is_reported():
    Z = torch.full((4, 2), 1e30)
    Z[0] = -1e30
    with pytest.raises(MatrixInfoValueError, match=r"second moments of Z overflowed in torch\.float32"):
        covariance_effective_rank(Z)


def test_wrong_dimensionality_and_types():
    with pytest.raises(
        MatrixInfoValueError,
        match=re.escape("covariance_effective_rank: expected Z to have shape (N, d) with N >= 1 and d >= 1, got (5,)."),
    ):
        covariance_effective_rank(torch.randn(5))
    with pytest.raises(
        MatrixInfoValueError,
        match=re.escape("rankme: expected Z to have shape (N, d) with N >= 1 and d >= 1, got (0, 3)."),
    ):
        rankme(torch.randn(0, 3))
    with pytest.raises(
        MatrixInfoValueError,
        match=re.escape("CovarianceAccumulator.update: expected batch to have shape (n, 4), got (10, 5)."),
    ):
        CovarianceAccumulator(4).update(torch.randn(10, 5))
    with pytest.raises(
        MatrixInfoValueError,
        match=re.escape(
            "plot_spectrum: expected data to have shape (N, d) (embeddings) or (d,) (eigenvalues), got (2, 3, 4)."
        ),
    ):
        plot_spectrum(torch.randn(2, 3, 4), ax=object())
    with pytest.raises(
        MatrixInfoTypeError,
        match=re.escape("covariance_effective_rank: expected Z to be a torch.Tensor or a numpy.ndarray, got list."),
    ):
        covariance_effective_rank([[1.0, 2.0]])
    with pytest.raises(
        MatrixInfoTypeError,
        match=re.escape(
            "rankme: expected Z to have a real floating dtype (float16, bfloat16, float32 or float64), got torch.int64."
        ),
    ):
        rankme(np.ones((3, 2), dtype=np.int64))
    with pytest.raises(
        MatrixInfoValueError, match=re.escape("CovarianceAccumulator: expected dim to be an integer >= 1, got 0.")
    ):
        CovarianceAccumulator(0)


def test_merge_checks_its_argument():
    acc = CovarianceAccumulator(3)
    with pytest.raises(
        MatrixInfoValueError, match=re.escape("CovarianceAccumulator.merge: expected other to have dim = 3, got 4.")
    ):
        acc.merge(CovarianceAccumulator(4))
    with pytest.raises(
        MatrixInfoTypeError,
        match=re.escape("CovarianceAccumulator.merge: expected other to be a CovarianceAccumulator, got Tensor."),
    ):
        acc.merge(torch.zeros(3))
