"""Writing the run folder from inside Lightning: the data files at setup, model.pt and training.json at the end of
fitting, predictions/<split>.csv from `trainer.predict`; only the global rank zero writes."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter, Timer

from meddx.atomic import save_torch, write_frame, write_text
from meddx.config import RunConfig, data_name, save_config
from meddx.data.records import SPLITS
from meddx.errors import ConfigError
from meddx.run import CHECKPOINTS, CONFIG, DATA, PLAN, PREPROCESS, SPLIT, TRAINING, VOCAB, WEIGHTS, Run, write_status
from meddx.training.callbacks import CollapseMonitor, EpochHistory
from meddx.training.datamodule import RunDataModule
from meddx.training.distributed import is_rank_zero, share
from meddx.training.plan import Plan

RUN_DIR_ENV = "MEDDX_RUN_DIR"


def new_run_dir(cfg: RunConfig) -> Path:
    """runs/<name> (or <data>-<model>-<time>), made unique by rank 0 and shared with every process of the run through
    the process group (Lightning's launcher, whose workers start inside `fit`: through the environment)."""
    claimed = str(_claim_run_dir(cfg)) if is_rank_zero() else os.environ.get(RUN_DIR_ENV)
    path = share(claimed)
    if path is not None:
        return Path(path)
    if not cfg.name:  # a node started by hand (NODE_RANK) with Lightning's launcher: no group yet, nothing inherited
        raise ConfigError("multi-node runs need a run name (--name) so that every node agrees on the run folder")
    return Path(cfg.output_dir) / cfg.name


def staged_ensemble(path: Path) -> Path:
    """Where a single model's ensemble is staged before it is renamed into the model's place (autofit)."""
    return path.with_name(f".{path.name}.ensemble")


def _claim_run_dir(cfg: RunConfig) -> Path:
    """A new folder for this run: mkdir is the claim, so two runs started at once with one name get two folders."""
    if cfg.name:
        name = cfg.name
    else:
        name = f"{data_name(cfg.data)}-{cfg.model.name}-{datetime.now():%Y%m%d-%H%M%S}"
    base = Path(cfg.output_dir) / name
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        path, k = base, 1
        while True:
            try:
                if staged_ensemble(path).exists():  # a run killed while it became an ensemble: `--resume` finishes it
                    raise FileExistsError
                path.mkdir()
                break
            except FileExistsError:
                path, k = Path(f"{base}-{k}"), k + 1
    except OSError as e:  # a file where the folder goes, no permission, a read-only disk: it was a traceback
        raise ConfigError(f"{e.filename}: cannot make the run folder there ({e.strerror}); see --output-dir") from None
    os.environ[RUN_DIR_ENV] = str(path.resolve())
    return path


class RunWriter(pl.Callback):
    """Writes config.yaml, preprocess.json (vocab.json), split.csv and data.json when fitting starts, and model.pt (the
    best checkpoint's weights, or SWA's average) and training.json when it ends."""

    def __init__(self, run_dir: Path, data: RunDataModule, plan: Plan | None = None, cfg: RunConfig | None = None):
        self.run_dir, self.data, self.plan, self.cfg = Path(run_dir), data, plan, cfg
        self._started, self._samples, self._before_s = 0.0, 0, 0.0

    def state_dict(self) -> dict:
        """Kept in every checkpoint, so that a resumed run reports the seconds and samples of its whole training."""
        now = time.perf_counter() - self._started if self._started else 0.0  # 0 before fitting starts
        return {"seconds": self._before_s + now, "samples": self._samples}

    def load_state_dict(self, state_dict: dict) -> None:
        self._before_s, self._samples = float(state_dict.get("seconds", 0.0)), int(state_dict.get("samples", 0))

    def on_fit_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()
        if trainer.is_global_zero:
            write_data_files(self.run_dir, self.data, self.cfg)
            if self.plan is not None:
                self.plan.save(self.run_dir / PLAN)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._samples += len(batch[0])

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        best = trainer.checkpoint_callback
        checkpoint = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
        weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
        if pl_module.train_cfg.swa:  # the averaged weights (BatchNorm statistics re-estimated), not the best epoch
            weights = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}
        save_torch(weights, self.run_dir / WEIGHTS)
        seconds = self.state_dict()["seconds"]
        summary = {
            "best_epoch": int(checkpoint["epoch"]) + 1,
            "epochs_run": trainer.current_epoch,
            "best_val_loss": float(best.best_model_score),
            "seconds": round(seconds, 1),  # a resumed run's included: the time before its last checkpoint
            "seconds_before_resume": round(self._before_s, 1),
            # the samples the optimiser saw (limit_train_batches and drop_last included), every process's share
            "train_samples_seen": self._samples * trainer.world_size,
            "train_samples_per_second": round(self._samples * trainer.world_size / seconds, 1),
            "initial_val_loss": pl_module.initial_val_loss,
            "stopped_by_time_limit": _out_of_time(trainer, pl_module.train_cfg.max_minutes),
            "loss_weights": pl_module.hparams.loss_weights,
            "history": next(c for c in trainer.callbacks if isinstance(c, EpochHistory)).rows,
            "collapse": next(c for c in trainer.callbacks if isinstance(c, CollapseMonitor)).summary(),
            **finetune_summary(pl_module),
        }
        write_text(self.run_dir / TRAINING, json.dumps(summary, indent=2))


def _out_of_time(trainer, max_minutes: float | None) -> float | None:
    """The time limit in minutes (train.max_minutes: the plan's budget, or the user's) when it ended training before
    its last epoch ended and before early stopping (a cut in the last epoch counts: Lightning counts it as run);
    else None."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    ran_out = timer is not None and max_minutes and timer.time_remaining() is not None and timer.time_remaining() <= 0
    last_cut = trainer.fit_loop.epoch_loop.batch_progress.current.completed < trainer.num_training_batches
    return max_minutes if ran_out and (trainer.current_epoch < (trainer.max_epochs or 0) or last_cut) else None


class SplitPredictionWriter(BasePredictionWriter):
    """Gathers `trainer.predict`'s probabilities of one split from every process, in dataset order, into
    predictions/<split>.csv (set `split` before each call)."""

    def __init__(self, run_dir: Path, data: RunDataModule):
        super().__init__(write_interval="epoch")
        self.run_dir, self.data, self.split = Path(run_dir), data, "test"

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        indices = np.concatenate([np.asarray(b, dtype=np.int64) for b in batch_indices[0]])
        probs = torch.cat(predictions).double().cpu().numpy()
        parts = [(indices, probs)]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, (indices, probs))
        if trainer.is_global_zero:
            order = np.concatenate([i for i, _ in parts])
            stacked = np.concatenate([p for _, p in parts])[np.argsort(order, kind="stable")]
            records = self.data.datasets[self.split].records
            Run(self.run_dir).write_predictions(self.split, records, stacked)


def write_data_files(run_dir: Path, data: RunDataModule, cfg: RunConfig | None = None) -> None:
    """config.yaml (`cfg`: the config this run trains with; the data module's is shared by the candidates of a search
    and names another model), preprocess.json (vocab.json for sequences), split.csv and data.json."""
    ds, cfg = data.dataset, cfg or data.cfg
    (run_dir / CHECKPOINTS).mkdir(exist_ok=True)
    save_config(cfg, run_dir / CONFIG)
    data.prep.save(run_dir / (VOCAB if data.is_sequence else PREPROCESS))
    write_frame(ds.to_frame(), run_dir / SPLIT, index=False)
    sizes = {}
    for s in SPLITS:
        part = ds.subset(s).records
        sizes[s] = {"samples": len(part), "patients": len({r.patient_id for r in part})}
    data_info = {
        "origin": ds.origin,
        "task": ds.task,
        "label_names": ds.label_names,
        "classes": ds.classes,
        "notes": ds.notes,
        "patients_known": ds.patients_known,
        "patients_guessed": ds.patients_guessed,
        "leakage": data.leakage,
        "sizes": sizes,
    }
    write_text(run_dir / DATA, json.dumps(data_info, indent=2))


def finetune_summary(module) -> dict:
    """What training.json records about initialisation, freezing and averaging."""
    t, out = module.train_cfg, {}
    if t.init_from:
        out["init_from"] = {"source": str(t.init_from), **(module.init_report or {})}
    model = module.model
    out["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)  # at the end
    out["total_parameters"] = sum(p.numel() for p in model.parameters())
    if t.swa:
        out["model_pt"] = "swa"
    if t.tricks.ema_decay:
        out["model_pt"] = f"ema (decay {t.tricks.ema_decay:g}) of the best epoch"
    defaults = type(t.tricks)().model_dump()
    used = {k: v for k, v in t.tricks.model_dump().items() if v != defaults[k]}
    if used:
        out["tricks"] = used
    return out


def open_ensemble(base: Path, cfg: RunConfig, plan: Plan | None, kind: str) -> None:
    """A folder of several models says from the start what it will be (config, plan, status running), so a killed
    one is listed as interrupted and `meddx train --resume` knows its planned seeds."""
    save_config(cfg, base / CONFIG)
    if plan is not None:
        plan.save(base / PLAN)
    write_status(base, "running", kind=kind)
