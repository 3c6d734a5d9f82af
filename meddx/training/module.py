"""The one LightningModule for every task: binary, multi-class and multi-label heads, images and token sequences."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics

from meddx.config import ModelConfig, RunConfig, TrainConfig
from meddx.data.sequences import UNK
from meddx.models.finetune import blocks, freeze_all_but, load_pretrained, parse_depth, set_batchnorm_modes
from meddx.models.output import build_model, probabilities
from meddx.training.adversarial import adversarial_loss, word_embedding
from meddx.training.augment import augment_batch, mixup_batch
from meddx.training.datamodule import RunDataModule
from meddx.training.losses import (
    LossWeights,
    focal_bce_with_logits,
    focal_cross_entropy,
    loss_weights,
    weighted_bce_with_logits,
)


def _auroc(task: str, num_labels: int, **sync) -> torchmetrics.Metric:
    if task == "multiclass":
        return torchmetrics.AUROC(task="multiclass", num_classes=num_labels, average="macro", **sync)
    if task == "multilabel":  # unknown labels come as -1 (see `_auroc_target`)
        return torchmetrics.AUROC(task="multilabel", num_labels=num_labels, average="macro", ignore_index=-1, **sync)
    return torchmetrics.AUROC(task="binary", ignore_index=-1, **sync)


def _auroc_target(y: torch.Tensor, task: str) -> torch.Tensor:
    """Integer targets for the val AUROC: class index (multi-class), else 1 from 0.5 (soft labels) and -1 unknown."""
    if task == "multiclass":
        return y.argmax(1)
    target = torch.where(torch.isnan(y), torch.full_like(y, -1), (y >= 0.5).float()).long()
    return target[:, 0] if task == "binary" else target


class Classifier(pl.LightningModule):
    """A registry model with its loss, optimiser and validation metrics, configured by the run's model and train
    sections; `model_kwargs` are the data's builder arguments (a vocabulary's size and length)."""

    def __init__(
        self,
        model: ModelConfig | dict,
        train: TrainConfig | dict,
        task: str,
        in_chans: int,
        num_labels: int,
        loss_weights: LossWeights | dict | None = None,
        model_kwargs: dict | None = None,
    ):
        super().__init__()
        self.model_cfg, self.train_cfg = ModelConfig.model_validate(model), TrainConfig.model_validate(train)
        weights = loss_weights if isinstance(loss_weights, LossWeights) else LossWeights(**(loss_weights or {}))
        self.save_hyperparameters(
            {
                "model": self.model_cfg.model_dump(mode="json"),
                "task": task,
                "in_chans": in_chans,
                "train": self.train_cfg.model_dump(mode="json"),
                "num_labels": num_labels,
                "loss_weights": weights.to_dict(),
                "model_kwargs": model_kwargs or {},
            }
        )
        self.task = task
        self.model = build_model(self.model_cfg, in_chans, num_labels, **(model_kwargs or {}))
        t = self.train_cfg
        self.init_report = load_pretrained(self.model, t.init_from) if t.init_from else None  # head stays fresh
        self.frozen = parse_depth(t.finetune_depth) is not None
        if self.frozen:
            freeze_all_but(self.model, t.finetune_depth)
        if t.tricks.adversarial != "off":
            word_embedding(self.model)  # a model without token embeddings is named now, not at the first step
        self.keep_frozen_bn_stats = True  # SWA turns this off: it re-estimates every BatchNorm at the end
        ones = [1.0] * num_labels
        self.register_buffer("w_pos", torch.tensor(weights.pos_weight or ones))
        self.register_buffer("w_neg", torch.tensor(weights.neg_weight or ones))
        self.register_buffer("w_class", torch.tensor(weights.class_weight or ones))
        # synced over the trainer's processes only: rank 0's one-process pilot runs while the others wait in the group
        sync = {"distributed_available_fn": self._trainer_is_distributed}
        self.val_auroc = _auroc(task, num_labels, **sync)
        self.sanity_loss = torchmetrics.MeanMetric(**sync)
        self.initial_val_loss: float | None = None

    def _trainer_is_distributed(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    @classmethod
    def for_data(cls, cfg: RunConfig, data: RunDataModule) -> Classifier:
        """The Classifier a run of `cfg` trains on a set-up data module (class weights from its training labels)."""
        ds = data.dataset
        weights = loss_weights(cfg.train.class_weights, ds.subset("train").labels, ds.task)
        return cls(cfg.model, cfg.train, ds.task, data.in_chans, len(ds.label_names), weights, data.model_kwargs)

    def configure_model(self) -> None:
        """`train.channels_last` and `train.compile`, once the model is on its device (Lightning calls this for every
        fit and predict); compiled in place, so weights and checkpoints keep their names."""
        if self.train_cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)  # 4-D weights only: a token model is unchanged
        if self.train_cfg.compile and not getattr(self, "_compiled", False):
            self.model.compile()
            self._compiled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.train_cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0, soft: bool = False) -> torch.Tensor:
        """Weighted BCE (binary, multi-label) or weighted cross-entropy (multi-class), focal if asked; optional label
        smoothing; `soft` keeps mixed (mixup) multi-class targets as probabilities."""
        focal = self.train_cfg.tricks.loss == "focal"
        gamma = self.train_cfg.tricks.focal_gamma
        if self.task == "multiclass":
            if focal:
                return focal_cross_entropy(logits, y, self.w_class, gamma, smoothing)
            target = y if soft else y.argmax(1)
            return F.cross_entropy(logits, target, weight=self.w_class, label_smoothing=smoothing)
        if smoothing:
            y = y * (1 - smoothing) + smoothing / 2
        if focal:
            return focal_bce_with_logits(logits, y, self.w_pos, self.w_neg, gamma)
        return weighted_bce_with_logits(logits, y, self.w_pos, self.w_neg)

    def on_train_epoch_start(self):
        if self.frozen and self.keep_frozen_bn_stats:
            set_batchnorm_modes(self.model)

    def training_step(self, batch, batch_idx):
        x, y = batch
        t = self.train_cfg
        if t.augment.enabled and x.is_floating_point():
            x = augment_batch(x, t.augment)
        if t.token_dropout > 0 and not x.is_floating_point():  # token ids: replace some by unk
            drop = (torch.rand(x.shape, device=x.device) < t.token_dropout) & (x != 0)
            x = x.masked_fill(drop, UNK)
        if t.mixup:
            x, y, _, _ = mixup_batch(x, y, t.mixup)
        loss = self.loss(self(x), y, smoothing=t.label_smoothing, soft=bool(t.mixup))
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(x))
        if t.tricks.adversarial != "off":  # trained on the clean loss plus the loss at adversarial embeddings
            at = lambda: self.loss(self(x), y, smoothing=t.label_smoothing, soft=bool(t.mixup))  # noqa: E731
            adversarial = adversarial_loss(self.model, at, loss, t.tricks)
            self.log("train_adversarial_loss", adversarial, on_step=False, on_epoch=True, sync_dist=True,
                     batch_size=len(x))  # fmt: skip
            return loss + adversarial
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        if self.trainer.sanity_checking:  # the untrained model over the whole val split (num_sanity_val_steps=-1)
            self.sanity_loss.update(loss, weight=len(x))
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(x))
        probs = probabilities(logits, self.task)
        self.val_auroc.update(probs[:, 0] if self.task == "binary" else probs, _auroc_target(y, self.task))
        return probs

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            loss = float(self.sanity_loss.compute())  # synced over processes by torchmetrics
            if self.initial_val_loss is None:  # a resumed run keeps its untrained model's figure (ResumeState)
                self.initial_val_loss = loss
            self.sanity_loss.reset()
        self.log("val_auc", self.val_auroc.compute(), prog_bar=True, sync_dist=True)  # the same in every process
        self.val_auroc.reset()

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return probabilities(self(batch[0]), self.task)

    def configure_optimizers(self):
        t = self.train_cfg
        params = self.parameters()
        if t.backbone_lr_mult != 1.0:  # discriminative learning rates: the backbone at lr * mult, the head at lr
            head = set(blocks(self.model)[-1].params)
            named = list(self.model.named_parameters())
            params = [
                {"params": [p for n, p in named if n not in head], "lr": t.lr * t.backbone_lr_mult},
                {"params": [p for n, p in named if n in head], "lr": t.lr},
            ]
        opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        if t.tricks.lookahead:  # slow weights every 6 steps, halfway to the fast ones (Zhang et al. 2019)
            from timm.optim import Lookahead

            opt = Lookahead(opt, alpha=0.5, k=6)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
