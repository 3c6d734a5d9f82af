"""Decision-curve analysis (Vickers and Elkin 2006): the net benefit of acting on the model's probability at each
threshold probability, beside treating everyone and treating no one, for the clinicians who choose the threshold."""

from __future__ import annotations

import numpy as np

GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)
TABLE_POINTS = (0.05, 0.1, 0.2, 0.3, 0.5)


def net_benefit(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """True positives minus false positives weighted by the odds of each threshold, per sample (N of them): TP/N -
    FP/N * t/(1-t)."""
    y = np.asarray(y, dtype=bool)
    act = np.asarray(p)[None, :] >= thresholds[:, None]
    n = len(y)
    tp, fp = (act & y).sum(1) / n, (act & ~y).sum(1) / n
    return tp - fp * thresholds / (1 - thresholds)


def decision_curve(y: np.ndarray, p: np.ndarray) -> dict:
    """Net benefit of the model, of treating all and of treating none over GRID; where the model beats both (unknown
    labels left out, soft ones positive from 0.5)."""
    y = np.asarray(y, dtype=np.float64)
    known = ~np.isnan(y)
    y, p = y[known] >= 0.5, np.asarray(p)[known]
    prevalence = float(y.mean()) if len(y) else 0.0
    model = net_benefit(y, p, GRID)
    treat_all = prevalence - (1 - prevalence) * GRID / (1 - GRID)
    better = model > np.maximum(treat_all, 0) + 1e-12
    useful = [float(GRID[better].min()), float(GRID[better].max())] if better.any() else None
    contiguous = bool(better.any()) and bool(better[np.flatnonzero(better)[0] : np.flatnonzero(better)[-1] + 1].all())
    return {
        "thresholds": GRID.tolist(),
        "model": model.round(5).tolist(),
        "treat_all": treat_all.round(5).tolist(),
        "useful_range": useful,
        "useful_points": int(better.sum()),
        "useful_contiguous": contiguous,
        "prevalence": prevalence,
    }


def decision_curves(y: np.ndarray, p: np.ndarray, names: list[str]) -> dict[str, dict]:
    """One curve per label (one-vs-rest for a multi-class task's classes)."""
    y, p = np.asarray(y).reshape(len(y), -1), np.asarray(p).reshape(len(p), -1)
    return {n: decision_curve(y[:, j], p[:, j]) for j, n in enumerate(names)}


def decision_table(curve: dict) -> list[list[str]]:
    """Rows at TABLE_POINTS: threshold, net benefit of the model, of treating all, of treating none."""
    index = {t: i for i, t in enumerate(curve["thresholds"])}
    return [
        [f"{t:.0%}", f"{curve['model'][index[t]]:.4f}", f"{curve['treat_all'][index[t]]:.4f}", "0"]
        for t in TABLE_POINTS
    ]
