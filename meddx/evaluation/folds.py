"""A `meddx cv` folder as one model, the fold ensemble `submit` uses: written as an ensemble run folder
<cv>/ensemble (ensemble.json lists the folds) whose val predictions are the out-of-fold ones, so it evaluates on new
labelled data like any run without touching a fold's own files."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from meddx.atomic import write_frame, write_text
from meddx.config import save_config
from meddx.errors import ConfigError
from meddx.evaluation.ensemble import members_training
from meddx.run import CONFIG, DATA, ENSEMBLE, PREDICTIONS, SPLIT, TRAINING, WEIGHTS, Run, load_run, write_status
from meddx.training.cv import CV, read_oof

FOLD_ENSEMBLE = "ensemble"  # <cv folder>/ensemble: beside fold0..fold<k-1>, oof.csv and cv.json


def is_cv_folder(path: str | Path) -> bool:
    """Whether `path` is a `meddx cv` folder (it holds cv.json)."""
    return (Path(path) / CV).is_file()


def is_folds_only(path: str | Path) -> bool:
    """A `meddx cv` folder that is no run folder itself: it stands for its fold ensemble."""
    return is_cv_folder(path) and not (Path(path) / CONFIG).is_file()


def folds_or_run(path: str | Path) -> Run:
    """A run folder as it is, or a `meddx cv` folder as its fold ensemble (<cv>/ensemble, written or refreshed)."""
    return fold_ensemble(path) if is_folds_only(path) else load_run(path)


def run_label(run: Run) -> str:
    """A run's name for a table: its folder's, or for a CV folder's fold ensemble the CV folder's ('dcv (folds)')."""
    cv = run.path.parent
    return f"{cv.name} (folds)" if run.path.name == FOLD_ENSEMBLE and (cv / CV).is_file() else run.path.name


def fold_runs(cv_dir: str | Path) -> list[Run]:
    """The trained fold runs a CV folder's cv.json lists."""
    cv_dir = Path(cv_dir)
    runs = [Run(cv_dir / name) for name in json.loads((cv_dir / CV).read_text())["runs"]]
    for r in runs:
        if not (r.path / WEIGHTS).is_file():
            raise ConfigError(f"{r.path}: no {WEIGHTS}; finish the cross-validation (`meddx cv` again) first")
    return runs


def _check_inputs(folds: list[Run]) -> None:
    """Same task and labels, and one input fits every fold: the same vocabulary (token runs), or preprocessing that
    differs only in the data-set mean and std (each fold's own training images), which each fold's model undoes."""
    first = folds[0]
    for r in folds[1:]:
        if (r.task, r.label_names) != (first.task, first.label_names):
            raise ConfigError(f"{r.path}: task/labels differ from {first.path}'s; not folds of one cross-validation")
        same_vocab = (r.path / r.prep_file).read_text() == (first.path / first.prep_file).read_text()
        if first.is_sequence != r.is_sequence or (r.is_sequence and not same_vocab):
            raise ConfigError(f"{r.path}: its {r.prep_file} differs from {first.path}'s, so no one input fits both")
        if not r.is_sequence:
            mine, theirs = asdict(r.preprocess), asdict(first.preprocess)
            if {**mine, "mean": 0, "std": 0} != {**theirs, "mean": 0, "std": 0}:
                raise ConfigError(
                    f"{r.path}: its {r.prep_file} differs from {first.path}'s beyond the normalisation statistics "
                    "(image size, channels or views), so no one input fits both; evaluate a fold instead"
                )


def _union_split(folds: list[Run]) -> pd.DataFrame:
    """Every sample any fold trained or validated on, once, as the ensemble's `train` split (what new data is checked
    against and where the prior baseline's prevalence comes from)."""
    tables = [r.split_table() for r in folds]
    seen = pd.concat([t[t["split"].isin(["train", "val"])] for t in tables], ignore_index=True)
    seen = seen.drop_duplicates("id", ignore_index=True)
    seen["split"] = "train"
    return seen


def _data_info(cv_dir: Path, folds: list[Run], union: pd.DataFrame, oof: pd.DataFrame) -> dict:
    """data.json of the fold ensemble: fold0's, with the ensemble's sizes, notes and the folds' leakage verdict."""
    info = folds[0].data_info
    names = ", ".join(r.path.name for r in folds)
    about = [  # about the model, not the data: the report shows them unprefixed beside new data's notes
        f"fold ensemble of {cv_dir}: the mean of the probabilities of its {len(folds)} fold runs ({names})",
        "val: the out-of-fold predictions (oof.csv: each sample predicted by the fold that never trained on it); "
        "train: every sample any fold trained or validated on",
    ]
    notes = [n for n in info.get("notes", []) if not n.startswith("splits:")]
    leakage = {**info["leakage"], "ok": all(r.data_info["leakage"]["ok"] for r in folds)}
    sizes = {
        split: {"samples": len(frame), "patients": int(frame["patient_id"].nunique())}
        for split, frame in (("train", union), ("val", oof))
    }
    return {**info, "model_notes": about, "notes": notes, "leakage": leakage, "sizes": sizes}


def fold_ensemble(cv_dir: str | Path) -> Run:
    """Write (or refresh) <cv_dir>/ensemble, the folds' mean as an ensemble run folder: ensemble.json (the folds,
    equal weights), predictions/val.csv (the out-of-fold predictions), split.csv (the union of the folds' train and
    val samples as `train`), fold0's config and preprocessing. Earlier evaluations in it are kept."""
    cv_dir = Path(cv_dir)
    folds = fold_runs(cv_dir)
    _check_inputs(folds)
    oof, names = read_oof(cv_dir)
    out = cv_dir / FOLD_ENSEMBLE
    (out / PREDICTIONS).mkdir(parents=True, exist_ok=True)
    cfg = folds[0].config.model_copy(deep=True)
    cfg.name, cfg.output_dir = FOLD_ENSEMBLE, str(cv_dir)
    cfg.model.tta = False  # each fold's model applies its own test-time augmentation
    save_config(cfg, out / CONFIG)
    shutil.copy(folds[0].path / folds[0].prep_file, out / folds[0].prep_file)
    union = _union_split(folds)
    write_frame(union, out / SPLIT, index=False)
    write_text(out / DATA, json.dumps(_data_info(cv_dir, folds, union, oof), indent=2))
    write_text(out / TRAINING, json.dumps(members_training(folds), indent=2))
    members = [f"../{r.path.name}" for r in folds]  # relative: the CV folder can move
    combine = "mean of the folds' probabilities, as `meddx submit` averages them"
    write_text(
        out / ENSEMBLE,
        json.dumps({"members": members, "weights": [1 / len(folds)] * len(folds), "combine": combine}, indent=2),
    )
    columns = ["id", "patient_id", *names, *(f"p_{n}" for n in names), "fold"]
    write_frame(oof[columns], out / PREDICTIONS / "val.csv", index=False, float_format="%.9g")
    write_status(out, "complete", kind="folds")  # `meddx runs CVDIR` lists it beside the folds
    return Run(out)


def run_to_evaluate(path: Run | str | Path, data: dict | None = None) -> Run:
    """A run folder, or for a CV folder its fold ensemble (refreshed), which is scored on new labelled data only: each
    of its own samples was trained on by some fold."""
    if isinstance(path, Run) or not is_cv_folder(path) or (Path(path) / CONFIG).is_file():
        return path if isinstance(path, Run) else Run(path)
    if not data:
        raise ConfigError(
            f"{path}: a CV folder is evaluated as its fold ensemble on new labelled data (--data LABELLED.csv); "
            f"its out-of-fold scores are in {CV}"
        )
    return fold_ensemble(path)
