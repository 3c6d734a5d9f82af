"""`resume_fit(run)`: a run whose training was killed or failed continues from its last checkpoint, in its own folder,
with the config it was planned with (no planning again) and the same split."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from meddx.config import load_config
from meddx.errors import ConfigError, DataError
from meddx.run import CONFIG, MEMBERS, PLAN, SPLIT, WEIGHTS, Run, read_status
from meddx.training.datamodule import RunDataModule
from meddx.training.fit import fit
from meddx.training.plan import Plan


def resume_fit(path: str | Path) -> Run:
    """Continue training the run folder `path` from checkpoints/last.ckpt (from the start if none was written)."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise ConfigError(f"{path}: not a run folder (no {CONFIG}); nothing to resume")
    if (path / MEMBERS).is_dir():
        raise ConfigError(
            f"{path}: a planned ensemble; resuming one is not supported yet (its finished members are in {MEMBERS}/)"
        )
    status = read_status(path)
    if status["state"] == "running":
        raise ConfigError(f"{path}: still running (process {status.get('pid')}); stop it before resuming")
    if status["state"] in ("trained", "complete") and (path / WEIGHTS).is_file():
        raise ConfigError(f"{path}: training already finished ({status['state']}); nothing to resume")
    cfg = load_config(path / CONFIG)
    data = RunDataModule(cfg)
    data.setup("fit")
    _check_same_split(path, data)
    plan = Plan.from_dict(json.loads((path / PLAN).read_text())) if (path / PLAN).is_file() else None
    return fit(cfg, data, plan, resume=path)


def _check_same_split(path: Path, data: RunDataModule) -> None:
    """The data read again must give the split the run started with, sample for sample."""
    if not (path / SPLIT).is_file():
        return
    saved = pd.read_csv(path / SPLIT, dtype={"id": str})[["id", "split"]]
    now = data.dataset.to_frame()[["id", "split"]].astype({"id": str})
    merged = saved.merge(now, on="id", how="outer", suffixes=("_then", "_now"))
    differ = int((merged["split_then"] != merged["split_now"]).sum())
    if differ:
        raise DataError(
            f"{path}: the data changed since the run started ({differ} sample(s) missing, new or in another split); "
            "train a new run instead"
        )
