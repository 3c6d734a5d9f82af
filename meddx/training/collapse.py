"""Collapse detection: every output (nearly) the same, the DaTscan resident's failure (numpy only; the Lightning
callback that watches training is `training.callbacks.CollapseMonitor`)."""

from __future__ import annotations

import numpy as np

SPREAD_TOLERANCE = 0.01
MIN_SAMPLES = 10  # fewer outputs than this say nothing about collapse (a one-sample val split has spread 0)
RANKING_AUC = 0.6  # outputs close together that still order the classes this well are informative
LIKELY_CAUSES = [
    "learning rate too high (try 10x lower) or too low to move at all",
    "inputs not normalised (raw 0-255 or HU values; DaTscan counts need per-image normalisation)",
    "class imbalance without class weights: the model predicts the majority class for everyone",
    "loss/activation mismatch (sigmoid before BCEWithLogits, softmax into BCE, labels not 0/1)",
    "dead ReLUs after a bad update: all activations zero, output equals the bias",
]


def _ranks_well(p: np.ndarray, y: np.ndarray) -> bool:
    """Whether outputs, however close together, still order the classes (ROC AUC at least RANKING_AUC)."""
    from sklearn.metrics import roc_auc_score

    known = ~np.isnan(y)
    y, p = y[known] >= 0.5, p[known]
    return len(np.unique(y)) == 2 and roc_auc_score(y, p) >= RANKING_AUC


def detect_collapse(
    probs: np.ndarray, label_names: list[str], tolerance: float = SPREAD_TOLERANCE, labels: np.ndarray | None = None
) -> dict:
    """Per-label spread (max - min) of predicted probabilities; collapsed when every label's spread is below tolerance
    and, where `labels` are given, its outputs do not rank the classes either (a short training leaves outputs close
    together that still rank: that is under-training, not collapse). Fewer than MIN_SAMPLES outputs are not judged."""
    probs = np.asarray(probs, dtype=np.float64).reshape(len(probs), -1)
    spread = (probs.max(0) - probs.min(0)) if len(probs) else np.zeros(probs.shape[1])
    y = None if labels is None else np.asarray(labels, dtype=np.float64).reshape(len(probs), -1)
    flat = [
        n
        for j, (n, s) in enumerate(zip(label_names, spread))
        if s < tolerance and (y is None or not _ranks_well(probs[:, j], y[:, j]))
    ]
    judged = len(probs) >= MIN_SAMPLES
    return {
        "collapsed": bool(judged and len(flat) == len(label_names) and len(label_names) > 0),
        "judged": judged,
        "flat_labels": flat if judged else [],
        "spread": {n: float(s) for n, s in zip(label_names, spread)},
        "tolerance": tolerance,
        "likely_causes": LIKELY_CAUSES if flat and judged else [],
    }


def evident_causes(history: list[dict], lr: float) -> list[str]:
    """The causes a run's own record points to, to be read first: a training loss that blew up or went non-finite,
    a learning rate far outside the range AdamW trains at."""
    losses = [r["train_loss"] for r in history if r.get("train_loss") is not None]
    worst = max(losses, key=lambda v: v if np.isfinite(v) else np.inf, default=None)
    if worst is not None and not (np.isfinite(worst) and worst < 10):
        why = f"the training loss reached {worst:.3g} (a model that learns stays near or below 1; else NaN inputs)"
        return [f"learning rate {lr:g} likely far too high: {why}; the plan's rate, or 10x lower, trains"]
    if lr >= 0.1:
        return [f"learning rate {lr:g} far above the 1e-4 to 1e-2 that AdamW trains at: try the plan's or 10x lower"]
    if lr <= 1e-6:
        return [f"learning rate {lr:g} too low to move the weights (AdamW trains at 1e-4 to 1e-2)"]
    return []


def collapse_message(result: dict) -> str:
    """Plain words for a collapsed model."""
    return (
        f"model collapse: predictions are (nearly) the same for every sample on {', '.join(result['flat_labels'])} "
        f"(spread < {result['tolerance']}). Check: " + "; ".join(result["likely_causes"])
    )
