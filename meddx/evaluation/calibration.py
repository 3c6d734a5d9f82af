"""Calibration: reliability curve, expected calibration error, temperature scaling fitted on validation."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from meddx.evaluation.metrics import EPS


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict:
    """Equal-width bins: mean predicted probability, observed frequency and count per non-empty bin; ECE (unknown
    labels left out)."""
    y = np.asarray(y, dtype=np.float64)
    known = ~np.isnan(y)
    y, p = y[known], np.asarray(p, dtype=np.float64)[known]
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf = np.bincount(idx, weights=p, minlength=bins)
    freq = np.bincount(idx, weights=y, minlength=bins)
    keep = count > 0
    mean_p, obs = conf[keep] / count[keep], freq[keep] / count[keep]
    ece = float(np.sum(count[keep] * np.abs(mean_p - obs)) / max(len(p), 1))
    return {"mean_predicted": mean_p.tolist(), "observed": obs.tolist(), "count": count[keep].tolist(), "ece": ece}


def ece_weighted(y: np.ndarray, p: np.ndarray, w: np.ndarray, bins: int = 10) -> np.ndarray:
    """ECE per row of (B, N) sample weights (row 0 of ones: `reliability`'s ECE), for bootstrap intervals."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    known = ~np.isnan(y)
    y, p, w = y[known], p[known], np.asarray(w)[:, known]
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    onehot = np.eye(bins)[idx]  # (N, bins)
    gap = np.abs(w @ (onehot * p[:, None]) - w @ (onehot * y[:, None]))  # |sum p - sum y| per bin and row
    return gap.sum(1) / w.sum(1)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_temperature(y_val: np.ndarray, p_val: np.ndarray, task: str = "binary") -> float:
    """One temperature T (logits / T) minimising validation cross-entropy; sigmoid outputs, all labels shared, or
    (multi-class) softmax rows, whose log-probabilities are the logits up to a constant per row."""
    if task == "multiclass":
        y_mc, logp = np.asarray(y_val, dtype=np.float64), np.log(np.clip(p_val, EPS, 1))

        def nll_mc(log_t: float) -> float:
            s = logp / np.exp(log_t)
            return float(-np.mean(np.sum(y_mc * (s - np.logaddexp.reduce(s, axis=1, keepdims=True)), axis=1)))

        return float(np.exp(minimize_scalar(nll_mc, bounds=(-4, 4), method="bounded").x))
    z, y = _logit(p_val).ravel(), np.asarray(y_val, dtype=np.float64).ravel()
    z, y = z[~np.isnan(y)], y[~np.isnan(y)]

    def nll(log_t: float) -> float:
        q = np.clip(1 / (1 + np.exp(-z / np.exp(log_t))), EPS, 1 - EPS)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))

    return float(np.exp(minimize_scalar(nll, bounds=(-4, 4), method="bounded").x))


def apply_temperature(p: np.ndarray, temperature: float, task: str = "binary") -> np.ndarray:
    """Probabilities with their logits divided by `temperature` (multi-class: a softmax of log p / T per row)."""
    if task == "multiclass":
        s = np.log(np.clip(p, EPS, 1)) / temperature
        return np.exp(s - np.logaddexp.reduce(s, axis=1, keepdims=True))
    return 1 / (1 + np.exp(-_logit(p) / temperature))


def fit_platt(y: np.ndarray, p: np.ndarray, groups: list[np.ndarray]) -> list[list[float]]:
    """Platt scaling on the logit, one slope and intercept per group of label columns (boolean masks), each
    minimising the group's cross-entropy: a model sure of itself too often gets a slope below 1."""
    z, y = _logit(p), np.asarray(y, dtype=np.float64)
    params = []
    for g in groups:
        zg, yg = z[:, g].ravel(), y[:, g].ravel()
        zg, yg = zg[~np.isnan(yg)], yg[~np.isnan(yg)]

        def loss(ab: np.ndarray, zg=zg, yg=yg) -> tuple[float, np.ndarray]:
            s = ab[0] * zg + ab[1]
            q = 1 / (1 + np.exp(-s))
            return float(np.mean(np.logaddexp(0, s) - yg * s)), np.array([np.mean((q - yg) * zg), np.mean(q - yg)])

        params.append([float(v) for v in minimize(loss, [1.0, 0.0], jac=True, method="L-BFGS-B").x])
    return params


def apply_platt(p: np.ndarray, groups: list[np.ndarray], params: list[list[float]]) -> np.ndarray:
    """`fit_platt`'s slopes and intercepts applied to probabilities, group by group."""
    z, out = _logit(p), np.asarray(p, dtype=np.float64).copy()
    for g, (a, b) in zip(groups, params):
        out[:, g] = 1 / (1 + np.exp(-(a * z[:, g] + b)))
    return out


def uncalibrated_thresholds(thresholds: np.ndarray, temperature: float | None) -> np.ndarray:
    """Thresholds chosen on temperature-scaled probabilities, moved to the model's own probabilities (the same
    decisions: the scaling is monotone per label), which predict, packages and the service compare against; those
    outside (0, 1) mean everyone or no one and stay. With 1 / temperature: the other way, onto the scaled ones."""
    if not temperature:
        return thresholds
    inside = (thresholds > 0) & (thresholds < 1)
    return np.where(inside, 1 / (1 + np.exp(-_logit(thresholds) * temperature)), thresholds)


def scaled_for_figures(p: np.ndarray, result: dict, names: list[str], task: str) -> tuple:
    """(probabilities, thresholds) as the figures show them: temperature-scaled when the evaluation scaled them, the
    thresholds (stored on the model's own probabilities) moved with them."""
    op = result["operating_point"]["thresholds"]
    thresholds = None if op is None else np.array([op[n] for n in names])
    if not (t := result["calibration"]["temperature"]):
        return p, thresholds
    return apply_temperature(p, t, task), None if thresholds is None else uncalibrated_thresholds(thresholds, 1 / t)


def calibration_lines(cal: dict, names: list[str], split: str) -> list[str]:
    """Temperature scaling and each label's ECE with its interval; where the scaling made this split's calibration
    worse (ECE and log loss both up), said with how many val samples the temperature rests on."""
    lines = (
        [
            f"temperature scaling: {cal['temperature']:.3f} (fitted on val"
            + (f", {cal['fitted_on']} samples)" if "fitted_on" in cal else ")")
        ]  # fmt: skip
        if cal["temperature"]
        else ["temperature scaling: off"]
    )
    lines += [
        f"{n}: ECE {cal['per_label'][n]['ece']:.4f}"
        + (" ({:.4f}-{:.4f})".format(*cal["per_label"][n]["ece_ci"]) if "ece_ci" in cal["per_label"][n] else "")
        + (f" (before scaling {cal['ece_before'][n]:.4f})" if "ece_before" in cal else "")
        for n in names
    ]
    worse = [n for n, (before, after) in (cal.get("log_loss") or {}).items()
             if after > before and cal["per_label"][n]["ece"] > cal["ece_before"][n]]  # fmt: skip
    return (
        lines
        + [
            f"on {split}, the scaling made {n}'s calibration worse (ECE {cal['ece_before'][n]:.4f} -> "
            f"{cal['per_label'][n]['ece']:.4f}, log loss {cal['log_loss'][n][0]:.4f} -> {cal['log_loss'][n][1]:.4f}): "
            + (
                "one temperature, fitted on val for every label at once, does not suit this label"
                if len(names) > 1
                else "the temperature fitted on val does not carry over here"
            )  # fmt: skip
            + "; the unscaled model's probabilities are the better calibrated ones here (the figures above are the "
            "scaled model's)"
            for n in worse
        ]
    )
