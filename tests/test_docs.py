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
from html.parser import HTMLParser
from pathlib import Path

import pytest

import matrixinfo

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
NARRATIVE_PAGES = (
    "index", "getting_started", "choosing_a_loss", "coming_from_lightly", "theory", "numerics", "reproducing",
    "distributed", "contributing",
)  # fmt: skip
GALLERY_PAGES = ("plot_effective_rank_spectrum", "plot_loss_collapse", "plot_taylor_accuracy")


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
    for page in (*NARRATIVE_PAGES, "errata", "api/index", "auto_examples/index"):
        assert (built_html / f"{page}.html").is_file(), f"docs page {page!r} was not built"


def test_gallery_examples_ran_and_drew_their_plots(built_html):
    for name in GALLERY_PAGES:
        assert (ROOT / "examples" / "gallery" / f"{name}.py").is_file()
        page = (built_html / "auto_examples" / f"{name}.html").read_text(encoding="utf-8")
        assert re.search(r'<img[^>]+src="[^"]*_images/sphx_glr_' + name + r"_\d+\.png", page), (
            f"gallery page {name} shows no plot"
        )


# ----------------------------------------------------------------------------- offline rendering


class _ExternalResources(HTMLParser):
    """Collects what a browser would fetch from another host when showing the page:
    script sources, stylesheets, fonts and other ``<link>`` resources, images,
    and ``url()``/``@import`` in inline styles. Plain links (``<a href>``) are
    not fetched and are not collected."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "embed") and _is_external(attrs.get("src")):
            self.found.append(f"<{tag} src={attrs['src']}>")
        if tag == "link":
            rel = (attrs.get("rel") or "").lower()
            fetched = any(
                word in rel for word in ("stylesheet", "preload", "prefetch", "icon", "font", "modulepreload")
            )
            if fetched and _is_external(attrs.get("href")):
                self.found.append(f"<link rel={rel} href={attrs['href']}>")
        if attrs.get("style"):
            self.found.extend(_css_external(attrs["style"]))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.found.extend(_css_external(data))


def _is_external(url) -> bool:
    return bool(url) and re.match(r"\s*(https?:)?//", url) is not None


_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]*)|@import\s+['"]([^'"]*)""")


def _css_external(css: str) -> list[str]:
    found = []
    for url, imported in _CSS_URL.findall(css):
        target = url or imported
        if _is_external(target):  # data: URIs are inline and never fetched
            found.append(f"CSS {target}")
    return found


def test_the_oracle_for_external_resources_can_fail():
    page = (
        '<link rel="stylesheet" href="https://cdn.example.org/x.css"><script src="//cdn.example.org/m.js"></script>'
        "<style>@import 'https://fonts.example.org/f.css'; a { background: url(data:image/svg+xml;x) }</style>"
        '<a href="https://example.org">a plain link is fine</a>'
    )
    parser = _ExternalResources()
    parser.feed(page)
    assert len(parser.found) == 3, parser.found
    assert _css_external("src: url('https://fonts.example.org/a.woff2')") and not _css_external("url(fonts/a.woff)")


def test_built_docs_fetch_nothing_from_the_network(built_html):
    offenders = []
    for page in sorted(built_html.rglob("*.html")):
        parser = _ExternalResources()
        parser.feed(page.read_text(encoding="utf-8"))
        offenders += [f"{page.relative_to(built_html)}: {item}" for item in parser.found]
    for sheet in sorted(built_html.rglob("*.css")):
        offenders += [
            f"{sheet.relative_to(built_html)}: {item}" for item in _css_external(sheet.read_text(encoding="utf-8"))
        ]
    assert not offenders, "the built docs load resources from other hosts:\n" + "\n".join(offenders[:30])


def test_math_is_rendered_by_a_mathjax_shipped_in_the_site(built_html):
    page = (built_html / "theory.html").read_text(encoding="utf-8")
    assert "\\(" in page or "\\[" in page  # the page has math for MathJax to render
    sources = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', page, re.IGNORECASE)
    assert sources, "theory.html loads no MathJax"
    for src in sources:
        assert not _is_external(src), src
        assert (built_html / src.split("?")[0]).is_file(), f"{src} is not in the built site"


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


# ----------------------------------------------------------------------------- loss classes (issue: one place per loss)

_SECTION_BODY = r"^{}:[ \t]*\n((?:(?:[ \t]+.*)?\n)+)"


def _section(doc: str, title: str) -> str:
    match = re.search(_SECTION_BODY.format(title), inspect.cleandoc(doc) + "\n", re.MULTILINE)
    return match.group(1) if match else ""


def _documented_args(section: str) -> set[str]:
    return set(re.findall(r"^    (\*{0,2}\w+):", section, re.MULTILINE))


def _loss_names() -> list[str]:
    import matrixinfo.losses

    return list(matrixinfo.losses.__all__)


@pytest.mark.parametrize("name", _loss_names())
def test_loss_class_page_documents_each_parameter_shapes_formula_and_forward(name):
    import pydoc

    import matrixinfo.losses

    cls = getattr(matrixinfo.losses, name)
    doc = cls.__doc__
    init = [p for p in inspect.signature(cls).parameters]
    args = _section(doc, "Args")
    missing = set(init) - _documented_args(args)
    assert not missing, f"{name}: constructor parameters not under Args in the class docstring: {sorted(missing)}"
    assert not re.search(r"\bsee\b|as elsewhere|as in :", args, re.IGNORECASE), (
        f"{name}: an Args entry refers elsewhere"
    )
    for title in ("Shape", "Examples"):
        assert _section(doc, title).strip(), f"{name}: no {title} section"
    assert ".. math::" in doc, f"{name}: the class docstring shows no formula"
    assert re.search(r"eq\. ?\d+|appendix|section \d|no numbered equation", doc), f"{name}: no paper equation named"
    assert "eproduces" in doc, f"{name}: says nothing of which code or definition it reproduces"
    # forward: its own docstring, whose Args are exactly forward's parameters.
    assert "forward" in cls.__dict__ and cls.forward.__doc__, f"{name}.forward has no docstring of its own"
    forward_params = {
        ("*" + p.name) if p.kind is p.VAR_POSITIONAL else p.name
        for p in inspect.signature(cls.forward).parameters.values()
        if p.name != "self"
    }
    assert _documented_args(_section(cls.forward.__doc__, "Args")) == forward_params, f"{name}.forward: Args"
    assert "Should be overridden" not in pydoc.render_doc(cls), f"help({name}) shows torch's forward boilerplate"


def test_loss_docs_check_can_fail():
    """The section parser finds a missing parameter (so the test above can fail)."""
    doc = """Summary.

    Args:
        alpha: documented.

    Shape:
        - x: (B, d).
    """
    assert _documented_args(_section(doc, "Args")) == {"alpha"}
    assert _section(doc, "Returns") == ""


# ----------------------------------------------------------------------------- code that runs

_RST_BLOCK = re.compile(
    r"^\.\. code-block:: python[ \t]*\n((?:[ \t]+:[\w-]+:.*\n)*)\n((?:(?:[ \t]+.*)?\n)+)", re.MULTILINE
)
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


def _fenced_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)]


def test_readme_states_the_ci_test_command():
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^#+ Run the tests\s*$(.*?)(?=^#+ |\Z)", text, re.MULTILINE | re.DOTALL)
    assert section, "README.md needs a 'Run the tests' heading"
    assert 'pip install -e ".[test]" && python -m pytest -q' in _fenced_blocks(section.group(1)), (
        "the 'Run the tests' section must hold the one-line command "
        '`pip install -e ".[test]" && python -m pytest -q` in a fenced block of its own'
    )
    # ... and CI runs that same test command last.
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands[-1] == "python -m pytest -q", (
        f".ci/run must end with the README's test command, ends with {commands[-1]!r}"
    )


def test_readme_gives_the_two_one_line_commands_after_clone_venv_and_torch_note():
    text = README.read_text(encoding="utf-8")
    blocks = _fenced_blocks(text)
    main_job = 'pip install -e ".[examples]" && python examples/train_ssl.py'
    tests = 'pip install -e ".[test]" && python -m pytest -q'
    assert main_job in blocks and tests in blocks
    clone = next(i for i, b in enumerate(blocks) if b.startswith("git clone") and "venv" in b)
    cpu_torch = blocks.index("pip install torch --index-url https://download.pytorch.org/whl/cpu")
    assert clone < cpu_torch < blocks.index(main_job) < blocks.index(tests)
    assert "pytorch.org/get-started/locally" in text
    assert "examples/README.md" in text


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
