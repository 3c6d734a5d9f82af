"""Subgroups: every headline figure per value of a manifest column (sex, age band, site, view, scanner) with its
patient-bootstrap interval, and the largest gap between subgroups flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd

from meddx.config import EvaluateConfig
from meddx.evaluation.intervals import score_with_intervals

MIN_SAMPLES = 20  # fewer samples in a subgroup give intervals too wide to read
MAX_VALUES = 8  # a numeric column of more distinct values (age in years) is cut into quartile bands
MISSING = "(missing)"
FIGURES = ("roc_auc", "pr_auc", "sensitivity", "specificity")


def subgroup_scores(
    y, p, pred, task: str, names: list[str], patients, groups, column: str, cfg: EvaluateConfig
) -> dict:
    """Macro figures per subgroup (labels averaged), groups under MIN_SAMPLES counted but not scored, and the largest
    ROC AUC gap with whether the two subgroups' intervals overlap."""
    groups, order, banded = subgroups_of(list(groups))
    out: dict = {"column": column, "min_samples": MIN_SAMPLES, "groups": {}, "banded": banded}
    per_patient = pd.Series(groups).groupby(np.asarray(patients, dtype=str)).nunique()
    out["patients_in_several_groups"] = int((per_patient > 1).sum())
    for g in order:
        m = groups == g
        row = {"samples": int(m.sum()), "patients": int(len(set(np.asarray(patients)[m])))}
        if m.sum() >= MIN_SAMPLES and 0 < np.nansum(y[m]) < np.sum(~np.isnan(y[m])):
            figures = score_with_intervals(y[m], p[m], pred[m], task, names, np.asarray(patients)[m], cfg)
            row["figures"] = {k: figures["macro"][k] for k in FIGURES}
        out["groups"][g] = row
    scored = {
        g: r["figures"]["roc_auc"]
        for g, r in out["groups"].items()
        if r.get("figures", {}).get("roc_auc", {}).get("value") is not None
    }
    if len(scored) >= 2:
        hi, lo = max(scored, key=lambda g: scored[g]["value"]), min(scored, key=lambda g: scored[g]["value"])
        a, b = scored[hi], scored[lo]
        overlap = None if "ci_low" not in a or "ci_low" not in b else bool(b["ci_high"] >= a["ci_low"])
        out["largest_gap"] = {"metric": "roc_auc", "high": hi, "low": lo, "gap": a["value"] - b["value"],
                              "intervals_overlap": overlap}  # fmt: skip
    return out


def subgroups_of(values: list) -> tuple[np.ndarray, list[str], bool]:
    """Each sample's subgroup, the subgroups in order, and whether they are bands: a numeric column of more than
    MAX_VALUES distinct values (age) falls into quartile bands named by their range (`41-56`), others by value."""
    missing = np.array([v is None or v != v or str(v).strip() == "" for v in values])
    numbers = pd.to_numeric(pd.Series(values, dtype=object).where(~missing), errors="coerce")
    if numbers[~missing].notna().all() and numbers[~missing].nunique() > MAX_VALUES:
        band = pd.qcut(numbers[~missing], 4, labels=False, duplicates="drop")
        names = {b: f"{numbers[~missing][band == b].min():g}-{numbers[~missing][band == b].max():g}" for b in set(band)}
        groups = np.full(len(values), MISSING, dtype=object)
        groups[~missing] = [names[b] for b in band]
        return groups, [names[b] for b in sorted(names)] + [MISSING] * bool(missing.any()), True
    groups = np.array([MISSING if m else str(v) for v, m in zip(values, missing)], dtype=object)
    return groups, sorted(set(groups)), False


def subgroup_text(sub: dict) -> str:
    """The largest gap in words, and patients whose rows fall in more than one subgroup."""
    shared = sub.get("patients_in_several_groups", 0)
    note = (
        f" {shared} patient(s) have rows in more than one subgroup of {sub['column']}; check the column, or read the"
        " gap with care: such subgroups are not independent."
        if shared
        else ""
    )
    bands = f"{sub['column']} is numeric with many values: cut into quartile bands. " if sub.get("banded") else ""
    return bands + _gap_text(sub) + note


def _gap_text(sub: dict) -> str:
    gap = sub.get("largest_gap")
    if not gap:
        return f"Fewer than two subgroups of {sub['column']} with {sub['min_samples']} samples and both classes."
    g = sub["groups"]
    verdict = {None: "no intervals (bootstrap 0)", True: "their intervals overlap",
               False: "their intervals do not overlap: a real gap"}[gap["intervals_overlap"]]  # fmt: skip
    return (
        f"Largest gap in ROC AUC: {gap['high']} {g[gap['high']]['figures']['roc_auc']['value']:.3f} against "
        f"{gap['low']} {g[gap['low']]['figures']['roc_auc']['value']:.3f} ({gap['gap']:.3f}); {verdict}."
    )
