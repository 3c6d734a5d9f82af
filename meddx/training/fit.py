"""`fit(config) -> Run`: records to a trained model in a run folder, through Lightning."""

from __future__ import annotations

import pickle
from contextlib import contextmanager, suppress
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl

from meddx.atomic import write_frame
from meddx.config import RunConfig, as_config
from meddx.errors import DataError
from meddx.logs import run_log
from meddx.models.finetune import check_depth, loads_weights
from meddx.run import CHECKPOINTS, LOGS, Run, write_status
from meddx.training.datamodule import RunDataModule
from meddx.training.distributed import is_rank_zero, match_launcher, start_process_group
from meddx.training.module import Classifier
from meddx.training.plan import Plan
from meddx.training.trainer import make_trainer, quiet_lightning
from meddx.training.writer import SplitPredictionWriter, new_run_dir


def fit(
    config: RunConfig | dict | str | Path,
    data: RunDataModule | None = None,
    plan: Plan | None = None,
    resume: Path | None = None,
) -> Run | None:
    """Train one model exactly as the config says (no planning: see `training.autofit`); the run folder gets config,
    split, checkpoints, model.pt, predictions and status.json. `data`: a data module already set up for this config,
    shared by the members of an ensemble; `plan`: written beside the config; `resume`: a run folder of this config
    whose training stopped, continued from its last checkpoint (optimiser, scheduler, early stopping, RNG).

    Returns the Run in the process that wrote it, None in the other processes of a distributed run.
    """
    cfg = match_launcher(as_config(config))
    start_process_group(cfg)
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    if data is None:
        data = RunDataModule(cfg)
    data.setup("fit")
    module = Classifier.for_data(cfg, data)
    check_depth(module.model, cfg.train.finetune_depth, cfg.model.name, loads_weights(cfg))  # before its folder
    run_dir = Path(resume) if resume else new_run_dir(cfg)
    last = run_dir / CHECKPOINTS / "last.ckpt"
    if is_rank_zero():
        write_status(run_dir, "running")
    ckpt = last if resume and last.is_file() else None
    with run_log(run_dir), _failure_recorded(run_dir), log_kept(run_dir if ckpt else None):  # noise to meddx.log
        trainer = make_trainer(cfg, run_dir, data, plan)
        with refuse_unsafe(ckpt):
            trainer.fit(module, datamodule=data, ckpt_path=ckpt, weights_only=True)  # a checkpoint never runs code
        writer = next(c for c in trainer.callbacks if isinstance(c, SplitPredictionWriter))
        best = None if cfg.train.swa else trainer.checkpoint_callback.best_model_path  # SWA: the averaged weights
        for split in ("val", "test"):
            if split in data.datasets:  # on the trainer's accelerator, every process its share
                writer.split = split
                with quiet_lightning():
                    trainer.predict(module, data.loader(split), ckpt_path=best, return_predictions=False,
                                    weights_only=True)  # fmt: skip
        if trainer.is_global_zero:
            write_status(run_dir, "trained")
    return Run(run_dir) if trainer.is_global_zero else None


@contextmanager
def _failure_recorded(run_dir: Path):
    """status.json says 'failed' and why when training raises, 'interrupted' when stopped (Ctrl-C, SIGTERM); a kill
    leaves 'running' from a process now gone, read as interrupted."""
    try:
        yield
    except BaseException as e:
        ctrl_c = isinstance(e, KeyboardInterrupt) or isinstance(e.__context__, KeyboardInterrupt)  # Lightning's exit
        stopped = ctrl_c or type(e).__name__ == "SIGTERMException"  # Ctrl-C (SystemExit(1) after Lightning's
        # graceful shutdown), a scheduler's SIGTERM; any other SystemExit is a failure
        if is_rank_zero():
            with suppress(OSError):  # the disk may be what failed: the original error is the one to report
                if stopped:
                    write_status(run_dir, "interrupted", f"stopped by {type(e).__name__}; --resume continues it")
                else:
                    write_status(run_dir, "failed", f"{type(e).__name__}: {e}"[:500])
        raise


@contextmanager
def refuse_unsafe(checkpoint: Path | None):
    """A checkpoint that holds more than tensors and plain values (a pickle that could run code) is one clear line."""
    try:
        yield
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"{checkpoint}: refused, not a plain checkpoint (only tensors and plain values load): {first}"
        ) from None


@contextmanager
def log_kept(run_dir: Path | None):
    """Lightning's CSVLogger empties logs/ when a run resumes; the epochs logged so far are kept aside (beside logs/,
    so a run killed again keeps them too) and put back in front of the resumed ones, whatever becomes of the resume."""
    path = None if run_dir is None or not is_rank_zero() else run_dir / LOGS / "metrics.csv"
    aside = None if path is None else run_dir / "metrics-before-resume.csv"
    if aside is not None:
        _keep(_merged(aside, path), aside)  # an earlier resume killed before it put them back: both parts
    try:
        yield
    finally:
        if aside is not None and aside.is_file():
            _keep(_merged(aside, path), path)
            aside.unlink(missing_ok=True)


def _merged(before: Path, after: Path) -> pd.DataFrame | None:
    """The rows of `before` logged before `after`'s first epoch, then `after`'s (either file may be missing or torn)."""
    frames: list[pd.DataFrame | None] = []
    for f in (before, after):
        frame = None
        with suppress(ValueError, OSError, pd.errors.ParserError):
            frame = pd.read_csv(f) if f.is_file() and f.stat().st_size else None
        frames.append(frame)
    old, new = frames
    if old is None or new is None or not len(new):
        return new if old is None else old
    if "epoch" in old and "epoch" in new:
        unset = old["epoch"].isna() & ~new["epoch"].isna().any()
        old = old[(old["epoch"] < new["epoch"].min()) | unset]
    return pd.concat([old, new], ignore_index=True)


def _keep(frame: pd.DataFrame | None, path: Path) -> None:
    if frame is not None and len(frame):
        path.parent.mkdir(exist_ok=True)
        write_frame(frame, path, index=False)
