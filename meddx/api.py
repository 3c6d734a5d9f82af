"""The Python API a notebook user calls; the CLI is a thin layer over these functions."""

from __future__ import annotations

from pathlib import Path

from meddx.config import DataConfig, RunConfig, SplitConfig, load_config, validate_config
from meddx.data.explore import explore as _explore
from meddx.data.readers import read_dataset
from meddx.data.split import LeakageReport, assign_splits, check_leakage
from meddx.evaluate.metrics import evaluate_run
from meddx.train.run import Run, fit, is_rank_zero, load_run


def train(config: RunConfig | dict | str | Path | None = None, **overrides) -> Run | None:
    """Train and evaluate one run; `config` is a RunConfig, a dict or a YAML path; overrides use __ for dots.

    Returns None only in the worker processes of a distributed run.
    """
    if config is None or isinstance(config, (str, Path)):
        cfg = load_config(config, {k.replace("__", "."): v for k, v in overrides.items()})
    else:
        cfg = validate_config(config)
    run = fit(cfg)
    if run is not None and is_rank_zero():
        evaluate_run(run)
    return run


def evaluate(run: Run | str | Path) -> dict:
    """(Re)compute metrics.json and report.md of a run folder."""
    return evaluate_run(run)


def explore(data: DataConfig | dict, read_images: bool = True) -> dict:
    """Summarise a data set: counts, patients, labels, files, sizes, duplicates."""
    cfg = data if isinstance(data, DataConfig) else DataConfig(**data)
    return _explore(read_dataset(cfg, check_files=False), read_images=read_images)


def leakage(data: DataConfig | dict, split: SplitConfig | dict | None = None) -> LeakageReport:
    """Split the data as training would and report what sits on two sides."""
    cfg = data if isinstance(data, DataConfig) else DataConfig(**data)
    ds = read_dataset(cfg, check_files=False)
    assign_splits(ds, split if isinstance(split, SplitConfig) or split is None else SplitConfig(**split))
    return check_leakage(ds)


__all__ = ["Run", "evaluate", "explore", "leakage", "load_run", "train"]
