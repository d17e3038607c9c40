"""Stochastic Lanczos quadrature against the exact (eigh) path, in one run.

The matrix entropy of an n x n covariance with eigenvalues 1/i (i = 1..n) and a
random eigenbasis, in float32: ``matrix_entropy(C)`` (eigh) against
``matrix_entropy(C, method="lanczos")`` at the default settings, medians of
interleaved repetitions, and the relative error of each against the exact value
(from the known eigenvalues, in float64). Then a sweep of ``num_probes`` and
``num_steps`` (error over several seeds and cost), written as a PNG.

    python benchmarks/bench_lanczos.py                      # n = 4096, sweep, plot
    python benchmarks/bench_lanczos.py --quick              # n = 256: a smoke test
    python benchmarks/bench_lanczos.py --device cuda        # on a GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time

import torch

from matrixinfo import matrix_entropy


def hardware(device: torch.device) -> str:
    """The device and its hardware name (CPU model from lscpu, or the GPU name)."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    name = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), name)
    except OSError:
        pass
    return f"cpu: {name}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, torch {torch.__version__}"


def decaying_covariance(n: int, dtype, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    w = 1.0 / torch.arange(1, n + 1, dtype=torch.float64)
    C = ((U * w) @ U.T).to(dtype=dtype, device=device)
    exact = float(w.sum() - (w * torch.log(w)).sum())
    return C, exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per sweep point")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--plot", default=os.path.join(os.path.dirname(__file__), "lanczos_sweep.png"))
    parser.add_argument("--quick", action="store_true", help="n = 256, 1 repeat, small sweep")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n = 256 if args.quick else args.n
    repeats = 1 if args.quick else args.repeats

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        return time.perf_counter() - t0, out

    print(f"# Matrix entropy by stochastic Lanczos quadrature, n = {n}, float32 — {hardware(device)}\n")
    C, exact = decaying_covariance(n, torch.float32, device)

    def gen(seed):
        return torch.Generator(device=device).manual_seed(seed)

    runs = {
        "eigh (exact path)": lambda seed: matrix_entropy(C),
        "lanczos (defaults)": lambda seed: matrix_entropy(C, method="lanczos", generator=gen(seed)),
    }
    for f in runs.values():
        f(0)  # warm-up
    times = {k: [] for k in runs}
    values = {k: [] for k in runs}
    for r in range(repeats):
        for k, f in runs.items():
            t, v = timed(lambda f=f, r=r: f(r))
            times[k].append(t)
            values[k].append(float(v))
    med = {k: statistics.median(v) for k, v in times.items()}
    print("| path | median s | rel. error (per repeat, seed = repeat) |")
    print("|---|---|---|")
    for k in runs:
        errs = ", ".join(f"{(v - exact) / exact:+.2e}" for v in values[k])
        print(f"| {k} | {med[k]:.3f} | {errs} |")
    ratio = med["eigh (exact path)"] / med["lanczos (defaults)"]
    worst = max(abs(v - exact) / exact for v in values["lanczos (defaults)"])
    print(
        f"\nspeed-up of lanczos over eigh: {ratio:.1f}x (target >= 10x); "
        f"worst relative error {worst:.2e} (target <= 1e-2)\n"
    )

    if args.no_sweep:
        return
    probes = [4, 8, 16] if args.quick else [4, 8, 16, 32, 64]
    steps = [4, 8, 16] if args.quick else [4, 8, 16, 32]
    rows = []
    print("| num_probes | num_steps | median s | ratio to eigh | mean abs rel. error | mean estimated rel. error |")
    print("|---|---|---|---|---|---|")
    for p in probes:
        for s in steps:
            ts, errs, ests = [], [], []
            for seed in range(args.seeds):
                t, (v, e) = timed(
                    lambda p=p, s=s, seed=seed: matrix_entropy(
                        C, method="lanczos", num_probes=p, num_steps=s, generator=gen(100 + seed), return_error=True
                    )
                )
                ts.append(t)
                errs.append(abs(float(v) - exact) / exact)
                ests.append(float(e) / exact)
            row = (p, s, statistics.median(ts), statistics.mean(errs), statistics.mean(ests))
            rows.append(row)
            print(
                f"| {p} | {s} | {row[2]:.3f} | {med['eigh (exact path)'] / row[2]:.1f}x faster "
                f"| {row[3]:.2e} | {row[4]:.2e} |"
            )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no plot)")
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for s in steps:
        sel = [r for r in rows if r[1] == s]
        ax1.loglog([r[0] for r in sel], [r[3] for r in sel], "o-", label=f"num_steps={s}")
        ax2.loglog([r[2] for r in sel], [r[3] for r in sel], "o-", label=f"num_steps={s}")
    ax1.loglog(probes, [rows[0][3] * (probes[0] / p) ** 0.5 for p in probes], "k:", label="1/sqrt(num_probes)")
    ax1.set_xlabel("num_probes")
    ax1.set_ylabel(f"mean |relative error| ({args.seeds} seeds)")
    ax1.legend(fontsize=8)
    ax2.axvline(med["eigh (exact path)"], color="k", ls="--", label="eigh path")
    ax2.set_xlabel("seconds (median)")
    ax2.set_ylabel("mean |relative error|")
    ax2.legend(fontsize=8)
    fig.suptitle(f"matrix entropy, n={n}, eigenvalues 1/i, float32, {device.type}")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    print(f"\nplot written to {os.path.basename(args.plot)}")


if __name__ == "__main__":
    main()
