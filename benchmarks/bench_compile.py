"""Compiled (``torch.compile``, inductor, ``fullgraph=True``) training step
against eager, per loss, as ratios in one run.

The step: a linear projector ``(d_in -> d)`` applied to two views of a batch,
the loss (default options, ``check_radius=False`` where the loss has it), the
backward, and an SGD update. The forward (projector and loss) is compiled;
autograd runs the compiled backward. Medians of interleaved repetitions after
warm-up (compilation is not timed; its duration is printed apart).

    python benchmarks/bench_compile.py                      # every loss
    python benchmarks/bench_compile.py --losses TCRLoss MatrixSSLLoss --batch 64 --dim 32
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time

import torch
from _common import cpu_name  # benchmarks/_common.py (the script's folder is on sys.path)

from matrixinfo import losses as ML

# Every embedding loss of matrixinfo.losses.__all__; each class says how it is built and called.
EMBEDDING_LOSSES = [n for n in ML.__all__ if getattr(ML, n).inputs in ("pair", "views")]


def make_loss(name: str, d: int) -> torch.nn.Module:
    cls = getattr(ML, name)
    options = {"check_radius": False} if "check_radius" in inspect.signature(cls.functional).parameters else {}
    return cls.make(d, **options)


def make_step(name: str, loss: torch.nn.Module, model: torch.nn.Module, compiled: bool):
    def forward(x1, x2):
        z1, z2 = model(x1), model(x2)
        out = loss(z1, z2)
        return out[0] if isinstance(out, tuple) else out

    if compiled:
        forward = torch.compile(forward, fullgraph=True, backend="inductor")
    params = list(model.parameters())

    def step(x1, x2):
        value = forward(x1, x2)
        grads = torch.autograd.grad(value, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(1e-3 * g)
        return value

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--losses", nargs="*", default=EMBEDDING_LOSSES)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension d")
    parser.add_argument("--input-dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}: {cpu_name()}")
    print(f"B = {args.batch}, d_in = {args.input_dim}, d = {args.dim}, float32, {args.repeats} repeats")
    print(f"{'loss':32s} {'eager ms':>9s} {'compiled ms':>12s} {'ratio':>7s} {'compile s':>10s}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.input_dim, generator=g)
    x1 = (x + 0.3 * torch.randn(x.shape, generator=g)).to(device)
    x2 = (x + 0.3 * torch.randn(x.shape, generator=g)).to(device)
    ratios = []
    for name in args.losses:
        torch._dynamo.reset()
        steps = {}
        for kind in ("eager", "compiled"):
            torch.manual_seed(0)
            model = torch.nn.Linear(args.input_dim, args.dim).to(device)
            steps[kind] = make_step(name, make_loss(name, args.dim).to(device), model, kind == "compiled")
        start = time.perf_counter()
        steps["compiled"](x1, x2)  # compiles
        compile_s = time.perf_counter() - start
        for _ in range(2):  # warm-up
            steps["eager"](x1, x2), steps["compiled"](x1, x2)
        times = {"eager": [], "compiled": []}
        for _ in range(args.repeats):  # interleaved, so that load from other processes hits both alike
            for kind in ("eager", "compiled"):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                steps[kind](x1, x2)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[kind].append(time.perf_counter() - start)
        eager, compiled = (statistics.median(times[k]) * 1e3 for k in ("eager", "compiled"))
        ratios.append(compiled / eager)
        print(f"{name:32s} {eager:9.3f} {compiled:12.3f} {compiled / eager:6.2f}x {compile_s:10.1f}", flush=True)
    if ratios:
        print(
            f"compiled / eager: median {statistics.median(ratios):.2f}x, "
            f"min {min(ratios):.2f}x, max {max(ratios):.2f}x over {len(ratios)} losses"
        )


if __name__ == "__main__":
    main()
