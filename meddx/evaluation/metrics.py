"""Metrics in float64, written for a (B, N) matrix of sample weights so one call serves the point estimate
(weights of ones) and B bootstrap resamples at once. Each agrees with scikit-learn (tests, 1e-9)."""

from __future__ import annotations

import math

import numpy as np

EPS = 1e-15


def _as_weights(w: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones((1, n)) if w is None else np.atleast_2d(np.asarray(w, dtype=np.float64))


def grouped_counts(
    y: np.ndarray, p: np.ndarray, w: np.ndarray, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted positives and negatives per distinct score, ascending: two (B, K) arrays.

    `rows` maps each (y, p) item to its sample's weight column (micro averaging passes every label of a sample);
    the sums are one sparse product, so B resamples cost little more than one.
    """
    from scipy.sparse import csr_matrix

    y = np.asarray(y, dtype=np.float64)
    _, group = np.unique(np.asarray(p, dtype=np.float64), return_inverse=True)
    rows = np.arange(len(y)) if rows is None else rows
    shape = (w.shape[1], int(group.max()) + 1 if len(group) else 0)
    pos = np.asarray(w @ csr_matrix((y, (rows, group)), shape=shape))
    neg = np.asarray(w @ csr_matrix((1 - y, (rows, group)), shape=shape))
    return pos, neg


def ranking_metrics(
    y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None, rows: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """ROC AUC (ties count one half) and average precision (as scikit-learn where both classes are present; NaN
    without positives or negatives, as ROC AUC) per weight row, from one grouping."""
    w = _as_weights(w, len(y) if rows is None else int(rows.max()) + 1)
    pos, neg = grouped_counts(y, p, w, rows)
    total_pos, total_neg = pos.sum(1), neg.sum(1)
    below = np.cumsum(neg, axis=1)
    below -= 0.5 * neg  # negatives strictly below each score, plus half the tied ones
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.einsum("bk,bk->b", pos, below) / (total_pos * total_neg)
        tp = np.cumsum(pos[:, ::-1], axis=1)  # descending scores for precision-recall
        seen = tp + np.cumsum(neg[:, ::-1], axis=1)
        np.divide(tp, seen, out=tp, where=seen > 0)
        ap = np.einsum("bk,bk->b", tp, pos[:, ::-1]) / total_pos
    return {
        "roc_auc": np.where((total_pos > 0) & (total_neg > 0), auc, np.nan),
        "pr_auc": np.where((total_pos > 0) & (total_neg > 0), ap, np.nan),  # no negatives: 1 whatever the model
    }


def roc_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
    """ROC AUC per weight row; NaN where a row has no positive or no negative weight."""
    return ranking_metrics(y, p, w, rows)["roc_auc"]


def average_precision(
    y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None, rows: np.ndarray | None = None
) -> np.ndarray:
    """PR AUC as scikit-learn's average_precision_score (step-wise, tied scores as one threshold); NaN where a row
    has no positive or no negative weight."""
    return ranking_metrics(y, p, w, rows)["pr_auc"]


def log_loss_binary(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Binary cross-entropy with probabilities clipped to [1e-15, 1 - 1e-15], computed in float64."""
    w = _as_weights(w, len(y))
    return (w @ log_loss_terms(y, p)) / w.sum(1)


def log_loss_terms(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each sample's binary cross-entropy (probabilities clipped to [1e-15, 1 - 1e-15], float64)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def brier(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Mean squared error of the probability."""
    y = np.asarray(y, dtype=np.float64)
    w = _as_weights(w, len(y))
    return (w @ (np.asarray(p, dtype=np.float64) - y) ** 2) / w.sum(1)


def confusion_metrics(y: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Accuracy, sensitivity, specificity, PPV, NPV and F1 of 0/1 decisions; NaN where undefined.

    With (N, L) arrays the counts are pooled over labels (micro averaging).
    """
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    w = _as_weights(w, len(y))
    known = ~np.isnan(y)  # unknown labels count nowhere
    y = (np.nan_to_num(y) >= 0.5).astype(np.float64)  # soft labels are positive from 0.5
    per_sample = lambda a: (a * known).reshape(len(y), -1).sum(1)  # noqa: E731
    tp, fp = w @ per_sample(y * pred), w @ per_sample((1 - y) * pred)
    fn, tn = w @ per_sample(y * (1 - pred)), w @ per_sample((1 - y) * (1 - pred))
    return confusion_from_counts(tp, fp, fn, tn)


def confusion_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, sensitivity, specificity, PPV, NPV and F1 from weighted counts; NaN where undefined."""
    div = lambda a, b: np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)  # noqa: E731
    return {
        "accuracy": div(tp + tn, tp + tn + fp + fn),
        "sensitivity": div(tp, tp + fn),
        "specificity": div(tn, tn + fp),
        "ppv": div(tp, tp + fp),
        "npv": div(tn, tn + fn),
        "f1": div(2 * tp, 2 * tp + fp + fn),
    }


def mlogloss_weighted(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """mlogloss per weight row (samples weighted, labels averaged)."""
    per, counted = mlogloss_terms(y, p)
    w = _as_weights(w, len(per)) * counted
    return (w @ per) / w.sum(1)


def mlogloss_terms(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's mean binary cross-entropy over its known labels, and whether it has any (else it counts not)."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    p = np.clip(np.asarray(p, dtype=np.float64).reshape(len(y), -1), EPS, 1 - EPS)
    known = ~np.isnan(y)  # unknown labels are left out; a sample with none known weighs nothing
    y = np.nan_to_num(y)
    per = (-(y * np.log(p) + (1 - y) * np.log1p(-p)) * known).sum(1) / np.maximum(known.sum(1), 1)
    return per, known.any(1)


def mlogloss(y: np.ndarray, p: np.ndarray) -> float:
    """Tianchi's score: binary cross-entropy averaged over the labels of a sample, then over samples (clipped 1e-15)."""
    return float(mlogloss_weighted(y, p)[0])


def categorical_log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Multi-class cross-entropy of one-hot y against probability rows (clipped, renormalised as sklearn does)."""
    w = _as_weights(w, len(y))
    return (w @ categorical_log_loss_terms(y, p)) / w.sum(1)


def categorical_log_loss_terms(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each sample's multi-class cross-entropy (clipped, renormalised)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    p = p / p.sum(1, keepdims=True)
    return -np.log(p[np.arange(len(y)), np.asarray(y).argmax(1)])


def exact_match(y: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Share of samples whose every label decision is right (multi-label subset accuracy)."""
    hit = exact_match_hits(y, pred)
    w = _as_weights(w, len(hit))
    return (w @ hit) / w.sum(1)


def exact_match_hits(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """1.0 for each sample whose every known label decision is right, else 0.0."""
    y = np.asarray(y, dtype=np.float64)
    right = ((np.nan_to_num(y) >= 0.5) == np.asarray(pred).astype(bool)) | np.isnan(y)  # unknown labels: no error
    return np.all(right, axis=1).astype(np.float64)


def known_binary(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of known labels, labels as 0/1 from 0.5): unknown (NaN) labels are left out, soft ones thresholded."""
    y = np.asarray(y, dtype=np.float64)
    return ~np.isnan(y), (np.nan_to_num(y) >= 0.5).astype(np.float64)


def on_known(fn, y: np.ndarray, p: np.ndarray, w: np.ndarray, ranking: bool = True) -> np.ndarray:
    """`fn(y, p, w)` of one label on its known samples: labels from 0.5 for ranking figures, soft targets kept for
    the others (log loss, Brier)."""
    known, yb = known_binary(y)
    return fn((yb if ranking else np.asarray(y, dtype=np.float64))[known], np.asarray(p)[known], w[:, known])


def rank_chance(auc: float, pos: int, neg: int) -> float:
    """The exact chance that a random ranking of `pos` positive and `neg` negative patients (one draw each) reaches
    this ROC AUC or more: Mann-Whitney's U from the q-binomial coefficient [pos + neg, pos], exact for few."""
    m, n = min(pos, neg), max(pos, neg)
    counts = np.zeros(m * n + 1)
    counts[0] = 1.0
    for i in range(1, m + 1):  # times (1 - q^(n+i)) / (1 - q^i): the arrangements by their U
        counts[n + i :] -= counts[: m * n + 1 - n - i].copy()
        for r in range(i):  # dividing by (1 - q^i): a running sum along every i-th coefficient
            counts[r::i] = np.cumsum(counts[r::i])
    reached = int(np.ceil(auc * m * n - 1e-9))
    return float(counts[reached:].sum() / math.comb(m + n, m))
