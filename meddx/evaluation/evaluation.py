"""Evaluation a reviewer trusts: every figure with a patient-level bootstrap interval, operating points chosen
on validation, calibration, trivial baselines on the same split, and collapse detection."""

from __future__ import annotations

import numpy as np

from meddx.config import EvaluateConfig
from meddx.evaluation import metrics as M
from meddx.evaluation.calibration import apply_temperature, fit_temperature, reliability, uncalibrated_thresholds
from meddx.evaluation.fused import FusedPass, count_chunks, patient_index
from meddx.evaluation.intervals import (
    add_predictor,
    confusion,
    denominators,
    ece_from_cuts,
    exact_bounds,
    patient_counts,
    percentiles,
    scored,
    tradeoff_counts,
)
from meddx.evaluation.operating import TRADEOFF_POINTS, choose_threshold, label_name, parse_operating_point, rates
from meddx.training.collapse import detect_collapse

SCHEMA = "meddx.metrics/2"


def bootstrap_weights(patients: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(resamples, N) sample weights from resampling patients with replacement (every image of a drawn patient)."""
    inverse, n_patients = patient_index(patients)
    counts = next(count_chunks(n_patients, seed, [resamples]))
    return counts[:, inverse].astype(np.float64)


def decisions(p: np.ndarray, task: str, thresholds: np.ndarray | None) -> np.ndarray:
    """0/1 decisions: argmax for multi-class, p >= threshold per label otherwise."""
    if task == "multiclass":
        return np.eye(p.shape[1])[p.argmax(1)]
    return (p >= thresholds[None, :]).astype(np.float64)


def baseline_predictions(prior: np.ndarray, y: np.ndarray, task: str, seed: int) -> dict[str, np.ndarray]:
    """The trivial predictors: all-negative (not for multi-class, where every sample has a class: its zeros were
    argmaxed to the first class), prior (train prevalence), random, majority class. Random scores are uniform and,
    per label, spread alike over positives and negatives: no information and no luck of one draw (ROC AUC exactly
    0.5, not a draw's 0.6); multi-class: one uniform draw per sample, normalised."""
    n, L = y.shape[0], len(prior)
    rng = np.random.default_rng(seed + 7919)
    if task == "multiclass":
        random = rng.uniform(size=(n, L))
        random = random / random.sum(1, keepdims=True)
        majority = np.tile(np.eye(L)[np.argmax(prior)], (n, 1))
    else:
        random = np.column_stack([_uninformative(y[:, j], rng) for j in range(L)]) if n else np.zeros((0, L))
        majority = np.tile((prior > 0.5).astype(np.float64), (n, 1))
    out = {"all_negative": np.zeros((n, L)), "prior": np.tile(prior, (n, 1)), "random": random, "majority": majority}
    return {k: v for k, v in out.items() if not (task == "multiclass" and k == "all_negative")}


def _uninformative(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scores evenly spaced over (0, 1) within positives, within negatives and within unknowns, in random order."""
    scores = np.empty(len(y))
    for mask in (y == 1, y == 0, ~((y == 1) | (y == 0))):
        k = int(mask.sum())
        scores[mask] = rng.permutation((np.arange(k) + 0.5) / max(k, 1))
    return scores


def choose_thresholds(y_val: np.ndarray, p_val: np.ndarray, operating_point: str) -> np.ndarray:
    method, value = parse_operating_point(operating_point)
    return np.array([choose_threshold(y_val[:, j], p_val[:, j], method, value) for j in range(y_val.shape[1])])


def tradeoff_points(operating_point: str = "youden") -> list[tuple[str, float | None]]:
    """The trade-off table's rules: the usual ones, and the run's own operating point where it is none of them
    (`sensitivity=0.85`), so the table, and the threshold-shift warning that reads it, always hold the headline."""
    own = parse_operating_point(operating_point)
    return TRADEOFF_POINTS + [own] * (label_name(*own) not in {label_name(*rule) for rule in TRADEOFF_POINTS})


def tradeoff_thresholds(y_val: np.ndarray, p_val: np.ndarray, points: list = TRADEOFF_POINTS) -> list[float]:
    """For one label: the threshold of each trade-off point, chosen on val."""
    return [choose_threshold(y_val, p_val, method, value) for method, value in points]


def tradeoff_table(
    y_val, p_val, y_test, p_test, w=None, ci: float = 0.95, points: list = TRADEOFF_POINTS, patients=None
) -> list[dict]:
    """For one label: operating points chosen on val and what they give on val and test; with bootstrap weights `w`
    (resamples x test samples), each test figure's interval (`<figure>_ci`); `patients`: each test sample's."""
    weights = np.ones((1, len(y_test))) if w is None else np.vstack([np.ones(len(y_test)), w])
    thresholds = tradeoff_thresholds(y_val, p_val, points)
    conf = [M.confusion_metrics(y_test, (p_test >= t).astype(float), weights) for t in thresholds]
    y, p = np.asarray(y_test, dtype=np.float64), np.asarray(p_test, dtype=np.float64)
    known, ids = ~np.isnan(y), np.arange(len(y)) if patients is None else np.asarray(patients)
    positive, negative = known & (np.nan_to_num(y) >= 0.5), known & (np.nan_to_num(y) < 0.5)
    per_patient = patient_counts(ids[known], positive[known], negative[known])
    counts = [tradeoff_counts(positive.sum(), negative.sum(), (p[known] >= t).sum(), per_patient) for t in thresholds]
    return tradeoff_rows(y_val, p_val, thresholds, conf, ci, points, counts)


def tradeoff_rows(
    y_val, p_val, thresholds: list[float], conf: list[dict], ci: float, points=TRADEOFF_POINTS, counts=None
) -> list:
    """The trade-off table from each point's threshold and its test confusion figures over [point, resamples];
    `counts` (per point, each figure's denominator): a 0 or 1 whose resamples never differ gets its exact interval."""
    keys = ("sensitivity", "specificity", "ppv", "npv")
    bounds = percentiles(np.stack([c[k][1:] for c in conf for k in keys]), [50 * (1 - ci), 50 * (1 + ci)])
    rows, (sv, cv) = [], rates(y_val, p_val, np.array(thresholds))
    known = np.asarray(y_val, dtype=np.float64)[~np.isnan(np.asarray(y_val, dtype=np.float64))] >= 0.5
    for i, ((method, value), t, figures_t) in enumerate(zip(points, thresholds, conf)):
        row = {
            "rule": label_name(method, value),
            "threshold": t,
            "val_sensitivity": float(sv[i]),
            "val_specificity": float(cv[i]),
            "val_positives": int(known.sum()),  # what val's own figures rest on: their uncertainty
            "val_negatives": int((~known).sum()),
        }
        for j, key in enumerate(keys):
            row[f"test_{key}"] = _f(figures_t[key][0])
            if not np.isnan(bounds[i * len(keys) + j, 0]):
                row[f"test_{key}_ci"] = bounds[i * len(keys) + j].tolist()
                total = counts[i][key] if counts else 0
                if np.ptp(row[f"test_{key}_ci"]) == 0 and total >= 1:  # every resample the same
                    exact = exact_bounds(row[f"test_{key}"], total, ci)
                    row[f"test_{key}_ci"] = list(exact) if exact else None  # between 0 and 1: no count to bound
        rows.append(row)
    return rows


def _f(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def calibrate(y_val, p_val, y_test, p_test, task: str, names: list[str], cfg: EvaluateConfig) -> tuple:
    """(calibration section, val and test probabilities after temperature scaling if asked): the temperature is
    fitted on val; the reliability of test is measured after it (and before it, as `ece_before`)."""
    calibration: dict = {"temperature": None}
    if cfg.temperature_scaling:
        t = fit_temperature(y_val, p_val, task)
        calibration.update(temperature=t, fitted_on=int(len(y_val)))
        calibration["ece_before"] = {
            n: reliability(y_test[:, j], p_test[:, j], cfg.calibration_bins)["ece"] for j, n in enumerate(names)
        }
        scaled = apply_temperature(p_test, t, task)
        if task != "multiclass":  # each label's log loss on this split before and after: does the scaling carry over
            calibration["log_loss"] = {n: [M.mlogloss(y_test[:, j], q[:, j]) for q in (p_test, scaled)]
                                       for j, n in enumerate(names)}  # fmt: skip
        p_val, p_test = apply_temperature(p_val, t, task), scaled
    calibration["per_label"] = {
        n: reliability(y_test[:, j], p_test[:, j], cfg.calibration_bins) for j, n in enumerate(names)
    }
    return calibration, p_val, p_test


def bootstrap_all(y_val, p_val, y_test, p_test, patients, prior, task, names, thresholds, cfg) -> dict:
    """The model's and the four baselines' figures, the trade-off tables and the ECE intervals, from one pass over
    the same patient resamples (drawn once)."""
    fp = FusedPass(patients, cfg.bootstrap, cfg.seed)
    model = add_predictor(fp, y_test, p_test, decisions(p_test, task, thresholds), task, ece=cfg.bootstrap > 0)
    bins = [s.cut_at_bins(cfg.calibration_bins) for s in model.labels] if cfg.bootstrap else []
    rules = tradeoff_points(cfg.operating_point)
    points = (
        []
        if task == "multiclass"
        else [tradeoff_thresholds(y_val[:, j], p_val[:, j], rules) for j in range(len(names))]
    )
    cuts = [s.cut_at_scores(t) for s, t in zip(model.labels, points)]
    half = None if task == "multiclass" else np.full(len(names), 0.5)  # baselines decide at 0.5: all-negative says no
    baselines = {
        name: add_predictor(fp, y_test, p_b, decisions(p_b, task, half), task)
        for name, p_b in baseline_predictions(prior, y_test, task, cfg.seed + 1).items()
    }
    fp.run()
    q = [50 * (1 - cfg.ci), 50 * (1 + cfg.ci)]
    return {
        "model": scored(model, names, cfg.ci),
        "baselines": {name: scored(b, names, cfg.ci) for name, b in baselines.items()},
        "ece_ci": {n: np.percentile(ece_from_cuts(s, b)[1:], q).tolist() for n, s, b in zip(names, model.labels, bins)},
        "tradeoff": {
            n: tradeoff_rows(
                y_val[:, j],
                p_val[:, j],
                points[j],
                [confusion(s, c) for c in cuts[j]],
                cfg.ci,
                rules,
                [denominators(s, c) for c in cuts[j]],
            )  # fmt: skip
            for j, (n, s) in enumerate(zip(names[: len(points)], model.labels))
        },
    }


def evaluate_arrays(
    y_val: np.ndarray,
    p_val: np.ndarray,
    y_test: np.ndarray,
    p_test: np.ndarray,
    patients_test: np.ndarray,
    prior: np.ndarray,
    task: str,
    names: list[str],
    cfg: EvaluateConfig | None = None,
    split: str = "test",
) -> dict:
    """The whole evaluation of one split from plain arrays; thresholds and temperature come from val only."""
    cfg = cfg or EvaluateConfig()
    y_val, p_val = np.asarray(y_val, np.float64), np.asarray(p_val, np.float64)
    y_test, p_test = np.asarray(y_test, np.float64), np.asarray(p_test, np.float64)
    calibration, p_val, p_test = calibrate(y_val, p_val, y_test, p_test, task, names, cfg)
    thresholds = None if task == "multiclass" else choose_thresholds(y_val, p_val, cfg.operating_point)
    raw_thresholds = None if thresholds is None else uncalibrated_thresholds(thresholds, calibration["temperature"])
    method, value = parse_operating_point(cfg.operating_point)
    boot = bootstrap_all(y_val, p_val, y_test, p_test, patients_test, prior, task, names, thresholds, cfg)
    for n, interval in boot["ece_ci"].items():
        calibration["per_label"][n]["ece_ci"] = interval
    result = {
        "schema": SCHEMA,
        "task": task,
        "labels": names,
        "split": split,
        "thresholds_from": "val",
        "n_samples": int(len(y_test)),
        "n_patients": int(len(np.unique(np.asarray(patients_test).astype(str)))),
        "positives": {n: int((np.nan_to_num(y_test[:, j]) >= 0.5).sum()) for j, n in enumerate(names)},
        "unknown_labels": {n: int(np.isnan(y_test[:, j]).sum()) for j, n in enumerate(names)},
        "operating_point": {
            "rule": "argmax" if task == "multiclass" else label_name(method, value),
            "method": method,
            "value": value,
            "thresholds": None if thresholds is None else dict(zip(names, raw_thresholds.tolist())),
        },
        "bootstrap": {"resamples": cfg.bootstrap, "unit": "patient", "ci": cfg.ci, "seed": cfg.seed},
        "model": boot["model"],
        "baselines": boot["baselines"],
        "calibration": calibration,
        "collapse": detect_collapse(p_test, names, labels=y_test),
    }
    result["beats_prior"] = {n: _beats_prior(result, n) for n in names}
    if task != "multiclass":  # each rule's threshold on the model's own probabilities, as the operating point's
        t = calibration["temperature"]
        raw = lambda r: {**r, "threshold": float(uncalibrated_thresholds(np.array(r["threshold"]), t))}  # noqa: E731
        result["tradeoff"] = {n: [raw(r) for r in rows] for n, rows in boot["tradeoff"].items()}
    return result


def _beats_prior(result: dict, name: str) -> bool:
    """Discrimination better than the prior's AUC of 0.5 (interval above it) and PR AUC above the prior's."""
    m, b = result["model"]["per_label"][name], result["baselines"]["prior"]["per_label"][name]
    auc = m["roc_auc"]
    if auc["value"] is None:
        return False
    if "p_exact" in auc:  # a perfect ranking of a few samples: better than chance only if luck is unlikely
        return bool(auc["value"] > 0.5 and auc["p_exact"] < (1 - result["bootstrap"]["ci"]) / 2)
    low = auc.get("ci_low", auc["value"])
    return bool(low > 0.5 and (m["pr_auc"]["value"] or 0) > (b["pr_auc"]["value"] or 0))
