"""Functional forms of every loss: one function per loss, the maths documented once here.

Embeddings are ``(B, d)`` tensors whose rows are samples (the paper writes the
transpose, ``d x B``). Every function returns a scalar to be minimized.
"""

from . import _classic, _llm, _matrix
from ._classic import *  # noqa: F401,F403
from ._llm import *  # noqa: F401,F403
from ._matrix import *  # noqa: F401,F403

__all__ = sorted(_classic.__all__ + _llm.__all__ + _matrix.__all__)

# A family added as a new private module (with __all__) is exported without editing this file.
from .._exports import export_families  # noqa: E402

__all__ = export_families(__name__, __path__, globals())  # noqa: F405 (__path__: the package's own)
