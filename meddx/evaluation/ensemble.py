"""`ensemble_runs`: k runs on the same split, their probabilities averaged (equally, or with weights chosen on val)
and evaluated like one model."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from meddx.atomic import write_frame, write_text
from meddx.config import EvaluateConfig, RunConfig, save_config
from meddx.data.records import PSEUDO_PREFIX
from meddx.data.tensors import Preprocess
from meddx.errors import ConfigError, DataError
from meddx.evaluation.metrics import categorical_log_loss, mlogloss
from meddx.evaluation.report import evaluate_run
from meddx.run import CONFIG, DATA, ENSEMBLE, MEMBERS, PLAN, PREDICTIONS, SPLIT, STATUS, TRAINING, Run

MEMBER_KEYS = ("best_epoch", "epochs_run", "seconds", "initial_val_loss", "best_val_loss", "stopped_by_time_limit")


def labelled_split(path: Path) -> pd.DataFrame:
    """A run's split.csv (id, patient, split) without the unlabelled reports its training added with pseudo-labels
    (train only: members of an ensemble may add others and still share every labelled row's split)."""
    split = pd.read_csv(path / SPLIT, dtype=str)[["id", "patient_id", "split"]]
    return split[~split["id"].str.startswith(PSEUDO_PREFIX)].reset_index(drop=True)


def _check_same(runs: list[Run]) -> None:
    """Same task, labels, preprocessing and identical split assignment (ids, patients, splits), else a ConfigError."""
    first = runs[0]
    split0 = labelled_split(first.path)
    prep_file = first.prep_file
    prep0 = json.loads((first.path / prep_file).read_text())
    for r in runs[1:]:
        if (r.task, r.label_names) != (first.task, first.label_names):
            raise ConfigError(
                f"{r.path}: task/labels {r.task} {r.label_names} differ from {first.path}'s "
                f"{first.task} {first.label_names}"
            )
        split = labelled_split(r.path)
        if not split.equals(split0):
            diff = split.merge(split0, on="id", how="outer", suffixes=("", "_first"), indicator=True)
            bad = diff[(diff["_merge"] != "both") | (diff["split"] != diff["split_first"])]
            example = bad["id"].iloc[0] if len(bad) else "(row order)"
            raise ConfigError(
                f"{r.path}: its split differs from {first.path}'s ({len(bad)} samples, e.g. {example}); "
                "an ensemble needs runs on identical splits (same data and split.seed)"
            )
        if not (r.path / prep_file).is_file():
            raise ConfigError(f"{r.path}: no {prep_file}; the run did not finish training")
        if not r.is_sequence and (differ := _differences(r.preprocess, first.preprocess)):
            raise ConfigError(
                f"{r.path}: preprocessing ({prep_file}: {', '.join(differ)}) differs from {first.path}'s; "
                "members may differ in image size and data-set statistics only"
            )
        if r.is_sequence and json.loads((r.path / prep_file).read_text()) != prep0:
            raise ConfigError(f"{r.path}: vocabulary ({prep_file}) differs from {first.path}'s")


ADAPTED = ("image_size", "mean", "std")  # what a member's model is adapted to (models/ensemble.py: adapted)


def _differences(prep: Preprocess, other: Preprocess) -> list[str]:
    """The preprocessing fields two members must share and do not: all but image size and data-set statistics."""
    a, b = asdict(prep), asdict(other)
    return sorted(k for k in a if k not in ADAPTED and a[k] != b[k])


def _lead(members: list[Run]) -> Run:
    """The member whose preprocessing the ensemble takes: the largest image size (the others resize from it)."""
    return members[0] if members[0].is_sequence else max(members, key=lambda m: tuple(m.preprocess.image_size))


def greedy_weights(probs: list[np.ndarray], y: np.ndarray, task: str, rounds: int = 50) -> np.ndarray:
    """Caruana et al. (2004) ensemble selection: add, with replacement, the member that most lowers the log loss of the
    running average, `rounds` times, and keep the best ensemble seen; weights = how often each member was picked.
    Its loss on these predictions is never above the best single member's; weak members can get weight 0."""
    loss = (lambda p: float(categorical_log_loss(y, p)[0])) if task == "multiclass" else (lambda p: mlogloss(y, p))
    counts, total = np.zeros(len(probs)), np.zeros_like(probs[0], dtype=np.float64)
    best_loss, best_counts = float("inf"), counts
    for n in range(1, rounds + 1):
        pick = min(range(len(probs)), key=lambda i: loss((total + probs[i]) / n))
        counts, total = counts.copy(), total + probs[pick]
        counts[pick] += 1
        if (current := loss(total / n)) < best_loss:
            best_loss, best_counts = current, counts
    return best_counts / best_counts.sum()


def val_weights(runs: list[Run]) -> list[float]:
    """Member weights chosen by `greedy_weights` on the val split's predictions (never on test)."""
    frames = _aligned([r.predictions("val") for r in runs], runs, "val")
    cols = [f"p_{n}" for n in runs[0].label_names]
    y = frames[0][runs[0].label_names].to_numpy(np.float64)
    return greedy_weights([f[cols].to_numpy(np.float64) for f in frames], y, runs[0].task).tolist()


def _aligned(frames: list[pd.DataFrame], runs: list[Run], split: str) -> list[pd.DataFrame]:
    for r, f in zip(runs[1:], frames[1:]):
        if not f["id"].equals(frames[0]["id"]):
            raise DataError(
                f"{r.path}: predictions/{split}.csv lists other samples (or another order) than {runs[0].path}'s"
            )
    return frames


def average_predictions(runs: list[Run], split: str, weights: list[float] | None = None) -> pd.DataFrame:
    """One predictions table whose probability columns are the members' (weighted) mean."""
    frames = _aligned([r.predictions(split) for r in runs], runs, split)
    w = np.full(len(runs), 1 / len(runs)) if weights is None else np.asarray(weights, np.float64)
    out = frames[0].copy()
    cols = [f"p_{n}" for n in runs[0].label_names]
    out[cols] = sum(wi * f[cols].to_numpy(np.float64) for wi, f in zip(w, frames))
    return out


def ensemble_runs(
    runs: list[Run | str | Path],
    output: str | Path,
    config: EvaluateConfig | None = None,
    weights: str = "equal",
    evaluate: bool = True,
) -> Run:
    """Write an ensemble run folder (averaged val/test predictions, members and weights in ensemble.json) and evaluate
    it: the operating point is chosen on the averaged val predictions; `Run(output).model` averages the members.

    weights: "equal", or "val" (greedy ensemble selection on the val predictions; test stays unseen). Members inside
    the output folder (a planned ensemble's members/) are recorded by relative path, so the folder can move.
    """
    members = [r if isinstance(r, Run) else Run(r) for r in runs]
    if len(members) < 2:
        raise ConfigError("an ensemble needs at least 2 runs")
    if len({m.path.resolve() for m in members}) < len(members):
        raise ConfigError("an ensemble lists one run twice; give each run once (weights come from --weights)")
    if weights not in ("equal", "val"):
        raise ConfigError(f"ensemble weights '{weights}' unknown; use 'equal' or 'val'")
    _check_same(members)
    out = Path(output)
    if out.exists() and any(p.name not in (MEMBERS, CONFIG, PLAN, STATUS, "meddx.log") for p in out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty; choose a new output folder")
    (out / PREDICTIONS).mkdir(parents=True, exist_ok=True)
    lead = _lead(members)
    for f, source in ((lead.prep_file, lead), (DATA, members[0]), (SPLIT, members[0]), (PLAN, members[0])):
        if f != PLAN or (source.path / f).is_file():
            shutil.copy(source.path / f, out / f)
    cfg = members[0].config.model_copy(deep=True)
    cfg.model.tta = False  # each member's model applies its own test-time augmentation
    resized = not lead.is_sequence and any(m.preprocess.image_size != lead.preprocess.image_size for m in members)
    if resized:
        w, extra = _resized(members, lead, out, weights, cfg)
    else:
        save_config(cfg, out / CONFIG)
        w, extra = _averaged(members, out, weights)
    _write_members(out, members, w, weights, extra)
    write_text(out / TRAINING, json.dumps(members_training(members, w if weights == "val" else None), indent=2))
    run = Run(out)
    if evaluate:
        evaluate_run(run, "test", config)
    return run


def _write_members(out: Path, members: list[Run], w: list[float], weights: str, extra: dict) -> None:
    combine = "mean of probabilities" if weights == "equal" else "weighted mean of probabilities, weights chosen on val"
    info = {"members": [_member_path(m, out) for m in members], "weights": w, "combine": combine, **extra}
    write_text(out / ENSEMBLE, json.dumps(info, indent=2))


def _averaged(members: list[Run], out: Path, weights: str) -> tuple[list[float], dict]:
    """Members of one preprocessing: their own prediction files averaged, split by split."""
    w = val_weights(members) if weights == "val" else [1 / len(members)] * len(members)
    for split in sorted(p.stem for p in (members[0].path / PREDICTIONS).glob("*.csv")):
        if all((m.path / PREDICTIONS / f"{split}.csv").is_file() for m in members):
            write_frame(average_predictions(members, split, w), out / PREDICTIONS / f"{split}.csv", index=False,
                        float_format="%.9g")  # fmt: skip
    return w, {}


def _resized(members: list[Run], lead: Run, out: Path, weights: str, cfg: RunConfig) -> tuple[list[float], dict]:
    """Members at other image sizes: the ensemble's input size chosen, val and test predicted again by each adapted
    member, weights chosen on those val predictions, their mean written; splits of other data are not carried."""
    from meddx.evaluation.resized_members import largest_gap, member_predictions, write_input

    info = write_input(lead, out / lead.prep_file)
    height, width = info["size"]
    cfg.data.image_size = height if height == width else None  # None: the scans' own size, as preprocess.json says
    save_config(cfg, out / CONFIG)
    _write_members(out, members, [1 / len(members)] * len(members), "equal", {})  # the members, to load them
    run = Run(out)
    (val, p_val), (test, p_test) = member_predictions(run, "val"), member_predictions(run, "test")
    y_val = np.stack([r.labels for r in val]).astype(np.float64)
    w = greedy_weights(p_val, y_val, run.task).tolist() if weights == "val" else [1 / len(members)] * len(members)
    for split, records, probs in (("val", val, p_val), ("test", test, p_test)):
        run.write_predictions(split, records, sum(wi * p for wi, p in zip(w, probs)))
    gaps = {name: largest_gap(m, val, p, "val") for name, m, p in zip(member_names(members), members, p_val)}
    return w, {"input": {**info, "largest_gap_from_own_val_predictions": gaps}}


def _member_path(member: Run, out: Path) -> str:
    """A member's folder relative to the ensemble's when it lies inside it, else absolute."""
    path = member.path.resolve()
    return str(path.relative_to(out.resolve())) if path.is_relative_to(out.resolve()) else str(path)


def members_training(members: list[Run], weights: list[float] | None = None) -> dict:
    """The ensemble's training.json: each member's epochs, losses and seconds (and weight, when chosen on val), and
    the seconds of all of them."""
    rows = [{"run": m.path.name, **{k: m.training.get(k) for k in MEMBER_KEYS}} for m in members]
    for row, w in zip(rows, weights or []):
        row["weight"] = round(float(w), 4)
    return {"members": rows, "seconds": round(sum(r["seconds"] or 0 for r in rows), 1)}


def member_names(members: list[Run]) -> list[str]:
    """Each member's folder name, with its parent's where two share one (fold0 of two CV folders)."""
    names = [m.path.name for m in members]
    return [f"{m.path.parent.name}/{n}" if names.count(n) > 1 else n for m, n in zip(members, names)]


def _mean_auc(frame: pd.DataFrame, names: list[str]) -> float:
    """Mean ROC AUC over the labels that hold both classes (one-vs-rest for a multi-class run)."""
    from sklearn.metrics import roc_auc_score

    scores = []
    for n in names:
        y, p = frame[n].to_numpy(np.float64), frame[f"p_{n}"].to_numpy(np.float64)
        known = ~np.isnan(y)
        if len(np.unique(y[known])) == 2:
            scores.append(roc_auc_score(y[known], p[known]))
    return float(np.mean(scores)) if scores else float("nan")


def against_members(run: Run) -> str:
    """One line: the weights, and the ensemble's val ROC AUC beside each member's (val chose any weights, so it
    favours the ensemble then; test, in the report, is the fair comparison)."""
    info = json.loads((run.path / ENSEMBLE).read_text())
    names, members = run.label_names, run.members()
    val = {name: _mean_auc(m.predictions("val"), names) for name, m in zip(member_names(members), members)}
    best = max(val, key=lambda k: -1 if np.isnan(val[k]) else val[k])
    weights = ", ".join(f"{name} {w:.2f}" for name, w in zip(member_names(members), info["weights"]))
    chosen = "chosen on val, so val favours the ensemble" if "val" in info.get("combine", "") else "equal"
    return (
        f"weights ({chosen}): {weights}; val ROC AUC (mean over labels): ensemble "
        f"{_mean_auc(run.predictions('val'), names):.3f}, best member {val[best]:.3f} ({best})"
    )
