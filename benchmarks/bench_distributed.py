"""Distributed Barlow Twins loss: the row gather against the all-reduce of moments.

Runs W gloo processes on this machine (each with one thread) and, per process,
one forward + backward of ``barlow_twins_loss(z1, z2, gather_distributed=True)``
on local ``(B_local, d)`` float32 views, once with each path of
``matrixinfo._distributed.batch`` forced:

* per-process peak memory: the growth of the peak resident set size
  (``ru_maxrss``) over the steps, measured in a fresh set of processes per
  configuration (peak RSS never decreases within a process);
* bytes communicated per step and process: the payload of every collective
  the loss issues, forward and backward (the result size of each all-gather
  or all-reduce; a ring algorithm sends about twice that for an all-reduce);
* time per step: the median over the steps, the slowest process.

Then prints, by formula, the per-process memory and flops and the bytes per
step for W = 8 ... 1024 (``--model-b-local``, ``--model-d``).

    python benchmarks/bench_distributed.py
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _worker(rank, world, init_file, out_file, b_local, d, path, steps):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=300),
    )
    from torch.distributed import _functional_collectives as funcol

    from matrixinfo import _distributed
    from matrixinfo.functional import barlow_twins_loss

    _distributed._force_path = path
    sent = [0]
    all_reduce, all_gather = _distributed._all_reduce, funcol.all_gather_single_autograd

    def counted_all_reduce(x):
        sent[0] += 2 * x.numel() * x.element_size()  # forward, and the same size in backward
        return all_reduce(x)

    def counted_all_gather(x, dim, group):
        sent[0] += 2 * world * x.numel() * x.element_size()  # the gathered result, and its reduce-scatter
        return all_gather(x, dim, group)

    _distributed._all_reduce = counted_all_reduce
    funcol.all_gather_single_autograd = counted_all_gather

    g = torch.Generator().manual_seed(rank)
    z1 = torch.randn(b_local, d, generator=g).requires_grad_()
    z2 = (z1.detach() + 0.5 * torch.randn(b_local, d, generator=g)).requires_grad_()
    # One warm-up step: the first collectives allocate the transport's buffers.
    barlow_twins_loss(z1, z2, gather_distributed=True).backward()
    z1.grad = z2.grad = None
    dist.barrier()
    base = _rss_mib()
    times = []
    for _ in range(steps):
        sent[0] = 0
        dist.barrier()
        start = time.perf_counter()
        loss = barlow_twins_loss(z1, z2, gather_distributed=True)
        loss.backward()
        times.append(time.perf_counter() - start)
        z1.grad = z2.grad = None
    result = torch.tensor([statistics.median(times), _rss_mib() - base, float(sent[0])], dtype=torch.float64)
    parts = [torch.empty_like(result) for _ in range(world)]
    dist.all_gather(parts, result)
    if rank == 0:
        torch.save(torch.stack(parts), out_file)
    dist.destroy_process_group()


def measure(world, b_local, d, path, steps):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.pt")
        mp.spawn(_worker, args=(world, os.path.join(tmp, "init"), out, b_local, d, path, steps), nprocs=world)
        r = torch.load(out)
    return float(r[:, 0].max()), float(r[:, 1].max()), float(r[:, 2].max())


def model_table(b_local: int, d: int, bytes_per: int = 4) -> str:
    """Per process, Barlow Twins, two views, by formula (see the README)."""
    lines = [
        f"B_local = {b_local}, d = {d}, float32; per process and step (forward + backward)",
        f"{'W':>6} {'B_global':>9} | {'gather: memory':>15} {'flops':>9} {'bytes':>9} | "
        f"{'moments: memory':>15} {'flops':>9} {'bytes':>9} | chosen",
    ]
    for e in range(3, 11):
        W = 2**e
        B = W * b_local
        # Row path: two gathered views and their centered copies (4 B d), the d x d
        # cross-correlation and its gradient (2 d^2); flops 3 x 2 B d^2 (one GEMM
        # forward, two backward); bytes: two views gathered and reduce-scattered.
        g_mem = (4 * B * d + 2 * d * d) * bytes_per
        g_flops = 3 * 2 * B * d * d
        g_bytes = 2 * 2 * B * d * bytes_per
        # Moment path: local views and centered copies (4 B_local d), the d x d
        # cross sum, its all-reduced copy and gradients (4 d^2); flops 3 x 2 B_local d^2;
        # bytes: the means (2 d) and then (d^2 + 2 d) all-reduced, forward and backward.
        m_mem = (4 * b_local * d + 4 * d * d) * bytes_per
        m_flops = 3 * 2 * b_local * d * d
        m_bytes = 2 * (2 * d + d * d + 2 * d) * bytes_per
        lines.append(
            f"{W:>6} {B:>9} | {_si(g_mem, 'B'):>15} {_si(g_flops, 'F'):>9} {_si(g_bytes, 'B'):>9} | "
            f"{_si(m_mem, 'B'):>15} {_si(m_flops, 'F'):>9} {_si(m_bytes, 'B'):>9} | "
            f"{'moments' if d <= B else 'rows'}"
        )
    return "\n".join(lines)


def _si(x: float, unit: str) -> str:
    for prefix in ("", "K", "M", "G", "T", "P"):
        if abs(x) < 1000:
            return f"{x:.3g} {prefix}{unit}"
        x /= 1000
    return f"{x:.3g} E{unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 4])
    parser.add_argument(
        "--shapes", nargs="+", default=["2048x256", "2048x512", "512x1024"], help="B_local x d configurations"
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--model-b-local", type=int, default=256)
    parser.add_argument("--model-d", type=int, default=8192)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {_cpu_name()}, {os.cpu_count()} CPUs, 1 thread per process, gloo")
    print("Barlow Twins, float32, forward + backward; memory = peak RSS growth per process (max over processes)")
    print(
        f"{'B_local':>7} {'d':>5} {'W':>2} | {'rows: MiB':>9} {'MB sent':>8} {'ms':>7} | "
        f"{'moments: MiB':>12} {'MB sent':>8} {'ms':>7}"
    )
    for shape in args.shapes:
        b_local, d = (int(v) for v in shape.split("x"))
        for world in args.worlds:
            rows = measure(world, b_local, d, "rows", args.steps)
            moments = measure(world, b_local, d, "moments", args.steps)
            print(
                f"{b_local:>7} {d:>5} {world:>2} | {rows[1]:>9.1f} {rows[2] / 1e6:>8.2f} {rows[0] * 1e3:>7.1f} | "
                f"{moments[1]:>12.1f} {moments[2] / 1e6:>8.2f} {moments[0] * 1e3:>7.1f}",
                flush=True,
            )
    print()
    print(model_table(args.model_b_local, args.model_d))


if __name__ == "__main__":
    main()
