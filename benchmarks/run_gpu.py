"""Produce the GPU table: every benchmark script with ``--device cuda``, in one go.

    python benchmarks/run_gpu.py                  # writes benchmarks/results_gpu.md
    python benchmarks/run_gpu.py --out other.md

Sizes are chosen so that one GPU finishes in well under 10 minutes (the CPU
defaults of bench_metrics stream 10^6 rows; here 2 * 10^6, which a GPU streams
in seconds). Each script prints its own device and hardware line; this script
adds ``nvidia-smi``'s GPU name, driver and the torch/CUDA versions, and keeps
going when one script fails (its error goes into the file).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

RUNS = [
    (
        "bench_lanczos.py",
        ["--device", "cuda", "--threads", "2", "--repeats", "5", "--plot", os.path.join(HERE, "lanczos_sweep_gpu.png")],
    ),
    ("bench_losses.py", ["--device", "cuda", "--repeats", "5"]),
    ("bench_llm.py", ["--device", "cuda", "--repeats", "7"]),
    ("bench_metrics.py", ["--device", "cuda", "--rows", "2000000", "--threads", "2"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results_gpu.md"))
    parser.add_argument("--timeout", type=int, default=140, help="seconds per script (4 scripts: under 10 minutes)")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("run_gpu.py: no CUDA device visible to torch; nothing to do.")
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    lines = [
        "# matrixinfo benchmarks on one GPU",
        "",
        (
            f"GPU: {torch.cuda.get_device_name()} ({smi or 'nvidia-smi unavailable'}); "
            f"torch {torch.__version__}, CUDA {torch.version.cuda}"
        ),
        "",
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    for script, extra in RUNS:
        cmd = [sys.executable, os.path.join(HERE, script), *extra]
        t0 = time.perf_counter()
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env, check=False)
            body, status = res.stdout, f"exit {res.returncode}"
            if res.returncode:
                body += "\n" + res.stderr[-3000:]
        except subprocess.TimeoutExpired as err:
            body, status = (
                (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or ""),
                "timed out",
            )
        lines += [f"## {script} {' '.join(extra)}  ({status}, {time.perf_counter() - t0:.0f} s)", "", body, ""]
        print(f"{script}: {status}", flush=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
