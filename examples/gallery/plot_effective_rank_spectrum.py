"""
Effective rank and the covariance spectrum
==========================================

Embeddings whose covariance spectrum decays fast have a low effective rank:
this is what dimensional collapse looks like. Here three synthetic sets of
``(N, d)`` embeddings with the same dimension but different spectra are
compared in the two effective-rank conventions in use:
:func:`matrixinfo.metrics.covariance_effective_rank` (eigenvalues of the
covariance, the paper's :math:`\\sigma^2` convention) and
:func:`matrixinfo.metrics.rankme` (singular values of the raw embeddings).
"""

import matplotlib.pyplot as plt
import torch

from matrixinfo.metrics import covariance_effective_rank, plot_spectrum, rankme

torch.manual_seed(0)
N, d = 1000, 32
white = torch.randn(N, d)
embeddings = {
    "isotropic": white,
    "power-law decay": white * torch.arange(1, d + 1) ** -1.0,
    "collapsed to 4 directions": white[:, :4] @ torch.randn(4, d) + 1e-3 * torch.randn(N, d),
}

fig, ax = plt.subplots(figsize=(6, 4))
for name, Z in embeddings.items():
    cov_rank, rm = covariance_effective_rank(Z), rankme(Z)
    print(f"{name:28s} covariance erank {cov_rank:5.2f}   RankMe {rm:5.2f}   (d = {d})")
    plot_spectrum(Z, normalize=True, ax=ax, label=f"{name} (erank {cov_rank:.1f})")
ax.set_xlabel("eigenvalue index")
ax.set_ylabel("normalized covariance eigenvalue")
ax.legend()
fig.tight_layout()

# %%
# The two conventions disagree on the same embeddings (RankMe works on
# :math:`\sigma`, the covariance rank on :math:`\sigma^2`, which sharpens the
# spectrum): compare runs within one convention only.
