"""Forward+backward cost of every loss, as ratios to one plain matmul, in one run.

For each (B, d) and dtype, every loss in ``matrixinfo.losses.__all__`` is timed
(forward + backward with respect to the online embeddings; median of
interleaved repetitions) together with one ``(B x d)^T (B x d)`` matmul on the
same inputs, and the table gives medians and their ratio to that matmul.
lightly's losses are timed alongside when lightly is installed.

A second table holds the performance targets of the matrix-information losses
(the direct formulations are written here from the authors' descriptions,
for timing only; their values are checked against the library's):

* MatrixSSLLoss (Taylor order 4) at B=1024, d=2048 against a direct
  transcription of the official formulation (explicit B x B centering matrix,
  full d x d Taylor log matrix, its product with P);
* MECLoss (order 4) at B=1024, d=2048 against the official B x B power loop;
* TCRLoss(method="exact") at B=256, d=4096 against the d x d log-determinant;
* exact (eigh) paths against the eigendecomposition alone of the same matrix;
* the peak memory growth of MatrixSSLLoss (measured in a fresh subprocess).

    python benchmarks/bench_losses.py                 # full run (about 10 minutes on 2 cores)
    python benchmarks/bench_losses.py --quick         # tiny sizes: a smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import warnings

import torch

import matrixinfo.functional as MF
from matrixinfo import losses as ML
from matrixinfo import matrix_cross_entropy, matrix_log

# Each class says how it is built and called (its class attributes); token-level losses
# (inputs == "llm") are timed by benchmarks/bench_llm.py.


def make_loss(name: str, d: int):
    return getattr(ML, name).make(d)  # with its defaults; dim only where the loss needs it


def call(loss, name: str, z1, z2):
    return loss(z1, z2)  # pair losses take (online, target); multi-view losses two views


def timed(fn, sync):
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def run_interleaved(fns: dict, repeats: int, sync) -> dict:
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            times[k].append(timed(f, sync))
    return {k: statistics.median(v) for k, v in times.items()}


def inputs(B, d, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(B, d, generator=g, dtype=dtype).to(device)
    z2 = z1 + 0.5 * torch.randn(B, d, generator=g, dtype=dtype).to(device)
    return z1.requires_grad_(True), z2


def loss_table(sizes, dtypes, repeats, device, sync):
    try:
        import lightly.loss as LL  # noqa: F401

        peers = {
            "lightly.BarlowTwinsLoss": "BarlowTwinsLoss",
            "lightly.VICRegLoss": "VICRegLoss",
            "lightly.NTXentLoss": "NTXentLoss",
        }
    except Exception:  # pragma: no cover - lightly is optional
        LL, peers = None, {}
    names = [n for n in ML.__all__ if getattr(ML, n).inputs != "llm"]
    rows = []
    for dtype in dtypes:
        for B, d in sizes:
            z1, z2 = inputs(B, d, dtype, device)
            fns = {"matmul (B x d)^T (B x d)": lambda z1=z1, z2=z2: z1.detach().mT @ z2}
            for name in names:
                loss = make_loss(name, d).to(device)

                def step(loss=loss, name=name, z1=z1, z2=z2):
                    z1.grad = None
                    call(loss, name, z1, z2).backward()

                fns[name] = step
            for label, cls_name in peers.items():
                peer = getattr(LL, cls_name)()

                def peer_step(peer=peer, z1=z1, z2=z2):
                    z1.grad = None
                    peer(z1, z2).backward()

                fns[label] = peer_step
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # Taylor radius warnings at random init
                med = run_interleaved(fns, repeats, sync)
            base = med["matmul (B x d)^T (B x d)"]
            for k, v in med.items():
                rows.append((str(dtype).replace("torch.", ""), B, d, k, v * 1e3, v / base))
    return rows


# ----------------------------------------------------------------------------
# Direct formulations (timing references)
# ----------------------------------------------------------------------------
def direct_matrix_ssl(z, p, order=4, lam=1.0, mu=1.0, gamma=1.0):
    z = torch.nn.functional.normalize(z, dim=1)
    p = torch.nn.functional.normalize(p, dim=1)
    B, d = z.shape
    H = torch.eye(B, dtype=z.dtype, device=z.device) - torch.ones(B, B, dtype=z.dtype, device=z.device) / B
    eye = torch.eye(d, dtype=z.dtype, device=z.device)

    def log(A):
        X = A - eye
        out, P = torch.zeros_like(A), eye
        for k in range(1, order + 1):
            P = P @ X
            out = out + ((-1) ** (k + 1) / k) * P
        return out

    U = -torch.trace(lam * eye @ log(p.mT @ H @ z / B + mu * eye))
    A = -torch.trace((p.mT @ H @ p / B + mu * eye) @ log(z.mT @ H @ z / B + mu * eye))
    return U + gamma * A


def direct_mec(z, p, eps=64.0, order=4):
    z = torch.nn.functional.normalize(z, dim=1)
    p = torch.nn.functional.normalize(p, dim=1)
    B, d = z.shape
    lam = d / (B * eps)
    c = lam * p @ z.mT
    power, total = c, torch.trace(c)
    for k in range(2, order + 1):
        power = power @ c
        total = total + ((-1) ** (k + 1) / k) * torch.trace(power)
    return -total / lam / B


def direct_tcr(z, eps=0.2):
    z = torch.nn.functional.normalize(z, dim=1)
    B, d = z.shape
    return -0.5 * torch.logdet(torch.eye(d, dtype=z.dtype, device=z.device) + d / (B * eps) * z.mT @ z)


def target_table(big, tcr_size, repeats, device, sync, dtype=torch.float32):
    rows = []

    def pair(label, ours, ref, z, p, target):
        def step(f):
            def run():
                z.grad = None
                f(z, p).backward()

            return run

        with torch.no_grad():
            a, b = ours(z, p).item(), ref(z, p).item()
        med = run_interleaved({"ours": step(ours), "ref": step(ref)}, repeats, sync)
        rows.append((label, med["ours"] * 1e3, med["ref"] * 1e3, med["ref"] / med["ours"], abs(a - b) / abs(b), target))

    B, d = big
    z, p = inputs(B, d, dtype, device, seed=1)
    base = run_interleaved({"mm": lambda: z.detach().mT @ p}, repeats, sync)["mm"]
    pair(
        f"MatrixSSLLoss() vs direct official (B={B}, d={d})",
        lambda a, b: MF.matrix_ssl_loss(a, b),
        direct_matrix_ssl,
        z,
        p,
        ">= 5x faster",
    )
    ssl = run_interleaved(
        {"s": lambda: (setattr(z, "grad", None), MF.matrix_ssl_loss(z, p).backward())}, repeats, sync
    )["s"]
    rows.append(
        (
            f"MatrixSSLLoss() vs one (B x d)^T (B x d) matmul (B={B}, d={d})",
            ssl * 1e3,
            base * 1e3,
            ssl / base,
            0.0,
            "<= 6x the matmul (stretch)",
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pair(
            f"MECLoss() vs official B x B power loop (B={B}, d={d})",
            lambda a, b: MF.mec_loss(a, b),
            direct_mec,
            z,
            p,
            ">= 1.5x faster",
        )
    Bt, dt = tcr_size
    zt, _ = inputs(Bt, dt, dtype, device, seed=2)
    pair(
        f"TCRLoss(method='exact') vs d x d logdet (B={Bt}, d={dt})",
        lambda a, b: MF.tcr_loss(a),
        lambda a, b: direct_tcr(a),
        zt,
        zt.detach(),
        ">= 10x faster",
    )

    # Exact (eigh) paths against the eigendecomposition alone of the same matrix.
    n = min(B, d)
    g = torch.Generator().manual_seed(3)
    X = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    S = X @ X.mT / n + torch.eye(n, dtype=dtype, device=device)
    A = S.clone().requires_grad_(True)
    eig = run_interleaved({"e": lambda: torch.linalg.eigh(S)}, repeats, sync)["e"]

    def log_step():
        A.grad = None
        (matrix_log(A) * S).sum().backward()

    def mce_step():
        A.grad = None
        matrix_cross_entropy(S, A).backward()

    t = run_interleaved({"l": log_step, "m": mce_step}, repeats, sync)
    rows.append(
        (
            f"matrix_log(eigh) forward+backward vs eigh alone (n={n})",
            t["l"] * 1e3,
            eig * 1e3,
            t["l"] / eig,
            0.0,
            "<= 1.5x",
        )
    )
    rows.append(
        (
            f"matrix_cross_entropy(P, Q) (eigh) forward+backward vs eigh alone (n={n})",
            t["m"] * 1e3,
            eig * 1e3,
            t["m"] / eig,
            0.0,
            "<= 1.5x",
        )
    )
    zs, ps = inputs(2 * n, n, dtype, device, seed=4)

    def align_step():
        zs.grad = None
        MF.matrix_kl_alignment_loss(zs, ps, method="exact").backward()

    t_al = run_interleaved({"a": align_step}, repeats, sync)["a"]
    rows.append(
        (
            f"matrix_kl_alignment_loss(method='exact') vs eigh alone (B={2 * n}, d={n})",
            t_al * 1e3,
            eig * 1e3,
            t_al / eig,
            0.0,
            "<= 1.5x",
        )
    )
    return rows


MEMORY_CHILD = r"""
import json, sys, threading, time, torch
import matrixinfo.functional as MF
torch.set_num_threads(1)
B, d, which = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, sys.argv[4])
from bench_losses import direct_matrix_ssl

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

g = torch.Generator().manual_seed(0)
z = torch.randn(B, d, generator=g).requires_grad_(True)
p = torch.randn(B, d, generator=g)
fn = (lambda: MF.matrix_ssl_loss(z, p).backward()) if which == "ours" else (lambda: direct_matrix_ssl(z, p).backward())
fn()  # warm-up: allocator caches and lazily built kernels
z.grad = None
base, peak, done = rss_kib(), [0], [False]

def poll():
    while not done[0]:
        peak[0] = max(peak[0], rss_kib())
        time.sleep(0.0005)

t = threading.Thread(target=poll)
t.start()
fn()
done[0] = True
t.join()
print(json.dumps({"kib": max(peak[0] - base, 0)}))
"""


def memory_rows(B, d):
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    out = {}
    for which in ("ours", "direct"):
        # A fixed mmap threshold makes glibc return every large tensor to the
        # system when freed, so that the resident set tracks live memory.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
        res = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(B), str(d), which, here],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        out[which] = json.loads(res.stdout.strip().splitlines()[-1])["kib"] / 1024
    work = min(B, d) ** 2 * 4 / 2**20
    return [(f"MatrixSSLLoss() peak RSS growth (B={B}, d={d}, float32)", out["ours"], out["direct"], work)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat: a smoke test")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-grid", action="store_true", help="only the performance-target table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    if args.quick:
        sizes, dtypes, big, tcr_size, repeats = (
            [(32, 16), (16, 48)],
            [torch.float32, torch.float64],
            (64, 96),
            (16, 128),
            1,
        )
    else:
        sizes = [(1024, 2048), (256, 512), (512, 256), (256, 2048)]
        dtypes = [torch.float32, torch.float64]
        big, tcr_size, repeats = (1024, 2048), (256, 4096), args.repeats

    hw = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {device}"
    if device.type == "cuda":
        hw += f" ({torch.cuda.get_device_name()})"
    print(f"# matrixinfo loss benchmarks — {hw}\n")
    # Memory is the resident-set growth during one forward+backward after a
    # warm-up, sampled every 0.5 ms in a fresh subprocess (Linux /proc), with
    # glibc's mmap threshold fixed so that freed tensors leave the resident set.
    if not args.skip_grid:
        print("## Forward+backward of every loss (median ms; ratio to one (B x d)^T (B x d) matmul)\n")
        print("| dtype | B | d | loss | median ms | ratio to matmul |")
        print("|---|---|---|---|---|---|")
        for dt, B, d, name, ms, ratio in loss_table(sizes, dtypes, repeats, device, sync):
            print(f"| {dt} | {B} | {d} | {name} | {ms:.1f} | {ratio:.2f} |")
        print()
    print("## Performance targets (float32, forward+backward, medians of interleaved runs)\n")
    print(
        "| comparison | ours ms | reference ms | ratio (ref / ours, or ours / ref for <=) | value rel. diff | target |"
    )
    print("|---|---|---|---|---|---|")
    for label, ours, ref, ratio, diff, target in target_table(big, tcr_size, repeats, device, sync):
        print(f"| {label} | {ours:.1f} | {ref:.1f} | {ratio:.2f} | {diff:.1e} | {target} |")
    if device.type == "cpu":
        print()
        print("| memory | ours MiB | direct MiB | one min(B,d)^2 float32 work matrix, MiB |")
        print("|---|---|---|---|")
        for label, ours, direct, work in memory_rows(*big):
            print(f"| {label} | {ours:.1f} | {direct:.1f} | {work:.1f} |")


if __name__ == "__main__":
    main()
