"""Benchmark: streaming covariance (CovarianceAccumulator) against a bare X^T X.

N x d embeddings are generated chunk by chunk into one reused buffer, so the
data never exist whole. Each chunk goes through ``CovarianceAccumulator.update``
and through a bare ``X.T @ X`` (the least any covariance must do), timed in
turn on the same chunk so that load from other processes hits both alike.
Generating the chunk is not timed.

Memory: the peak resident set size (``resource.getrusage(...).ru_maxrss``, a
high-water mark of the whole process, so torch allocations are seen, unlike
with tracemalloc) is read after the chunk buffer is allocated and filled, and
again at the end; the difference is the growth beyond one chunk. With
``psutil`` installed, nothing changes: ru_maxrss is what is reported.

Usage::

    python benchmarks/bench_metrics.py                     # 1e6 x 512 float32, chunks of 65536
    python benchmarks/bench_metrics.py --rows 200000 --offset 1e4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from _common import cpu_name  # benchmarks/_common.py (the script's folder is on sys.path)

from matrixinfo.metrics import CovarianceAccumulator

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss)."""
    if resource is None:
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="total number of embeddings N")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension d")
    parser.add_argument("--chunk", type=int, default=65536, help="rows per chunk")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--offset", type=float, default=0.0, help="common offset added to every embedding")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (memory is then the CUDA allocator's peak)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    generator = torch.Generator().manual_seed(args.seed)
    # Anisotropic embeddings: column scales from 1 down to 1e-2.
    scales = torch.logspace(0, -2, args.dim, dtype=dtype, device=device)

    host = torch.empty(args.chunk, args.dim, dtype=dtype)
    buffer = torch.empty(args.chunk, args.dim, dtype=dtype, device=device)
    torch.randn(host.shape, generator=generator, dtype=dtype, out=host)  # touch every page
    buffer.copy_(host)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else peak_rss_mib()

    acc = CovarianceAccumulator(args.dim, device=device)
    t_acc = t_mm = 0.0
    ratios = []  # per chunk: robust to bursts of load from other processes
    done = 0
    while done < args.rows:
        n = min(args.chunk, args.rows - done)
        x = buffer[:n]
        torch.randn(host[:n].shape, generator=generator, dtype=dtype, out=host[:n])
        x.copy_(host[:n])
        x.mul_(scales).add_(args.offset)
        sync()

        start = time.perf_counter()
        acc.update(x)
        sync()
        a = time.perf_counter() - start

        start = time.perf_counter()
        gram = x.T @ x
        sync()
        m = time.perf_counter() - start
        del gram
        t_acc, t_mm = t_acc + a, t_mm + m
        ratios.append(a / m)
        done += n

    growth = (torch.cuda.max_memory_allocated(device) / 2**20 if cuda else peak_rss_mib()) - baseline
    erank = acc.effective_rank()

    chunk_mib = buffer.numel() * buffer.element_size() / 2**20
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs: {cpu_name()}; "
        f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if cuda else "")
    )
    print(
        f"N = {args.rows}, d = {args.dim}, chunk = {args.chunk} rows ({chunk_mib:.0f} MiB), "
        f"{args.dtype}, offset {args.offset:g}"
    )
    print(f"CovarianceAccumulator.update : {t_acc:8.2f} s")
    print(f"bare X^T X (same chunks)     : {t_mm:8.2f} s")
    print(f"time ratio                   : {t_acc / t_mm:8.2f}x   (target <= 3x)")
    print(
        f"per-chunk ratios             : median {statistics.median(ratios):.2f}x, "
        f"min {min(ratios):.2f}x, max {max(ratios):.2f}x over {len(ratios)} chunks"
    )
    what = "CUDA allocator peak" if cuda else "ru_maxrss"
    print(f"peak memory growth beyond chunk: {growth:8.1f} MiB ({what}; target <= 200 MB)")
    print(f"effective rank of the covariance: {erank:.4f} (count {acc.count})")


if __name__ == "__main__":
    main()
