"""Cost of MatrixLLMLoss against plain cross-entropy, in one run.

A forward+backward step of a language-model head: hidden states (N, d) ->
logits (N, n) through the head's weight (n, d), then the loss. The Matrix-LLM
step also uses the head's weight as the token embedding. Timings are medians
of interleaved repetitions; the figure that matters is the ratio.

    python benchmarks/bench_llm.py            # n=8192, d=512, N=256, float32
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from matrixinfo.functional import matrix_llm_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--configs",
        default="16:16,8:8,8:0",
        help="extra top_k:rank settings to time beside the default (comma separated)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    dev = torch.device(args.device)
    hidden = torch.randn(args.tokens, args.dim, generator=g).to(dev)
    weight = (torch.randn(args.vocab, args.dim, generator=g) / args.dim**0.5).to(dev).requires_grad_(True)
    target = torch.randint(0, args.vocab, (args.tokens,), generator=g).to(dev)
    h = hidden.clone().requires_grad_(True)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step_ce():
        loss = F.cross_entropy(h @ weight.T, target)
        loss.backward()

    def step_mllm():
        loss = matrix_llm_loss(h @ weight.T, target, weight)
        loss.backward()

    steps = {"cross_entropy": step_ce, "matrix_llm_loss (topk, default)": step_mllm}
    for item in filter(None, args.configs.split(",")):
        k, r = (int(v) for v in item.split(":"))

        def step(k=k, r=r):
            loss = matrix_llm_loss(h @ weight.T, target, weight, top_k=k, rank=r)
            loss.backward()

        steps[f"matrix_llm_loss (topk, top_k={k}, rank={r})"] = step
    times = {k: [] for k in steps}
    for fn in steps.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in steps.items():
            weight.grad = None
            h.grad = None
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["cross_entropy"])
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"# MatrixLLMLoss cost: n={args.vocab}, d={args.dim}, N={args.tokens}, float32, {args.device} ({device_name}), "
        f"{args.threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}"
    )
    print()
    print("| step (logits matmul + loss, forward+backward) | median ms | ratio to CE |")
    print("|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med * 1e3:.1f} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
