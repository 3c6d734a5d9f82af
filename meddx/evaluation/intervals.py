"""Every figure of a set of predictions over [point, resample 1..B] from one fused pass (`fused.py`), and the
percentile intervals that come of them; the paired figures of several sets on the same resamples (`paired_figures`)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from meddx.config import EvaluateConfig
from meddx.evaluation import metrics as M
from meddx.evaluation.fused import CHUNK_BYTES, FusedPass, Segment, Sums

RANKED = ("roc_auc", "pr_auc", "log_loss", "brier")  # the figures that need no decisions
MIN_CLASS_PATIENTS = 5  # fewer positive or negative patients: resamples redraw the few there are, a too narrow interval
PER_LABEL = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1")


@dataclass
class Predictor:
    """One predictor in a pass: a segment per label, one of the pooled items (multi-label), and sums of each label's
    log loss and squared error and of the overall figures' terms."""

    task: str
    labels: list[Segment]
    micro: Segment | None
    sums: Sums


def label_segments(
    fp: FusedPass, y: np.ndarray, p: np.ndarray, pred: np.ndarray | None = None, ece: bool = False
) -> tuple[list[Segment], list[np.ndarray]]:
    """Per label, a segment of its known samples ranked by `p` (masses: positive, negative; with 0/1 decisions `pred`
    true and false positive; with `ece` p and soft y), and its log loss and squared-error terms per sample."""
    known_all, yb = ~np.isnan(y), (np.nan_to_num(y) >= 0.5).astype(np.float64)  # soft labels count from 0.5 ...
    labels, sums = [], []
    for j in range(y.shape[1]):
        k = np.flatnonzero(known_all[:, j])
        pj, soft = p[k, j], y[k, j]  # ... except in the log loss and the Brier score, which take the soft target
        masses = [yb[k, j], 1 - yb[k, j]] if pred is None else _confusion_masses(yb[k, j], pred[k, j])
        labels.append(fp.add(np.stack(masses + ([pj, soft] if ece else []), 1), pj, rows=k))
        for term in (M.log_loss_terms(soft, pj), (pj - soft) ** 2):
            sums.append(np.zeros(len(y)))
            sums[-1][k] = term
    return labels, sums


def add_predictor(fp: FusedPass, y: np.ndarray, p: np.ndarray, pred: np.ndarray, task: str, ece: bool = False):
    """Segments of predictions `p` and 0/1 decisions `pred` against labels `y` (NaN: unknown); with `ece`, each
    label's items also carry p and y for calibration cuts."""
    labels, sums = label_segments(fp, y, p, pred, ece)
    micro = None
    if task == "multilabel":  # micro figures: each (sample, label) an item weighing its sample's weight
        known, flat = M.known_binary(y.ravel())
        rows = np.repeat(np.arange(len(y)), y.shape[1])[known]
        micro = fp.add(np.stack(_confusion_masses(flat[known], pred.ravel()[known]), 1), p.ravel()[known], rows=rows)
    ones = np.ones(len(y))
    if task == "multiclass":
        terms = [M.categorical_log_loss_terms(y, p), ones, M.exact_match_hits(y, pred), ones]
    else:
        per, counted = M.mlogloss_terms(y, p)
        terms = [per * counted, counted.astype(np.float64), M.exact_match_hits(y, pred), ones]
    return Predictor(task, labels, micro, fp.add_sums(np.stack(sums + terms, 1)))


def _confusion_masses(yb: np.ndarray, pred: np.ndarray) -> list[np.ndarray]:
    """Positive, negative, true positive and false positive weight of each item."""
    return [yb, 1 - yb, yb * pred, (1 - yb) * pred]


def confusion(segment: Segment, slot: int | None = None) -> dict[str, np.ndarray]:
    """Confusion figures of the segment's decisions, or of deciding positive the items before cut `slot`."""
    total = segment.cum[:, 0]
    tp, fp = (total[:, 2], total[:, 3]) if slot is None else (segment.cum[:, slot, 0], segment.cum[:, slot, 1])
    return M.confusion_from_counts(tp, fp, total[:, 0] - tp, total[:, 1] - fp)


def denominators(segment: Segment, slot: int) -> dict[str, float]:
    """The counts sensitivity, specificity, PPV and NPV rest on when deciding positive before cut `slot`."""
    pos, neg = (float(v) for v in segment.cum[0, 0, :2])
    called = float(segment.cum[0, slot, 0] + segment.cum[0, slot, 1])
    patients = patient_counts(segment.col, segment.mass[:, 0] > 0, segment.mass[:, 1] > 0)
    return tradeoff_counts(pos, neg, called, patients)


def tradeoff_counts(pos: float, neg: float, called: float, patients: tuple[int, int, int]) -> dict[str, float]:
    """Sensitivity's, specificity's, PPV's and NPV's denominators (images, no more than their patients)."""
    images = {"sensitivity": pos, "specificity": neg, "ppv": called, "npv": pos + neg - called}
    return {k: effective(k, v, patients) for k, v in images.items()}


def ece_from_cuts(segment: Segment, slots: list[int]) -> np.ndarray:
    """Expected calibration error per row from the cumulative p and y at the bin edges (`Segment.cut_at_bins`)."""
    cum = segment.cum[:, [*slots, 0]][:, :, 4:6]  # bins - 1 ... 0 from the top
    per_bin = np.diff(cum, axis=1, prepend=0.0)
    total = segment.cum[:, 0, 0] + segment.cum[:, 0, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(per_bin[:, :, 0] - per_bin[:, :, 1]).sum(1) / total


def label_figures(segment: Segment, sums: np.ndarray, j: int) -> dict[str, np.ndarray]:
    """ROC AUC, PR AUC, log loss and Brier score of label `j` over [point, resample 1..B] (`sums`: the pass's values
    of `label_segments`' terms, label j's at columns 2j and 2j + 1)."""
    known = segment.cum[:, 0, 0] + segment.cum[:, 0, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        log_loss, brier = sums[:, 2 * j] / known, sums[:, 2 * j + 1] / known
    return {"roc_auc": segment.auc, "pr_auc": segment.ap, "log_loss": log_loss, "brier": brier}


def predictor_arrays(pr: Predictor, names: list[str]) -> dict:
    """Every metric as an array over [point, resample 1..B]: per label, macro, micro and overall."""
    per, sums = {}, pr.sums.values
    for j, (n, segment) in enumerate(zip(names, pr.labels)):
        per[n] = {**label_figures(segment, sums, j), **confusion(segment)}
    with warnings.catch_warnings():  # a resample where a label is undefined everywhere gives an all-NaN column
        warnings.simplefilter("ignore", RuntimeWarning)
        macro = {k: np.nanmean(np.stack([per[n][k] for n in names]), axis=0) for k in PER_LABEL}
    t = sums[:, 2 * len(names) :]
    with np.errstate(invalid="ignore", divide="ignore"):
        if pr.task == "multiclass":
            overall = {"log_loss": t[:, 0] / t[:, 1], "accuracy": t[:, 2] / t[:, 3]}
        else:
            overall = {"mlogloss": t[:, 0] / t[:, 1]}
            if pr.task == "multilabel":
                overall["exact_match"] = t[:, 2] / t[:, 3]
    micro = {}
    if pr.micro is not None:
        micro = {**confusion(pr.micro), "roc_auc": pr.micro.auc, "pr_auc": pr.micro.ap}
    return {"per_label": per, "macro": macro, "micro": micro, "overall": overall}


PROPORTIONS = {  # a proportion's denominator from a label's point counts (positives, negatives, tp, fp)
    "sensitivity": lambda pos, neg, tp, fp: pos,
    "specificity": lambda pos, neg, tp, fp: neg,
    "ppv": lambda pos, neg, tp, fp: tp + fp,
    "npv": lambda pos, neg, tp, fp: neg - fp + pos - tp,
    "accuracy": lambda pos, neg, tp, fp: pos + neg,
}


def scored(pr: Predictor, names: list[str], ci: float) -> dict:
    """`figures` of a predictor, with each proportion at 0 or 1 whose bootstrap interval has no width (every resample
    the same: 19 of 19 specificity) given the exact binomial (Clopper-Pearson) interval of its count instead."""
    out = figures(predictor_arrays(pr, names), ci)
    for n, segment in zip(names, pr.labels):
        pos, neg, tp, fp = (float(v) for v in segment.cum[0, 0, :4])
        patients = patient_counts(segment.col, segment.mass[:, 0] > 0, segment.mass[:, 1] > 0)
        for key, denominator in PROPORTIONS.items():
            f, total = out["per_label"][n].get(key, {}), effective(key, denominator(pos, neg, tp, fp), patients)
            if "ci_low" in f and f["ci_low"] == f["ci_high"] and total >= 1:  # every resample the same
                bounds = exact_bounds(f["value"], total, ci)
                f.update(zip(("ci_low", "ci_high"), bounds), ci_exact=True) if bounds else _no_interval(f, SAME)
        f1 = out["per_label"][n].get("f1", {})  # no proportion: '0.000 (0.000-0.000)' said nothing of its width
        if "ci_low" in f1 and f1["ci_low"] == f1["ci_high"]:
            _no_interval(f1, SAME)
        _perfect_ranking(out["per_label"][n].get("roc_auc", {}), *patients[:2])
        _few_patients(out["per_label"][n].get("roc_auc", {}), *patients[:2], exact=True)
        _few_patients(out["per_label"][n].get("pr_auc", {}), *patients[:2])
    if len(names) == 1:  # one label: its macro figures are its own
        out["macro"] = {k: dict(v) for k, v in out["per_label"][names[0]].items()}
    return out


def patient_counts(patients: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> tuple[int, int, int]:
    """Distinct patients with a positive item, with a negative one, and in all: what a patient-bootstrap figure
    rests on (10 images of one patient are one draw, not ten)."""
    patients = np.asarray(patients)
    return len(np.unique(patients[positive])), len(np.unique(patients[negative])), len(np.unique(patients))


def effective(key: str, images: float, patients: tuple[int, int, int]) -> float:
    """A proportion's denominator for its exact interval: its images, but no more than the patients they come from
    (the positives' for sensitivity, the negatives' for specificity, all for the rest)."""
    return min(images, {"sensitivity": patients[0], "specificity": patients[1]}.get(key, patients[2]))


def exact_bounds(value: float, total: float, ci: float) -> tuple[float, float] | None:
    """The exact binomial (Clopper-Pearson) interval of a proportion of 0 or 1 of `total`; None for one in between,
    whose count of independent draws is not known (a patient's images split between classes)."""
    if 0 < value < 1:
        return None
    edge = ((1 - ci) / 2) ** (1 / total)  # the exact bound for 0 or all of `total`
    return (edge, 1.0) if value else (0.0, 1 - edge)


SAME = "every resample the same"  # a proportion between 0 and 1 no resample changes: one patient's images, most likely


def _no_interval(figure: dict, why: str) -> None:
    """Drop a figure's interval (if any) and say why it has none."""
    figure.pop("ci_low", None), figure.pop("ci_high", None)
    figure["ci_none"] = why


def _few_patients(figure: dict, pos: float, neg: float, exact: bool = False) -> None:
    """A ranking figure of fewer than MIN_CLASS_PATIENTS positive or negative patients: no interval (resamples redraw
    the few there are), with or without a bootstrap; `exact`: a ROC AUC gets the exact chance of ranking so well."""
    if figure.get("value") is None or "p_exact" in figure or min(pos, neg) >= MIN_CLASS_PATIENTS:
        return
    _no_interval(figure, f"{pos:.0f} positive and {neg:.0f} negative patient(s)")
    if exact and pos >= 1 <= neg:
        figure["p_exact"] = M.rank_chance(figure["value"], round(pos), round(neg))


def _perfect_ranking(auc: dict, pos: float, neg: float) -> None:
    """An AUC of 0 or 1 that every resample repeats (5 patients) has no bootstrap interval, and none is pretended:
    it gets the exact chance of so perfect a ranking by luck instead (Mann-Whitney on the `pos` positive and `neg`
    negative patients, each patient one draw: 1 / C(pos + neg, pos))."""
    if auc.get("value") in (0.0, 1.0) and "ci_low" in auc and auc["ci_low"] == auc["ci_high"] and pos >= 1 <= neg:
        del auc["ci_low"], auc["ci_high"]
        auc["ci_none"] = "every resample ranks the same"
        auc["p_exact"] = 1 / math.comb(round(pos + neg), round(pos))


def figures(arrays: dict, ci: float) -> dict:
    """Arrays over [point, resample 1..B] -> {value, ci_low, ci_high}, recursively (intervals of the resamples'
    non-NaN values; none where there are none or the point is NaN)."""
    leaves: list[np.ndarray] = []
    _leaves(arrays, leaves)
    bounds = iter(percentiles(np.stack(leaves)[:, 1:], [50 * (1 - ci), 50 * (1 + ci)]) if leaves else [])
    return _rebuild(arrays, bounds)


def _leaves(arrays: dict, out: list) -> None:
    for v in arrays.values():
        if isinstance(v, dict):
            _leaves(v, out)
        else:
            out.append(v)


def _rebuild(arrays: dict, bounds) -> dict:
    out = {}
    for k, v in arrays.items():
        if isinstance(v, dict):
            out[k] = _rebuild(v, bounds)
            continue
        point, (lo, hi) = float(v[0]), next(bounds)
        out[k] = {"value": None if np.isnan(point) else point}
        if not np.isnan(point) and not np.isnan(lo):
            out[k].update(ci_low=float(lo), ci_high=float(hi))
    return out


def percentiles(boot: np.ndarray, q: list[float]) -> np.ndarray:
    """(F, B) values -> (F, len(q)) percentiles of each row's non-NaN values (NaN for none): one call for the
    rows without NaN, one per other row."""
    out = np.full((len(boot), len(q)), np.nan)
    missing = np.isnan(boot).any(1)
    if not missing.all() and boot.shape[1]:
        out[~missing] = np.percentile(boot[~missing], q, axis=1).T
    for i in np.flatnonzero(missing):
        row = boot[i][~np.isnan(boot[i])]
        if len(row):
            out[i] = np.percentile(row, q)
    return out


def score_with_intervals(y, p, pred, task: str, names: list[str], patients, cfg: EvaluateConfig) -> dict:
    """Point estimates and patient-bootstrap intervals of every metric of one set of predictions."""
    fp = FusedPass(patients, cfg.bootstrap, cfg.seed)
    pr = add_predictor(fp, np.asarray(y, np.float64), np.asarray(p, np.float64), np.asarray(pred, np.float64), task)
    fp.run()
    return scored(pr, names, cfg.ci)


def paired_figures(
    y: np.ndarray,
    patients: np.ndarray,
    probs: list[np.ndarray],
    resamples: int,
    seed: int,
    chunk_bytes: int = CHUNK_BYTES,
) -> list[dict[str, np.ndarray]]:
    """Each set of probabilities' `RANKED` figures over [point, resample 1..B], macro over labels (NaN-skipping), all
    from the same patient resamples: one fused pass, its draw in chunks of at most `chunk_bytes`."""
    fp, y = FusedPass(patients, resamples, seed, chunk_bytes), np.asarray(y, np.float64)
    added = []
    for p in probs:
        labels, sums = label_segments(fp, y, np.asarray(p, np.float64).reshape(y.shape))
        added.append((labels, fp.add_sums(np.stack(sums, 1))))
    fp.run()
    out = []
    for labels, sums in added:
        per = [label_figures(segment, sums.values, j) for j, segment in enumerate(labels)]
        with warnings.catch_warnings():  # a resample where no label has both classes: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            out.append({k: np.nanmean(np.stack([f[k] for f in per]), axis=0) for k in RANKED})
    return out
