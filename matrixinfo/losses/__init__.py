"""Drop-in :class:`torch.nn.Module` losses. Each ``forward`` calls its twin in
:mod:`matrixinfo.functional`, where the formula is documented.

``forward(z1, z2)`` takes ``(B, d)`` embeddings; where a method distinguishes
its branches, the online branch comes first and the target branch second.
Every loss returns a scalar to be minimized.
"""

from . import _classic, _llm, _matrix
from ._classic import *  # noqa: F401,F403
from ._llm import *  # noqa: F401,F403
from ._matrix import *  # noqa: F401,F403

__all__ = sorted(_classic.__all__ + _llm.__all__ + _matrix.__all__)
