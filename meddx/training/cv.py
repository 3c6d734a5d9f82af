"""k-fold cross-validation of any data set: one ordinary run per fold, their test predictions pooled out of fold."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from meddx.atomic import write_frame, write_text
from meddx.config import RUNTIME, RunConfig, as_config, data_name, load_config, paths_resolved
from meddx.data.images import READABLE_EXTENSIONS
from meddx.errors import ConfigError
from meddx.run import CONFIG, PLAN, VOCAB, WEIGHTS, Run

OOF = "oof.csv"
CV = "cv.json"
SOURCE = "source.json"  # the data's files and sizes when the CV began


def cross_validate(config: RunConfig | dict | str | Path, folds: int = 5, only_folds: list[int] | None = None) -> Path:
    """Train one run per fold (`split.folds`/`split.fold`: fold k is the test split, val carved from the rest) into
    <output_dir>/<name>/fold<k>; write oof.csv (every sample's out-of-fold prediction, its fold and the fold's training
    prior) and cv.json (folds, runs, model). Finished folds are kept, so a rerun resumes."""
    cfg = as_config(config)
    if folds < 2:
        raise ConfigError(f"--folds {folds}: cross-validation needs 2 folds at least (5 is usual)")
    if isinstance(cfg.data.path, dict):
        raise ConfigError(
            "cross-validation makes its own folds over all the data: give one data path (a folder, CSV or .npz), not "
            "split=FILE (the official test split would be trained on)"
        )
    planned_model = cfg.plan.enabled and "name" not in cfg.model.model_fields_set  # named when the plan has chosen
    model = "" if planned_model else f"-{cfg.model.name}"
    cv_dir = Path(cfg.output_dir) / (cfg.name or f"{data_name(cfg.data)}{model}-cv{folds}")
    legacy = Path(cfg.output_dir) / f"{data_name(cfg.data)}-{cfg.model.name}-cv{folds}"  # named before cv planned
    if not cfg.name and planned_model and any(legacy.glob(f"fold*/{CONFIG}")) and not (legacy / PLAN).is_file():
        cv_dir = legacy  # its folds go on as they were trained
    from meddx.models.finetune import check_depth, loads_weights  # torch: only when a CV runs

    check_depth(None, cfg.train.finetune_depth, cfg.model.name, loads_weights(cfg))  # before a folder is made
    _same_source(cfg, cv_dir)
    plan, data = None, None
    if cfg.plan.enabled:  # the fields the user did not set, planned once for every fold
        from meddx.training.fold_plan import plan_folds

        cfg, plan, data = plan_folds(cfg, cv_dir, folds)
    runs, oof, reused = [], [], []
    for k in only_folds if only_folds is not None else range(folds):
        if (cv_dir / f"fold{k}" / WEIGHTS).is_file():
            reused.append(f"fold{k}")
        run = _fold_run(cfg, cv_dir, folds, k, plan, data if k == 0 else None)
        if run is None:  # a worker process of a distributed run: rank 0 writes
            continue
        runs.append(run.path.name)
        pred = run.predictions("test")
        pred["fold"] = k
        prior = run.train_prior()
        for j, name in enumerate(run.label_names):
            pred[f"prior_{name}"] = prior[j]
        oof.append(pred)
    if not oof:
        return cv_dir
    write_frame(pd.concat(oof, ignore_index=True), cv_dir / OOF, index=False, float_format="%.9g")
    info = {"folds": folds, "runs": runs, "model": {"name": cfg.model.name}, "reused": reused}
    if plan is not None:  # the recipe the plan chose, for the terminal's line (the whole plan: plan.json)
        info["plan"] = _plan_entry(cfg, plan)
    write_text(cv_dir / CV, json.dumps(info, indent=2))
    return cv_dir


def source_summary(cfg: RunConfig, skip: Path | None = None) -> dict:
    """Each data file's size, and each data folder's count and bytes of the scan files a reader takes (no hidden
    part, nothing under `skip`, the run folders' own; symlinked folders followed; no file is read)."""
    paths = cfg.data.path if isinstance(cfg.data.path, dict) else {"data": cfg.data.path}
    out = {}
    for name, path in sorted(paths.items()):
        p = Path(path)
        if p.is_dir():
            inside = skip is not None and skip.resolve() != p.resolve() and skip.resolve().is_relative_to(p.resolve())
            sizes = [
                (Path(top) / f).stat().st_size
                for top, dirs, files in os.walk(p, followlinks=True)
                if not any(part.startswith(".") for part in Path(top).relative_to(p).parts)
                and not (inside and Path(top).resolve().is_relative_to(skip.resolve()))
                for f in files
                if not f.startswith(".") and (Path(f).suffix.lower() in READABLE_EXTENSIONS or not Path(f).suffix)
            ]  # fmt: skip
            out[name] = {"files": len(sizes), "bytes": sum(sizes)}
        elif p.is_file():
            out[name] = {"bytes": p.stat().st_size}
    return out


def _same_source(cfg: RunConfig, cv_dir: Path) -> None:
    """Record what the data was when a CV begins (<cv>/source.json, rank 0); later, refuse to reuse its folds when
    scan files were added, removed or changed in size since (new scans left out of a figure printed as current). A
    path not found here is left to the reader's message."""
    from meddx.training.distributed import is_rank_zero  # Lightning's: only when a CV runs

    saved, trained = cv_dir / SOURCE, any(cv_dir.glob(f"fold*/{CONFIG}"))
    now = source_summary(cfg, skip=Path(cfg.output_dir))
    if saved.is_file() and trained:
        then = json.loads(saved.read_text())
        differ = [f"{k}: {then.get(k)} then, {now.get(k)} now" for k in sorted({*then, *now})
                  if then.get(k) != now.get(k) and k in now]  # fmt: skip
        if differ:
            raise ConfigError(
                f"{cv_dir}: its data changed since its folds trained ({'; '.join(differ)}); give the CV another "
                "--name, or remove that folder to train again"
            )
    if not trained and now and is_rank_zero():
        cv_dir.mkdir(parents=True, exist_ok=True)
        write_text(saved, json.dumps(now, indent=2))


def _plan_entry(cfg: RunConfig, plan) -> dict:
    """The planned recipe in brief: model, size, epochs, the fields meddx chose, and the estimate against the budget."""
    minutes = plan.estimate.get("total_s", 0) / 60 or None
    epochs = next((c for c in plan.choices if c.field == "train.max_epochs"), None)
    floor = epochs is not None and epochs.source == "budget" and epochs.value == 3
    over = None
    if minutes and minutes > plan.budget_minutes:
        over = "it does not fit 3 epochs a fold here" if floor else "the epochs you set do not fit it"
    planned = [c.field for c in plan.choices if c.source != "user" and c.field.split(".", 1)[-1] not in RUNTIME]
    planned = [f for f in planned if f != "train.ensemble"]  # one model a fold, always
    return {"model": cfg.model.name, "image_size": cfg.data.image_size, "max_epochs": cfg.train.max_epochs,
            "budget_minutes": plan.budget_minutes, "estimated_minutes": minutes, "over_budget": over,
            "planned": planned}  # fmt: skip


def _fold_run(cfg: RunConfig, cv_dir: Path, folds: int, k: int, plan=None, data=None) -> Run:
    """Fold k's run: trained now, or the finished one from an earlier call; `plan` is written beside its config,
    `data`: fold k's data module when planning set it up."""
    fold_cfg = cfg.model_copy(deep=True)
    fold_cfg.name, fold_cfg.output_dir = f"fold{k}", str(cv_dir)
    fold_cfg.split.folds, fold_cfg.split.fold = folds, k
    folder = cv_dir / f"fold{k}"
    if (folder / CONFIG).is_file():
        _same_settings(folder, fold_cfg)
    if (folder / WEIGHTS).is_file():
        return Run(folder)
    from meddx.training.fit import fit  # Lightning only when a fold trains: reading CV folders stays light
    from meddx.training.resume import resume_fit

    if (folder / CONFIG).is_file():  # a fold killed or failed part way: continued from its last checkpoint
        return resume_fit(folder)
    return fit(fold_cfg, data, plan, resume=folder if folder.exists() else None)


def _same_settings(folder: Path, cfg: RunConfig) -> None:
    """A fold trained before is reused (or resumed) only with the data, split, model and training settings asked now
    (where it runs aside), else a ConfigError naming what differs."""
    sections = ("data", "split", "model", "train")
    before, now = (c.model_dump(mode="json", include=set(sections)) for c in (load_config(folder / CONFIG), cfg))
    for side in (before, now):
        side["data"] = paths_resolved(side["data"])
    _as_resolved(before, now)
    differ = [
        f"{s}.{k}: {before[s].get(k)!r} then, {now[s][k]!r} now"
        for s in sections
        for k in now[s]
        if before[s].get(k) != now[s][k] and not (s == "train" and k in RUNTIME) and f"{s}.{k}" != "data.cache"
    ]  # fmt: skip (the decoded cache: where images come from, not what)
    if differ:
        raise ConfigError(
            f"{folder}: trained with other settings ({'; '.join(differ[:3])}); give the CV another --name, or remove "
            "that folder to train again"
        )


def _as_resolved(before: dict, now: dict) -> None:
    """Fill `now` with what training resolved into the fold's config where the user left it to training: the
    vocabulary and model sizes the pretrained folder (model.weights, train.init_from, model.embeddings) brings, and
    `size: auto` made concrete; a value the user gave once and dropped now still differs."""
    source = now["model"].get("weights") or now["train"].get("init_from") or now["model"].get("embeddings")
    folder = (Path(source) if Path(source).is_dir() else Path(source).parent) if source else None
    brought: set[str] = set()
    if folder is not None:
        if now["data"].get("vocab") is None and before["data"].get("vocab") == str((folder / VOCAB).resolve()):
            now["data"]["vocab"] = before["data"]["vocab"]
        if (folder / "model_kwargs.json").is_file():
            brought = set(json.loads((folder / "model_kwargs.json").read_text()))
        elif (folder / CONFIG).is_file():
            brought = set(load_config(folder / CONFIG).model.kwargs)
    was, asked = before["model"].get("kwargs") or {}, now["model"].get("kwargs") or {}
    filled = {k: was[k] for k in brought if k in was and k not in asked}
    auto = {"size": was["size"]} if asked.get("size") == "auto" and "size" in was else {}
    if {**filled, **asked, **auto} == was:
        now["model"]["kwargs"] = was


def read_oof(cv_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """A CV folder's out-of-fold table and its label names."""
    cv_dir = Path(cv_dir)
    if not (cv_dir / OOF).is_file():
        raise ConfigError(f"{cv_dir}: no {OOF}; out-of-fold predictions come from `meddx cv` folders")
    frame = pd.read_csv(cv_dir / OOF, dtype={"id": str, "patient_id": str})
    return frame, [c[2:] for c in frame.columns if c.startswith("p_")]


def oof_arrays(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, out-of-fold probabilities, each row's training prior) as float64 arrays."""
    y = frame[names].to_numpy(np.float64)
    p = frame[[f"p_{n}" for n in names]].to_numpy(np.float64)
    prior = frame[[f"prior_{n}" for n in names]].to_numpy(np.float64)
    return y, p, prior
