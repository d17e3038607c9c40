"""Sphinx configuration for matrixinfo.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors).
The API pages under ``api/`` are generated at every build from the public
modules' ``__all__`` by the local extension ``_ext/apigen.py``.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))  # the package itself, when it is not installed

import matrixinfo  # noqa: E402

project = "matrixinfo"
author = "the matrixinfo authors"
copyright = "the matrixinfo authors"
release = matrixinfo.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "apigen",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = []
root_doc = "index"
default_role = "literal"

# autodoc: the API pages list members explicitly; nothing optional is imported.
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_mock_imports = ["matplotlib"]  # optional (the "plot" extra); imported lazily anyway
autoclass_content = "class"
autodoc_inherit_docstrings = False  # no torch.nn.Module boilerplate on forward()

# Google-style docstrings.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = ["Shape", ("Warns", "params_style")]

html_theme = "alabaster"
html_title = f"matrixinfo {release}"
html_static_path = []
html_theme_options = {
    "description": "Matrix information theory for self-supervised learning, in PyTorch",
    "fixed_sidebar": False,
}
