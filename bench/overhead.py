"""Framework overhead: meddx's steady-state training step (Lightning, its callbacks and logging, meddx's module and
loader) against a plain PyTorch loop over the same decoded samples, same model, optimiser, loss and batch.

Each pair runs both sides in a random order; a side's step time is the median interval between consecutive training
steps within epochs 2.. (the first epoch warms up; validation and checkpoints between epochs are left out).

    .venv/bin/python bench/overhead.py [--pairs 9] [--epochs 3] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

import meddx.training.trainer as trainer_module
from meddx.config import RunConfig
from meddx.models import create_model
from meddx.training.datamodule import RunDataModule
from meddx.training.fit import fit
from meddx.training.losses import weighted_bce_with_logits

sys.path.insert(0, str(Path(__file__).parent))
from _docs import write_section  # noqa: E402


class StepTimer(pl.Callback):
    """Intervals between consecutive training-step ends within each epoch after the first."""

    def __init__(self):
        self.intervals: list[float] = []
        self._last: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None and trainer.current_epoch >= 1:
            self.intervals.append(now - self._last)
        self._last = now


def config(out: str, epochs: int, batch_size: int, seed: int) -> RunConfig:
    return RunConfig.model_validate(
        {
            "data": {"path": "pneumoniamnist"},
            "split": {"on_duplicate_images": "drop_from_train"},
            "plan": {"enabled": False},
            "model": {"name": "small_cnn"},
            "train": {"max_epochs": epochs, "batch_size": batch_size, "patience": 1000, "seed": seed,
                      "progress_bar": False, "augment": {"enabled": False}, "diagnostics": False,
                      "class_weights": "off"},
            "output_dir": out,
        }
    )  # fmt: skip


def meddx_steps(cfg: RunConfig, data: RunDataModule) -> list[float]:
    """meddx's own fit (every callback it always has), with a step timer added to its Trainer."""
    timer = StepTimer()
    make = trainer_module.make_callbacks
    trainer_module.make_callbacks = lambda *a, **k: [*make(*a, **k), timer]
    try:
        fit(cfg, data)
    finally:
        trainer_module.make_callbacks = make
    return timer.intervals


def plain_steps(cfg: RunConfig, data: RunDataModule) -> list[float]:
    """The peer: the same decoded, normalised tensors in a TensorDataset, the same model class, AdamW at meddx's rate
    and weight decay, the same BCE, batch and drop_last; nothing else."""
    torch.manual_seed(cfg.train.seed)
    train = data.datasets["train"]
    loader = DataLoader(TensorDataset(train.images, train.labels), batch_size=cfg.train.batch_size, shuffle=True,
                        drop_last=True)  # fmt: skip
    model = create_model(cfg.model.name, data.in_chans, train.labels.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    ones = torch.ones(train.labels.shape[1])
    intervals = []
    for epoch in range(cfg.train.max_epochs):
        model.train()
        last = None
        for x, y in loader:
            loss = weighted_bce_with_logits(model(x), y, ones, ones)
            opt.zero_grad()
            loss.backward()
            opt.step()
            now = time.perf_counter()
            if last is not None and epoch >= 1:
                intervals.append(now - last)
            last = now
    return intervals


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=9)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    order = random.Random(0)
    rows = []
    with tempfile.TemporaryDirectory() as out:
        data = RunDataModule(config(out, args.epochs, args.batch_size, 0))
        data.setup()
        for k in range(args.pairs):
            cfg = config(out, args.epochs, args.batch_size, k)
            sides = ["plain", "meddx"]
            order.shuffle(sides)
            got = {
                s: float(np.median(plain_steps(cfg, data) if s == "plain" else meddx_steps(cfg, data))) for s in sides
            }
            rows.append({"first": sides[0], **got, "ratio": got["plain"] / got["meddx"]})
            print(f"pair {k}: {rows[-1]}", flush=True)
    write(rows, args)


def write(rows: list[dict], args) -> None:
    ratios = np.array([r["ratio"] for r in rows])
    q1, med, q3 = np.percentile(ratios, [25, 50, 75])
    plain_ms = np.median([r["plain"] for r in rows]) * 1000
    meddx_ms = np.median([r["meddx"] for r in rows]) * 1000
    body = f"""Measured {time.strftime("%Y-%m-%d")} on {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__},
by `.venv/bin/python bench/overhead.py --pairs {args.pairs} --epochs {args.epochs} --batch-size {args.batch_size}`.
Bundled PneumoniaMNIST at 28 px, `small_cnn`, batch {args.batch_size}, augmentation off, the same decoded and normalised
train tensors on both sides; {len(rows)} pairs, each in a random order; a side's figure is its median step interval in
epochs 2-{args.epochs} (validation and checkpoints between epochs left out).

| | median step (ms) |
|---|---|
| plain PyTorch loop (peer): DataLoader over a TensorDataset, AdamW, BCE | {plain_ms:.2f} |
| meddx `fit` (Lightning Trainer with every meddx callback, its loader and module) | {meddx_ms:.2f} |

- Step-time ratio plain / meddx (1.0 = no overhead): **{med:.3f}** median over {len(rows)} pairs, interquartile range
  {q1:.3f}-{q3:.3f} (goal >= 0.95); pairs: {", ".join(f"{r:.3f}" for r in ratios)}.
"""
    print(body)
    print(f"wrote {write_section('overhead', 'Framework overhead: a training step, meddx against a plain loop', body)}")


if __name__ == "__main__":
    main()
