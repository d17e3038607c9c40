# %% [markdown]
# # Effective rank of embeddings: which one, and what it says
#
# A notebook-style script (cells separated by `# %%`; run it whole with
# `python examples/embedding_ranks.py`, or cell by cell in VS Code / Jupyter).
# It measures dimensional collapse (paper sections 3.4 and 6, appendix E) on
# embeddings of scikit-learn's digits test split with `matrixinfo.metrics`:
#
# * the effective rank in its two conventions, and why they disagree;
# * the matrix entropy and its closed-form link to the effective rank (Prop. 3.6);
# * the intra- and inter-class effective ranks of appendix E;
# * the covariance spectra, saved as `embedding_ranks_out/spectra.png`.
#
# Needs the `examples` extra (scikit-learn, tqdm, matplotlib). About 20 s on a CPU.

# %%
import math
import sys
from pathlib import Path

import torch

from matrixinfo.metrics import (
    covariance_effective_rank,
    embedding_matrix_entropy,
    inter_class_effective_rank,
    intra_class_effective_rank,
    plot_spectrum,
    rankme,
)

try:
    HERE = Path(__file__).resolve().parent
except NameError:  # inside a notebook kernel: run from the examples folder
    HERE = Path.cwd()
sys.path.insert(0, str(HERE))
import train_ssl  # noqa: E402  (the data, encoder and training loop of the other example)

OUT = Path("embedding_ranks_out")
OUT.mkdir(exist_ok=True)
torch.set_num_threads(1)  # small matrices: one thread is fastest

# %% [markdown]
# ## Four embeddings of the same 360 test digits
#
# * **raw pixels**: the 64 pixel values in [0, 1], not centered;
# * **random encoder**: the 256-d features of the untrained encoder of `train_ssl.py`;
# * **Matrix-SSL encoder**: the same encoder after a short Matrix-SSL pre-training;
# * **collapsed**: those trained features projected on their top 4 principal
#   directions, an artificial case of dimensional collapse.

# %%
data = train_ssl.load_digits()
device = torch.device("cpu")
y_test = torch.from_numpy(data.y_test)

train_ssl.seed_everything(0, device)
random_model = train_ssl.Siamese("digits", 64, "joint")
random_features, _ = train_ssl.embed(random_model, data.x_test, data, device)

trained = train_ssl.train(
    "matrix-ssl",
    data,
    epochs=15,
    seed=0,
    batch_size=128,
    lr=3e-3,
    dim=64,
    device=device,
    progress=False,
    return_model=True,
)
trained_features, _ = train_ssl.embed(trained["model"], data.x_test, data, device)

centered = trained_features.double() - trained_features.double().mean(0)
_, _, v = torch.linalg.svd(centered, full_matrices=False)
collapsed = centered @ v[:4].T @ v[:4]

embeddings = {
    "raw pixels": data.x_test.flatten(1).double(),
    "random encoder": random_features.double(),
    "Matrix-SSL encoder": trained_features.double(),
    "collapsed (rank 4)": collapsed,
}
print(f"Matrix-SSL encoder after 15 epochs: linear probe {trained['linear_probe']:.1f}%, k-NN {trained['knn']:.1f}%")

# %% [markdown]
# ## Two effective ranks
#
# Both are Roy & Vetterli's `exp(entropy of the normalized spectrum)`, but of
# different spectra:
#
# * `covariance_effective_rank(Z)`: eigenvalues of the covariance, i.e. the
#   **squared** singular values of the **centered** embeddings. This is the
#   convention of the paper's Prop. 3.6 and of the rank-increasing phenomenon
#   (section 6.1), and what `train_ssl.py` tracks.
# * `rankme(Z)` (Garrido et al., 2023): the singular values themselves, of the
#   **raw, uncentered** embeddings.
#
# Squaring sharpens the spectrum, so on centered data the covariance rank is
# the smaller one. Not centering adds the mean as one extra direction: for
# non-negative features (pixels, ReLU outputs) the mean is large and that
# direction dominates the spectrum. The two numbers are not comparable with
# each other: compare models within one convention.

# %%
print(f"{'embedding':<22}{'dim':>5}{'covariance erank':>18}{'RankMe':>9}{'RankMe (centered)':>19}")
for name, z in embeddings.items():
    print(
        f"{name:<22}{z.shape[1]:>5}{covariance_effective_rank(z):>18.2f}{rankme(z):>9.2f}{rankme(z - z.mean(0)):>19.2f}"
    )

# %% [markdown]
# ## Matrix entropy and effective rank (Prop. 3.6)
#
# For the trace-normalized covariance `C / tr C`, the matrix entropy is the von
# Neumann entropy plus one, and `erank = exp(ME - 1)`: maximizing the matrix
# entropy (what the uniformity losses do) is maximizing the effective rank. Its
# maximum, `log d + 1`, is reached by isotropic embeddings.

# %%
for name, z in embeddings.items():
    me = embedding_matrix_entropy(z)
    print(
        f"{name:<22} ME = {me:.4f} (max {math.log(z.shape[1]) + 1:.4f}), "
        f"exp(ME - 1) = {math.exp(me - 1):.2f}, covariance erank = {covariance_effective_rank(z):.2f}"
    )

# %% [markdown]
# ## Intra- and inter-class effective rank (appendix E)
#
# * intra-class: the mean over classes of the effective rank of each class's
#   covariance: how much variability is kept inside a class (0 under neural
#   collapse, where every sample of a class maps to the same point);
# * inter-class: the effective rank of the covariance of the 10 class means,
#   at most `K - 1 = 9` (reached when the means form a simplex ETF).
#
# They are the effective ranks of the two terms of the total-covariance
# decomposition (within-class plus between-class covariance). During training
# the paper (Fig. 3) sees the intra-class rank shrink for SimCLR, a contrastive
# loss, and grow for BYOL and Barlow Twins; the inter-class rank grows for all three.

# %%
for name, z in embeddings.items():
    print(
        f"{name:<22} intra-class {intra_class_effective_rank(z, y_test):6.2f}   "
        f"inter-class {inter_class_effective_rank(z, y_test):5.2f} (of 9)"
    )

# %% [markdown]
# ## Covariance spectra
#
# Eigenvalues in decreasing order, each divided by their sum so that embeddings
# of different scales share one axis. A flat spectrum is a high effective rank;
# a cliff is collapsed dimensions.

# %%
import matplotlib  # noqa: E402

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(6.4, 4.2))
for name, z in embeddings.items():
    plot_spectrum(z, normalize=True, ax=ax, label=f"{name} (erank {covariance_effective_rank(z):.1f})")
ax.set_ylim(bottom=1e-8)
ax.set_title("Covariance spectra of digits test embeddings", fontsize=10)
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "spectra.png", dpi=120)
print(f"wrote {OUT / 'spectra.png'}")
