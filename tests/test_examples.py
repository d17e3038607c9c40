"""The examples run end to end on tiny budgets (they need the ``examples`` extra).

``train_ssl.py`` is imported and its ``main`` called in-process, so that the tests share one
interpreter and its imports; the experiments' runner and report run on a tiny budget; the
documentation's results page is checked against the committed results files.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")
pytest.importorskip("matplotlib")
pytest.importorskip("mnist1d")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
RESULTS = EXAMPLES / "results"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


train_ssl = _load("train_ssl", EXAMPLES / "train_ssl.py")  # the name embedding_ranks.py imports
run_table = _load("run_table", EXAMPLES / "experiments" / "run_table.py")
report = _load("ssl_report", EXAMPLES / "experiments" / "report.py")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mnist1d")


@pytest.fixture(scope="module")
def mnist1d(cache):
    return train_ssl.load_mnist1d(cache)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread for torch and scikit-learn: on a busy machine more make these tiny models slower."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def test_mnist1d_is_generated_locally_with_the_packages_defaults(mnist1d, cache):
    assert mnist1d.x_train.shape == (4000, 1, 40) and mnist1d.x_test.shape == (1000, 1, 40)
    assert sorted(set(mnist1d.y_train.tolist())) == list(range(10))
    # The generator standardizes the whole set; the cache gives back the same arrays.
    x = torch.cat([mnist1d.x_train, mnist1d.x_test]).double()
    assert abs(float(x.mean())) < 1e-2 and abs(float(x.std()) - 1) < 1e-2
    again = train_ssl.load_mnist1d(cache)
    assert torch.equal(again.x_train, mnist1d.x_train) and np.array_equal(again.y_test, mnist1d.y_test)


def test_every_registry_entry_is_a_library_loss():
    # A loss renamed or removed in matrixinfo.losses would silently vanish from --loss choices.
    assert train_ssl.available_losses() == list(train_ssl.METHODS)


@pytest.mark.parametrize("name", list(train_ssl.METHODS))
def test_every_loss_takes_a_finite_training_step(mnist1d, name):
    method = train_ssl.METHODS[name]
    g = train_ssl.seed_everything(0, torch.device("cpu"))
    model = train_ssl.Siamese("mnist1d", 16, method.scheme)
    criterion = train_ssl.build_criterion(name, 16)
    views = [train_ssl.augment_1d(mnist1d.x_train[:32], g) for _ in range(method.views)]
    loss = train_ssl.compute_loss(model, criterion, method, views)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    grad = model.backbone[0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    if model.teacher is not None:  # the EMA teacher gets no gradient
        assert all(p.grad is None for p in model.teacher.parameters())


def test_default_knob_is_the_class_default():
    assert train_ssl.default_knob("simclr", 64) == 0.5
    assert train_ssl.default_knob("uniformity-mce", 64) == 1 / 64  # lam=None means 1/d
    assert train_ssl.default_knob("byol", 64) is None


def test_train_ssl_prints_the_three_encoders_and_writes_results(tmp_path, capsys, cache):
    train_ssl.main(["--epochs", "2", "--out", str(tmp_path), "--no-progress", "--cache-dir", str(cache)])
    printed = capsys.readouterr().out
    for label in ("trained encoder", "same encoder, untrained", "raw input"):
        assert re.search(rf"{label} +[0-9.]+% +[0-9.]+%", printed), printed
    results = json.loads((tmp_path / "results.json").read_text())
    for key in ("linear_probe", "knn", "untrained_linear_probe", "raw_linear_probe"):
        assert 0 <= results[key] <= 1
    assert len(results["effective_rank"]) == 3 and len(results["loss"]) == 2  # epoch 0 is the initialization
    assert results["config"]["loss"] == "matrix-ssl" and results["config"]["epochs"] == 2
    rows = (tmp_path / "history.csv").read_text().strip().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [0, 1, 2]
    assert (tmp_path / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_ssl_digits(tmp_path, capsys):
    train_ssl.main(
        ["--dataset", "digits", "--loss", "simclr", "--epochs", "1", "--out", str(tmp_path), "--no-progress"]
    )
    assert 0 <= json.loads((tmp_path / "results.json").read_text())["knn"] <= 1


def test_training_is_deterministic_given_the_seed(mnist1d):
    def run(seed):
        r = train_ssl.train(
            "byol",
            mnist1d,
            epochs=1,
            seed=seed,
            batch_size=1000,
            lr=3e-3,
            dim=16,
            device=torch.device("cpu"),
            progress=False,
        )
        return r["history"], r["linear_probe"], r["knn"]

    first = run(0)
    assert run(0) == first
    assert run(1)[0] != first[0]


@pytest.mark.parametrize(
    "augment, shape", [("augment_1d", (8, 1, 40)), ("augment_digits", (8, 1, 8, 8)), ("augment_cifar", (8, 3, 32, 32))]
)
def test_augmentations_keep_shape_and_follow_the_generator(augment, shape):
    augment = getattr(train_ssl, augment)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.allclose(a, x)


def _fake_cifar(root: Path, per_batch: int = 16, n_test: int = 32) -> Path:
    """A tiny stand-in in the CIFAR-10 python format: pickled dicts with b'data' (N, 3072) uint8 and b'labels'."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder


def test_train_ssl_cifar10_from_a_local_copy(tmp_path, capsys):
    _fake_cifar(tmp_path / "data")
    data = train_ssl.load_cifar10(tmp_path / "data")
    assert data.x_train.shape == (80, 3, 32, 32) and data.x_train.dtype == torch.uint8
    out = tmp_path / "out"
    train_ssl.main(
        [
            "--dataset",
            "cifar10",
            "--data-dir",
            str(tmp_path / "data"),
            "--loss",
            "barlow-twins",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--knn-k",
            "5",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert "k-NN (k=5)" in capsys.readouterr().out
    assert 0 <= json.loads((out / "results.json").read_text())["linear_probe"] <= 1


def test_cifar10_errors_are_clear(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train_ssl.main(["--dataset", "cifar10"])
    assert exc.value.code == 2 and "--dataset cifar10 needs --data-dir" in capsys.readouterr().err
    folder = _fake_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(SystemExit, match=r"missing data_batch_3\. .*nothing is downloaded"):
        train_ssl.main(["--dataset", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1"])
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"images": []}, f)
    with pytest.raises(SystemExit, match=r"data_batch_3: not a CIFAR-10 python batch"):
        train_ssl.main(["--dataset", "cifar10", "--data-dir", str(folder), "--epochs", "1"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--loss", "nope"], "argument --loss: invalid choice: 'nope'"),
        (["--epochs", "0"], "argument --epochs: expected a positive number, got 0"),
        (["--data-dir", "somewhere"], "--data-dir is only used with --dataset cifar10"),
    ],
)
def test_command_line_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        train_ssl.parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=30), rng.normal(size=30)
    assert report.spearman(list(x), list(y)) == pytest.approx(spearmanr(x, y).statistic, rel=1e-10)


@pytest.mark.slow
def test_table_runner_and_report(tmp_path, capsys, cache):
    argv = [
        "--out",
        str(tmp_path),
        "--part",
        "table",
        "sweep",
        "--losses",
        "simclr",
        "--seeds",
        "0",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "1000",
        "--cache-dir",
        str(cache),
    ]
    run_table.main(argv)
    runs = report.load_runs(tmp_path)
    assert sum(r["part"] == "table" for r in runs) == 2 and sum(r["part"] == "baseline" for r in runs) == 2
    assert sum(r["part"] == "sweep" for r in runs) == 8  # (lr x 1/3, x 3; temperature x 0.5, x 2) x 2 seeds
    run_table.main(argv)  # a rerun skips what is done
    assert len(report.load_runs(tmp_path)) == len(runs)
    report.main([str(tmp_path)])
    tables = (tmp_path / "tables.rst").read_text()
    assert "simclr" in tables and "temperature = 0.25" in tables and "*untrained encoder*" in tables and " ± " in tables
    assert (tmp_path / "erank.png").stat().st_size > 0 and (tmp_path / "uniformity.png").stat().st_size > 0


def test_committed_tables_are_the_report_of_the_committed_runs():
    # The documentation includes tables.rst: it must be what report.py makes of runs.jsonl.
    folder = RESULTS / "mnist1d"
    summary = report.summarize(report.load_runs(folder))
    assert (folder / "tables.rst").read_text() == report.render(summary)
    assert json.loads((folder / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_numbers_in_the_results_page_are_the_committed_ones():
    """Every percentage and effective rank quoted in docs/results.rst's prose comes from a results file."""
    text = (ROOT / "docs" / "results.rst").read_text()
    main_run = json.loads((RESULTS / "matrix-ssl-mnist1d" / "results.json").read_text())
    summary = json.loads((RESULTS / "mnist1d" / "summary.json").read_text())
    allowed = {
        f"{100 * main_run[k]:.1f}"
        for k in ("linear_probe", "knn", "untrained_linear_probe", "untrained_knn", "raw_linear_probe", "raw_knn")
    }
    allowed |= {
        f"{100 * (main_run['linear_probe'] - main_run['untrained_linear_probe']):.1f}",
        f"{main_run['effective_rank'][0]:.1f}",
        f"{main_run['effective_rank'][-1]:.1f}",
        f"{main_run['total_seconds']:.0f}",
    }
    for rows in (summary["table"], summary["sweep"], summary["ablation"]):
        for row in rows:
            allowed |= {part for cell in row[2:] for part in cell.split(" ± ")}
    allowed |= {summary["uniformity"]["spearman"]}
    quoted = re.findall(r"(?<![\w.])(\d+\.\d+)(?:%| points| ±)", text)
    assert quoted, "the results page quotes no number"
    assert [q for q in quoted if q not in allowed] == []
    assert "../examples/results/mnist1d/tables.rst" in text


@pytest.mark.slow
def test_embedding_ranks_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLES / "embedding_ranks.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "covariance erank" in printed and "intra-class" in printed
    assert (tmp_path / "embedding_ranks_out" / "spectra.png").stat().st_size > 0


def test_finetune_lm_runs_and_reports(tmp_path, monkeypatch):
    """The fine-tuning experiment end to end at a toy budget: its report files and table."""
    argv = ["finetune_lm.py", "--out", str(tmp_path), "--vocab", "256", "--dim", "16", "--context", "16",
            "--pretrain-steps", "3", "--ft-steps", "2", "--ft-tokens", "3000", "--seeds", "0",
            "--weights", "0.3", "--detached", "--threads", "1"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    runpy.run_path(str(EXAMPLES / "finetune_lm.py"), run_name="__main__")
    table = (tmp_path / "finetune_lm.md").read_text()
    assert "| ce+mce w=0.3 |" in table and "better in" in table
    assert json.loads((tmp_path / "finetune_lm.json").read_text())
    assert (tmp_path / "finetune_lm.png").stat().st_size > 0
