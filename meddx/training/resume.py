"""Resuming: a run whose training was killed or failed continues from its last checkpoint, in its own folder, with
the config it was planned with (no planning again) and the same split; a planned ensemble of seeds keeps its finished
members, resumes the one cut short and trains the missing ones (a search between candidates: `resume_search`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from meddx.config import RunConfig, load_config
from meddx.errors import ConfigError, DataError
from meddx.run import CONFIG, ENSEMBLE, MEMBERS, PLAN, SPLIT, STATUS, WEIGHTS, Run, read_status
from meddx.training.autofit import seed_config
from meddx.training.datamodule import RunDataModule
from meddx.training.fit import fit
from meddx.training.plan import Plan


def resume_fit(path: str | Path) -> Run:
    """Continue training the run folder `path` from checkpoints/last.ckpt (from the start if none was written)."""
    path = Path(path)
    check_resumable(path)
    if (path / MEMBERS).is_dir():
        raise ConfigError(f"{path}: a folder of several models; `meddx train --resume` (meddx.resume) finishes it")
    cfg = load_config(path / CONFIG)
    data = RunDataModule(cfg)
    data.setup("fit")
    check_same_split(path, data)
    return fit(cfg, data, read_plan(path), resume=path)


def resume_ensemble(path: str | Path) -> tuple[list[Run], RunConfig, Plan | None]:
    """Finish a planned ensemble of seeds: returns (members, the ensemble's config, its plan). Seeds the budget would
    have added after the planned ones are not (the budget is spent)."""
    path = Path(path)
    check_resumable(path)
    if read_status(path).get("kind") != "ensemble":
        raise ConfigError(
            f"{path}: {STATUS} does not say which models the folder holds (kind ensemble or search); train it again"
        )
    cfg, plan = load_config(path / CONFIG), read_plan(path)
    members, data = [], None
    for i in range(cfg.train.ensemble):
        member = seed_config(cfg, path, i)
        folder = path / MEMBERS / member.name
        if finished(folder):
            members.append(Run(folder))
        elif (folder / CONFIG).is_file():
            members.append(resume_fit(folder))
        else:
            if data is None:
                data = RunDataModule(cfg)
                data.setup("fit")
            members.append(fit(member, data, plan))
    return members, cfg, plan


def finished(folder: Path) -> bool:
    """Whether a member's folder holds a finished training (its model.pt and status trained or complete)."""
    return (folder / WEIGHTS).is_file() and read_status(folder)["state"] in ("trained", "complete")


def read_plan(path: Path) -> Plan | None:
    """The run folder's plan.json (None when it has none); one that does not read is one line naming it."""
    if not (path / PLAN).is_file():
        return None
    try:
        return Plan.from_dict(json.loads((path / PLAN).read_text()))
    except (ValueError, TypeError) as e:  # not JSON, or not a plan's fields
        raise ConfigError(f"{path / PLAN}: not a plan meddx wrote ({e}); train it again") from None


def check_resumable(path: Path) -> None:
    """A run folder that stopped before it finished, and whose process is gone."""
    if not (path / CONFIG).is_file():
        raise ConfigError(f"{path}: not a run folder (no {CONFIG}); nothing to resume")
    status = read_status(path)
    if status["state"] == "running":
        raise ConfigError(f"{path}: still running (process {status.get('pid')}); stop it before resuming")
    if status["state"] in ("trained", "complete") and ((path / WEIGHTS).is_file() or (path / ENSEMBLE).is_file()):
        raise ConfigError(
            f"{path}: training already finished ({status['state']}); nothing to resume (`meddx evaluate {path}` "
            "writes its report again)"
        )


def check_same_split(path: Path, data: RunDataModule) -> None:
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
