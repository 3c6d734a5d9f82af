"""Comparing runs on the same test patients: every headline figure of each run, the paired difference from the
best-ranked run with an interval from the same patient resamples, and DeLong's test for correlated ROC AUCs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata

from meddx.errors import ConfigError, DataError
from meddx.evaluation.folds import run_label
from meddx.evaluation.fused import CHUNK_BYTES
from meddx.evaluation.intervals import MIN_CLASS_PATIENTS, paired_figures
from meddx.evaluation.training_summary import recipe_line
from meddx.run import PREDICTIONS, Run

FIGURES = ("roc_auc", "pr_auc", "brier", "log_loss")  # each macro over labels (`intervals.paired_figures`)


def delong(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> dict:
    """DeLong, DeLong and Clarke-Pearson (1988) for two correlated ROC AUCs on the same samples, computed with
    midranks (Sun and Xu 2014): both AUCs, their difference, its standard error and the two-sided p-value."""
    y = np.asarray(y, dtype=np.float64)
    known = ~np.isnan(y)  # unknown labels left out, soft ones positive from 0.5
    y, p_a, p_b = y[known] >= 0.5, np.asarray(p_a)[known], np.asarray(p_b)[known]
    pos, neg = y.sum(), (~y).sum()
    if pos < 2 or neg < 2:
        return {"auc_a": math.nan, "auc_b": math.nan, "diff": math.nan, "se": math.nan, "z": math.nan, "p": math.nan}
    v10, v01, auc = [], [], []
    for p in (np.asarray(p_a, np.float64), np.asarray(p_b, np.float64)):
        x, z = p[y], p[~y]
        all_ranks = rankdata(np.concatenate([x, z]))
        tx, tz = rankdata(x), rankdata(z)
        v10.append((all_ranks[:pos] - tx) / neg)  # per positive: share of negatives below it (ties one half)
        v01.append(1 - (all_ranks[pos:] - tz) / pos)  # per negative: share of positives above it
        auc.append(float(v10[-1].mean()))
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / pos + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / neg
    diff = auc[0] - auc[1]
    se = math.sqrt(max(var, 0.0))
    z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    return {"auc_a": auc[0], "auc_b": auc[1], "diff": diff, "se": se, "z": z, "p": float(2 * norm.sf(abs(z)))}


def _predictions(run: Run, split: str) -> pd.DataFrame:
    """A run's predictions on `split`; a split it lacks is one line listing those it has."""
    try:
        return run.predictions(split)
    except DataError:
        if (run.path / PREDICTIONS / f"{split}.csv").is_file():
            raise  # there, but incomplete or unreadable: its own message says so
        have = sorted(f.stem for f in (run.path / PREDICTIONS).glob("*.csv"))
        raise ConfigError(
            f"{run_label(run)} ({run.path}): no predictions for split '{split}'; it has {', '.join(have) or 'none'}"
            " (`meddx evaluate RUN --data X` adds external-X): compare on one they all have, --split NAME"
        ) from None


def _aligned(runs: list[Run], split: str) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The first run's predictions (truth, patients) and every run's probabilities in its sample order, each file
    read once; refuses runs whose split lacks or holds other samples, patients or labels."""
    frames = [_predictions(run, split) for run in runs]
    first = frames[0]
    cols = [f"p_{n}" for n in runs[0].label_names]
    probs = []
    for run, frame in zip(runs, frames):
        if set(frame["id"]) != set(first["id"]) or len(frame) != len(first):
            raise ConfigError(
                f"{run.path}: its {split} split holds other samples than {runs[0].path}'s "
                f"({len(set(frame['id']) ^ set(first['id']))} differ); compare runs on the same test set"
            )
        if run.label_names != runs[0].label_names:
            raise ConfigError(
                f"{run.path}: labels {run.label_names} differ from {runs[0].path}'s {runs[0].label_names}"
            )
        frame = frame.set_index("id").loc[first["id"]]
        same = (frame["patient_id"].to_numpy() == first["patient_id"].to_numpy()).all()
        labels = frame[runs[0].label_names].to_numpy(np.float64), first[runs[0].label_names].to_numpy(np.float64)
        if not same or not np.allclose(*labels, equal_nan=True):  # unknown labels (NaN) are the same labels
            raise ConfigError(f"{run.path}: patients or labels of its {split} split differ from {runs[0].path}'s")
        probs.append(frame[cols].to_numpy(np.float64))
    return first, probs


def compare_runs(
    runs: list[Run],
    split: str = "test",
    resamples: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    chunk_bytes: int = CHUNK_BYTES,
) -> dict:
    """Each run's figures with intervals, ranked by ROC AUC; each run's paired difference from the best with its
    interval (same patient resamples for all runs, drawn in chunks of at most `chunk_bytes`) and DeLong's p-value per
    label; 'real' when the interval excludes 0 (DeLong, per image and not by patient, is a side note)."""
    if len(runs) < 2:
        raise ConfigError("compare needs at least two runs")
    frame, probs = _aligned(runs, split)
    y = frame[runs[0].label_names].to_numpy(np.float64)
    scores = paired_figures(y, frame["patient_id"].to_numpy(), probs, resamples, seed, chunk_bytes)
    order = sorted(range(len(runs)), key=lambda i: -scores[i]["roc_auc"][0])
    best = order[0]
    q = [(1 - ci) / 2, (1 + ci) / 2]
    rows = []
    for i in order:
        name = run_label(runs[i])  # a fold ensemble's val is its folds' out-of-fold predictions, not their mean
        name = name.replace(" (folds)", " (out of fold)") if split == "val" else name
        recipe = recipe_line(runs[i])
        row = {"run": str(runs[i].path), "name": name, "recipe": recipe, "figures": {}, "vs_best": {}}
        for name in FIGURES:
            values = scores[i][name]
            lo, hi = np.nanquantile(values[1:], q)
            row["figures"][name] = {"value": float(values[0]), "ci": [float(lo), float(hi)]}
            if i != best:
                d = values - scores[best][name]
                dlo, dhi = np.nanquantile(d[1:], q)
                real = bool(dlo > 0 or dhi < 0)
                row["vs_best"][name] = {"diff": float(d[0]), "ci": [float(dlo), float(dhi)], "real": real}
        if i != best:
            names = runs[0].label_names
            tests = {n: delong(y[:, j], probs[i][:, j], probs[best][:, j]) for j, n in enumerate(names)}
            row["delong"] = tests
            diff = row["vs_best"]["roc_auc"]
            diff["delong_agrees"] = all(t["p"] < 1 - ci for t in tests.values())  # per image, per label: a side note
        rows.append(row)
    pid = frame["patient_id"].to_numpy()
    fewest = min(min(len(set(pid[y[:, j] >= 0.5])), len(set(pid[y[:, j] < 0.5]))) for j in range(y.shape[1]))
    return {"split": split, "task": runs[0].task, "samples": int(len(y)),
            "patients": int(frame["patient_id"].nunique()), "fewest_class_patients": int(fewest),
            "resamples": resamples, "ci": ci, "best": str(runs[best].path), "runs": rows}  # fmt: skip


def comparison_table(result: dict) -> tuple[list[str], list[list[str]]]:
    """The comparison as one table: figures with intervals, the difference in ROC AUC from the best, DeLong's p."""
    ovr = " (one-vs-rest, mean over classes)" if result.get("task") == "multiclass" else ""  # not the report's
    header = [
        "rank",
        "run",
        "recipe",
        "ROC AUC",
        "PR AUC",
        f"Brier{ovr}",
        f"log loss{ovr}",
        "ROC AUC - best",
        "DeLong p",
        "verdict",
    ]
    rows = []
    for k, r in enumerate(result["runs"], 1):
        f = {n: f"{v['value']:.4f} ({v['ci'][0]:.4f}-{v['ci'][1]:.4f})" for n, v in r["figures"].items()}
        d = r["vs_best"].get("roc_auc")
        p = ", ".join("< 0.001" if t["p"] < 0.001 else f"{t['p']:.2g}" for t in r.get("delong", {}).values())
        verdict = "best" if d is None else ("worse (real)" if d["real"] else "not distinguishable from the best")
        if d is not None and d["real"] and d.get("delong_agrees") is False:  # the patients' interval decides
            level = 1 - result.get("ci", 0.95)
            verdict += (
                f" by the patients' paired interval; DeLong's per-image p is not below {level:.2g} on every label"
            )
        auc_ci = r["figures"]["roc_auc"]["ci"]  # the best of runs that all fail is no model to pick
        if auc_ci[1] < 0.5:
            verdict += "; below chance (its ROC AUC interval lies under 0.5: labels the other way round?)"
        elif auc_ci[0] <= 0.5:
            verdict += "; not above chance (its ROC AUC interval holds 0.5)"
        if result.get("fewest_class_patients", MIN_CLASS_PATIENTS) < MIN_CLASS_PATIENTS:  # as a report says
            verdict += f"; a label has {result['fewest_class_patients']} patient(s) of a class: too few to tell"
        diff = "" if d is None else f"{d['diff']:+.4f} ({d['ci'][0]:+.4f} to {d['ci'][1]:+.4f})"
        rows.append(
            [
                str(k),
                r["name"],
                r.get("recipe", ""),
                f["roc_auc"],
                f["pr_auc"],
                f["brier"],
                f["log_loss"],
                diff,
                p,
                verdict,
            ]
        )
    return header, rows
