"""The documentation: built, complete, and with code that runs.

* The Sphinx build (``sphinx-build -W``: warnings are errors) succeeds, and
  every name of every public module's ``__all__`` has an entry in the built
  HTML. Public modules are discovered here independently of the docs'
  generator (``docs/_ext/apigen.py``), so a module or name the generator
  misses fails the test.
* Every public name has its own docstring with an ``Examples:`` section of
  doctests (they run with ``python -m pytest --doctest-modules matrixinfo``).
* The Python code blocks of the README and of the narrative pages run, and
  the README's loss table names exactly ``matrixinfo.losses.__all__``.
* Test names quoted in the docs exist, so the pages cannot point at tests
  that were renamed away.

Skipped only when Sphinx is not installed (the ``docs`` extra).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import matrixinfo

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
NARRATIVE_PAGES = ("index", "getting_started", "theory", "numerics", "reproducing", "distributed")


# ----------------------------------------------------------------------------- public names


def _public_modules() -> list[str]:
    names = ["matrixinfo"]
    for info in pkgutil.walk_packages(matrixinfo.__path__, "matrixinfo."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def _public_names() -> list[tuple[str, str]]:
    pairs = []
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            pairs.append((module_name, name))
    return pairs


PUBLIC_NAMES = _public_names()


def _documented_ids(module_name: str, name: str) -> set[str]:
    """The HTML anchors under which ``module_name.name`` may be documented:
    its own module, or a public ancestor package that re-exports the same object."""
    obj = getattr(importlib.import_module(module_name), name)
    ids = set()
    parts = module_name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        module = importlib.import_module(candidate)
        if name in getattr(module, "__all__", ()) and getattr(module, name, None) is obj:
            ids.add(f"{candidate}.{name}")
    return ids


def test_public_modules_are_the_expected_ones():
    # A guard on the discovery itself: these must be found (more may be added).
    found = set(_public_modules())
    assert {"matrixinfo", "matrixinfo.functional", "matrixinfo.losses", "matrixinfo.metrics"} <= found


# ----------------------------------------------------------------------------- the build


@pytest.fixture(scope="module")
def built_html(tmp_path_factory) -> Path:
    pytest.importorskip("sphinx")
    out = tmp_path_factory.mktemp("docs_html")
    command = [
        sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
        "-d", str(out / ".doctrees"), str(DOCS), str(out),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(
            "sphinx-build -W failed (warnings are errors):\n" + result.stdout[-6000:] + result.stderr[-6000:],
            pytrace=False,
        )
    return out


@pytest.fixture(scope="module")
def html_anchors(built_html) -> set[str]:
    anchors = set()
    for page in built_html.rglob("*.html"):
        anchors.update(re.findall(r'id="([^"]+)"', page.read_text(encoding="utf-8")))
    return anchors


def test_docs_build_without_warnings_and_include_every_page(built_html):
    for page in (*NARRATIVE_PAGES, "errata", "api/index"):
        assert (built_html / f"{page}.html").is_file(), f"docs page {page!r} was not built"


@pytest.mark.parametrize(("module_name", "name"), PUBLIC_NAMES, ids=[f"{m}.{n}" for m, n in PUBLIC_NAMES])
def test_public_name_is_in_the_built_docs(module_name, name, html_anchors):
    ids = _documented_ids(module_name, name)
    assert ids & html_anchors, (
        f"{module_name}.{name} is in {module_name}.__all__ but has no entry in the built docs "
        f"(looked for the anchors {sorted(ids)})"
    )


# ----------------------------------------------------------------------------- docstrings

_EXAMPLES_SECTION = re.compile(r"^\s*Examples?:\s*$((?:\n.*)*)", re.MULTILINE)


@pytest.mark.parametrize(("module_name", "name"), PUBLIC_NAMES, ids=[f"{m}.{n}" for m, n in PUBLIC_NAMES])
def test_public_name_has_a_docstring_with_doctest_examples(module_name, name):
    obj = getattr(importlib.import_module(module_name), name)
    doc = obj.__doc__  # its own docstring: a class does not inherit its base's
    assert doc and doc.strip(), f"{module_name}.{name} has no docstring"
    match = _EXAMPLES_SECTION.search(inspect.cleandoc(doc))
    assert match, f"{module_name}.{name}: the docstring has no 'Examples:' section"
    assert ">>>" in match.group(1), f"{module_name}.{name}: the 'Examples:' section has no doctest (>>>)"


# ----------------------------------------------------------------------------- code that runs

_RST_BLOCK = re.compile(r"^\.\. code-block:: python[ \t]*\n((?:[ \t]+:[\w-]+:.*\n)*)\n((?:(?:[ \t]+.*)?\n)+)", re.MULTILINE)
_MD_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _rst_python_blocks(text: str) -> list[str]:
    blocks = []
    for options, body in _RST_BLOCK.findall(text):
        if "no-run" in options:
            continue
        lines = body.rstrip("\n").split("\n")
        indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
        blocks.append("\n".join(line[indent:] for line in lines) + "\n")
    return blocks


def _run_blocks(blocks: list[str], where: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # e.g. a Taylor series outside its radius
        for i, code in enumerate(blocks):
            try:
                exec(compile(code, f"<{where}, python block {i + 1}>", "exec"), namespace)
            except Exception as exc:  # pragma: no cover - the failure message is the point
                pytest.fail(f"{where}, python block {i + 1} failed: {exc!r}\n\n{code}", pytrace=False)


@pytest.mark.parametrize("page", NARRATIVE_PAGES)
def test_python_blocks_of_the_docs_run(page, tmp_path, monkeypatch, capsys):
    blocks = _rst_python_blocks((DOCS / f"{page}.rst").read_text(encoding="utf-8"))
    _run_blocks(blocks, f"docs/{page}.rst", tmp_path, monkeypatch)


def test_getting_started_has_runnable_blocks():
    # Guards the block parser: an empty match would make the test above vacuous.
    assert len(_rst_python_blocks((DOCS / "getting_started.rst").read_text(encoding="utf-8"))) >= 4


def test_python_blocks_of_the_readme_run(tmp_path, monkeypatch, capsys):
    blocks = _MD_BLOCK.findall(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2, "the README should show a training loop and a notebook snippet"
    _run_blocks(blocks, "README.md", tmp_path, monkeypatch)


# ----------------------------------------------------------------------------- README contract


def test_readme_states_the_ci_test_command():
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^#+ Run the tests\s*$(.*?)(?=^#+ |\Z)", text, re.MULTILINE | re.DOTALL)
    assert section, "README.md needs a 'Run the tests' heading"
    fenced = re.findall(r"^```[a-z]*\n(.*?)^```", section.group(1), re.MULTILINE | re.DOTALL)
    assert any(block.strip() == "python -m pytest -q" for block in fenced), (
        "the 'Run the tests' section must hold the CI command `python -m pytest -q` in a fenced block of its own"
    )


def test_readme_loss_table_matches_matrixinfo_losses():
    import matrixinfo.losses

    text = README.read_text(encoding="utf-8")
    table_rows = [line for line in text.splitlines() if line.startswith("|")]
    in_table = set(re.findall(r"^\|\s*`(\w+Loss)`", "\n".join(table_rows), re.MULTILINE))
    assert in_table == set(matrixinfo.losses.__all__), (
        f"README loss table vs matrixinfo.losses.__all__: missing {sorted(set(matrixinfo.losses.__all__) - in_table)}, "
        f"extra {sorted(in_table - set(matrixinfo.losses.__all__))}"
    )


def test_no_machine_paths_in_docs_or_readme():
    """No page leaks the absolute location of the checkout it was written in."""
    root = str(README.parent.resolve())
    files = [README, *DOCS.glob("*.rst"), *DOCS.glob("*.py"), *(DOCS / "_ext").glob("*.py")]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert root not in text and str(README.parent.parent.resolve()) + "/" not in text, (
            f"{path.name} mentions a local path"
        )


# ----------------------------------------------------------------------------- quoted test names


def test_test_names_quoted_in_the_docs_exist():
    defined = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        defined.update(re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), re.MULTILINE))
    for page in DOCS.glob("*.rst"):
        quoted = set(re.findall(r"``(test_\w+)``", page.read_text(encoding="utf-8")))
        missing = quoted - defined
        assert not missing, f"docs/{page.name} quotes tests that do not exist: {sorted(missing)}"
