"""Small Lightning callbacks of our own: the per-epoch history written to training.json."""

from __future__ import annotations

import pytorch_lightning as pl


class History(pl.Callback):
    """Keeps train/val loss and val AUC of every epoch (rank 0), for training.json and later diagnostics."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch + 1}
        for key in ("train_loss", "val_loss", "val_auc"):
            if key in trainer.callback_metrics:
                row[key] = round(float(trainer.callback_metrics[key]), 6)
        self.epochs.append(row)
