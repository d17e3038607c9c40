"""Real multi-process tests of ``gather_distributed``.

2, 3 and 4 processes on the gloo backend each hold a slice of one global batch
(equal slices, and ragged ones with a process holding no rows), run a tiny
model wrapped in DistributedDataParallel and one loss with
``gather_distributed=True``; the loss value and the parameter gradients after
DDP's averaging must equal those of one process holding the whole batch (no
DDP, no process group). Every batch-statistics loss runs on both paths of
``matrixinfo._distributed.batch``, forced with its test switch: the row gather
and the all-reduce of moments. The processes of one world size are spawned
once for all losses (start-up costs seconds); each writes its results to a
file.

Also checked in the two-process world: the loss terms (``return_terms=True``)
equal those of one process, like the value; the automatic path choice; a loss
compiled with ``torch.compile(fullgraph=True)`` under DDP; a model sharded with
``fully_shard`` (FSDP2). Two naive variants run alongside to show the
comparison can fail: local statistics (``gather_distributed=False``) give a
different value and gradient, and a plain ``all_gather`` that carries no
gradient to the other processes' rows gives the right value but gradients
``1/W`` too small (lightly issue 1977; REFERENCES.md section 8).
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
from loss_registry import LossCase, available, n_views, params
from torch.nn.parallel import DistributedDataParallel

from matrixinfo import _distributed

# Rows per process: equal, and ragged with an empty process.
LAYOUTS = {
    2: {"equal": (6, 6), "ragged": (9, 0)},
    3: {"equal": (4, 4, 4), "ragged": (10, 14, 8)},
    4: {"equal": (3, 3, 3, 3), "ragged": (4, 0, 6, 2)},
}
PATHS = ("rows", "moments")
IN_FEATURES, DIM = 8, 6
STEPS = 2  # two steps, so CorInfoMax's running state from step 1 is used in step 2
# Everything is float64; the only differences are the order of summations
# (gathered rows vs all-reduced sums, DDP's all-reduce): rounding-level,
# relative to values and gradients of order 1 to 100.
TOL = 1e-12
NAIVE = ("BarlowTwinsLoss", "SimCLRLoss", "VICRegLoss", "TCRLoss[exact]")
# (loss, path): losses without a host read (a Cholesky status check, a Taylor
# radius check) trace with fullgraph=True.
COMPILED = (("BarlowTwinsLoss", None), ("BarlowTwinsLoss", "rows"), ("VICRegLoss", None))


def _global_inputs(case: LossCase, total: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(total, IN_FEATURES, generator=g, dtype=torch.float64)
    return [x + 0.4 * torch.randn(total, IN_FEATURES, generator=g, dtype=torch.float64) for _ in range(n_views(case))]


def _model() -> torch.nn.Module:
    torch.manual_seed(7)
    return torch.nn.Linear(IN_FEATURES, DIM).double()


def _all_gather_without_autograd(z: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """The naive gather: other processes' rows arrive as constants; only the
    local slot keeps its graph."""
    parts = [torch.empty_like(z) for _ in range(world)]
    dist.all_gather(parts, z.detach().contiguous())
    parts[rank] = z
    return torch.cat(parts)


def _run(
    case: LossCase,
    rank: int,
    counts,
    mode: str = "gather",
    wrap: str = "ddp",
    compiled: bool = False,
    terms: bool = False,
):
    """Per step: (loss value, parameter gradients), and the loss's terms if
    ``terms`` (``return_terms=True``). ``counts``: rows per process; ``mode``:
    "gather" (gather_distributed=True), "local" (False) or "naive_gather";
    ``wrap``: "ddp" or "fsdp" (ignored with one process)."""
    world = len(counts)
    model = _model()
    if world == 1:
        net = model
    elif wrap == "ddp":
        net = DistributedDataParallel(model)
    else:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        net = fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
    start = sum(counts[:rank])
    local = [x[start : start + counts[rank]] for x in _global_inputs(case, sum(counts))]
    loss_fn = case.build(DIM, gather_distributed=(mode == "gather"))
    if compiled:
        loss_fn = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    out = []
    for _ in range(STEPS):
        model.zero_grad()
        # One forward for all views: DDP expects one forward per backward.
        zs = list(net(torch.cat(local)).split([counts[rank]] * len(local)))
        if mode == "naive_gather":
            zs = [_all_gather_without_autograd(z, rank, world) for z in zs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # Taylor radius warnings: same on both sides
            if terms:
                loss, parts = loss_fn(*zs, return_terms=True)
            else:
                loss = case.call(loss_fn, zs)
        loss.backward()
        grads = [p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad for p in model.parameters()]
        out.append((loss.detach().clone(), [g.detach().clone() for g in grads]))
        if terms:
            out[-1] += ({k: v.clone() for k, v in parts.items()},)
    return out


def _guarded(results, key, f):
    try:
        results[key] = f()
    except Exception:  # recorded and reported per case by the parent
        results[key] = traceback.format_exc()
        print(key, results[key], flush=True)  # a failure on one rank desynchronizes the others


def _worker(rank: int, world: int, init_file: str, out_dir: str, case_ids: list[str]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),
    )
    cases = {c.id: c for c in available(distributed=True)}
    results = {}
    try:
        for layout, counts in LAYOUTS[world].items():
            for path in PATHS:
                _distributed._force_path = path
                for cid in case_ids:
                    _guarded(
                        results, (layout, path, cid), lambda cid=cid, counts=counts: _run(cases[cid], rank, counts)
                    )
        _distributed._force_path = None
        if world == 2:
            # The loss terms (return_terms=True): global, as the loss is.
            for layout, counts in LAYOUTS[2].items():
                for path in PATHS:
                    _distributed._force_path = path
                    for cid in case_ids:
                        _guarded(
                            results,
                            ("terms", layout, path, cid),
                            lambda cid=cid, counts=counts: _run(cases[cid], rank, counts, terms=True),
                        )
            _distributed._force_path = None
            counts = LAYOUTS[2]["equal"]
            for cid, path in COMPILED:
                _distributed._force_path = path
                _guarded(
                    results, ("compiled", cid, path), lambda cid=cid: _run(cases[cid], rank, counts, compiled=True)
                )
            _distributed._force_path = None
            _guarded(
                results, ("fsdp", "BarlowTwinsLoss"), lambda: _run(cases["BarlowTwinsLoss"], rank, counts, wrap="fsdp")
            )
            z = torch.zeros(3, 4, dtype=torch.float64)
            results["auto"] = {
                (dim, n): _distributed.batch("f", True, z[: n // 2], dim=dim).moments for dim in (4, 5) for n in (4, 6)
            }
            # Too few rows in the global batch: the same error on every process.
            from matrixinfo.functional import barlow_twins_loss

            try:
                barlow_twins_loss(*torch.zeros(2, 1 - rank, DIM, dtype=torch.float64), gather_distributed=True)
            except ValueError as e:
                results["too_few"] = str(e)
            for cid in NAIVE:
                if cid in cases:
                    results[("local", cid)] = _run(cases[cid], rank, counts, mode="local")
                    results[("naive_gather", cid)] = _run(cases[cid], rank, counts, mode="naive_gather")
    finally:
        _distributed._force_path = None
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.destroy_process_group()


def _spawn(tmp_path_factory, world: int):
    out_dir = tmp_path_factory.mktemp(f"distributed{world}")
    case_ids = [c.id for c in available(distributed=True)]
    mp.spawn(_worker, args=(world, str(out_dir / "init"), str(out_dir), case_ids), nprocs=world, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(world)]


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    cache = {}

    def get(world: int):
        if world not in cache:
            cache[world] = _spawn(tmp_path_factory, world)
        return cache[world]

    return get


def _assert_same(got, expected, what: str, tol: float = TOL) -> None:
    for step, ((value, grads), (ref_value, ref_grads)) in enumerate(zip(got, expected)):
        torch.testing.assert_close(
            value, ref_value, rtol=tol, atol=tol, msg=lambda m, step=step: f"{what} step {step} value: {m}"
        )
        for i, (g, r) in enumerate(zip(grads, ref_grads)):
            torch.testing.assert_close(
                g, r, rtol=tol, atol=tol, msg=lambda m, step=step, i=i: f"{what} step {step} grad {i}: {m}"
            )


def _check(results_per_rank, key, case, counts, what):
    reference = _run(case, rank=0, counts=(sum(counts),))
    for rank, results in enumerate(results_per_rank):
        got = results[key]
        assert not isinstance(got, str), f"{what} rank {rank} raised:\n{got}"
        _assert_same(got, reference, f"{what} rank {rank}")


@pytest.mark.parametrize("world", sorted(LAYOUTS))
@pytest.mark.parametrize("case", params(kinds=("pair", "views"), distributed=True))
def test_processes_equal_one_process_with_the_whole_batch(world, case, worlds):
    results = worlds(world)
    for layout, counts in LAYOUTS[world].items():
        for path in PATHS:
            _check(results, (layout, path, case.id), case, counts, f"{case.id} W={world} {layout} {counts} {path}")


@pytest.mark.parametrize("case", params(kinds=("pair", "views"), distributed=True))
def test_loss_terms_of_two_processes_equal_one_process_with_the_whole_batch(case, worlds):
    results_per_rank = worlds(2)
    for layout, counts in LAYOUTS[2].items():
        for path in PATHS:
            what = f"{case.id} terms W=2 {layout} {counts} {path}"
            reference = _run(case, rank=0, counts=(sum(counts),), terms=True)
            for rank, results in enumerate(results_per_rank):
                got = results[("terms", layout, path, case.id)]
                assert not isinstance(got, str), f"{what} rank {rank} raised:\n{got}"
                _assert_same([g[:2] for g in got], [r[:2] for r in reference], f"{what} rank {rank}")
                for step, (g, r) in enumerate(zip(got, reference)):
                    assert set(g[2]) == set(r[2]), what
                    for name in r[2]:
                        torch.testing.assert_close(
                            g[2][name],
                            r[2][name],
                            rtol=TOL,
                            atol=TOL,
                            msg=lambda m, where=f"{what} rank {rank} step {step} {name}": f"{where}: {m}",
                        )


def test_path_choice_by_size(worlds):
    # Two processes holding n/2 rows each: moments when dim <= n.
    auto = worlds(2)[0]["auto"]
    assert auto == {(4, 4): True, (4, 6): True, (5, 4): False, (5, 6): True}


@pytest.mark.parametrize(("cid", "path"), COMPILED)
def test_compiled_loss_under_ddp(cid, path, worlds):
    case = {c.id: c for c in available(distributed=True)}[cid]
    _check(worlds(2), ("compiled", cid, path), case, LAYOUTS[2]["equal"], f"compiled {cid} {path}")


def test_fully_sharded_model(worlds):
    case = {c.id: c for c in available(distributed=True)}["BarlowTwinsLoss"]
    _check(worlds(2), ("fsdp", "BarlowTwinsLoss"), case, LAYOUTS[2]["equal"], "fully_shard BarlowTwinsLoss")


def test_too_few_rows_in_the_global_batch(worlds):
    for results in worlds(2):
        assert results["too_few"] == (
            "barlow_twins_loss: expected the global batch of all processes to have B >= 2 rows, "
            "got 1 (rows per process: [1, 0])."
        )


def test_without_process_group_the_batch_is_local():
    z = torch.randn(5, 3, dtype=torch.float64)
    b = _distributed.batch("f", True, z, z)
    assert (b.n, b.moments) == (5, False) and b.rows[0] is z


def test_naive_variants_are_detected(worlds):
    checked = 0
    results_per_rank = worlds(2)
    counts = LAYOUTS[2]["equal"]
    world = len(counts)
    for cid in NAIVE:
        key = ("local", cid)
        if key not in results_per_rank[0]:
            continue
        case = {c.id: c for c in available(distributed=True)}[cid]
        reference = _run(case, rank=0, counts=(sum(counts),))
        for results in results_per_rank:
            # Local statistics: a different loss, hence different value and gradients.
            (value, grads) = results[("local", cid)][0]
            assert not torch.allclose(value, reference[0][0], rtol=1e-3, atol=0), cid
            assert not all(torch.allclose(g, r, rtol=1e-3, atol=0) for g, r in zip(grads, reference[0][1])), cid
            # Plain all_gather: the value is right, the gradient 1/W of the true one.
            naive = results[("naive_gather", cid)]
            scaled = [(v, [g * world for g in gs]) for v, gs in naive]
            _assert_same(scaled, reference, f"{cid} naive all_gather times W", tol=1e-10)
            assert not all(torch.allclose(g, r, rtol=1e-3, atol=0) for g, r in zip(naive[0][1], reference[0][1]))
        checked += 1
    assert checked >= 3
