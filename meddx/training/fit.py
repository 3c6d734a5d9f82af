"""`fit(config) -> Run`: records to a trained model in a run folder, through Lightning."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from meddx.config import RunConfig, as_config
from meddx.logs import run_log
from meddx.run import Run
from meddx.training.datamodule import RunDataModule
from meddx.training.module import Classifier
from meddx.training.plan import Plan
from meddx.training.trainer import make_trainer, quiet_lightning
from meddx.training.writer import SplitPredictionWriter, new_run_dir


def fit(
    config: RunConfig | dict | str | Path, data: RunDataModule | None = None, plan: Plan | None = None
) -> Run | None:
    """Train one model exactly as the config says (no planning: see `training.autofit`); the run folder gets config,
    split, checkpoints, model.pt, predictions. `data`: a data module already set up for this config, shared by the
    members of an ensemble; `plan`: written beside the config.

    Returns the Run in the process that wrote it, None in the other processes of a distributed run.
    """
    cfg = as_config(config)
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    if data is None:
        data = RunDataModule(cfg)
    data.setup("fit")
    run_dir = new_run_dir(cfg)
    module = Classifier.for_data(cfg, data)
    with run_log(run_dir):  # library noise (tips, deprecations) goes to meddx.log
        trainer = make_trainer(cfg, run_dir, data, plan)
        trainer.fit(module, datamodule=data)
        writer = next(c for c in trainer.callbacks if isinstance(c, SplitPredictionWriter))
        best = None if cfg.train.swa else trainer.checkpoint_callback.best_model_path  # SWA: the averaged weights
        for split in ("val", "test"):
            if split in data.datasets:  # on the trainer's accelerator, every process its share
                writer.split = split
                with quiet_lightning():
                    trainer.predict(module, data.loader(split), ckpt_path=best, return_predictions=False)
    return Run(run_dir) if trainer.is_global_zero else None
