"""Self-supervised pretraining of an image model on unlabelled scans: SimCLR (Chen et al. 2020) with lightly's
projection head and NT-Xent loss, two medically safe augmented views of each scan (our batch augmentation, stronger
than for fine-tuning: no flips, no colour), on Lightning. The encoder it writes loads with `train.init_from`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from meddx.atomic import save_torch, write_text
from meddx.config import AugmentConfig, DataConfig, RunConfig, SplitConfig
from meddx.data.images import content_hash
from meddx.data.readers import read_dataset
from meddx.data.records import Record
from meddx.data.split import assign_splits
from meddx.data.tensors import ImageDataset, resolve_preprocess
from meddx.data.unlabelled import read_unlabelled
from meddx.logs import quiet_third_party
from meddx.models import create_model
from meddx.models.finetune import replace_head
from meddx.run import CHECKPOINTS
from meddx.training.augment import augment_batch

VIEWS = AugmentConfig(rotate_degrees=15, translate=0.1, scale=0.2, brightness=0.3, contrast=0.3)
DEFAULT_SIZE = 64
SIMCLR_LR = 3e-3  # 5e-4 left the val NT-Xent at chance after 3 epochs on 533 NIH X-rays


class SimCLR(pl.LightningModule):
    """A registry model without its head, a projection head, and NT-Xent between two views of every scan."""

    def __init__(
        self,
        model: str,
        in_chans: int,
        size: int,
        lr: float,
        temperature: float,
        max_epochs: int,
        model_kwargs: dict | None = None,
    ):
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.save_hyperparameters()
        self.backbone = replace_head(create_model(model, in_chans, 1, **(model_kwargs or {})))
        dim = self.backbone.eval()(torch.zeros(2, in_chans, size, size)).shape[1]
        self.projection = SimCLRProjectionHead(dim, dim, 128)
        self.criterion = NTXentLoss(temperature=temperature)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        z0 = self.projection(self.backbone(augment_batch(x, VIEWS)))
        z1 = self.projection(self.backbone(augment_batch(x, VIEWS)))
        return self.criterion(z0, z1)

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch[0])
        self.log("train_ntxent", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        with torch.random.fork_rng(devices=[]):  # the same views every epoch: comparable val losses
            torch.manual_seed(batch_idx)
            loss = self.loss(batch[0])
        self.log("val_ntxent", loss, on_epoch=True, prog_bar=True, batch_size=len(batch[0]))

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=1e-4)
        return {
            "optimizer": opt,
            "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.hparams.max_epochs),
        }

    def encoder_state(self) -> dict:
        """The backbone's weights under the classifier's own keys (no head: fine-tuning adds a fresh one)."""
        return {k: v.detach().cpu() for k, v in self.backbone.state_dict().items()}


def held_out(paths: list[str]) -> dict[str, str | None]:
    """Every image of the val and test patients of each named data set as meddx's default split makes them (with the
    images the split drops because official splits share their patients): location -> content hash."""
    out: dict[str, str | None] = {}
    for path in paths:
        ds = read_dataset(DataConfig(path=path), check_files=False)
        every = list(ds.records)
        assign_splits(ds, SplitConfig())
        held = {r.patient_id for r in ds.records if r.split in ("val", "test")}
        out |= {r.location: content_hash(r) for r in every if r.patient_id in held}
    return out


def not_held(records: list[Record], held: dict[str, str | None]) -> list[Record]:
    """The records that are none of the held-out images, by location or by content (a copy elsewhere is the same
    image: `--exclude scans` must also keep out `copy-of-scans`)."""
    hashes = {h for h in held.values() if h}
    return [r for r in records if r.location not in held and not (hashes and content_hash(r) in hashes)]


def _split_images(cfg: RunConfig, records: list[Record]) -> tuple[ImageDataset, ImageDataset, object]:
    """Train and val datasets (a seeded val share) at data.image_size (default 64 px), one channel unless data.channels
    says otherwise, each image z-scored (sources of different scanners and bit depths mix)."""
    update = {
        "image_size": cfg.data.image_size or DEFAULT_SIZE,
        "normalize": "sample",
        "channels": cfg.data.channels or 1,
    }
    prep = resolve_preprocess(cfg.data.model_copy(update=update), records)
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(cfg.train.seed)).tolist()
    n_val = max(1, int(round(cfg.pretrain.val_fraction * len(records))))
    train = ImageDataset([records[i] for i in order[n_val:]], prep)
    return train, ImageDataset([records[i] for i in order[:n_val]], prep), prep


def pretrain_images(cfg: RunConfig) -> Path:
    """SimCLR on every image of pretrain.data (default data.path) but the val/test images of pretrain.exclude_from;
    writes encoder.pt and pretrain.json into pretrain.dir."""
    pc, out = cfg.pretrain, Path(cfg.pretrain.dir)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.train.seed, verbose=False)
    sources = pc.data or [cfg.data.main_path]
    excluded, every = held_out(pc.exclude_from), read_unlabelled(sources)
    records = not_held(every, excluded)
    train, val, prep = _split_images(cfg, records)
    n_val = len(val)
    module = SimCLR(
        cfg.model.name,
        prep.channels,
        prep.image_size[0],
        pc.lr or SIMCLR_LR,
        pc.temperature,
        pc.max_epochs,
        cfg.model.kwargs,
    )
    quiet_third_party()  # Lightning's tips and known warnings go to the log, not the terminal
    trainer = pl.Trainer(
        max_epochs=pc.max_epochs,
        accelerator=cfg.train.accelerator,
        devices=1,
        logger=False,
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=out / CHECKPOINTS, save_last=True)],
        enable_progress_bar=cfg.train.progress_bar,
        enable_model_summary=False,
        limit_train_batches=pc.limit_train_batches,
    )
    val_loader = DataLoader(val, batch_size=pc.batch_size)
    initial = float(trainer.validate(module, val_loader, verbose=False)[0]["val_ntxent"])
    module.train()  # validate() leaves every layer in eval mode and fit() keeps it: BatchNorm would never learn
    started = time.perf_counter()
    trainer.fit(
        module,
        DataLoader(train, batch_size=pc.batch_size, shuffle=True, drop_last=len(train) > pc.batch_size),
        val_loader,
    )
    save_torch(module.encoder_state(), out / "encoder.pt")
    info = {
        "objective": "simclr",
        "model": cfg.model.name,
        "in_chans": prep.channels,
        "image_size": prep.image_size,
        "normalize": prep.normalize,
        "sources": sources,
        "images": len(records),
        "val_images": n_val,
        "excluded_val_test_of": pc.exclude_from,
        "held_out_images": len(excluded),  # the val/test images of exclude_from ...
        "excluded_images": len(every) - len(records),  # ... and how many of them the sources held: left out
        "epochs": trainer.current_epoch,
        "initial_val_ntxent": initial,
        "final_val_ntxent": float(trainer.validate(module, val_loader, verbose=False)[0]["val_ntxent"]),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_text(out / "pretrain.json", json.dumps(info, indent=2))
    return out
