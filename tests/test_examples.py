"""The examples run end to end on tiny budgets (they need the ``examples`` extra).

``train_ssl.py`` is imported and its ``main`` called in-process, so that the
tests share one interpreter and its imports; ``embedding_ranks.py`` is run
whole with ``runpy``. The two marked ``slow`` take most of the file's time.
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

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"



def _load_train_ssl():
    """examples/train_ssl.py as a module, registered as ``train_ssl`` (the name embedding_ranks.py imports)."""
    spec = importlib.util.spec_from_file_location("train_ssl", EXAMPLES / "train_ssl.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_ssl"] = module
    spec.loader.exec_module(module)
    return module


train_ssl = _load_train_ssl()


@pytest.fixture(scope="module")
def digits():
    return train_ssl.load_digits()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread for torch and scikit-learn, as the script uses on digits: on a busy
    machine more threads make these tiny models many times slower."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def _percent(label: str, text: str) -> float:
    match = re.search(rf"{re.escape(label)}[^:]*: ([0-9.]+)%", text)
    assert match, f"no '{label}' line in:\n{text}"
    return float(match.group(1))


def _check_outputs(out: Path, epochs: int) -> None:
    rows = (out / "effective_rank.csv").read_text().strip().splitlines()
    assert rows[0] == "epoch,train_loss,erank_features,erank_projections"
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(epochs + 1))  # epoch 0 is the initialization
    assert all(float(r.split(",")[2]) >= 1 for r in rows[1:])
    assert (out / "effective_rank.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["linear_probe"] <= 100 and 0 <= results["knn"] <= 100


def test_every_registry_entry_is_a_library_loss():
    # A loss renamed or removed in matrixinfo.losses would silently vanish from --loss choices.
    assert train_ssl.available_losses() == list(train_ssl.METHODS)


@pytest.mark.parametrize("name", list(train_ssl.METHODS))
def test_every_loss_takes_a_finite_training_step(digits, name):
    method = train_ssl.METHODS[name]
    g = train_ssl.seed_everything(0, torch.device("cpu"))
    model = train_ssl.Siamese("digits", 16, method.scheme)
    criterion = train_ssl.build_criterion(name, 16)
    x = digits.x_train[:32]
    views = [train_ssl.normalize(train_ssl.augment_digits(x, g), digits) for _ in range(method.views)]
    loss = train_ssl.compute_loss(model, criterion, method, views)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    grad = model.backbone[1][0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    if model.teacher is not None:  # the EMA teacher gets no gradient
        assert all(p.grad is None for p in model.teacher.parameters())


@pytest.mark.parametrize("name", ["matrix-ssl", "simclr"])
def test_train_ssl_digits_prints_accuracies_and_writes_outputs(tmp_path, capsys, name):
    train_ssl.main(["--loss", name, "--epochs", "2", "--batch-size", "256", "--out", str(tmp_path), "--no-progress"])
    printed = capsys.readouterr().out
    assert 0 <= _percent("linear probe accuracy", printed) <= 100
    assert 0 <= _percent("k-NN accuracy", printed) <= 100
    assert "effective rank of the test features' covariance" in printed
    _check_outputs(tmp_path, epochs=2)


def test_training_is_deterministic_given_the_seed(digits):
    def run(seed):
        r = train_ssl.train("byol", digits, epochs=1, seed=seed, batch_size=256, lr=3e-3, dim=16,
                      device=torch.device("cpu"), progress=False)
        return r["history"], r["linear_probe"], r["knn"]

    first = run(0)
    assert run(0) == first
    assert run(1)[0] != first[0]


def test_augmentations_keep_shape_and_range_and_follow_the_generator():
    for augment, shape in ((train_ssl.augment_digits, (8, 1, 8, 8)), (train_ssl.augment_cifar, (8, 3, 32, 32))):
        x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        a = augment(x, torch.Generator().manual_seed(1))
        b = augment(x, torch.Generator().manual_seed(1))
        assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
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
    assert data.x_test.shape == (32, 3, 32, 32) and data.y_train.shape == (80,)
    out = tmp_path / "out"
    train_ssl.main(["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--loss", "barlow-twins",
                    "--epochs", "1", "--batch-size", "32", "--knn-k", "5", "--out", str(out), "--no-progress",
                    "--threads", "1"])
    printed = capsys.readouterr().out
    assert 0 <= _percent("linear probe accuracy", printed) <= 100
    assert 0 <= _percent("k-NN accuracy (k=5", printed) <= 100
    _check_outputs(out, epochs=1)


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


@pytest.mark.parametrize("argv, message", [
    (["--loss", "nope"], "argument --loss: invalid choice: 'nope'"),
    (["--epochs", "0"], "argument --epochs: expected a positive number, got 0"),
    (["--losses", "byol"], "--losses is only used with --compare"),
    (["--data-dir", "somewhere"], "--data-dir is only used with --dataset cifar10"),
])
def test_command_line_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        train_ssl.parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_compare_writes_a_table(tmp_path, capsys):
    argv = ["--compare", "--losses", "matrix-ssl", "vicreg", "--seeds", "0", "1", "--epochs", "1",
            "--batch-size", "256", "--out", str(tmp_path), "--no-progress"]
    train_ssl.main(argv)
    table = (tmp_path / "compare.md").read_text()
    assert "python examples/train_ssl.py " + " ".join(argv[:-3]) in table
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == [
        "| matrix-ssl", "| vicreg", "| *raw pixels (no network)*", "| *random init (untrained encoder)*"]
    for row in rows[1:3]:
        probe, knn = (float(cell.split(" ± ")[0]) for cell in row.split(" | ")[2:4])
        assert 0 <= probe <= 100 and 0 <= knn <= 100 and " ± " in row
    assert len((tmp_path / "compare.csv").read_text().strip().splitlines()) == 1 + 2 * 2
    assert (tmp_path / "compare_erank.png").stat().st_size > 0
    assert "| matrix-ssl |" in capsys.readouterr().out


@pytest.mark.slow
def test_embedding_ranks_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLES / "embedding_ranks.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "covariance erank" in printed and "intra-class" in printed
    assert (tmp_path / "embedding_ranks_out" / "spectra.png").stat().st_size > 0
