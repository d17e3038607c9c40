"""Real two-process test of ``gather_distributed``.

Two processes on the gloo backend each hold half of one global batch, run a
tiny model wrapped in DistributedDataParallel and one loss with
``gather_distributed=True``; the loss value and the parameter gradients after
DDP's averaging must equal those of one process holding the whole batch (no
DDP, no process group). The processes are spawned once for all losses
(start-up costs seconds); each writes its results to a file.

Two naive variants run alongside to show the comparison can fail:
local statistics (``gather_distributed=False``) give a different value and
gradient, and a plain ``all_gather`` that carries no gradient to the other
processes' rows gives the right value but gradients ``1/W`` too small
(lightly issue 1977; REFERENCES.md section 8).
"""

from __future__ import annotations

import datetime
import os
import traceback
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from loss_registry import LossCase, available, n_views, params

WORLD = 2
GLOBAL_B = 12  # samples in the global batch, GLOBAL_B / WORLD per process
IN_FEATURES, DIM = 8, 6
STEPS = 2  # two steps, so CorInfoMax's running state from step 1 is used in step 2
# Everything is float64; the only differences are the order of summations
# (gathered vs local blocks, DDP's all-reduce), rounding-level.
TOL = 1e-10
NAIVE = ("BarlowTwinsLoss", "SimCLRLoss", "VICRegLoss", "TCRLoss[exact]")


def _global_inputs(case: LossCase) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(GLOBAL_B, IN_FEATURES, generator=g, dtype=torch.float64)
    return [x + 0.4 * torch.randn(GLOBAL_B, IN_FEATURES, generator=g, dtype=torch.float64) for _ in range(n_views(case))]


def _model() -> torch.nn.Module:
    torch.manual_seed(7)
    return torch.nn.Linear(IN_FEATURES, DIM).double()


def _all_gather_without_autograd(z: torch.Tensor, rank: int) -> torch.Tensor:
    """The naive gather: other processes' rows arrive as constants; only the
    local slot keeps its graph."""
    parts = [torch.empty_like(z) for _ in range(WORLD)]
    dist.all_gather(parts, z.detach().contiguous())
    parts[rank] = z
    return torch.cat(parts)


def _run(case: LossCase, rank: int, world: int, mode: str = "gather"):
    """Per step: (loss value, parameter gradients). ``mode``: "gather"
    (gather_distributed=True), "local" (False) or "naive_gather"."""
    model = _model()
    net = DistributedDataParallel(model) if world > 1 else model
    per = GLOBAL_B // world
    local = [x[rank * per : (rank + 1) * per] for x in _global_inputs(case)]
    loss_fn = case.build(DIM, gather_distributed=(mode == "gather"))
    out = []
    for _ in range(STEPS):
        model.zero_grad()
        # One forward for all views: DDP expects one forward per backward.
        zs = list(net(torch.cat(local)).split(per))
        if mode == "naive_gather":
            zs = [_all_gather_without_autograd(z, rank) for z in zs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # Taylor radius warnings: same on both sides
            loss = case.call(loss_fn, zs)
        loss.backward()
        out.append((loss.detach().clone(), [p.grad.detach().clone() for p in model.parameters()]))
    return out


def _worker(rank: int, init_file: str, out_dir: str, case_ids: list[str]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    cases = {c.id: c for c in available(distributed=True)}
    results = {}
    try:
        for cid in case_ids:
            try:
                results[cid] = _run(cases[cid], rank, WORLD)
            except Exception:  # recorded and reported per loss by the parent
                results[cid] = traceback.format_exc()
        for cid in NAIVE:
            if cid in cases:
                results[("local", cid)] = _run(cases[cid], rank, WORLD, mode="local")
                results[("naive_gather", cid)] = _run(cases[cid], rank, WORLD, mode="naive_gather")
    finally:
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("distributed")
    case_ids = [c.id for c in available(distributed=True)]
    mp.spawn(_worker, args=(str(out_dir / "init"), str(out_dir), case_ids), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _assert_same(got, expected, what: str, tol: float = TOL) -> None:
    for step, ((value, grads), (ref_value, ref_grads)) in enumerate(zip(got, expected)):
        torch.testing.assert_close(value, ref_value, rtol=tol, atol=tol, msg=lambda m: f"{what} step {step} value: {m}")
        for i, (g, r) in enumerate(zip(grads, ref_grads)):
            torch.testing.assert_close(g, r, rtol=tol, atol=tol, msg=lambda m: f"{what} step {step} grad {i}: {m}")


@pytest.mark.parametrize("case", params(kinds=("pair", "views"), distributed=True))
def test_two_processes_equal_one_process_with_the_whole_batch(case, distributed_results):
    reference = _run(case, rank=0, world=1)
    for rank, results in enumerate(distributed_results):
        got = results[case.id]
        assert not isinstance(got, str), f"rank {rank} raised:\n{got}"
        _assert_same(got, reference, f"{case.id} rank {rank}")


def test_naive_variants_are_detected(distributed_results):
    checked = 0
    for cid in NAIVE:
        key = ("local", cid)
        if key not in distributed_results[0]:
            continue
        case = {c.id: c for c in available(distributed=True)}[cid]
        reference = _run(case, rank=0, world=1)
        for results in distributed_results:
            # Local statistics: a different loss, hence different value and gradients.
            (value, grads) = results[("local", cid)][0]
            assert not torch.allclose(value, reference[0][0], rtol=1e-3, atol=0), cid
            assert not all(torch.allclose(g, r, rtol=1e-3, atol=0) for g, r in zip(grads, reference[0][1])), cid
            # Plain all_gather: the value is right, the gradient 1/W of the true one.
            naive = results[("naive_gather", cid)]
            half = [(v, [g * WORLD for g in gs]) for v, gs in naive]
            _assert_same(half, reference, f"{cid} naive all_gather times W")
            assert not all(torch.allclose(g, r, rtol=1e-3, atol=0) for g, r in zip(naive[0][1], reference[0][1]))
        checked += 1
    assert checked >= 3
