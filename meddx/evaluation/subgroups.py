"""Subgroups: every headline figure per value of a manifest column (sex, age band, site, view, scanner) with its
patient-bootstrap interval, and the largest gap between subgroups flagged."""

from __future__ import annotations

import numpy as np

from meddx.config import EvaluateConfig
from meddx.evaluation.intervals import score_with_intervals

MIN_SAMPLES = 20  # fewer samples in a subgroup give intervals too wide to read
FIGURES = ("roc_auc", "pr_auc", "sensitivity", "specificity")


def subgroup_scores(
    y, p, pred, task: str, names: list[str], patients, groups, column: str, cfg: EvaluateConfig
) -> dict:
    """Macro figures per subgroup (labels averaged), groups under MIN_SAMPLES counted but not scored, and the largest
    ROC AUC gap with whether the two subgroups' intervals overlap."""
    groups = np.array(["(missing)" if v is None or v != v else str(v) for v in groups], dtype=object)
    out: dict = {"column": column, "min_samples": MIN_SAMPLES, "groups": {}}
    for g in sorted(set(groups)):
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


def subgroup_text(sub: dict) -> str:
    """The largest gap in words."""
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
