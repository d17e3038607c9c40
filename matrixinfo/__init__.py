"""matrixinfo: matrix information theory for self-supervised learning.

The core functions are importable from the top level::

    from matrixinfo import matrix_entropy, matrix_kl_divergence, effective_rank
"""

from ._checks import (
    MatrixInfoSecondDerivativeError,
    MatrixInfoTypeError,
    MatrixInfoValueError,
    MatrixInfoWarning,
)
from .core import (
    effective_rank,
    matrix_cross_entropy,
    matrix_entropy,
    matrix_kl_divergence,
    matrix_log,
    sylvester_logdet,
    von_neumann_entropy,
)

__version__ = "0.1.0"

__all__ = [
    "MatrixInfoSecondDerivativeError",
    "MatrixInfoTypeError",
    "MatrixInfoValueError",
    "MatrixInfoWarning",
    "effective_rank",
    "matrix_cross_entropy",
    "matrix_entropy",
    "matrix_kl_divergence",
    "matrix_log",
    "sylvester_logdet",
    "von_neumann_entropy",
]
