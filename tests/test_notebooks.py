"""The notebooks of ``examples/notebooks/`` run from top to bottom in a fresh kernel.

Executed with nbclient (the ``test`` extra installs it with ipykernel); each
code cell must finish without an error, and RuntimeWarnings are errors there
as in the rest of the suite. Skipped only when nbclient or ipykernel is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples" / "notebooks").glob("*.ipynb"))


def test_the_effective_rank_notebook_is_there():
    assert ROOT / "examples" / "notebooks" / "effective_rank.ipynb" in NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(path, as_version=4)
    setup = nbformat.v4.new_code_cell(
        "import warnings\nwarnings.simplefilter('error', RuntimeWarning)\n"
        "%matplotlib inline\n"
        "import torch\ntorch.set_num_threads(1)"
    )
    notebook.cells.insert(0, setup)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the spectrum plot was not drawn"
