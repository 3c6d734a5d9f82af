"""A `meddx cv` folder's out-of-fold figures in one line for a terminal, and a warning when they lose to the prior."""

from __future__ import annotations

import json
from pathlib import Path


def oof_losses(cv_json: dict) -> tuple[float, float]:
    """A cv.json's out-of-fold (mean) log loss and the prior's on the same rows."""
    key = "log_loss" if cv_json.get("task") == "multiclass" else "mlogloss"
    return cv_json["model"][key], cv_json["baselines"]["prior"][key]


def cv_summary(out: Path) -> tuple[str, str | None]:
    """(the line, a warning or None) from cv.json: log loss beside the prior's (and the all-zero one's for several
    labels, the competition's baseline), mean AUC, accuracy or exact match; round 2's score parts."""
    r = json.loads((Path(out) / "cv.json").read_text())
    m, b = r["model"], r["baselines"]
    if r.get("task") == "multiclass":
        loss, prior = m["log_loss"], b["prior"]["log_loss"]
        line = (
            f"{out}: out-of-fold log loss {loss:.4f} (prior {prior:.4f}); accuracy {m['accuracy']:.4f}, balanced "
            f"accuracy {m['balanced_accuracy']:.4f}; mean one-vs-rest AUC {m['mean_roc_auc']:.4f}"
        )
    else:
        score = ""
        if {"score", "regions_mlogloss", "types_mlogloss"} <= set(m):  # round 2: the score is not 1 - mlogloss
            parts = f"0.6 x (1 - regions mlogloss {m['regions_mlogloss']:.4f}) + 0.4 x (1 - types mlogloss "
            score = f" over all labels; score {m['score']:.4f} = {parts}{m['types_mlogloss']:.4f})"
        one = r.get("labels") == 1  # a binary task's mean log loss is its log loss, its exact match its accuracy
        name, match = ("log loss", "accuracy at 0.5") if one else ("mlogloss", "exact match")
        loss, prior = m["mlogloss"], b["prior"]["mlogloss"]
        zero = "" if one else f", all-zero {b['all_zero']['mlogloss']:.4f}"  # a binary all-zero is only its clip
        line = (
            f"{out}: out-of-fold {name} {loss:.4f}{score}; prior "
            f"{prior:.4f}{zero}; mean AUC {m['mean_roc_auc']:.4f}, {match} {m['exact_match']:.4f}"
        )
    if plan := r.get("plan"):
        size = f" {plan['image_size']} px" if plan.get("image_size") else ""
        chose = ", ".join(plan.get("planned") or [])
        why = f"; planned by meddx: {chose} (why: {Path(out) / 'plan.json'})" if chose else " (every field yours)"
        line += f"\nrecipe: {plan['model']}{size}, up to {plan['max_epochs']} epochs a fold{why}"
        if plan.get("over_budget"):
            est, budget = plan["estimated_minutes"], plan["budget_minutes"]
            line += f"\nthe plan estimated {est:.1f} min for the {budget:g}-minute budget: {plan['over_budget']}"
    line += _pseudo_line(Path(out), r.get("runs", []))
    if reused := r.get("reused"):
        line += f"\n{len(reused)} of {len(r.get('runs', []))} folds trained by an earlier call: reused"
    warning = None
    loss, prior = oof_losses(r)
    if loss >= prior:
        ranks = m.get("mean_roc_auc", 0.5) >= 0.7
        why = "they rank the cases, so their probabilities are off (too few epochs, class weights)" if ranks else (
            "they did not learn what separates the classes")  # fmt: skip
        warning = (
            f"out-of-fold log loss {loss:.4f} is no better than the prior's {prior:.4f} (predicting the training "
            f"share): {why}; each fold's report.html says more"
        )
    return line, warning


def _pseudo_line(out: Path, runs: list[str]) -> str:
    """Each fold's count of unlabelled reports added with pseudo-labels (from its data.json notes), or ''."""
    counts = []
    for run in runs:
        try:
            notes = json.loads((out / run / "data.json").read_text()).get("notes") or []
        except (OSError, ValueError):
            continue
        note = next((n for n in notes if "pseudo-labels" in n), None)
        if note:
            counts.append(f"{run} {note.split(' unlabelled')[0]}")
    return f"\npseudo-labelled reports added to train: {', '.join(counts)} (each fold's data.json)" if counts else ""
