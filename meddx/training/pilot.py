"""A timed pilot: a few training and validation batches of the planned model on this machine, so the plan knows the
seconds an epoch costs here."""

from __future__ import annotations

import time

import numpy as np
import pytorch_lightning as pl
import torch

from meddx.config import RunConfig
from meddx.data.sequences import is_sequence
from meddx.training.datamodule import RunDataModule
from meddx.training.distributed import alone
from meddx.training.module import Classifier
from meddx.training.plan import Choice, Plan, Planner
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


LAYOUT_GAIN = 1.10  # NHWC must be this much faster per training batch to be chosen (timings on a busy CPU are noisy)
LAYOUT_SHARE = 0.03  # of the budget, the most timing both layouts may take


def time_layouts(cfg: RunConfig, data: RunDataModule, rounds: int = 7, steps: int = 2) -> dict[str, float]:
    """Median seconds of a training step (forward, loss, backward) on one real batch in each memory layout, NCHW and
    NHWC taking turns round by round (the first round, warm-up, left out), so a machine whose load drifts slows both."""
    module = Classifier.for_data(cfg, data)
    x, y = next(iter(data.loader("train", shuffle=True)))
    model, seconds = module.model.train(), {"nchw": [], "nhwc": []}
    for r in range(rounds):
        for layout in ("nchw", "nhwc") if r % 2 == 0 else ("nhwc", "nchw"):
            fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
            model.to(memory_format=fmt)
            started = time.perf_counter()
            for _ in range(steps):
                model.zero_grad(set_to_none=True)
                module.loss(model(x.contiguous(memory_format=fmt)), y).backward()
            if r:
                seconds[layout].append((time.perf_counter() - started) / steps)
    return {layout: float(np.median(s)) for layout, s in seconds.items()}


def choose_layout(user_cfg: RunConfig, data: RunDataModule, plan: Plan, pilot: dict) -> dict:
    """For image models in NCHW whose layout the user did not set (on the CPU; CUDA's rule chose NHWC): time both
    layouts in turns on the planned config `data.cfg`, NHWC kept when LAYOUT_GAIN faster; returns the pilot with its
    batch and epoch seconds scaled to the chosen layout. oneDNN often runs NHWC faster on x86; how much varies."""
    planner = Planner(user_cfg, plan)
    mine = planner.user.get("train.channels_last")
    if mine is not None and plan.value("train.channels_last") is None:  # a rule's record (CUDA's) is kept as it is
        plan.choices.append(Choice("train.channels_last", mine, "set by the user; the layout was not timed", "user"))
    if mine is not None or data.cfg.train.channels_last or is_sequence(data.dataset):
        return pilot
    step_s = max(pilot["seconds_per_train_batch"], 1e-4)  # rounded to 0 for a tiny model
    rounds = min(7, int(LAYOUT_SHARE * plan.budget_minutes * 60 / (4 * step_s)))
    if rounds < 3:  # each round: two steps in each layout
        why = f"not timed: 3 rounds of steps at {pilot['seconds_per_train_batch']:.2f} s exceed {LAYOUT_SHARE:.0%} of"
        planner.choose("train.channels_last", False, f"{why} the budget; NCHW, PyTorch's default", "pilot")
        return pilot
    try:
        timed = time_layouts(data.cfg, data, rounds)
    except RuntimeError as e:  # a model with an op NHWC lacks: the layout is a speed-up, never a reason to fail
        planner.choose("train.channels_last", False, f"NHWC failed in the pilot ({str(e)[:120]}): NCHW", "pilot")
        return pilot
    gain = round(timed["nchw"] / max(timed["nhwc"], 1e-9), 2)  # decided on the figure the reason shows
    faster = gain >= LAYOUT_GAIN
    why = f"pilot: a training step {timed['nhwc']:.3f} s in NHWC against {timed['nchw']:.3f} s in NCHW, {gain:.2f}x"
    why += "" if faster else f" (under {LAYOUT_GAIN:.2f}x: NCHW)"
    planner.choose("train.channels_last", faster, why, "pilot")
    if not faster:
        return {**pilot, "layouts_timed": timed}
    batch_s = pilot["seconds_per_train_batch"] / gain
    epoch_s = pilot["seconds_per_epoch"] - pilot["steps_per_epoch"] * (pilot["seconds_per_train_batch"] - batch_s)
    return {**pilot, "seconds_per_train_batch": round(batch_s, 4), "seconds_per_epoch": round(epoch_s, 2),
            "layouts_timed": timed}  # fmt: skip
