"""The Python API a notebook user calls; the CLI is a thin layer over these functions."""

from __future__ import annotations

import copy
import re
from pathlib import Path

from meddx.config import DataConfig, EvaluateConfig, RunConfig, SplitConfig, apply_overrides, load_config, validate_config
from meddx.errors import DataError
from meddx.data.explore import explore as _explore
from meddx.data.readers import read_dataset
from meddx.data.split import LeakageReport, assign_splits, check_leakage
from meddx.evaluate.report import evaluate_run
from meddx.train.run import Run, fit, is_rank_zero, load_run


def train(config: RunConfig | dict | str | Path | None = None, **overrides) -> Run | None:
    """Train and evaluate one run; `config` is a RunConfig, a dict or a YAML path; overrides use __ for dots.

    Returns None only in the worker processes of a distributed run.
    """
    dotted = {k.replace("__", "."): v for k, v in overrides.items()}
    if config is None or isinstance(config, (str, Path)):
        cfg = load_config(config, dotted)
    else:
        raw = config.model_dump(mode="json") if isinstance(config, RunConfig) else copy.deepcopy(config)
        cfg = validate_config(apply_overrides(raw, dotted))
    run = fit(cfg)
    if run is not None and is_rank_zero():
        evaluate_run(run)
    return run


def evaluate(run: Run | str | Path, split: str = "test", data: dict | None = None, **settings) -> dict:
    """Evaluate a run on one split, or on new labelled data (`data`: data-config fields, e.g. {"path": "ext.csv"}).

    Thresholds and temperature always come from the run's validation split; `settings` override its
    `evaluate` config section (operating_point="sensitivity=0.95", bootstrap=2000, temperature_scaling=True).
    """
    run = run if isinstance(run, Run) else load_run(run)
    cfg = EvaluateConfig.model_validate({**run.config.evaluate.model_dump(), **settings})
    if data:
        split = predict_external(run, data, split if split != "test" else "external")
    return evaluate_run(run, split, cfg)


def predict_external(run: Run, data: dict, name: str = "external") -> str:
    """Predict a new labelled data set with the run's preprocessing into predictions/<name>.csv."""
    from meddx.data.tensors import ImageDataset

    cfg = DataConfig.model_validate({**run.config.data.model_dump(), "label_names": None, **data})
    ds = read_dataset(cfg)
    synthetic = all(re.fullmatch(r"(class|label)_\d+", n) for n in ds.label_names)  # MedMNIST files carry no names
    if synthetic and len(ds.label_names) == len(run.label_names) and ds.task == run.task:
        ds.label_names = list(run.label_names)
    if ds.label_names != run.label_names or ds.task != run.task:
        raise DataError(f"{ds.origin}: labels {ds.label_names} ({ds.task}) differ from the run's {run.label_names} ({run.task})")
    run.write_predictions({name: ImageDataset(ds.records, run.preprocess)})
    return name


def explore(data: DataConfig | dict, read_images: bool = True) -> dict:
    """Summarise a data set: counts, patients, labels, files, sizes, duplicates."""
    cfg = data if isinstance(data, DataConfig) else DataConfig(**data)
    ds = read_dataset(cfg, check_files=False)
    from meddx.data.sequences import is_sequence, read_descriptions, sequence_summary

    if is_sequence(ds):
        out = _explore(ds, read_images=False)
        out["sequences"] = sequence_summary(ds, {Path(f).name: read_descriptions([f]) for f in cfg.vocab_files})
        return out
    return _explore(ds, read_images=read_images)


def leakage(data: DataConfig | dict, split: SplitConfig | dict | None = None) -> LeakageReport:
    """Split the data as training would and report what sits on two sides."""
    cfg = data if isinstance(data, DataConfig) else DataConfig(**data)
    ds = read_dataset(cfg, check_files=False)
    assign_splits(ds, split if isinstance(split, SplitConfig) or split is None else SplitConfig(**split))
    return check_leakage(ds)


def ensemble(runs: list[Run | str | Path], output: str | Path, weights: str = "equal", **settings) -> Run:
    """Average the probabilities of k runs on an identical split (weights "equal", or "val": chosen on val) and evaluate
    the average like one model (operating point chosen on val); `settings` override the first run's `evaluate`."""
    from meddx.evaluate.ensemble import ensemble_runs

    first = runs[0] if isinstance(runs[0], Run) else load_run(runs[0])
    cfg = EvaluateConfig.model_validate({**first.config.evaluate.model_dump(), **settings})
    return ensemble_runs(runs, output, cfg, weights)


def model_info(name: str, in_chans: int = 3, num_classes: int = 1, depth: int | str | None = None, **kwargs) -> list[dict]:
    """The fine-tuning blocks of a model (counted from the end) with parameter counts; with `depth`, which train.

    Sequence models are built with `vocab_size` 1,000 and `max_len` 128 unless given (embedding rows scale with them).
    """
    from meddx.models import MODEL_INFO, create_model
    from meddx.models.finetune import describe

    if name in MODEL_INFO and MODEL_INFO[name].kind == "sequence":
        kwargs = {"vocab_size": 1000, "max_len": 128, **kwargs}
    return describe(create_model(name, in_chans, num_classes, **kwargs), depth)


def pretrain(config: RunConfig | dict | str | Path, **overrides) -> Path:
    """MLM-pretrain bert_small on data.path + data.vocab_files; returns the folder with encoder.pt (resumable)."""
    from meddx.train.pretrain import pretrain as _pretrain

    return _pretrain(_config(config, overrides))


def cross_validate(config: RunConfig | dict | str | Path, folds: int = 5, **overrides) -> Path:
    """k runs on iterative-stratified folds; out-of-fold predictions and scores in <output_dir>/<name>/cv.json."""
    from meddx.evaluate.tianchi import cross_validate as _cv

    return _cv(_config(config, overrides), folds)


def submit(source: str | Path | list[str | Path], data: str | Path, output: str | Path = "submission.csv",
           weights: str | list[float] = "equal") -> Path:
    """Tianchi submission for a `|,|` test file, checked before returning, from a run or CV folder (fold ensemble), or
    several blended with weights "equal", "oof" (chosen on the CV folders' out-of-fold predictions) or given."""
    from meddx.evaluate.tianchi import blend_file, check_submission, write_submission

    ids, probs = blend_file(source if isinstance(source, list) else [source], data, weights)
    path = write_submission(ids, probs, output)
    problems = check_submission(path, data, probs.shape[1])
    if problems:
        raise DataError(f"{path}: the written submission fails its check: {problems[0]}")
    return path


def _config(config, overrides: dict) -> RunConfig:
    dotted = {k.replace("__", "."): v for k, v in overrides.items()}
    if config is None or isinstance(config, (str, Path)):
        return load_config(config, dotted)
    raw = config.model_dump(mode="json") if isinstance(config, RunConfig) else copy.deepcopy(config)
    return validate_config(apply_overrides(raw, dotted))


__all__ = ["Run", "cross_validate", "ensemble", "evaluate", "explore", "leakage", "load_run", "model_info",
           "predict_external", "pretrain", "submit", "train"]
