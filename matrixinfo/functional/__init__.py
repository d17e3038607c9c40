"""Functional forms of every loss: one function per loss, the maths documented once here.

Embeddings are ``(B, d)`` tensors whose rows are samples (the paper writes the
transpose, ``d x B``). Every function returns a scalar to be minimized.
"""

from . import _coding_rate, _contrastive, _llm, _matrix_ssl, _redundancy
from ._coding_rate import *  # noqa: F401,F403
from ._contrastive import *  # noqa: F401,F403
from ._llm import *  # noqa: F401,F403
from ._matrix_ssl import *  # noqa: F401,F403
from ._redundancy import *  # noqa: F401,F403

__all__ = sorted(_coding_rate.__all__ + _contrastive.__all__ + _llm.__all__ + _matrix_ssl.__all__ + _redundancy.__all__)
