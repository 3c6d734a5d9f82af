"""Collapse detection: every output (nearly) the same, the DaTscan resident's failure (numpy only; the Lightning
callback that watches training is `training.callbacks.CollapseMonitor`)."""

from __future__ import annotations

import numpy as np

SPREAD_TOLERANCE = 0.01
LIKELY_CAUSES = [
    "learning rate too high (try 10x lower) or too low to move at all",
    "inputs not normalised (raw 0-255 or HU values; DaTscan counts need per-image normalisation)",
    "class imbalance without class weights: the model predicts the majority class for everyone",
    "loss/activation mismatch (sigmoid before BCEWithLogits, softmax into BCE, labels not 0/1)",
    "dead ReLUs after a bad update: all activations zero, output equals the bias",
]


def detect_collapse(probs: np.ndarray, label_names: list[str], tolerance: float = SPREAD_TOLERANCE) -> dict:
    """Per-label spread (max - min) of predicted probabilities; collapsed when every label's spread is below
    tolerance."""
    probs = np.asarray(probs, dtype=np.float64).reshape(len(probs), -1)
    spread = (probs.max(0) - probs.min(0)) if len(probs) else np.zeros(probs.shape[1])
    flat = [n for n, s in zip(label_names, spread) if s < tolerance]
    return {
        "collapsed": bool(len(flat) == len(label_names) and len(label_names) > 0),
        "flat_labels": flat,
        "spread": {n: float(s) for n, s in zip(label_names, spread)},
        "tolerance": tolerance,
        "likely_causes": LIKELY_CAUSES if flat else [],
    }


def collapse_message(result: dict) -> str:
    """Plain words for a collapsed model."""
    return (
        f"model collapse: predictions are (nearly) the same for every sample on {', '.join(result['flat_labels'])} "
        f"(spread < {result['tolerance']}). Check: " + "; ".join(result["likely_causes"])
    )
