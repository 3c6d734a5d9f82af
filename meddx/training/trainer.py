"""The Lightning Trainer of a run and every callback it needs, assembled in one place."""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
    StochasticWeightAveraging,
)
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from meddx.config import RunConfig
from meddx.errors import ConfigError
from meddx.logs import quiet_third_party
from meddx.models.finetune import parse_depth
from meddx.run import CHECKPOINTS, LOGS, TENSORBOARD
from meddx.training.averaging import EMAWeights
from meddx.training.callbacks import (
    CollapseMonitor,
    EpochHistory,
    GradualUnfreezing,
    RankSeeds,
    ResumeState,
    ValDiagnostics,
)
from meddx.training.datamodule import RunDataModule
from meddx.training.plan import Plan
from meddx.training.writer import RunWriter, SplitPredictionWriter


def make_callbacks(cfg: RunConfig, run_dir: Path, data: RunDataModule, plan: Plan | None = None) -> list[pl.Callback]:
    """Checkpoints (best by val loss, and the last epoch), early stopping (or SWA, which averages to the last epoch),
    collapse monitor, gradual unfreezing, TensorBoard diagnostics, progress bar, and the run-folder writers."""
    t = cfg.train
    ckpt_dir = run_dir / CHECKPOINTS
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min"),
        # Lightning 2.6's save_last only follows epochs that improved `best`; an unmonitored checkpoint is every epoch's
        ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False),
        CollapseMonitor(data.dataset.label_names),
        ResumeState(),
        RankSeeds(),
        EpochHistory(),
        LearningRateMonitor("epoch"),
        RunWriter(run_dir, data, plan, cfg),
        SplitPredictionWriter(run_dir, data),
    ]
    if t.checkpoint_minutes:  # a kill loses at most this much work; the loader's place is in the checkpoint too
        callbacks.append(WithinEpochCheckpoint(timedelta(minutes=t.checkpoint_minutes), dirpath=ckpt_dir))
    if t.tricks.ema_decay:
        if t.swa:
            raise ConfigError("train.swa and train.tricks.ema_decay both average weights; choose one")
        callbacks.append(EMAWeights(t.tricks.ema_decay))
    if t.swa:
        callbacks.append(StochasticWeightAveraging(swa_lrs=t.swa_lr or t.lr / 10, swa_epoch_start=t.swa_epoch_start))
    else:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=t.patience))
    depth = parse_depth(t.finetune_depth)
    if t.unfreeze_every and depth is not None:
        callbacks.append(GradualUnfreezing(depth, t.unfreeze_every))
    if t.diagnostics:
        callbacks.append(ValDiagnostics(data.dataset.label_names))
    if t.progress_bar:
        callbacks.append(RichProgressBar(leave=True))
    return callbacks


class WithinEpochCheckpoint(ModelCheckpoint):
    """checkpoints/last.ckpt at most `interval` apart inside an epoch, overwriting the epoch's own (no last-v1.ckpt).
    Never at an epoch's last batch: Lightning 2.6 resumed from there skips that epoch's validation and fails."""

    def __init__(self, interval: timedelta, dirpath: Path):
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, train_time_interval=interval,
                         enable_version_counter=False)  # fmt: skip

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int):
        if batch_idx + 1 < trainer.num_training_batches:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        else:  # the epoch's checkpoint follows its validation: the interval starts again from there
            self._last_time_checked = time.monotonic()


def check_accelerator(cfg: RunConfig) -> None:
    """`--accelerator gpu` where no GPU is visible (Lightning raised a MisconfigurationException traceback)."""
    wanted = cfg.train.accelerator
    if wanted in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"train.accelerator={wanted}: no CUDA GPU is visible to PyTorch here; use --accelerator cpu or auto"
        )
    if wanted not in ("auto", "cpu", "gpu", "cuda", "mps"):
        raise ConfigError(f"train.accelerator={wanted!r}: use auto, cpu or gpu")


def make_trainer(cfg: RunConfig, run_dir: Path, data: RunDataModule, plan: Plan | None = None) -> pl.Trainer:
    """Lightning Trainer with TensorBoard and CSV loggers; DDP (gloo on CPU, NCCL on GPU) beyond one device. The
    sanity check runs the whole val split: the untrained model's val loss (training.json's initial_val_loss)."""
    quiet_third_party()
    check_accelerator(cfg)
    t = cfg.train
    strategy = "auto"
    on_gpu = t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and torch.cuda.is_available())
    if t.devices * t.num_nodes > 1:
        from pytorch_lightning.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="nccl" if on_gpu else "gloo")
    return pl.Trainer(
        max_epochs=t.max_epochs,
        max_time=timedelta(minutes=t.max_minutes) if t.max_minutes else None,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=t.precision,
        callbacks=make_callbacks(cfg, run_dir, data, plan),
        logger=[
            TensorBoardLogger(save_dir=str(run_dir), name=TENSORBOARD, version=""),
            CSVLogger(save_dir=str(run_dir), name=LOGS, version=""),
        ],
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=10,
        limit_train_batches=t.limit_train_batches,
        default_root_dir=str(run_dir),
        num_sanity_val_steps=-1,
        benchmark=True if on_gpu else None,  # cuDNN picks the fastest convolution for the fixed input size
    )


LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch")


@contextmanager
def quiet_lightning():
    """Keep Lightning's info lines (devices, tips, checkpoint restored) off the terminal for the pilot and the
    predictions after training; warnings still show, but for the advice to sync logged values (rank 0's one-process
    pilot inside a torchrun job has nothing to sync)."""
    quiet_third_party()  # the learning-rate finder may run before any Trainer of the run (a notebook saw its noise)
    loggers = [logging.getLogger(n) for n in LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="It is recommended to use `self.log")
            warnings.filterwarnings("ignore", message="You defined a `validation_step` but have no `val_dataloader`")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
