"""`fit(config) -> Run`: records to a trained model in a run folder, through Lightning."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from meddx.config import RunConfig, as_config
from meddx.run import Run
from meddx.training.datamodule import RunDataModule
from meddx.training.losses import loss_weights
from meddx.training.module import Classifier
from meddx.training.trainer import make_trainer
from meddx.training.writer import SplitPredictionWriter, new_run_dir


def fit(config: RunConfig | dict | str | Path) -> Run | None:
    """Train one model as the config says; the run folder gets config, split, checkpoints, model.pt, predictions.

    Returns the Run in the process that wrote it, None in the other processes of a distributed run.
    """
    cfg = as_config(config)
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    data = RunDataModule(cfg)
    data.setup("fit")
    run_dir = new_run_dir(cfg)
    labels = data.dataset.subset("train").labels
    module = Classifier(
        cfg.model,
        cfg.train,
        data.dataset.task,
        data.in_chans,
        len(data.dataset.label_names),
        loss_weights(cfg.train.class_weights, labels, data.dataset.task),
        data.model_kwargs,
    )
    trainer = make_trainer(cfg, run_dir, data)
    trainer.fit(module, datamodule=data)
    writer = next(c for c in trainer.callbacks if isinstance(c, SplitPredictionWriter))
    for split in ("val", "test"):
        if split in data.datasets:  # the best epoch's weights (SWA: the average), on the trainer's accelerator
            writer.split = split
            trainer.predict(
                module, data.loader(split), ckpt_path=None if cfg.train.swa else "best", return_predictions=False
            )
    return Run(run_dir) if trainer.is_global_zero else None
