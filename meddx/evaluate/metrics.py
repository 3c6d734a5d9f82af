"""Metrics in float64, written for a (B, N) matrix of sample weights so one call serves the point estimate
(weights of ones) and B bootstrap resamples at once. Each agrees with scikit-learn (tests, 1e-9)."""

from __future__ import annotations

import numpy as np

EPS = 1e-15


def _as_weights(w: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones((1, n)) if w is None else np.atleast_2d(np.asarray(w, dtype=np.float64))


def _tie_groups(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ascending order of p and the start index of each run of equal scores in that order."""
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    return order, starts


def roc_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """ROC AUC per weight row (ties count one half); NaN where a row has no positive or no negative weight."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    w = _as_weights(w, len(y))
    order, starts = _tie_groups(p)
    ws, ys = w[:, order], y[order]
    pos = np.add.reduceat(ws * ys, starts, axis=1)
    neg = np.add.reduceat(ws * (1 - ys), starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    total_pos, total_neg = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (neg_below + 0.5 * neg)).sum(1) / (total_pos * total_neg)
    return np.where((total_pos > 0) & (total_neg > 0), auc, np.nan)


def average_precision(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """PR AUC as scikit-learn's average_precision_score (step-wise, tied scores as one threshold)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    w = _as_weights(w, len(y))
    order, starts = _tie_groups(-p)  # descending scores
    ws, ys = w[:, order], y[order]
    pos = np.add.reduceat(ws * ys, starts, axis=1)
    neg = np.add.reduceat(ws * (1 - ys), starts, axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    total_pos = tp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        ap = (precision * pos).sum(1) / total_pos
    return np.where(total_pos > 0, ap, np.nan)


def log_loss_binary(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Binary cross-entropy with probabilities clipped to [1e-15, 1 - 1e-15], computed in float64."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    w = _as_weights(w, len(y))
    per = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    return (w @ per) / w.sum(1)


def brier(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Mean squared error of the probability."""
    y = np.asarray(y, dtype=np.float64)
    w = _as_weights(w, len(y))
    return (w @ (np.asarray(p, dtype=np.float64) - y) ** 2) / w.sum(1)


def confusion_metrics(y: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Accuracy, sensitivity, specificity, PPV, NPV and F1 of 0/1 decisions; NaN where undefined."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    w = _as_weights(w, len(y))
    tp, fp = w @ (y * pred), w @ ((1 - y) * pred)
    fn, tn = w @ (y * (1 - pred)), w @ ((1 - y) * (1 - pred))
    div = lambda a, b: np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)  # noqa: E731
    return {
        "accuracy": div(tp + tn, tp + tn + fp + fn),
        "sensitivity": div(tp, tp + fn),
        "specificity": div(tn, tn + fp),
        "ppv": div(tp, tp + fp),
        "npv": div(tn, tn + fn),
        "f1": div(2 * tp, 2 * tp + fp + fn),
    }


def mlogloss(y: np.ndarray, p: np.ndarray) -> float:
    """Tianchi's score: binary cross-entropy averaged over the labels of a sample, then over samples (clipped 1e-15)."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    p = np.clip(np.asarray(p, dtype=np.float64).reshape(len(y), -1), EPS, 1 - EPS)
    return float(np.mean(np.mean(-(y * np.log(p) + (1 - y) * np.log1p(-p)), axis=1)))


def mlogloss_weighted(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """mlogloss per weight row (samples weighted, labels averaged)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    w = _as_weights(w, len(y))
    per = np.mean(-(y * np.log(p) + (1 - y) * np.log1p(-p)), axis=1)
    return (w @ per) / w.sum(1)


def categorical_log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Multi-class cross-entropy of one-hot y against probability rows (clipped, renormalised as sklearn does)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    p = p / p.sum(1, keepdims=True)
    w = _as_weights(w, len(y))
    per = -np.log(p[np.arange(len(y)), np.asarray(y).argmax(1)])
    return (w @ per) / w.sum(1)


def exact_match(y: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Share of samples whose every label decision is right (multi-label subset accuracy)."""
    hit = np.all(np.asarray(y) == np.asarray(pred), axis=1).astype(np.float64)
    w = _as_weights(w, len(hit))
    return (w @ hit) / w.sum(1)
