"""Drop-in :class:`torch.nn.Module` losses.

Each ``forward`` calls its twin in :mod:`matrixinfo.functional`, where the
formula is written.

``forward(z1, z2)`` takes ``(B, d)`` embeddings; where a method distinguishes
its branches, the online branch comes first and the target branch second.
Every loss returns a scalar to be minimized. Adding a loss:
``docs/contributing.rst``.
"""

from .._exports import export_families

# Every family (a private module with __all__: _classic, _matrix, _llm, _hypersphere, ...) is exported.
__all__ = export_families(__name__, __path__, globals())
