"""Benchmark: each monitoring metric against one bare ``Z^T Z`` on the same embeddings, in one run.

Z is ``N x d`` isotropic Gaussian float32 (the hard case for NESum's Krylov
estimate: no gap at the top of the spectrum). The reference is the least any
covariance-based metric must do, one ``Z.T @ Z`` in float32, timed before and
after the metrics (the smaller is used, so load from other processes makes
the ratios pessimistic, not optimistic). Each metric is called once:

* ``nesum``, ``stable_rank``: targets <= 0.2x (per-step metrics);
* ``alpha_req``, ``lidar`` (Z as ``(N/2, 2, d)``), ``alignment`` (the two
  halves of Z as pairs), ``CovarianceAccumulator`` update + effective rank +
  NESum + alpha-ReQ, ``EmbeddingMonitor``: targets <= 3x;
* ``uniformity`` on the first ``--uniformity-rows`` rows only: exactly it
  costs ``N^2 d`` multiply-adds, about ``N/(2d)`` times one ``Z^T Z``, so it is
  reported on a subsample (and the ``N/d`` figure printed).

Also printed: NESum's relative error against the exact value (eigenvalues of
the streamed covariance).

Usage::

    python benchmarks/bench_monitoring.py                      # N = 100000, d = 2048
    python benchmarks/bench_monitoring.py --rows 20000 --dim 512
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import cpu_name  # benchmarks/_common.py (the script's folder is on sys.path)

from matrixinfo.metrics import (
    CovarianceAccumulator,
    EmbeddingMonitor,
    alignment,
    alpha_req,
    lidar,
    nesum,
    stable_rank,
    uniformity,
)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--uniformity-rows", type=int, default=8192)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, d = args.rows, args.dim
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: {cpu_name()}")
    print(f"N = {n}, d = {d}, float32, isotropic Gaussian")
    Z = torch.randn(n, d, generator=torch.Generator().manual_seed(0))

    ref1, _ = timed(lambda: Z.mT @ Z)
    rows = []

    def add(name, fn, target):
        seconds, value = timed(fn)
        rows.append((name, seconds, target, value))
        return value

    add("nesum", lambda: nesum(Z), 0.2)
    add("stable_rank", lambda: stable_rank(Z), 0.2)
    add("alpha_req", lambda: alpha_req(Z), 3.0)
    add("lidar (N/2 samples x 2 views)", lambda: lidar(Z.view(n // 2, 2, d)), 3.0)
    add("alignment (N/2 pairs)", lambda: alignment(Z[: n // 2], Z[n // 2 :]), 3.0)

    def stream():
        acc = CovarianceAccumulator(d)
        for chunk in torch.split(Z, 8192):
            acc.update(chunk)
        return acc, acc.effective_rank(), acc.nesum(), acc.alpha_req()

    acc, *_ = add("CovarianceAccumulator: update + erank + nesum + alpha_req", stream, 3.0)

    def monitor():
        m = EmbeddingMonitor(d)
        half = n // 2
        for start in range(0, half, 4096):
            m.update(Z[start : min(start + 4096, half)], Z[half + start : half + min(start + 4096, half)])
        return m.compute()

    add("EmbeddingMonitor (batches of 4096 pairs)", monitor, 3.0)
    m = min(args.uniformity_rows, n)
    add(f"uniformity ({m} rows)", lambda: uniformity(Z[:m]), 3.0)

    ref2, _ = timed(lambda: Z.mT @ Z)
    ref = min(ref1, ref2)
    print(f"bare Z^T Z: {ref1:.2f} s before, {ref2:.2f} s after the metrics; ratios use {ref:.2f} s")
    for name, seconds, target, _ in rows:
        ok = "ok" if seconds / ref <= target else "OVER"
        print(f"{name:58s} {seconds:8.2f} s  {seconds / ref:6.3f}x  (target <= {target}x) {ok}")
    exact = acc.nesum()
    est = rows[0][3]
    print(f"nesum: Krylov {est:.6f}, exact {exact:.6f}, relative error {abs(est - exact) / exact:.1e}")
    print(f"exact uniformity over all N = {n} rows would cost about N/(2d) = {n / (2 * d):.0f}x one Z^T Z (flop count)")


if __name__ == "__main__":
    main()
