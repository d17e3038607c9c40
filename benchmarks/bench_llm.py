"""Cost of MatrixLLMLoss against plain cross-entropy, in one run, and its error.

A forward+backward step of a language-model head: hidden states (N, d) ->
logits (N, n) through the head's weight (n, d), then the loss. The Matrix-LLM
step also uses the head's weight as the token embedding. Timings are medians
of interleaved repetitions; the figure that matters is the ratio. Two sizes:
n=8192, d=512, N=256 (target 4x) and n=32000, d=1024, N=128 (a Llama-size
vocabulary, target 3x).

Then the error against method="exact" in float64 on the same inputs (the first
--check tokens): the loss, and the relative norm error of the gradients with
respect to the logits and to the embedding (each a leaf); and the peak memory
of one step above that of the cross-entropy step (peak RSS of a fresh process).

    python benchmarks/bench_llm.py            # float32, 2 threads, both sizes
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from _common import cpu_name  # benchmarks/_common.py (the script's folder is on sys.path)

from matrixinfo.functional import matrix_llm_loss

SIZES = {"8192x512": (8192, 512, 256, 4.0), "32000x1024": (32000, 1024, 128, 3.0)}


DEVICE = torch.device("cpu")  # --device


def inputs(n, d, N, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(N, d, generator=g)
    weight = torch.randn(n, d, generator=g) / d**0.5
    target = torch.randint(0, n, (N,), generator=g)
    return hidden.to(DEVICE, dtype), weight.to(DEVICE, dtype), target.to(DEVICE)


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def step(kind, h, weight, target):
    if kind == "cross_entropy":
        loss = F.cross_entropy(h @ weight.T, target)
    else:
        loss = matrix_llm_loss(h @ weight.T, target, weight, **kind)
    loss.backward()


def time_size(n, d, N, kinds, repeats):
    hidden, weight, target = inputs(n, d, N)
    weight.requires_grad_(True)
    h = hidden.clone().requires_grad_(True)
    times = [[] for _ in kinds]
    for k in kinds:  # warm-up
        step(k, h, weight, target)
    for _ in range(repeats):
        for i, k in enumerate(kinds):
            weight.grad = h.grad = None
            sync()
            t0 = time.perf_counter()
            step(k, h, weight, target)
            sync()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(v) for v in times]


def describe(kind) -> str:
    return ", ".join(f"{k}={v}" if k != "method" else v for k, v in kind.items())


def gradients(n, d, N, check, **kw):
    """Loss and gradients (logits, embedding) in float64 on the first `check` tokens."""
    hidden, weight, target = inputs(n, d, N, torch.float64)
    lg = (hidden[:check] @ weight.T).detach().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    v = matrix_llm_loss(lg, target[:check], w, **kw)
    v.backward()
    return v.detach(), lg.grad, w.grad


def errors(ref, approx):
    """Relative errors of the loss and of the two gradients."""
    (v0, l0, e0), (v1, l1, e1) = ref, approx
    return (float(abs(v1 - v0) / abs(v0)), float((l1 - l0).norm() / l0.norm()), float((e1 - e0).norm() / e0.norm()))


def peak_mb(size, kind):
    """Peak RSS (MB, Linux) of a fresh process that builds the inputs and runs one step (on a GPU: the
    allocator's peak of that process)."""
    out = subprocess.run(
        [sys.executable, __file__, "--device", str(DEVICE), "--probe", size, repr(kind)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def probe(size, kind_repr):
    n, d, N, _ = SIZES[size]
    kind = eval(kind_repr)
    hidden, weight, target = inputs(n, d, N)
    weight.requires_grad_(True)
    h = hidden.clone().requires_grad_(True)
    step(kind, h, weight, target)
    if DEVICE.type == "cuda":
        print(torch.cuda.max_memory_allocated() / 2**20)
        return
    # VmHWM: the peak RSS of this process image (ru_maxrss would carry the
    # parent's peak across fork + exec on Linux).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                print(int(line.split()[1]) / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check", type=int, default=4, help="tokens compared with method='exact' (0: skip)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.probe:
        probe(*args.probe)
        return
    default = {"method": "lanczos", "steps": 4}
    kinds = [
        "cross_entropy",
        default,
        {"method": "lanczos", "steps": 2},
        {"method": "lanczos", "steps": 3},
        {"method": "lanczos", "steps": 6},
        {"method": "subspace", "top_k": 32, "rank": 16},
        {"method": "topk", "top_k": 32, "rank": 32},
    ]
    hardware = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else f"{cpu_name()}, {args.threads} threads"
    print(f"# MatrixLLMLoss cost: float32, {DEVICE.type}, {hardware}, torch {torch.__version__}")
    for size in args.sizes:
        n, d, N, target_ratio = SIZES[size]
        med = time_size(n, d, N, kinds, args.repeats)
        base = med[0]
        print(f"\n## n={n}, d={d}, N={N} (target: default <= {target_ratio:g}x)\n")
        print("| step (logits matmul + loss, forward+backward) | median ms | ratio to CE | peak MB above CE |")
        print("|---|---|---|---|")
        ce_mb = peak_mb(size, "cross_entropy")
        for k, seconds in zip(kinds, med):
            name = (
                k if k == "cross_entropy" else f"matrix_llm_loss ({describe(k)}{', default' if k == default else ''})"
            )
            extra = 0.0 if k == "cross_entropy" else peak_mb(size, k) - ce_mb
            print(f"| {name} | {seconds * 1e3:.1f} | {seconds / base:.2f} | {extra:.0f} |")
        if args.check:
            print(
                f"\nError against method='exact' (float64, the first {args.check} tokens): "
                "loss, gradient w.r.t. logits, gradient w.r.t. embedding (relative)\n"
            )
            ref = gradients(n, d, N, args.check, method="exact")
            for k in kinds[1:]:
                e = errors(ref, gradients(n, d, N, args.check, **k))
                print(f"- {describe(k)}: {e[0]:.2e}, {e[1]:.2e}, {e[2]:.2e}")


if __name__ == "__main__":
    main()
