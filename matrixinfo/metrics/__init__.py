r"""Label-free monitoring of embeddings (effective ranks, matrix entropy, LiDAR, alpha-ReQ, NESum, alignment).

Effective rank and matrix entropy of embeddings, and the other label-free
collapse metrics in use (:func:`lidar`, :func:`alpha_req`, :func:`nesum`,
:func:`stable_rank`, :func:`alignment`, :func:`uniformity`), for notebooks
and training loops: :class:`EmbeddingMonitor` accumulates them per batch and
computes them per epoch across ``torch.distributed`` processes, and
:func:`lightning_callback` wraps it for PyTorch Lightning (optional).

Monitoring metrics, not losses: nothing here is differentiable (inputs are
detached) and every scalar is returned as a Python ``float``, ready for a
logger. Reading it is a host synchronization on a GPU. Matrices and spectra
are returned as float64 torch tensors.

Conventions:

* Embeddings ``Z`` have shape ``(N, d)``: rows are samples (the paper writes
  the transposed ``d x N``). They may be torch tensors of any floating dtype
  and device, or NumPy arrays.
* The covariance is divided by ``N`` (not ``N - 1``):
  :math:`C = \frac1N \sum_i (z_i - \mu)(z_i - \mu)^\top`. The paper uses
  :math:`\frac{1}{B-1}` in section 5 and Lemma C.2, and :math:`\frac{1}{n_y}`
  and :math:`\frac1K` in Defs. E.1/E.2; effective rank and the
  trace-normalized matrix entropy do not depend on this factor.
* Two effective-rank conventions coexist in the literature and differ on the
  same embeddings (see :doc:`/theory`); each function names its own:

  =====================================  ==========================================================
  :func:`covariance_effective_rank`      Roy & Vetterli on the eigenvalues of the covariance,
                                         :math:`\lambda_i = \sigma_i^2(Z - \mathbf 1\mu^\top) / N`
                                         (the :math:`\sigma^2` convention of paper Prop. 3.6; with
                                         ``center=False`` exactly Prop. 3.6's :math:`\frac1N Z^\top Z`).
  :func:`rankme`                         RankMe (Garrido et al., 2023): singular values
                                         :math:`\sigma_i(Z)` of the raw embeddings, plus ``1e-7``.
  =====================================  ==========================================================

  On anisotropic embeddings (N = 512, d = 64) RankMe gave 55.8 where
  :math:`\operatorname{erank}(\frac1N Z^\top Z)` gave 43.9: compare runs only
  within one convention.

* Numerics. Second moments are accumulated in float64 from centered blocks
  of rows, combined with the pairwise formula of Chan, Golub & LeVeque; no sum
  of squares of raw values is ever formed, so a large common offset does not
  cancel the covariance away. See :class:`CovarianceAccumulator`.
"""

from ._effective_rank import (
    covariance_effective_rank,
    embedding_matrix_entropy,
    inter_class_effective_rank,
    intra_class_effective_rank,
    rankme,
)
from ._hypersphere import alignment, uniformity
from ._monitor import EmbeddingMonitor, lightning_callback
from ._plot import plot_spectrum
from ._spectral_metrics import LidarAccumulator, alpha_req, lidar, nesum, stable_rank
from ._streaming import CovarianceAccumulator

__all__ = [
    "CovarianceAccumulator",
    "EmbeddingMonitor",
    "LidarAccumulator",
    "alignment",
    "alpha_req",
    "covariance_effective_rank",
    "embedding_matrix_entropy",
    "inter_class_effective_rank",
    "intra_class_effective_rank",
    "lidar",
    "lightning_callback",
    "nesum",
    "plot_spectrum",
    "rankme",
    "stable_rank",
    "uniformity",
]
