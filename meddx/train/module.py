"""The one LightningModule for every task: binary, multi-class and multi-label heads."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics

from meddx.config import AugmentConfig
from meddx.models import create_model
from meddx.train.augment import augment_batch
from meddx.train.losses import weighted_bce_with_logits


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Softmax for multi-class, sigmoid otherwise."""
    return torch.softmax(logits, dim=1) if task == "multiclass" else torch.sigmoid(logits)


def _auroc(task: str, num_labels: int) -> torchmetrics.Metric:
    if task == "multiclass":
        return torchmetrics.AUROC(task="multiclass", num_classes=num_labels, average="macro")
    if task == "multilabel":
        return torchmetrics.AUROC(task="multilabel", num_labels=num_labels, average="macro")
    return torchmetrics.AUROC(task="binary")


class Classifier(pl.LightningModule):
    """Wraps a registry model with its loss, optimiser and validation metrics."""

    def __init__(
        self,
        model_name: str,
        in_chans: int,
        num_labels: int,
        task: str,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        max_epochs: int = 20,
        dropout: float = 0.2,
        pos_weight: list[float] | None = None,
        neg_weight: list[float] | None = None,
        class_weight: list[float] | None = None,
        augment: dict | None = None,
        weights: str | None = None,
        model_kwargs: dict | None = None,
        token_dropout: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.task = task
        self.model = create_model(model_name, in_chans, num_labels, weights=weights, dropout=dropout, **(model_kwargs or {}))
        ones = [1.0] * num_labels
        self.register_buffer("w_pos", torch.tensor(pos_weight or [0.5] * num_labels))
        self.register_buffer("w_neg", torch.tensor(neg_weight or [0.5] * num_labels))
        self.register_buffer("w_class", torch.tensor(class_weight or ones))
        self.augment = AugmentConfig(**augment) if augment else AugmentConfig(enabled=False)
        self.val_auroc = _auroc(task, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Weighted BCE (binary, multi-label) or weighted cross-entropy (multi-class)."""
        if self.task == "multiclass":
            return F.cross_entropy(logits, y.argmax(1), weight=self.w_class)
        return weighted_bce_with_logits(logits, y, self.w_pos, self.w_neg)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.augment.enabled and x.is_floating_point():
            x = augment_batch(x, self.augment)
        if self.hparams.token_dropout > 0 and not x.is_floating_point():  # token ids: replace some by unk (1)
            drop = (torch.rand(x.shape, device=x.device) < self.hparams.token_dropout) & (x != 0)
            x = x.masked_fill(drop, 1)
        loss = self.loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", self.loss(logits, y), on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(x))
        target = y.argmax(1) if self.task == "multiclass" else (y[:, 0] if self.task == "binary" else y).long()
        probs = probabilities(logits, self.task)
        self.val_auroc.update(probs[:, 0] if self.task == "binary" else probs, target)
        return probs

    def on_validation_epoch_end(self):
        self.log("val_auc", self.val_auroc.compute(), prog_bar=True, sync_dist=False)
        self.val_auroc.reset()

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.hparams.max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
