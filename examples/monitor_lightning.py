"""Watch a self-supervised run for collapse: EmbeddingMonitor in a plain loop, or as a Lightning callback.

A small MLP learns VICReg embeddings of synthetic two-view data (no download).
Each epoch the monitor logs label-free metrics of all embeddings seen in that
epoch: effective rank, NESum, alpha-ReQ (when d >= 100), alignment and
uniformity. Under ``torchrun`` every process gets the same global values.

    python examples/monitor_lightning.py                 # with Lightning if it is installed
    python examples/monitor_lightning.py --plain         # a plain PyTorch loop, no Lightning
    pip install "matrixinfo[lightning]"                  # the optional Lightning extra

The Lightning variant needs only the callback::

    monitor = EmbeddingMonitor(dim)
    trainer = Trainer(callbacks=[lightning_callback(monitor, key="z")])

where ``training_step`` returns ``{"loss": loss, "z": (z1, z2)}``.
"""

from __future__ import annotations

import argparse
import importlib.util

import torch

from matrixinfo.losses import VICRegLoss
from matrixinfo.metrics import EmbeddingMonitor, lightning_callback


def synthetic_views(n: int, dim_in: int, seed: int) -> torch.Tensor:
    """``(n, 2, dim_in)``: two noisy views of ``n`` points near a 16-dimensional subspace."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(16, dim_in, generator=g)
    clean = torch.randn(n, 16, generator=g) @ basis
    return clean.unsqueeze(1) + 0.3 * torch.randn(n, 2, dim_in, generator=g)


def encoder(dim_in: int, dim: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(dim_in, 128), torch.nn.ReLU(), torch.nn.Linear(128, dim))


def show(epoch: int, logs: dict) -> None:
    print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))


def run_plain(data: torch.Tensor, dim: int, epochs: int, batch: int) -> dict:
    """A plain loop: update per batch, compute (and log) per epoch, reset."""
    model = encoder(data.shape[-1], dim)
    loss_fn = VICRegLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    monitor = EmbeddingMonitor(dim)
    logs = {}
    for epoch in range(epochs):
        for views in torch.split(data[torch.randperm(len(data))], batch):
            z1, z2 = model(views[:, 0]), model(views[:, 1])
            loss = loss_fn(z1, z2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            monitor.update(z1, z2)  # detached inside
        logs = monitor.compute()  # collective under torch.distributed: every process calls it
        show(epoch, logs)
        monitor.reset()
    return logs


def run_lightning(data: torch.Tensor, dim: int, epochs: int, batch: int) -> dict:
    """The same run as a LightningModule, the monitor as a callback."""
    import lightning.pytorch as pl

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = encoder(data.shape[-1], dim)
            self.loss_fn = VICRegLoss()

        def training_step(self, views, batch_idx):
            z1, z2 = self.model(views[:, 0]), self.model(views[:, 1])
            return {"loss": self.loss_fn(z1, z2), "z": (z1, z2)}

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class Print(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            show(trainer.current_epoch, {k: float(v) for k, v in trainer.callback_metrics.items()})

    monitor = EmbeddingMonitor(dim)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[lightning_callback(monitor, key="z", prefix="monitor/"), Print()],
    )
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True)
    trainer.fit(Module(), loader)
    return {k.removeprefix("monitor/"): float(v) for k, v in trainer.callback_metrics.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", action="store_true", help="a plain PyTorch loop, even if Lightning is installed")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension (alpha-ReQ needs >= 100)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    data = synthetic_views(args.samples, 32, args.seed)
    has_lightning = importlib.util.find_spec("lightning") is not None
    if args.plain or not has_lightning:
        if not args.plain:
            print('Lightning is not installed (pip install "matrixinfo[lightning]"): running the plain loop.')
        return run_plain(data, args.dim, args.epochs, args.batch)
    return run_lightning(data, args.dim, args.epochs, args.batch)


if __name__ == "__main__":
    main()
