"""The one LightningModule for every task: binary, multi-class and multi-label heads."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics

from meddx.config import AugmentConfig
from meddx.models import create_model
from meddx.models.finetune import blocks, freeze_all_but, load_pretrained, parse_depth, set_batchnorm_modes
from meddx.train.augment import augment_batch, mixup_batch
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
        init_from: str | None = None,
        finetune_depth: int | str = "all",
        backbone_lr_mult: float = 1.0,
        mixup: float = 0.0,
        label_smoothing: float = 0.0,
        model_kwargs: dict | None = None,
        token_dropout: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.task = task
        self.model = create_model(model_name, in_chans, num_labels, weights=weights, dropout=dropout, **(model_kwargs or {}))
        self.init_report = load_pretrained(self.model, init_from) if init_from else None  # head stays fresh
        self.frozen = parse_depth(finetune_depth) is not None
        if self.frozen:
            freeze_all_but(self.model, finetune_depth)
        self.keep_frozen_bn_stats = True  # SWA turns this off: it re-estimates every BatchNorm at the end
        ones = [1.0] * num_labels
        self.register_buffer("w_pos", torch.tensor(pos_weight or ones))
        self.register_buffer("w_neg", torch.tensor(neg_weight or ones))
        self.register_buffer("w_class", torch.tensor(class_weight or ones))
        self.augment = AugmentConfig(**augment) if augment else AugmentConfig(enabled=False)
        self.val_auroc = _auroc(task, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0, soft: bool = False) -> torch.Tensor:
        """Weighted BCE (binary, multi-label) or weighted cross-entropy (multi-class); optional label smoothing;
        `soft` keeps mixed (mixup) multi-class targets as probabilities."""
        if self.task == "multiclass":
            target = y if soft else y.argmax(1)
            return F.cross_entropy(logits, target, weight=self.w_class, label_smoothing=smoothing)
        if smoothing:
            y = y * (1 - smoothing) + smoothing / 2
        return weighted_bce_with_logits(logits, y, self.w_pos, self.w_neg)

    def on_train_epoch_start(self):
        if self.frozen and self.keep_frozen_bn_stats:
            set_batchnorm_modes(self.model)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.augment.enabled and x.is_floating_point():
            x = augment_batch(x, self.augment)
        if self.hparams.get("token_dropout", 0.0) > 0 and not x.is_floating_point():  # token ids: replace some by unk (1)
            drop = (torch.rand(x.shape, device=x.device) < self.hparams.token_dropout) & (x != 0)
            x = x.masked_fill(drop, 1)
        alpha = self.hparams.get("mixup", 0.0)
        if alpha:
            x, y, _, _ = mixup_batch(x, y, alpha)
        loss = self.loss(self(x), y, smoothing=self.hparams.get("label_smoothing", 0.0), soft=bool(alpha))
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
        mult = self.hparams.get("backbone_lr_mult", 1.0)
        params = self.parameters()
        if mult != 1.0:  # discriminative learning rates: the backbone at lr * mult, the head at lr
            head = set(blocks(self.model)[-1].params)
            named = list(self.model.named_parameters())
            params = [{"params": [p for n, p in named if n not in head], "lr": self.hparams.lr * mult},
                      {"params": [p for n, p in named if n in head], "lr": self.hparams.lr}]
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.hparams.max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
