"""Pooled scores of a set of predictions beside trivial baselines (out-of-fold CV predictions, competition tables), and
the registry through which a competition module adds its own score to every report."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meddx.atomic import write_text
from meddx.evaluation import metrics as M
from meddx.run import Run
from meddx.training.cv import CV, oof_arrays, read_oof


def pooled_scores(
    y: np.ndarray,
    p: np.ndarray,
    label_names: list[str],
    prior: np.ndarray | None = None,
    seed: int = 0,
    score: Callable[[np.ndarray, np.ndarray], dict] | None = None,
) -> dict:
    """mlogloss, mean and per-label ROC AUC and exact match at 0.5 of `p`, and the mlogloss of the all-zero, prior
    (train prevalence, per row or overall) and uniform-random predictions on the same rows. `score(y, q)` adds figures
    computed for the model and each baseline alike."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    extra = score or (lambda _y, _q: {})

    def losses(q: np.ndarray) -> dict:
        return {"mlogloss": M.mlogloss(y, q), **extra(y, q)}

    prior = y.mean(0) if prior is None else np.asarray(prior, np.float64)
    rng = np.random.default_rng(seed)
    auc = {n: float(M.roc_auc(y[:, j], p[:, j])[0]) for j, n in enumerate(label_names)}
    return {
        "n_samples": len(y),
        "labels": len(label_names),
        "exact_match_threshold": 0.5,  # the report's own exact match uses the operating point chosen on val
        "model": {
            **losses(p),
            "exact_match": float(M.exact_match(y, p >= 0.5)[0]),
            "mean_roc_auc": float(np.nanmean(list(auc.values()))),
            "per_label_roc_auc": auc,
        },
        "baselines": {
            "all_zero": losses(np.zeros_like(p)),
            "prior": losses(np.broadcast_to(prior, p.shape)),
            "random": losses(rng.random(p.shape)),
        },
    }


def multiclass_scores(y: np.ndarray, p: np.ndarray, label_names: list[str], prior=None, seed: int = 0) -> dict:
    """A multi-class task's pooled scores: categorical log loss, argmax accuracy and balanced accuracy (the mean of
    the classes' recalls), one-vs-rest ROC AUCs; the prior's and uniform-random rows' log loss beside them."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    truth, called = y.argmax(1), p.argmax(1)
    recalls = [float(np.mean(called[truth == j] == j)) for j in range(y.shape[1]) if (truth == j).any()]
    prior = y.mean(0) if prior is None else np.asarray(prior, np.float64)
    random = np.random.default_rng(seed).random(p.shape)
    auc = {n: float(M.roc_auc(y[:, j], p[:, j])[0]) for j, n in enumerate(label_names)}
    return {
        "n_samples": len(y),
        "labels": len(label_names),
        "task": "multiclass",
        "model": {
            "log_loss": float(M.categorical_log_loss(y, p)[0]),
            "accuracy": float(np.mean(called == truth)),
            "balanced_accuracy": float(np.mean(recalls)),
            "mean_roc_auc": float(np.nanmean(list(auc.values()))),
            "per_label_roc_auc": auc,
        },
        "baselines": {
            "prior": {"log_loss": float(M.categorical_log_loss(y, np.broadcast_to(prior, p.shape))[0])},
            "random": {"log_loss": float(M.categorical_log_loss(y, random / random.sum(1, keepdims=True))[0])},
        },
    }


@dataclass
class Competition:
    """A competition's score for the runs it applies to, and how its table reads in a report."""

    name: str
    applies: Callable  # (Run) -> bool
    score: Callable  # (y, p, label_names, prior, seed) -> dict as pooled_scores
    title: str
    note: str
    keys: Callable  # (score dict) -> the figure names shown as columns


COMPETITIONS: dict[str, Competition] = {}


def register_competition(competition: Competition) -> None:
    """Make every report of a run the competition applies to carry its score table (under metrics.json[name])."""
    COMPETITIONS[competition.name] = competition


def competition_for(run) -> Competition | None:
    """The registered competition that applies to a run, if any."""
    return next((c for c in COMPETITIONS.values() if c.applies(run)), None)


def score_table(scores: dict, keys: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (model, then baselines) of a pooled-scores dict, 4 decimals."""
    header = ["", *keys, "mean ROC AUC", "exact match at 0.5"]
    f4 = "{:.4f}".format
    rows = [
        [
            "model",
            *(f4(scores["model"][k]) for k in keys),
            f4(scores["model"]["mean_roc_auc"]),
            f4(scores["model"]["exact_match"]),
        ]
    ]
    rows += [[f"baseline: {b}", *(f4(v[k]) for k in keys), "", ""] for b, v in scores["baselines"].items()]
    return header, rows


def score_cv(cv_dir: str | Path) -> dict:
    """Pooled scores of a CV folder's out-of-fold predictions (a registered competition's, if it applies to the fold
    runs), each row against its own fold's training prior; merged into its cv.json."""
    cv_dir = Path(cv_dir)
    frame, names = read_oof(cv_dir)
    y, p, prior = oof_arrays(frame, names)
    info = json.loads((cv_dir / CV).read_text())
    first = Run(cv_dir / info["runs"][0])
    competition = competition_for(first)
    if competition:
        scores = competition.score(y, p, names, prior=prior)
    else:  # a multi-class task's classes are one choice per row: categorical log loss and argmax accuracy
        scores = (multiclass_scores if first.task == "multiclass" else pooled_scores)(y, p, names, prior)
    kept = {
        k: info[k] for k in ("folds", "runs", "plan", "reused") if k in info
    }  # the plan's recipe, when it chose one
    result = {**scores, **kept}
    result["model"]["name"] = info["model"]["name"]
    write_text(cv_dir / CV, json.dumps(result, indent=2))
    return result
