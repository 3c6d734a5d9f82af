"""The Python API a notebook user calls; the CLI is a thin layer over these functions.

Heavy parts (torch, Lightning) load on first use, so `import meddx` stays light.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd

import meddx.tianchi  # noqa: F401 - registers the Tianchi score table with the reports of sequence runs
from meddx.atomic import write_text
from meddx.config import DataConfig, EvaluateConfig, RunConfig, SplitConfig, as_config, validate_section
from meddx.data.explore import explore as _explore
from meddx.data.leakage import LeakageReport, check_leakage
from meddx.data.readers import read_dataset
from meddx.data.split import as_given, assign_splits
from meddx.errors import ConfigError, DataError
from meddx.evaluation.external import data_source, external_name, read_checked
from meddx.evaluation.report import evaluate_run
from meddx.run import MEMBERS, PLAN, PREDICTIONS, Run, load_run, read_status, record_actual_time, write_status
from meddx.tianchi import submit


def train(config: RunConfig | dict | str | Path | None = None, **overrides) -> Run | None:
    """Train and evaluate one run; `config` is a RunConfig, a dict or a YAML path; overrides use __ for dots
    (`train__max_epochs=3`). Every recipe field not given is planned from the data and `plan.budget_minutes`
    (`plan.enabled=False`: the fixed defaults); a planned ensemble is averaged and evaluated as one model.
    Returns None only in the worker processes of a distributed run."""
    from meddx.evaluation.planned import conclude
    from meddx.evaluation.selection import compare_runs
    from meddx.training.autofit import train_members

    started = time.perf_counter()
    cfg = as_config(config, overrides)
    trained = train_members(cfg, choose=compare_runs)
    if trained is None:
        return None
    run = conclude(*trained, cfg)  # averaged, with the choices made on val and the final number of models
    record_actual_time(run.path, time.perf_counter() - started)
    evaluate_run(run)
    write_status(run.path, "complete")
    return run


def resume(run: str | Path) -> Run | None:
    """Continue a killed or failed run from its last checkpoint (`meddx train --resume RUN`; a planned ensemble or a
    search between candidates: its unfinished members), then evaluate it."""
    from meddx.evaluation.planned import resume_members
    from meddx.training.autofit import finish_first_member
    from meddx.training.resume import resume_fit

    finish_first_member(Path(run))  # killed while a single model became an ensemble's first member
    several = (Path(run) / MEMBERS).is_dir() or read_status(Path(run)).get("kind")
    resumed = resume_members(Path(run)) if several else resume_fit(run)
    if resumed is None:
        return None  # a worker process of a distributed run: rank 0 evaluates
    evaluate_run(resumed)
    write_status(resumed.path, "complete")
    return resumed


def plan(config: RunConfig | dict | str | Path | None = None, output: str | Path | None = None, **overrides) -> Path:
    """Plan a run without training it: the fingerprint, the rules' choices and (with the pilot) epochs and ensemble
    size for the budget; writes plan.json and plan.md into `output` (default plans/<data name>; -2, -3... for
    other data of that name)."""
    from meddx.training.autofit import plan_folder, plan_run
    from meddx.training.plan_markdown import plan_markdown

    cfg = as_config(config, {**overrides, "plan.enabled": True})
    _, _, made = plan_run(cfg)
    out = Path(output) if output else plan_folder(Path("plans") / Path(cfg.data.main_path).stem, made)
    out.mkdir(parents=True, exist_ok=True)
    made.save(out / PLAN)
    write_text(out / "plan.md", plan_markdown(made))
    return out


def evaluate(
    run: Run | str | Path, split: str = "test", data: dict | None = None, by: str | None = None, **settings
) -> dict:
    """Evaluate a run on one split, or on new labelled data (`data`: data-config fields, e.g. {"path": "ext.csv"});
    `by`: a manifest column whose values get every figure apart (subgroups). A CV folder: its fold ensemble on `data`
    (<cv>/ensemble, the folds' mean as `submit` uses it; val: the out-of-fold predictions; evaluation/folds.py).

    Thresholds and temperature always come from the run's validation split; `settings` override its
    `evaluate` config section (operating_point="sensitivity=0.95", bootstrap=2000, temperature_scaling=True).
    """
    from meddx.data.readers import manifest_path
    from meddx.evaluation.folds import run_to_evaluate
    from meddx.evaluation.subgroups import subgroup_column

    run = run_to_evaluate(run, data)
    per_call = {"on_training_overlap": EvaluateConfig().on_training_overlap}  # per call, not the run's saved value
    cfg = validate_section(EvaluateConfig, {**run.config.evaluate.model_dump(), **per_call, **settings}, "evaluate.")
    source = {**run.config.data.model_dump(), **(data or {})}
    table = manifest_path(source["path"]) or source["path"]  # a folder read by its one CSV has its columns too
    groups = subgroup_column(table, by, source.get("image_column"), bool(data) and "image_column" not in data)
    if data and split in ("train", "val"):  # its predictions would replace the ones thresholds come from
        raise ConfigError(
            f"--split {split}: the run's own split; new data (--data) is named otherwise, e.g. --split external"
        )
    if data:
        name = external_name(run, data.get("path", "data"), None if split == "test" else split)
        split = predict_external(run, data, name, cfg.on_training_overlap == "drop")
    name = evaluation_name(split, run.config.evaluate, cfg)
    if by:
        name = f"{name or split}-by-{re.sub(r'[^A-Za-z0-9_.-]+', '_', by)}"
    return evaluate_run(run, split, cfg, name, groups)


def evaluation_name(split: str, saved: EvaluateConfig, cfg: EvaluateConfig) -> str | None:
    """None for an evaluation with the run's own settings (it is the split's report); otherwise the split and the
    settings that differ (`test-sensitivity0.95`), so the headline report, which the package and the server read,
    is never overwritten by a what-if."""
    changed = {k: v for k, v in cfg.model_dump().items() if saved.model_dump()[k] != v and k != "on_training_overlap"}
    if not changed:
        return None
    slug = "-".join(f"{k if k != 'operating_point' else ''}{v}" for k, v in sorted(changed.items()))
    return f"{split}-{re.sub(r'[^A-Za-z0-9_.-]+', '', slug)}"


def predict_external(run: Run, data: dict, name: str = "external", drop_overlap: bool = False) -> str:
    """Predict new labelled data into predictions/<name>.csv, its copies of the run's train and val images stopping it
    or dropped (<name>.leakage.json); its source, reading notes and domain check in <name>.data.json for the report."""
    from meddx.export.new_data import new_data_domain

    ds, check = read_checked(run, data, drop_overlap)
    records = ds.records
    if not records:
        raise DataError(f"{ds.origin}: every sample is a training/val image of the run; nothing left to evaluate")
    run.write_predictions(name, records, run.predict_proba(run.dataset(records, preload=None)))
    write_text(run.path / PREDICTIONS / f"{name}.leakage.json", json.dumps(check, indent=2))
    source = data_source(ds, data)
    source["domain"] = domain = new_data_domain(run, records)  # scans unlike the training ones: warned of
    source["notes"] += [f"input-domain check skipped: {domain['skipped']}"] if "skipped" in domain else []
    write_text(run.path / PREDICTIONS / f"{name}.data.json", json.dumps(source, indent=2))
    return name


def predict(run: Run | str | Path, inputs: list, root: str | Path | None = None) -> pd.DataFrame:
    """One row per scan: for an image run or model package and paths (files, folders, CSV manifests), `id`,
    `p_<label>`, the decision at the run's operating point, `in_domain` with its warnings and `error` for a file that
    cannot be read; a token-sequence run (`|,|` report files): probabilities and decisions; records: probabilities.
    A `meddx cv` folder predicts as its fold ensemble (written, or refreshed, in <cv>/ensemble); `root`: the folder a
    CSV's relative image paths start from (default: the CSV's own)."""
    from meddx.data.records import Record
    from meddx.evaluation.folds import fold_ensemble, is_folds_only
    from meddx.evaluation.operating import with_decisions
    from meddx.serve.batch import predict_files, with_caveats

    path = run.path if isinstance(run, Run) else Path(run)
    if is_folds_only(path):  # a `meddx cv` folder: its fold ensemble
        run = path = fold_ensemble(path).path
    if any(isinstance(x, Record) for x in inputs):  # the model's caveats warned of and kept, as for files
        return with_caveats((run if isinstance(run, Run) else load_run(run)).predict(inputs), path)
    if not (path / "labels.json").is_file() and (loaded := run if isinstance(run, Run) else load_run(path)).is_sequence:
        return with_caveats(with_decisions(loaded, loaded.predict(inputs)), path)
    return predict_files(path, inputs, root)


def explore(data: DataConfig | dict, read_images: bool = True) -> dict:
    """Summarise a data set: counts, patients, labels, files, sizes, duplicates (token statistics for sequences)."""
    cfg = data if isinstance(data, DataConfig) else DataConfig(**data)
    ds = read_dataset(cfg, check_files=False)
    from meddx.data.reports import read_descriptions
    from meddx.data.sequences import is_sequence, sequence_summary

    if is_sequence(ds):
        out = _explore(ds, read_images=False)
        out["sequences"] = sequence_summary(ds, {Path(f).name: read_descriptions([f]) for f in cfg.vocab_files})
        return out
    return _explore(ds, read_images=read_images)


def leakage(data: DataConfig | dict, split: SplitConfig | dict | None = None) -> LeakageReport:
    """Split the data as training would and report what sits on two sides (patients guessed from file names that
    official splits share included: training drops them from the earlier split)."""
    ds = read_dataset(data if isinstance(data, DataConfig) else DataConfig(**data), check_files=False)
    given = {id(r): r.split for r in ds.records}  # the files' own splits, before one is carved from another
    assign_splits(ds, split if isinstance(split, SplitConfig) or split is None else SplitConfig(**split), mend=False)
    report = check_leakage(ds)
    carved = [f"{n} (as training would: a split not given is carved)" for n in ds.notes if "splits: " in n]
    report.actions += carved + as_given(report.shared_patients, ds.records, given)
    if ds.patients_guessed and report.shared_patients:
        report.actions.append(
            "patient ids guessed from the file names (data.guess_patients): `meddx train` keeps each shared patient's "
            "images on its latest split only"
        )
    return report


def ensemble(runs: list[Run | str | Path], output: str | Path, weights: str = "equal", **settings) -> Run:
    """Average the probabilities of k runs on an identical split (weights "equal", or "val": chosen on val) and evaluate
    the average like one model (operating point chosen on val); `settings` override the first run's `evaluate`."""
    from meddx.evaluation.ensemble import ensemble_runs

    first = runs[0] if isinstance(runs[0], Run) else load_run(runs[0])
    cfg = validate_section(EvaluateConfig, {**first.config.evaluate.model_dump(), **settings}, "evaluate.")
    return ensemble_runs(runs, output, cfg, weights)


def compare(
    runs: list[Run | str | Path], output: str | Path | None = None, split: str = "test", resamples: int = 2000
) -> dict:
    """Compare runs (or `meddx cv` folders' fold ensembles) on the same patients of `split`: figures with intervals,
    paired differences from the best, DeLong's test; writes compare.json/.md/.html into `output` (comparisons/...)."""
    from meddx.evaluation.compare import compare_runs, comparison_table
    from meddx.evaluation.folds import folds_or_run, run_label
    from meddx.evaluation.report import render

    loaded = [r if isinstance(r, Run) else folds_or_run(r) for r in runs]  # a `meddx cv` folder: its fold ensemble
    result = compare_runs(loaded, split, resamples)
    names = "-vs-".join(run_label(r).replace(" (folds)", "-folds") for r in loaded)
    out = Path(output) if output else Path("comparisons") / names[:120]
    out.mkdir(parents=True, exist_ok=True)
    header, rows = comparison_table(result)
    intervals = f"{resamples} bootstrap resamples of patients, {result['ci']:.0%} intervals"
    context = {**result, "header": header, "rows": rows, "intervals": intervals, "alpha": f"{1 - result['ci']:.2g}"}
    write_text(out / "compare.json", json.dumps(result, indent=2))
    write_text(out / "compare.md", render("compare.md.j2", context))
    write_text(out / "compare.html", render("compare.html.j2", context))
    result["output"] = str(out)
    return result


def model_info(
    name: str, in_chans: int = 3, num_classes: int = 1, depth: int | str | None = None, **kwargs
) -> list[dict]:
    """The fine-tuning blocks of a model (counted from the end) with parameter counts; with `depth`, which train.

    Sequence models are built with `vocab_size` 1,000 and `max_len` 128 unless given (embedding rows scale with them).
    """
    from meddx.models import MODEL_INFO, create_model
    from meddx.models.finetune import describe

    if name in MODEL_INFO and MODEL_INFO[name].kind == "sequence":
        kwargs = {"vocab_size": 1000, "max_len": 128, **kwargs}
    return describe(create_model(name, in_chans, num_classes, **kwargs), depth)


def pretrain(config: RunConfig | dict | str | Path | None = None, **overrides) -> Path:
    """Self-supervised pretraining, labels unused; returns the folder with encoder.pt. Token reports: MLM of
    bert_small on data.path + data.vocab_files (resumable). Images: SimCLR of model.name on every image of
    pretrain.data, leaving out the val/test images of pretrain.exclude_from; fine-tune with train.init_from."""
    from meddx.data.reports import is_tianchi_file

    cfg = as_config(config, overrides)
    path = cfg.data.path if isinstance(cfg.data.path, str) else ""
    objective = cfg.pretrain.objective
    if objective == "auto":
        objective = (
            "mlm" if cfg.data.format == "tianchi" or (Path(path).is_file() and is_tianchi_file(path)) else "simclr"
        )
    if objective == "simclr":
        from meddx.training.contrastive import pretrain_images

        return pretrain_images(cfg)
    if objective == "word2vec":
        from meddx.training.word2vec import train_word_vectors

        return train_word_vectors(cfg)
    from meddx.training.pretrain import pretrain as _pretrain

    return _pretrain(cfg)


def cross_validate(config: RunConfig | dict | str | Path, folds: int = 5, **overrides) -> Path:
    """k runs on iterative-stratified folds; out-of-fold predictions (oof.csv) and their scores beside the baselines
    (cv.json) in <output_dir>/<name>/. The folder is a fold ensemble for `submit`."""
    from meddx.evaluation.scores import score_cv
    from meddx.training.cv import cross_validate as _cv

    out = _cv(as_config(config, overrides), folds)
    score_cv(out)
    return out


__all__ = [
    "Run",
    "cross_validate",
    "ensemble",
    "evaluate",
    "explore",
    "compare",
    "leakage",
    "load_run",
    "model_info",
    "plan",
    "predict",
    "predict_external",
    "pretrain",
    "submit",
    "train",
]
