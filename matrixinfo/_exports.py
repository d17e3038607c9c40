"""How a package of families (``matrixinfo.functional``, ``matrixinfo.losses``) exports its names.

Each family is a private submodule (``_classic.py``, ``_hypersphere.py``, ...)
with an ``__all__``; the package exports the union, so a family added as a new
file needs no edit of the package's ``__init__.py``. Private submodules without
``__all__`` (helpers) export nothing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, MutableMapping


def export_families(package: str, path: Iterable[str], namespace: MutableMapping[str, object]) -> list[str]:
    """Import every private family of ``package``, bind its public names in ``namespace``; the sorted names."""
    names: set[str] = set(namespace.get("__all__", ()))
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        if not info.name.startswith("_") or info.name.startswith("__"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        for name in getattr(module, "__all__", ()):
            namespace[name] = getattr(module, name)
            names.add(name)
    return sorted(names)
