"""examples/char_lm.py runs end to end on a tiny budget (torch and matrixinfo only).

The script is imported and its functions and ``main`` called in-process, on a
small slice of the standard library's source and a tiny model.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load_char_lm():
    spec = importlib.util.spec_from_file_location("char_lm", EXAMPLES / "char_lm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["char_lm"] = module
    spec.loader.exec_module(module)
    return module


char_lm = _load_char_lm()
import char_lm_compare  # noqa: E402  (examples/experiments/, on the path char_lm.py sets)

TINY = [
    "--chars",
    "40000",
    "--steps",
    "12",
    "--batch-size",
    "4",
    "--context",
    "16",
    "--dim",
    "16",
    "--layers",
    "1",
    "--heads",
    "2",
    "--eval-every",
    "6",
    "--val-mce-tokens",
    "32",
    "--no-progress",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    corpus = char_lm.load_stdlib_text(40_000)
    return corpus, *char_lm.split(char_lm.encode(corpus.text), 16)


def _tiny_config(**overrides):
    return char_lm.Config(
        **{
            **dict(steps=12, batch_size=4, context=16, dim=16, layers=1, heads=2, eval_every=6, val_mce_tokens=32),
            **overrides,
        }
    )


def test_the_text_is_the_standard_librarys_own_source(data):
    corpus, train_ids, val_ids = data
    assert len(corpus.text) == 40_000 and corpus.files == sorted(corpus.files)
    assert all(name.endswith(".py") for name in corpus.files)
    assert (char_lm.stdlib_dir() / "os.py").is_file()
    assert "import " in corpus.text and "def " in corpus.text
    # 40 blocks of 1000 characters, every tenth held out: 10% validation, nothing lost or shared.
    assert train_ids.numel() == 36_000 and val_ids.numel() == 4_000
    ids = char_lm.encode(corpus.text)
    assert torch.equal(val_ids[:1000], ids[9000:10000]) and torch.equal(train_ids[9000:10000], ids[10000:11000])
    assert 0 <= int(ids.min()) and int(ids.max()) < len(char_lm.VOCAB) == 98


def test_encoding_round_trips_printable_ascii_and_maps_the_rest_to_other():
    text = "def f(x):\n\treturn x ~ 1  # é\r"
    ids = char_lm.encode(text)
    assert char_lm.decode(ids.tolist()) == text[:-2] + "\ufffd\ufffd"
    assert ids[-1] == ids[-2] == char_lm.OTHER


@pytest.mark.parametrize("loss", char_lm.LOSSES)
def test_each_loss_trains_to_finite_metrics(data, loss):
    _, train_ids, val_ids = data
    r = char_lm.train(loss, train_ids, val_ids, _tiny_config(), seed=0, device=torch.device("cpu"), progress=False)
    assert r["diverged"] is None and r["warnings"] == []
    for key in ("val_ce", "val_bits", "val_mce", "val_mce_train_method", "head_erank"):
        assert math.isfinite(r[key]), key
    assert 0 <= r["val_acc"] <= 100
    assert math.isclose(r["val_bits"], r["val_ce"] / math.log(2))
    assert 1 <= r["head_erank"] <= 16
    assert [p["step"] for p in r["history"]] == [0, 6, 12]
    assert all(math.isfinite(p["val_ce"]) for p in r["history"])
    assert r["val_ce"] < math.log(98) + 0.5  # near or below a uniform guess after 12 steps


def test_training_is_deterministic_given_the_seed(data):
    _, train_ids, val_ids = data

    def run(seed):
        r = char_lm.train(
            "ce+mce",
            train_ids,
            val_ids,
            _tiny_config(steps=6, eval_every=3),
            seed=seed,
            device=torch.device("cpu"),
            progress=False,
        )
        return r["history"], r["val_ce"], r["val_acc"], r["val_mce"]

    first = run(0)
    assert run(0) == first
    assert run(1)[0] != first[0]


def test_both_losses_see_the_same_batches_and_start_from_the_same_model(data):
    cfg = _tiny_config()
    assert torch.equal(char_lm.batch_starts(1000, cfg, 3), char_lm.batch_starts(1000, cfg, 3))
    _, train_ids, val_ids = data
    runs = [
        char_lm.train(
            loss, train_ids, val_ids, _tiny_config(steps=1), seed=0, device=torch.device("cpu"), progress=False
        )
        for loss in char_lm.LOSSES
    ]
    assert runs[0]["history"][0]["val_ce"] == runs[1]["history"][0]["val_ce"]  # the same initialization


def test_single_run_prints_held_out_metrics(capsys):
    char_lm.main(["--loss", "ce", *TINY])
    printed = capsys.readouterr().out
    assert "Python " in printed and "top-level .py files" in printed
    match = re.search(r"held-out next-character accuracy: ([0-9.]+)%", printed)
    assert match and 0 <= float(match.group(1)) <= 100
    assert re.search(r"held-out cross-entropy: [0-9.]+ nats/char \([0-9.]+ bits/char\)", printed)


def test_compare_writes_the_markdown_table(tmp_path, capsys):
    argv = ["--compare", "--seeds", "0", "1", *TINY, "--out", str(tmp_path)]
    runs = char_lm.main(argv)
    assert [(r["loss"], r["seed"]) for r in runs] == [(loss, seed) for seed in (0, 1) for loss in char_lm.LOSSES]
    table = (tmp_path / "char_lm.md").read_text()
    assert "python examples/char_lm.py --compare --seeds 0 1 --chars 40000" in table
    assert str(char_lm.stdlib_dir()) not in table  # no path of this machine
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ce")]
    assert [row[0] for row in rows] == ["| ce", "| ce+mce", "| ce+mce-detached"]
    for row in rows:
        ce, acc = (float(cell.split(" ± ")[0]) for cell in (row[2], row[4]))
        assert math.isfinite(ce) and 0 <= acc <= 100 and " ± " in row[2]
    for loss in ("ce+mce", "ce+mce-detached"):
        assert re.search(
            rf"- {re.escape(loss)} versus ce: \*\*({re.escape(loss)} wins|ce wins|no consistent winner)", table
        ), loss
    curves = (tmp_path / "char_lm_curves.csv").read_text().strip().splitlines()
    assert curves[0] == "loss,seed,step,train_loss,train_ce,val_ce_sample" and len(curves) == 1 + 6 * 3
    assert not _has_matplotlib() or (tmp_path / "char_lm_curves.png").stat().st_size > 0
    assert "| ce+mce |" in capsys.readouterr().out


def _has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def test_collapse_note_only_when_every_run_of_a_loss_collapsed():
    def runs(*eranks):
        return [{"head_erank": e} for e in eranks]

    note = char_lm_compare.collapse_note(
        {"ce": runs(16.0, 15.8), "ce+mce": runs(1.3, 1.3), "ce+mce-detached": runs(15.0, 1.1)}
    )
    assert len(note) == 2 and note[0].startswith("The LM-head rows of ce+mce collapsed")
    assert "ce+mce 1.3" in note[0] and "(ce: 15.9)" in note[0]
    assert char_lm_compare.collapse_note({"ce": runs(16.0), "ce+mce": runs(5.0)}) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--loss", "mce"], "argument --loss: invalid choice: 'mce'"),
        (["--steps", "0"], "argument --steps: expected a positive number, got 0"),
        (["--mce-weight", "-1"], "argument --mce-weight: expected a non-negative number, got -1"),
        (["--seeds", "1"], "--seeds is only used with --compare"),
        (["--losses", "ce"], "--losses is only used with --compare"),
        (["--compare", "--losses", "ce", "ce"], "--losses and --seeds must not repeat a value"),
        (["--out", "x"], "--out is only used with --compare"),
        (["--dim", "30", "--heads", "4"], "--dim 30 must be a multiple of --heads 4"),
    ],
)
def test_command_line_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        char_lm.parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_too_little_text_is_a_clear_error():
    with pytest.raises(SystemExit, match=r"too short for a context of 64"):
        char_lm.main(["--chars", "1000", "--steps", "1", "--no-progress"])
