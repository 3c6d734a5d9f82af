"""Choosing between planned candidates on validation only: each candidate's val ROC AUC (macro over labels) from the
mean of its seeds, with a patient-level bootstrap interval, and a paired bootstrap of its difference from the best.
A candidate whose difference interval holds 0 is as good as the best; the cheapest such candidate wins."""

from __future__ import annotations

import warnings

import numpy as np
from torch.utils.data import DataLoader

from meddx.config import RunConfig, save_config
from meddx.evaluation.ensemble import average_predictions
from meddx.evaluation.intervals import paired_figures
from meddx.evaluation.metrics import on_known, roc_auc
from meddx.models.output import predict_proba
from meddx.models.tta import VIEWS, ShiftAverage
from meddx.run import CONFIG, Run
from meddx.training.plan import Plan, Planner

RESAMPLES, CI, SEED = 2000, 0.95, 0
CLEARLY_CHEAPER = 0.85  # a pilot's seconds per epoch vary by about 10%: cheaper means under 85% of the other's cost


def macro_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC AUC per weight row, averaged over the labels (columns) that have both classes (unknown labels left out)."""
    per_label = np.column_stack([on_known(roc_auc, y[:, j], p[:, j], w) for j in range(y.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample without both classes in any label: NaN
        return np.nanmean(per_label, axis=1)


def _interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):  # no resample holds both classes: nothing can be told apart
        return float("nan"), float("nan")
    lo, hi = np.quantile(finite, [(1 - CI) / 2, (1 + CI) / 2])
    return float(lo), float(hi)


def compare_predictions(
    y: np.ndarray,
    patients: np.ndarray,
    preds: dict[str, np.ndarray],
    costs: dict[str, float],
    cost_name: str = "seconds_per_epoch",
) -> dict:
    """The verdict on candidates judged on the same val samples: a row per candidate, in the given order (the rules'
    candidate first), with AUC, interval, paired difference from the best and its interval, cost; and the chosen one
    with the reason: among those as good as the best, the first unless another is clearly cheaper."""
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    paired = paired_figures(y, patients, list(preds.values()), RESAMPLES, SEED)  # the draw in bounded chunks
    aucs = {name: figures["roc_auc"] for name, figures in zip(preds, paired)}
    best = max(aucs, key=lambda n: aucs[n][0])
    rows = []
    for name in preds:
        diff = aucs[name][1:] - aucs[best][1:]
        lo, hi = _interval(aucs[name][1:])
        dlo, dhi = _interval(diff) if name != best else (0.0, 0.0)
        tie = not (dlo > 0 or dhi < 0)  # an interval that holds 0 (or none at all): not told apart
        gap = float(aucs[name][0] - aucs[best][0])
        rows.append(
            {"candidate": name, "val_auc": round(float(aucs[name][0]), 4), "ci": [round(lo, 4), round(hi, 4)],
             "diff_from_best": round(gap, 4), "diff_ci": [round(dlo, 4), round(dhi, 4)],
             cost_name: round(costs[name], 2), "as_good_as_best": tie}
        )  # fmt: skip
    tied = [r["candidate"] for r in rows if r["as_good_as_best"]]
    chosen = tied[0]
    for name in tied[1:]:
        if costs[name] < CLEARLY_CHEAPER * costs[chosen]:
            chosen = name
    if chosen != best:
        reason = (
            f"within the paired {CI:.0%} interval of the best ({best}, {aucs[best][0]:.4f}) and "
            + ("clearly cheaper" if costs[chosen] < CLEARLY_CHEAPER * costs[best] else "the rules' own choice")
            + ": a tie goes to the cheaper or simpler model"
        )
    elif len(rows) == 1 or all(costs[chosen] <= costs[r["candidate"]] / CLEARLY_CHEAPER for r in rows):
        reason = f"best on val (AUC {aucs[best][0]:.4f}), not dearer than the others"
    else:
        reason = f"best on val (AUC {aucs[best][0]:.4f}); each cheaper one is worse by more than the paired interval"
    return {"metric": "val ROC AUC, macro over labels, mean of each candidate's seeds", "resamples": RESAMPLES,
            "unit": "patient", "rows": rows, "chosen": chosen, "reason": reason}  # fmt: skip


def compare_runs(candidates: dict[str, list[Run]], costs: dict[str, float]) -> dict:
    """`compare_predictions` on the val predictions of each candidate's runs (all on one split)."""
    frames = {name: average_predictions(runs, "val") for name, runs in candidates.items()}
    first = next(iter(candidates.values()))[0]
    ref = next(iter(frames.values()))
    cols = [f"p_{n}" for n in first.label_names]
    preds = {name: f.set_index("id").loc[ref["id"], cols].to_numpy() for name, f in frames.items()}
    return compare_predictions(ref[first.label_names].to_numpy(), ref["patient_id"].to_numpy(), preds, costs)


def shifted_probabilities(run: Run, records: list) -> np.ndarray:
    """(N, L) probabilities of the run's model averaged over shifted copies of each record's image."""
    loader = DataLoader(run.dataset(records, preload=None), batch_size=256)
    return predict_proba(ShiftAverage(run.model, run.task).eval(), loader, run.task, len(run.label_names))


def choose_tta(run: Run) -> dict:
    """Test-time augmentation judged on val like the plan's other candidates: the run's val predictions against the
    same model averaged over shifted copies (`meddx.models.tta`), paired on the same patients; a tie keeps it off (one
    forward pass per image instead of five). When on, the run's config says so and its val and test predictions are
    written again with it."""
    frame = run.predictions("val")
    by_id = {r.id: r for r in run.records("val")}
    if set(frame["id"]) - set(by_id):
        return {"chosen": "off", "reason": "val images no longer readable: not tried"}
    records = [by_id[i] for i in frame["id"]]
    preds = {"off": frame[[f"p_{n}" for n in run.label_names]].to_numpy(), "on": shifted_probabilities(run, records)}
    verdict = compare_predictions(
        frame[run.label_names].to_numpy(), frame["patient_id"].to_numpy(), preds, {"off": 1.0, "on": float(VIEWS)},
        "passes_per_image",
    )  # fmt: skip
    if verdict["chosen"] == "on":
        cfg = run.config.model_copy(deep=True)
        cfg.model.tta = True
        save_config(cfg, run.path / CONFIG)
        run.write_predictions("val", records, preds["on"])
        test = run.records("test")
        run.write_predictions("test", test, shifted_probabilities(run, test))
    return verdict


def decide_tta(run: Run, cfg: RunConfig, plan: Plan) -> Run:
    """Test-time augmentation on or off for a planned run (`choose_tta`), recorded in the plan as decided on
    validation; skipped when the user set `model.tta`, the plan does not select, or the run reads token sequences."""
    planner = Planner(cfg, plan)
    if run.is_sequence or not cfg.plan.select or "model.tta" in planner.user:
        return run
    plan.tta = choose_tta(run)
    on = plan.tta["chosen"] == "on"
    planner.choose("model.tta", on, plan.tta["reason"] + ("" if on else ": off"), "validation")
    return Run(run.path)
