"""Choosing between planned candidates on validation only: each candidate's val ROC AUC (macro over labels) from the
mean of its seeds, with a patient-level bootstrap interval, and a paired bootstrap of its difference from the best.
A candidate whose difference interval holds 0 is as good as the best; the cheapest such candidate wins."""

from __future__ import annotations

import warnings

import numpy as np

from meddx.evaluation.ensemble import average_predictions
from meddx.evaluation.evaluation import bootstrap_weights
from meddx.evaluation.metrics import on_known, roc_auc
from meddx.run import Run

RESAMPLES, CI, SEED = 2000, 0.95, 0
CLEARLY_CHEAPER = 0.85  # a pilot's seconds per epoch vary by about 10%: cheaper means under 85% of the other's cost


def macro_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC AUC per weight row, averaged over the labels (columns) that have both classes (unknown labels left out)."""
    per_label = np.column_stack([on_known(roc_auc, y[:, j], p[:, j], w) for j in range(y.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample without both classes in any label: NaN
        return np.nanmean(per_label, axis=1)


def _interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    lo, hi = np.quantile(finite, [(1 - CI) / 2, (1 + CI) / 2])
    return float(lo), float(hi)


def compare_predictions(
    y: np.ndarray, patients: np.ndarray, preds: dict[str, np.ndarray], costs: dict[str, float]
) -> dict:
    """The verdict on candidates judged on the same val samples: a row per candidate, in the given order (the rules'
    candidate first), with AUC, interval, paired difference from the best and its interval, cost; and the chosen one
    with the reason: among those as good as the best, the first unless another is clearly cheaper."""
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    w = np.vstack([np.ones(len(y)), bootstrap_weights(patients, RESAMPLES, SEED)])
    aucs = {name: macro_auc(y, np.asarray(p, np.float64).reshape(y.shape), w) for name, p in preds.items()}
    best = max(aucs, key=lambda n: aucs[n][0])
    rows = []
    for name in preds:
        diff = aucs[name][1:] - aucs[best][1:]
        lo, hi = _interval(aucs[name][1:])
        dlo, dhi = _interval(diff) if name != best else (0.0, 0.0)
        tie = dlo <= 0 <= dhi
        gap = float(aucs[name][0] - aucs[best][0])
        rows.append(
            {"candidate": name, "val_auc": round(float(aucs[name][0]), 4), "ci": [round(lo, 4), round(hi, 4)],
             "diff_from_best": round(gap, 4), "diff_ci": [round(dlo, 4), round(dhi, 4)],
             "seconds_per_epoch": round(costs[name], 2), "as_good_as_best": tie}
        )  # fmt: skip
    tied = [r["candidate"] for r in rows if r["as_good_as_best"]]
    chosen = tied[0]
    for name in tied[1:]:
        if costs[name] < CLEARLY_CHEAPER * costs[chosen]:
            chosen = name
    if chosen != best:
        reason = (
            f"within the paired {CI:.0%} interval of the best ({best}, {aucs[best][0]:.4f}) and "
            + ("clearly cheaper" if costs[chosen] < CLEARLY_CHEAPER * costs[best] else "the rules' own choice")
            + ": a tie goes to the cheaper or simpler model"
        )
    elif len(rows) == 1 or all(costs[chosen] <= costs[r["candidate"]] / CLEARLY_CHEAPER for r in rows):
        reason = f"best on val (AUC {aucs[best][0]:.4f}), not dearer than the others"
    else:
        reason = f"best on val (AUC {aucs[best][0]:.4f}); each cheaper one is worse by more than the paired interval"
    return {"metric": "val ROC AUC, macro over labels, mean of each candidate's seeds", "resamples": RESAMPLES,
            "unit": "patient", "rows": rows, "chosen": chosen, "reason": reason}  # fmt: skip


def compare_runs(candidates: dict[str, list[Run]], costs: dict[str, float]) -> dict:
    """`compare_predictions` on the val predictions of each candidate's runs (all on one split)."""
    frames = {name: average_predictions(runs, "val") for name, runs in candidates.items()}
    first = next(iter(candidates.values()))[0]
    ref = next(iter(frames.values()))
    cols = [f"p_{n}" for n in first.label_names]
    preds = {name: f.set_index("id").loc[ref["id"], cols].to_numpy() for name, f in frames.items()}
    return compare_predictions(ref[first.label_names].to_numpy(), ref["patient_id"].to_numpy(), preds, costs)
