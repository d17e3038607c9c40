"""Functional forms of every loss: one function per loss, the maths documented once here.

Embeddings are ``(B, d)`` tensors whose rows are samples (the paper writes the
transpose, ``d x B``). Every function returns a scalar to be minimized.
"""

# A family added as a new private module (with __all__) is exported without editing this file.
from .._exports import export_families

__all__ = export_families(__name__, __path__, globals())  # noqa: F405 (__path__: the package's own)
