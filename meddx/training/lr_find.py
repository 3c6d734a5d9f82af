"""Lightning's learning-rate finder (a range test) for models the plan's rules know no learning rate for."""

from __future__ import annotations

import tempfile

import pytorch_lightning as pl

from meddx.config import RunConfig
from meddx.training.datamodule import RunDataModule
from meddx.training.distributed import alone
from meddx.training.module import Classifier
from meddx.training.trainer import quiet_lightning

MIN_LR, MAX_LR = 1e-5, 1e-1  # the range tested
SAFE_LR = (1e-4, 1e-2)  # a suggestion is clipped into this range (the finder's curve is noisy on few steps)


STEPS = 60  # batches at exponentially rising rates


def find_lr(cfg: RunConfig, data: RunDataModule, steps: int = STEPS) -> dict:
    """The finder's suggestion (steepest fall of the loss over `steps` batches at exponentially rising rates), clipped
    into SAFE_LR; `lr` is None when the loss never fell."""
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    train = data.loader("train", shuffle=True)
    with tempfile.TemporaryDirectory() as tmp, quiet_lightning():
        trainer = pl.Trainer(
            default_root_dir=tmp,
            max_epochs=max(1, -(-steps // max(len(train), 1))),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator=cfg.train.accelerator,
            devices=1,
            plugins=alone(),
            precision=cfg.train.precision,
        )
        finder = pl.tuner.Tuner(trainer).lr_find(
            Classifier.for_data(cfg, data), train_dataloaders=train, min_lr=MIN_LR, max_lr=MAX_LR,
            num_training=steps, update_attr=False,
        )  # fmt: skip
    suggested = finder.suggestion() if finder is not None else None
    lr = None if suggested is None else float(min(max(suggested, SAFE_LR[0]), SAFE_LR[1]))
    return {"lr": lr, "suggested": suggested, "steps": len(finder.results["lr"]) if finder else 0}
