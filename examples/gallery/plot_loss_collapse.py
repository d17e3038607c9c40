"""
How the losses respond to collapse
==================================

Each loss is evaluated on embeddings that move from a well-spread batch
(:math:`t = 0`) to a batch collapsed onto one direction (:math:`t = 1`), with
both views equal, so that only the anti-collapse part of each loss varies.
Values are shifted to start at 0 and divided by their range, to share an axis.

The coding-rate and uniformity losses (TCR, uniformity-MKL) and the
redundancy-reduction losses (Barlow Twins, VICReg) all rise as the batch
collapses; SimSiam's negative cosine does not move: identical views are
already perfectly aligned, and nothing in that loss sees the collapse (a
predictor and a stop-gradient prevent it in training).
"""

import matplotlib.pyplot as plt
import torch

from matrixinfo import functional as MF

torch.manual_seed(0)
B, d = 256, 16
f64 = torch.float64
spread = torch.randn(B, d, dtype=f64)
direction = torch.randn(1, d, dtype=f64)
collapsed = torch.randn(B, 1, dtype=f64).abs() * direction + 0.01 * torch.randn(B, d, dtype=f64)

losses = {
    "TCR (eq. 6)": lambda z: MF.tcr_loss(z),
    "uniformity MKL (eq. 17)": lambda z: MF.uniformity_mkl_loss(z),
    "Barlow Twins": lambda z: MF.barlow_twins_loss(z, z),
    "VICReg": lambda z: MF.vicreg_loss(z, z),
    "SimSiam (negative cosine)": lambda z: MF.negative_cosine_similarity_loss(z, z),
}
ts = torch.linspace(0, 1, 21, dtype=torch.float64)
fig, ax = plt.subplots(figsize=(6, 4))
for name, loss in losses.items():
    values = torch.stack([loss((1 - t) * spread + t * collapsed) for t in ts])
    span = float(values.max() - values.min())
    shown = (values - values[0]) / span if span > 1e-9 else values - values[0]
    print(f"{name:28s} t=0: {float(values[0]):9.4f}   t=1: {float(values[-1]):9.4f}")
    ax.plot(ts, shown, label=name)
ax.set_xlabel("t (0: spread, 1: collapsed)")
ax.set_ylabel("loss, shifted and scaled")
ax.legend()
fig.tight_layout()
