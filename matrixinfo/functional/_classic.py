"""The classic losses under their former private module name.

They live in :mod:`._redundancy` (Barlow Twins, VICReg, CorInfoMax) and
:mod:`._contrastive` (SimCLR, negative cosine, BYOL, spectral contrastive).
This alias keeps ``from ..functional import _classic`` working in
:mod:`matrixinfo.losses` and :mod:`matrixinfo.compat` until they import the
public names of :mod:`matrixinfo.functional`; it defines nothing.
"""

from ._contrastive import *  # noqa: F401,F403
from ._contrastive import _NORM_EPS  # noqa: F401
from ._redundancy import *  # noqa: F401,F403

__all__: list[str] = []
