"""Tests for the monitoring metrics of matrixinfo.metrics (LiDAR, alpha-ReQ, NESum, stable rank,
alignment, uniformity) and for EmbeddingMonitor.

Oracles are NumPy/SciPy float64 code written here from the formulas, and
independent transcriptions of the reference implementations, each naming the
code path it follows; never the code under test.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.stats
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import matrixinfo.metrics._spectral_metrics as spectral_metrics
from matrixinfo import MatrixInfoTypeError, MatrixInfoValueError
from matrixinfo.metrics import (
    CovarianceAccumulator,
    EmbeddingMonitor,
    LidarAccumulator,
    alignment,
    alpha_req,
    lidar,
    nesum,
    stable_rank,
    uniformity,
)
from matrixinfo.metrics._common import _gram
from matrixinfo.metrics._spectral_metrics import _CenteredGram

RTOL = {
    "float64": 1e-10,  # float64 inputs against float64 oracles
    "float32": 1e-5,  # float32 inputs against float64 oracles on the same (float32-rounded) data
}


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def rotation(d, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def with_spectrum(values, seed=0, offset=0.0):
    """Rows +-sqrt(d * lambda_k) e_k, rotated: mean 0 (+ offset), covariance exactly Q diag(values) Q^T."""
    values = np.asarray(values, dtype=np.float64)
    d = values.size
    rows = np.diag(np.sqrt(d * values))
    Z = np.concatenate([rows, -rows]) @ rotation(d, seed).T
    return torch.from_numpy(Z + offset)


# ----------------------------------------------------------------------------- reference transcriptions


def np_lidar_stable_pretraining(Z, delta=1e-4, eps=1e-8):
    """stable-pretraining, stable_pretraining/callbacks/lidar.py, LiDAR._compute_lidar (float64 NumPy)."""
    Z = np.asarray(Z, dtype=np.float64)
    n, q, d = Z.shape
    mu_i = Z.mean(axis=1)
    mu = mu_i.mean(axis=0)
    Sb = (mu_i - mu).T @ (mu_i - mu) / (n - 1)
    R = (Z - mu_i[:, None, :]).reshape(-1, d)
    Sw = R.T @ R / (n * (q - 1)) + delta * np.eye(d)
    w, V = np.linalg.eigh(Sw)
    w = np.maximum(w, eps)
    W = (V / np.sqrt(w)) @ V.T
    S = W @ Sb @ W
    lam = np.maximum(np.linalg.eigvalsh((S + S.T) / 2), 0.0)
    p = (lam + eps) / (lam + eps).sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def np_lidar_reptrix(Z, delta=1e-6):
    """reptrix, reptrix/lidar.py get_lidar with utils.get_eigenspectrum (PCA ratios) and get_rank (eps 1e-7)."""
    Z = np.asarray(Z, dtype=np.float64)
    mu_i = Z.mean(axis=1, keepdims=True)
    c = (mu_i - mu_i.mean(axis=0, keepdims=True))[:, 0, :]
    s_obj = c.T @ c
    r = Z - mu_i
    s_aug = np.einsum("nqa,nqb->ab", r, r) / Z.shape[0] + delta * np.eye(Z.shape[2])
    w, V = np.linalg.eigh(s_aug)
    W = (V / np.sqrt(w)) @ V.T
    L = W @ s_obj @ W
    Lc = L - L.mean(axis=0)
    sv = np.linalg.svd(Lc, compute_uv=False)
    ratio = sv**2 / (sv**2).sum()
    p = ratio / np.abs(ratio).sum() + 1e-7
    return float(np.exp(-(p * np.log(p)).sum()))


def np_alpha_reptrix(Z, trange0=None):
    """reptrix, reptrix/alpha.py get_alpha -> utils.get_eigenspectrum (PCA explained-variance ratios of the
    centered features) -> get_powerlaw (weighted normal equations, weights 1/i, 1-based i = trange0 + 1)."""
    trange0 = np.arange(10, 100) if trange0 is None else trange0
    Z = np.asarray(Z, dtype=np.float64)
    Zc = Z - Z.mean(axis=0)
    ev = np.linalg.svd(Zc, compute_uv=False) ** 2
    ratio = ev / ev.sum()
    y = np.log(np.abs(ratio))[trange0]
    i = trange0 + 1.0
    X = np.stack([-np.log(i), np.ones_like(i)], axis=1)
    w = (1.0 / i)[:, None]
    b = np.linalg.solve(X.T @ (X * w), (X * w).T @ y)
    return float(b[0])


def np_cov_eigenvalues(Z):
    Z = np.asarray(Z, dtype=np.float64)
    Zc = Z - Z.mean(axis=0)
    return np.sort(scipy.linalg.eigvalsh(Zc.T @ Zc / Z.shape[0]))[::-1]


def np_nesum(Z):
    """He & Ozay (2022): sum_i lambda_i / lambda_1 of the covariance."""
    lam = np_cov_eigenvalues(Z)
    return float((lam / lam[0]).sum())


def np_align(x, y, alpha=2):
    """SsnL/align_uniform, align_uniform/__init__.py align_loss, on rows normalized here."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return float((np.linalg.norm(x - y, axis=1) ** alpha).mean())


def np_uniform(x, t=2):
    """SsnL/align_uniform, align_uniform/__init__.py uniform_loss (pdist squared), on rows normalized here."""
    x = np.asarray(x, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sq = scipy.spatial.distance.pdist(x, "sqeuclidean")
    return float(np.log(np.exp(-t * sq).mean()))


def views(n, q, d, seed, spread=1.0):
    g = np.random.default_rng(seed)
    means = g.standard_normal((n, 1, d)) * np.linspace(2.0, 0.2, d)
    return torch.from_numpy(means + spread * g.standard_normal((n, q, d)))


# ----------------------------------------------------------------------------- LiDAR


def test_lidar_matches_stable_pretraining_transcription():
    for seed, (n, q, d) in enumerate([(20, 4, 8), (6, 3, 16), (40, 2, 5)]):
        Z = views(n, q, d, seed)
        assert rel(lidar(Z), np_lidar_stable_pretraining(Z.numpy())) <= RTOL["float64"]
        assert rel(lidar(Z, delta=0.5, eps=1e-3), np_lidar_stable_pretraining(Z.numpy(), 0.5, 1e-3)) <= RTOL["float64"]
    Z32 = views(30, 4, 8, 7).float()
    assert rel(lidar(Z32.numpy()), np_lidar_stable_pretraining(Z32.double().numpy())) <= RTOL["float32"]


@pytest.mark.parametrize("r", [1, 3, 6])
def test_lidar_closed_form_rank_r_and_full_rank(r):
    # Views +-e_k around each sample mean: isotropic within-sample scatter. Sample means +-10 e_k, k <= r:
    # a between-sample scatter with r equal eigenvalues -> LiDAR = r (d = 6: full rank at r = 6).
    d = 6
    eye = np.eye(d)
    vw = np.concatenate([eye, -eye])
    means = 10 * np.concatenate([eye[:r], -eye[:r]])
    Z = torch.from_numpy(means[:, None, :] + vw[None, :, :])
    assert rel(lidar(Z, eps=0.0), r) <= RTOL["float64"]


def test_lidar_deviation_from_reptrix_convention():
    # Named deviation: reptrix takes unnormalized scatters and PCA ratios of the rows of the LiDAR matrix,
    # so the same name gives another number on the same views (see lidar's docstring).
    Z = views(20, 4, 8, 3).numpy()
    assert rel(np_lidar_reptrix(Z), lidar(Z)) > 0.05
    # Complete collapse: the reference's eps gives d, lidar gives 0 (the erank of a zero matrix).
    const = torch.ones(4, 3, 5, dtype=torch.float64)
    assert rel(np_lidar_stable_pretraining(const.numpy()), 5.0) <= 1e-10
    assert lidar(const) == 0.0


def test_lidar_streams():
    Z = views(45, 3, 7, 11)
    acc = LidarAccumulator(7)
    for batch in torch.split(Z, 8):
        acc.update(batch)
    assert rel(acc.compute(), lidar(Z)) <= RTOL["float64"]
    assert rel(acc.compute(delta=0.3, eps=0.0), np_lidar_stable_pretraining(Z.numpy(), 0.3, 0.0)) <= RTOL["float64"]
    q_msg = r"LidarAccumulator.update: expected batch to have shape \(b, 3, 7\), got \(2, 4, 7\)"
    with pytest.raises(MatrixInfoValueError, match=q_msg):
        acc.update(torch.zeros(2, 4, 7))
    with pytest.raises(MatrixInfoValueError, match="LidarAccumulator.compute: expected at least 2 samples, got 0"):
        LidarAccumulator(7).compute()


def test_lidar_errors():
    shape_msg = r"lidar: expected embeddings to have shape \(n, q, d\).*got \(4, 1, 3\)"
    with pytest.raises(MatrixInfoValueError, match=shape_msg):
        lidar(torch.zeros(4, 1, 3))
    with pytest.raises(MatrixInfoValueError, match="lidar: expected delta > 0"):
        lidar(torch.zeros(4, 2, 3), delta=0.0)
    bad = torch.zeros(4, 2, 3)
    bad[1, 1, 1] = math.nan
    with pytest.raises(MatrixInfoValueError, match="lidar: expected embeddings to contain only finite values, got 1"):
        lidar(bad)
    with pytest.raises(MatrixInfoTypeError, match="lidar: expected embeddings to be a torch.Tensor"):
        lidar([[1.0]])


# ----------------------------------------------------------------------------- alpha-ReQ


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.3])
def test_alpha_req_exact_power_law(alpha):
    d = 128
    Z = with_spectrum(np.arange(1, d + 1.0) ** -alpha, seed=1, offset=3.0)
    assert rel(alpha_req(Z), alpha) <= 1e-9  # eigenvalues spanning 1 .. 1e-5 relative: eigh's relative accuracy
    assert rel(alpha_req(Z, fit_range=(2, 50)), alpha) <= 1e-9
    acc = CovarianceAccumulator(d)
    for chunk in torch.split(Z, 37):
        acc.update(chunk)
    assert rel(acc.alpha_req(), alpha) <= 1e-9


def test_alpha_req_matches_reptrix_transcription():
    g = np.random.default_rng(5)
    Z = g.standard_normal((600, 150)) * np.arange(1, 151) ** -0.6 @ rotation(150, 2)
    assert rel(alpha_req(Z), np_alpha_reptrix(Z)) <= RTOL["float64"]
    assert rel(alpha_req(Z, fit_range=(3, 40)), np_alpha_reptrix(Z, np.arange(2, 40))) <= RTOL["float64"]


def test_alpha_req_range_beyond_d_or_rank_is_an_error():
    beyond_d = r"alpha_req: expected at least 100 eigenvalues for fit_range=\(11, 100\), got d = 64"
    with pytest.raises(MatrixInfoValueError, match=beyond_d):
        alpha_req(torch.randn(500, 64))
    low_rank = torch.randn(500, 10, dtype=torch.float64) @ torch.randn(10, 40, dtype=torch.float64)
    rank_msg = "alpha_req: expected positive covariance eigenvalues at indices 2..20, got 10"
    with pytest.raises(MatrixInfoValueError, match=rank_msg):
        alpha_req(low_rank, fit_range=(2, 20))
    with pytest.raises(MatrixInfoValueError, match="alpha_req: expected fit_range to be a pair"):
        alpha_req(torch.randn(50, 4), fit_range=3)
    with pytest.raises(MatrixInfoValueError, match=r"alpha_req: expected fit_range\[1\] to be an integer >= 3"):
        alpha_req(torch.randn(50, 4), fit_range=(2, 2))


# ----------------------------------------------------------------------------- NESum and stable rank


def test_nesum_and_stable_rank_closed_forms():
    d = 40
    iso = with_spectrum(np.ones(d), seed=2, offset=100.0)  # isotropic -> full rank d
    assert rel(nesum(iso), d) <= RTOL["float64"]
    assert rel(stable_rank(iso), d) <= RTOL["float64"]
    for r in (1, 7):  # r equal eigenvalues -> r
        Z = with_spectrum(np.r_[np.ones(r), np.zeros(d - r)], seed=3)
        assert rel(nesum(Z), r) <= RTOL["float64"]
        assert rel(CovarianceAccumulator(d).update(Z).nesum(), r) <= RTOL["float64"]
    assert nesum(torch.ones(5, 3)) == 0.0 and stable_rank(torch.zeros(5, 3), center=False) == 0.0


@pytest.mark.parametrize("d, steps", [(5, 5), (64, 64), (144, 144), (300, 12)])
def test_nesum_against_eigendecomposition(d, steps):
    g = np.random.default_rng(d)
    scale = np.linspace(3.0, 0.1, d) if d <= 144 else np.arange(1, d + 1) ** -0.5  # d = 300: a gap at the top
    Z = g.standard_normal((2 * d + 50, d)) * scale @ rotation(d, d) + 7.0
    exact = np_nesum(Z)
    est = nesum(Z, steps=steps)
    # steps >= d: the Krylov space is all of R^d, exact. d = 300: a spectrum with a gap at the top converges
    # to rounding in 12 steps too; NESum's estimate can only be too large (its lambda_max is a Ritz lower bound).
    assert rel(est, exact) <= RTOL["float64"]
    assert est >= exact * (1 - 1e-12)
    assert rel(stable_rank(Z, steps=steps), exact) <= RTOL["float64"]
    Z32 = torch.from_numpy(Z).float()
    assert rel(nesum(Z32, steps=steps), np_nesum(Z32.double().numpy())) <= RTOL["float32"]


def test_nesum_isotropic_gaussian_accuracy():
    # The hard case for the Krylov estimate: no gap at the top of a Marchenko-Pastur spectrum.
    # The default steps=12 is within 3e-2 there (measured 5.1e-3 and 1.8e-2); steps=32 within 1e-3
    # (measured 1e-6 and 1e-7). Both only overestimate.
    for seed, Z in enumerate(
        [
            np.random.default_rng(0).standard_normal((4000, 400)),
            np.random.default_rng(1).standard_normal((3000, 300)) * np.linspace(3.0, 0.1, 300),  # no gap either
        ]
    ):
        exact = np_nesum(Z)
        assert exact <= nesum(Z) <= 1.03 * exact, seed
        assert exact <= nesum(Z, steps=32) <= (1 + 1e-3) * exact, seed


@pytest.mark.parametrize("d", [100, 700, 1100, 2100])  # 1 tile (one product), 2, 4 uneven, 8 uneven
def test_gram_by_upper_tiles_against_numpy(d):
    # The Gram matrix behind the covariance, LiDAR and the accumulator: the tiles on and above the diagonal
    # are multiplied, the rest mirrored.
    y = np.random.default_rng(d).standard_normal((37, d))
    got = _gram(torch.from_numpy(y)).numpy()
    want = y.T @ y
    assert np.linalg.norm(got - want) <= RTOL["float64"] * np.linalg.norm(want)
    got32 = _gram(torch.from_numpy(np.float32(y))).double().numpy()
    want32 = np.float32(y).astype(np.float64).T @ np.float32(y).astype(np.float64)
    assert np.linalg.norm(got32 - want32) <= RTOL["float32"] * np.linalg.norm(want32)


def offset_blocks(n, d, offset, seed):
    """Rows in four sorted groups with different means around a common offset: the rows whose mean
    shifts Z before the products see all groups, and the mean they miss is corrected afterwards."""
    g = np.random.default_rng(seed)
    means = offset + 5.0 * g.standard_normal((4, 1, d))
    return (means + g.standard_normal((4, n // 4, d)) * np.linspace(2.0, 0.5, d)).reshape(n, d)


@pytest.mark.parametrize("center", [True, False])
def test_centered_gram_product_against_numpy(center, monkeypatch):
    # The product behind nesum and stable_rank: Y^T Y v without a centered copy of Z, from a shifted pass
    # and a float64 rank-one correction. Float64 data with a mean offset of 1e6 (cancellation would cost
    # 12 digits without the shift), in blocks of 64 rows (the smallest; the last one partial), so the
    # sums cross blocks.
    monkeypatch.setattr(spectral_metrics, "_SKINNY_BYTES", 1)
    n, d = 4000, 48
    Z = offset_blocks(n, d, 1e6 if center else 3.0, seed=4)
    Y = Z - Z.mean(axis=0) if center else Z
    v = np.random.default_rng(5).standard_normal((d, 2))
    gram = _CenteredGram(torch.from_numpy(Z), center)
    assert len(gram.blocks) == 63
    first = gram.times(torch.from_numpy(v[:, 0])).numpy()  # computes the sums on the way
    second = gram.times(torch.from_numpy(v[:, 1])).numpy()
    want = Y.T @ (Y @ v)
    assert np.linalg.norm(first - want[:, 0]) <= RTOL["float64"] * np.linalg.norm(want[:, 0])
    assert np.linalg.norm(second - want[:, 1]) <= RTOL["float64"] * np.linalg.norm(want[:, 1])
    assert rel(gram.sum_squares, float(np.sum(Y**2))) <= RTOL["float64"]
    # float32: the offset 1e3 is removed exactly (entries within a factor 2 of the shift subtract exactly).
    Z32 = offset_blocks(n, d, 1e3 if center else 3.0, seed=6).astype(np.float32)
    Y32 = Z32.astype(np.float64) - (Z32.astype(np.float64).mean(axis=0) if center else 0.0)
    gram = _CenteredGram(torch.from_numpy(Z32), center)
    got = gram.times(torch.from_numpy(v[:, 0])).numpy()
    want = Y32.T @ (Y32 @ v[:, 0])
    assert np.linalg.norm(got - want) <= RTOL["float32"] * np.linalg.norm(want)
    assert rel(gram.sum_squares, float(np.sum(Y32**2))) <= RTOL["float32"]


def test_nesum_and_stable_rank_with_a_large_mean_offset(monkeypatch):
    monkeypatch.setattr(spectral_metrics, "_SKINNY_BYTES", 1)  # blocks of 64 rows
    n, d = 3000, 40
    Z = offset_blocks(n, d, 1e6, seed=7)
    Y = Z - Z.mean(axis=0)
    want = np.sum(Y**2) / np.linalg.norm(Y, 2) ** 2
    assert rel(nesum(Z, steps=d), np_nesum(Z)) <= RTOL["float64"]
    assert rel(stable_rank(Z, steps=d), want) <= RTOL["float64"]
    assert rel(np_nesum(Z), want) <= RTOL["float64"]  # the two oracles agree


def test_stable_rank_uncentered_against_norms():
    Z = np.random.default_rng(1).standard_normal((30, 12)) + 2.0
    want = np.linalg.norm(Z, "fro") ** 2 / np.linalg.norm(Z, 2) ** 2
    assert rel(stable_rank(Z, center=False), want) <= RTOL["float64"]
    acc = CovarianceAccumulator(12).update(Z)
    assert rel(acc.stable_rank(center=False), want) <= RTOL["float64"]


def test_nesum_errors():
    with pytest.raises(MatrixInfoValueError, match=r"nesum: expected Z to have shape \(N, d\)"):
        nesum(torch.zeros(3))
    with pytest.raises(MatrixInfoValueError, match="stable_rank: expected Z to contain only finite values"):
        stable_rank(torch.tensor([[1.0, math.inf]]))
    with pytest.raises(MatrixInfoValueError, match="stable_rank: expected Z to contain only finite values"):
        stable_rank(torch.tensor([[1.0, math.inf]]), center=False)
    with pytest.raises(MatrixInfoValueError, match="nesum: expected steps to be an integer >= 1, got 0"):
        nesum(torch.zeros(3, 2), steps=0)


# ----------------------------------------------------------------------------- alignment and uniformity


def test_alignment_and_uniformity_match_transcriptions():
    g = np.random.default_rng(4)
    x = g.standard_normal((50, 6)) * 3
    y = x + 0.3 * g.standard_normal((50, 6))
    for alpha in (2.0, 1.0, 0.5):
        assert rel(alignment(x, y, alpha=alpha), np_align(x, y, alpha)) <= RTOL["float64"]
    for t in (2.0, 0.5):
        assert rel(uniformity(x, t=t), np_uniform(x, t)) <= RTOL["float64"]
    assert rel(uniformity(torch.from_numpy(x).float()), np_uniform(np.float32(x))) <= RTOL["float32"]


def test_alignment_by_blocks_of_rows(monkeypatch):
    import matrixinfo.metrics._hypersphere as hypersphere

    monkeypatch.setattr(hypersphere, "_ALIGN_BLOCK_BYTES", 1)  # the smallest block, 64 rows: 16 blocks here
    g = np.random.default_rng(14)
    x = g.standard_normal((1000, 6)) * 3
    y = x + 0.3 * g.standard_normal((1000, 6))
    for alpha in (2.0, 0.5):
        assert rel(alignment(x, y, alpha=alpha), np_align(x, y, alpha)) <= RTOL["float64"]
    x32, y32 = np.float32(x), np.float32(y)
    assert rel(alignment(x32, y32), np_align(x32, y32)) <= RTOL["float32"]
    y[700, 3] = np.nan  # in a late block
    with pytest.raises(MatrixInfoValueError, match="alignment: expected z2 to contain only finite values"):
        alignment(x, y)


def test_alignment_and_uniformity_closed_forms():
    z = torch.tensor([[2.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
    assert alignment(z, 3 * z) == 0.0
    assert rel(alignment(z, -z), 4.0) <= RTOL["float64"]
    same = torch.ones(4, 3, dtype=torch.float64)
    assert uniformity(same) == 0.0  # collapse
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert rel(uniformity(antipodal, t=1000.0), -4000.0) <= RTOL["float64"]  # finite despite exp underflow


def test_alignment_uniformity_errors():
    shapes = r"alignment: expected z1 and z2 to have the same shape, got \(3, 2\) and \(4, 2\)"
    with pytest.raises(MatrixInfoValueError, match=shapes):
        alignment(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(MatrixInfoValueError, match=r"uniformity: expected z to have shape \(N, d\) with N >= 2"):
        uniformity(torch.zeros(1, 2))
    with pytest.raises(MatrixInfoValueError, match="uniformity: expected t > 0"):
        uniformity(torch.zeros(3, 2), t=-1.0)


# ----------------------------------------------------------------------------- EmbeddingMonitor


def _monitor_batches():
    g = np.random.default_rng(9)
    out = []
    for b in (16, 9, 20, 11):
        z1 = g.standard_normal((b, 5)) * np.array([3.0, 2, 1, 0.5, 0.1]) + 1.0
        out.append((torch.from_numpy(z1), torch.from_numpy(z1 + 0.2 * g.standard_normal((b, 5)))))
    return out


def _expected_logs(batches):
    z1 = np.concatenate([a.numpy() for a, _ in batches])
    z2 = np.concatenate([b.numpy() for _, b in batches])
    allz = np.concatenate([z1, z2])
    lam = np_cov_eigenvalues(allz)
    return {
        "effective_rank": float(np.exp(scipy.stats.entropy(lam / lam.sum()))),
        "nesum": np_nesum(allz),
        "alignment": np_align(z1, z2),
        "uniformity": float(np.mean([np_uniform(z1.numpy()) for z1, _ in batches])),  # first views
        "samples": float(allz.shape[0]),
    }


def test_monitor_matches_oracles_in_one_process():
    batches = _monitor_batches()
    monitor = EmbeddingMonitor(5, fit_range=(2, 4))
    for a, b in batches:
        monitor.update(a, b)
    logs = monitor.compute()
    want = _expected_logs(batches)
    assert set(logs) == set(want) | {"alpha_req"}
    for k, v in want.items():
        assert rel(logs[k], v) <= RTOL["float64"], k
    assert monitor.compute() == logs  # compute does not consume the statistics
    monitor.reset()
    with pytest.raises(MatrixInfoValueError, match="EmbeddingMonitor.compute: expected at least 1 sample"):
        monitor.compute()
    with pytest.raises(MatrixInfoValueError, match=r"EmbeddingMonitor.update: expected z1 to have shape \(n, 5\)"):
        monitor.update(torch.zeros(3, 4))


def _lidar_data():
    return views(12, 2, 5, 13)


def _monitor_worker(rank, world, init_method, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        monitor = EmbeddingMonitor(5)
        for i, (a, b) in enumerate(_monitor_batches()):
            if i % world == rank:
                monitor.update(a, b)
        logs = monitor.compute()
        acc = LidarAccumulator(5).update(torch.stack([a, b], 1) if rank == 0 else _lidar_data()[:0])
        if rank == 1:
            acc.update(_lidar_data())
        logs["lidar"] = acc.all_reduce().compute()
        torch.save(logs, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_monitor_across_two_gloo_processes(tmp_path):
    method = "fork" if sys.platform.startswith("linux") else "spawn"  # as in test_metrics
    init = f"file://{tmp_path}/rendezvous"
    mp.start_processes(_monitor_worker, args=(2, init, str(tmp_path)), nprocs=2, join=True, start_method=method)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    want = _expected_logs(_monitor_batches())
    a, b = _monitor_batches()[-1]  # rank 0's last batch (a, b) as samples with 2 views, rank 1's views
    want["lidar"] = np_lidar_stable_pretraining(torch.cat([torch.stack([a, b], 1), _lidar_data()]).numpy())
    for logs in results:
        assert set(logs) == set(want)
        for k, v in want.items():
            assert rel(logs[k], v) <= RTOL["float64"], k
    assert results[0] == results[1]


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # Lightning 2.6 against torch 2.13, not ours
def test_lightning_callback_logs_each_epoch():
    pl = pytest.importorskip("lightning.pytorch")
    from matrixinfo.metrics import lightning_callback

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 3)

        def training_step(self, batch, batch_idx):
            (x,) = batch
            z1, z2 = self.net(x), self.net(x + 0.1)
            return {"loss": (z1 - z2).pow(2).mean() + z1.pow(2).mean(), "z": (z1, z2)}

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.TensorDataset(torch.randn(64, 4, generator=torch.Generator().manual_seed(0)))
    monitor = EmbeddingMonitor(3)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[lightning_callback(monitor, key="z", prefix="m/")],
    )
    trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=16))
    logged = trainer.callback_metrics
    assert {"m/effective_rank", "m/nesum", "m/alignment", "m/uniformity", "m/samples"} <= set(logged)
    assert float(logged["m/samples"]) == 128.0  # one epoch, both views: the monitor was reset in between


def _load_example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "monitor_lightning.py"
    spec = importlib.util.spec_from_file_location("monitor_lightning", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # Lightning 2.6 against torch 2.13, not ours
@pytest.mark.parametrize("plain", [True, False])
def test_monitor_example_runs(plain):
    if not plain:
        pytest.importorskip("lightning.pytorch")
    tiny = ["--epochs", "2", "--samples", "256", "--dim", "8", "--batch", "64"]
    logs = _load_example().main(tiny + (["--plain"] if plain else []))
    assert {"effective_rank", "nesum", "alignment", "uniformity"} <= set(logs)
    assert logs["samples"] == 512.0 and 1.0 <= logs["effective_rank"] <= 8.0


def test_lightning_callback_errors_before_importing_lightning():
    from matrixinfo.metrics import lightning_callback

    with pytest.raises(MatrixInfoTypeError, match="lightning_callback: expected monitor to be an EmbeddingMonitor"):
        lightning_callback(3)
    with pytest.raises(MatrixInfoValueError, match="lightning_callback: expected stage to be one of 'train'"):
        lightning_callback(EmbeddingMonitor(2), stage="test")


def test_lightning_callback_names_the_extra_without_lightning(monkeypatch):
    from matrixinfo.metrics import lightning_callback

    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "matrixinfo\[lightning\]"'):
        lightning_callback(EmbeddingMonitor(2))
