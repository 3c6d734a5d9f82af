"""A timed pilot: a few training and validation batches of the planned model on this machine, so the plan knows the
seconds an epoch costs here."""

from __future__ import annotations

import time

import numpy as np
import pytorch_lightning as pl

from meddx.config import RunConfig
from meddx.data.sequences import is_sequence
from meddx.training.datamodule import RunDataModule
from meddx.training.distributed import alone
from meddx.training.module import Classifier
from meddx.training.plan import Plan, Planner
from meddx.training.trainer import quiet_lightning


class _BatchTimer(pl.Callback):
    """Wall seconds of every training and validation batch."""

    def __init__(self):
        self.train: list[float] = []
        self.val: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *args) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        self.train.append(time.perf_counter() - self._start)

    def on_validation_batch_start(self, *args) -> None:
        self._start = time.perf_counter()

    def on_validation_batch_end(self, *args) -> None:
        self.val.append(time.perf_counter() - self._start)


def time_epoch(cfg: RunConfig, data: RunDataModule, train_batches: int = 12, val_batches: int = 4) -> dict:
    """Seconds per training epoch (train + val), from the median batch times of a short fit (the first batch, which
    pays for warm-up, is left out)."""
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    train, val = data.loader("train", shuffle=True), data.loader("val")
    timer = _BatchTimer()
    with quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=1,
            limit_train_batches=min(train_batches, len(train)),
            limit_val_batches=min(val_batches, len(val)),
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
            accelerator=cfg.train.accelerator,
            devices=1,
            plugins=alone(),
            precision=cfg.train.precision,
        )
        trainer.fit(Classifier.for_data(cfg, data), train, val)
    per_train = float(np.median(timer.train[1:] or timer.train))
    per_val = float(np.median(timer.val)) if timer.val else 0.0
    return {
        "train_batches_timed": len(timer.train),
        "seconds_per_train_batch": round(per_train, 4),
        "seconds_per_val_batch": round(per_val, 4),
        "steps_per_epoch": len(train),
        "seconds_per_epoch": round(len(train) * per_train + len(val) * per_val, 2),
    }


LAYOUT_GAIN = 1.10  # NHWC must be this much faster per training batch to be chosen (two short pilots differ by noise)


def choose_layout(user_cfg: RunConfig, data: RunDataModule, plan: Plan, pilot: dict) -> dict:
    """For image models in NCHW whose layout the user did not set (on the CPU; CUDA's rule chose NHWC): time a second
    pilot of the planned config `data.cfg` in NHWC (channels_last), kept when LAYOUT_GAIN faster; returns the pilot of
    the chosen layout. oneDNN's convolutions often run faster in NHWC on x86 CPUs; how much, the machine decides."""
    planner = Planner(user_cfg, plan)
    if "train.channels_last" in planner.user:
        planner.choose("train.channels_last", False, "not timed", "pilot")  # recorded as the user's, with their value
    if is_sequence(data.dataset) or data.cfg.train.channels_last or "train.channels_last" in planner.user:
        return pilot
    nhwc_cfg = data.cfg.model_copy(deep=True)
    nhwc_cfg.train.channels_last = True
    try:
        nhwc = time_epoch(nhwc_cfg, data)
    except RuntimeError as e:  # a model with an op NHWC lacks: the layout is a speed-up, never a reason to fail
        planner.choose("train.channels_last", False, f"NHWC failed in the pilot ({str(e)[:120]}): NCHW", "pilot")
        return pilot
    nchw_s, nhwc_s = pilot["seconds_per_train_batch"], nhwc["seconds_per_train_batch"]
    faster = nhwc_s * LAYOUT_GAIN <= nchw_s
    timed = f"pilot: {nhwc_s:.3f} s a training batch in NHWC against {nchw_s:.3f} s in NCHW"
    why = f"{timed}, {nchw_s / max(nhwc_s, 1e-9):.2f}x" + ("" if faster else f" (under {LAYOUT_GAIN:.2f}x: kept NCHW)")
    planner.choose("train.channels_last", faster, why, "pilot")
    return {**(nhwc if faster else pilot), "layouts_timed": {"nchw": nchw_s, "nhwc": nhwc_s}}
