"""Operating points chosen on validation (fixed, Youden's J, target sensitivity or specificity), applied to test."""

from __future__ import annotations

import numpy as np
import pandas as pd

from meddx.errors import ConfigError

METHODS = ("youden", "fixed", "sensitivity", "specificity")
TRADEOFF_POINTS = [
    ("youden", None),
    ("fixed", 0.5),
    ("sensitivity", 0.80),
    ("sensitivity", 0.90),
    ("sensitivity", 0.95),
    ("sensitivity", 0.99),
    ("specificity", 0.80),
    ("specificity", 0.90),
    ("specificity", 0.95),
]


def parse_operating_point(text: str) -> tuple[str, float | None]:
    """'youden', 'fixed=0.3', 'sensitivity=0.95' or 'specificity=0.9' -> (method, value)."""
    method, _, value = text.partition("=")
    method = method.strip().lower()
    if method not in METHODS:
        raise ConfigError(f"operating point '{text}': method must be one of {', '.join(METHODS)}")
    if method == "youden":
        return method, None
    try:
        v = float(value) if value else (0.5 if method == "fixed" else 0.95)
    except ValueError:
        raise ConfigError(f"operating point '{text}': '{value}' is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"operating point '{text}': {v} is outside [0, 1]")
    return method, v


def _candidates(p: np.ndarray) -> np.ndarray:
    """Thresholds (decision: p >= t) halfway between neighbouring distinct scores, and beyond the lowest and highest:
    each splits val as a score would, but no score sits on it, so an exported model's rounding (1e-8) no longer flips
    a decision the run made, as it did for a collapsed model's one output (scores closer than that still may)."""
    u = np.unique(np.asarray(p, dtype=np.float64))
    if not len(u):
        return np.array([0.5])
    low = u[0] / 2 if u[0] > 0 else u[0]  # everything positive (p >= 0 holds for every probability)
    high = (u[-1] + 1) / 2 if u[-1] < 1 else float(np.nextafter(np.float32(1), np.float32(2)))  # nothing positive:
    # above 1 in float32 too (a float32 array compared with a Python float is compared in float32)
    return np.r_[low, (u[:-1] + u[1:]) / 2, high]


def rates(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity of p >= t for each threshold t (unknown labels left out, soft ones from 0.5)."""
    y = np.asarray(y, dtype=np.float64)
    known = ~np.isnan(y)
    y, p = y[known] >= 0.5, np.asarray(p, dtype=np.float64)[known]
    pos, neg = np.sort(p[y]), np.sort(p[~y])
    sens = 1 - np.searchsorted(pos, thresholds, side="left") / max(len(pos), 1)
    spec = np.searchsorted(neg, thresholds, side="left") / max(len(neg), 1)
    return sens, spec


def choose_threshold(y_val: np.ndarray, p_val: np.ndarray, method: str, value: float | None = None) -> float:
    """The threshold for one label, chosen on validation data only."""
    if method == "fixed":
        return float(value)
    t = _candidates(p_val)
    sens, spec = rates(y_val, p_val, t)
    if method == "youden":
        return float(t[np.argmax(sens + spec - 1)])
    if method == "sensitivity":  # the highest threshold that still reaches the target sensitivity
        ok = np.flatnonzero(sens >= value - 1e-12)
        return float(t[ok.max()]) if len(ok) else float(t[0])
    if method == "specificity":  # the lowest threshold that reaches the target specificity
        ok = np.flatnonzero(spec >= value - 1e-12)
        return float(t[ok.min()]) if len(ok) else float(t[-1])
    raise ConfigError(f"unknown operating point method '{method}'")


def label_name(method: str, value: float | None) -> str:
    return (
        "Youden's J" if method == "youden" else f"{method} {value:g}" if method != "fixed" else f"threshold {value:g}"
    )


def resolve_operating_point(
    task: str, labels: list[str], saved: dict, rule: str, val: pd.DataFrame | None = None
) -> tuple[dict[str, float], str]:
    """Thresholds per label and the rule's name: argmax for multi-class; else `saved` thresholds (a test evaluation's,
    or a package's thresholds.json) when present; else `rule` chosen on `val` predictions (columns <label>, p_<label>);
    without val, a fixed rule's threshold, or 0.5 named as such."""
    if task == "multiclass":
        return {n: 0.5 for n in labels}, "argmax"
    if saved.get("thresholds"):
        return {n: float(saved["thresholds"][n]) for n in labels}, saved.get("rule", "")
    method, value = parse_operating_point(rule)
    if val is not None:
        return (
            {n: choose_threshold(val[n].to_numpy(), val[f"p_{n}"].to_numpy(), method, value) for n in labels},
            label_name(method, value),
        )
    if method == "fixed":
        return {n: float(value) for n in labels}, label_name(method, value)
    return {n: 0.5 for n in labels}, "threshold 0.5 (no operating point chosen on validation in this package)"


def run_operating_point(run) -> tuple[dict[str, float], str]:
    """A run's operating point: its last test evaluation's thresholds (metrics.json), else the config's rule chosen on
    its val predictions now; what the gallery and the service apply."""
    return resolve_operating_point(
        run.task,
        run.label_names,
        run.metrics("test").get("operating_point", {}),
        run.config.evaluate.operating_point,
        run.predictions("val"),
    )


def with_decisions(run, frame):
    """`frame` (id, p_<label>) with each row's decision at the run's operating point (the labels called positive, or
    the negative class) and the operating point's name."""
    thresholds, rule = run_operating_point(run)
    frame["decision"] = [
        "; ".join(n for n in run.label_names if row[f"p_{n}"] >= thresholds[n]) or run.negative_class
        for _, row in frame.iterrows()
    ]
    frame["operating_point"] = rule
    return frame
