"""The report's sections as plain values (tables as header + rows), built once from metrics.json and the run; both
templates (Markdown and HTML) render this one context."""

from __future__ import annotations

from pathlib import Path

import yaml

from meddx.evaluation.calibration import calibration_lines
from meddx.evaluation.data_section import data_section
from meddx.evaluation.decision import decision_table
from meddx.evaluation.plan_section import plan_section
from meddx.evaluation.plots import figure_list
from meddx.evaluation.scores import competition_for, score_table
from meddx.evaluation.subgroups import FIGURES as SUBGROUP_FIGURES
from meddx.evaluation.subgroups import subgroup_text
from meddx.evaluation.training_summary import training_summary as _training_summary
from meddx.run import Run
from meddx.training.collapse import collapse_message

BASELINES = ("prior", "all_negative", "random", "majority")
HEADLINE = ("roc_auc", "pr_auc", "log_loss", "brier", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy")
TITLES = {
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "log_loss": "log loss",
    "brier": "Brier",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
    "accuracy": "accuracy",
    "mlogloss": "mlogloss",
    "exact_match": "exact match at the operating point",
}
INTERNAL_NOTE = (
    "This split comes from the same source as the training data: its figures are an upper bound for data from "
    "elsewhere (another hospital, scanner or population). `meddx evaluate RUN --data OTHER` measures that."
)
DECISION_HEADER = ["threshold probability", "net benefit: model", "treat all", "treat none"]
TRADEOFF_HEADER = ["rule", "threshold", "val sens", "val spec", "test sens", "test spec", "test PPV", "test NPV"]


def patients_text(result: dict, run: Run) -> str:
    """'274 patients'; for a run's own split of data without patient ids, that each sample counted as its own."""
    if run.data_info.get("patients_known", True) or result["split"] not in ("test", "val"):
        return f"{result['n_patients']} patients"
    return "no patient ids: each sample counted as its own patient"


def tradeoff_header(split: str) -> list[str]:
    """The trade-off table's header: val's figures where each threshold was chosen, then `split`'s with intervals
    (on val itself: 'val sens (chosen on)' then 'val sens', never the same name twice)."""
    chosen = [h + (" (chosen on)" if split == "val" and h.startswith("val ") else "") for h in TRADEOFF_HEADER]
    return [h.replace("test", split) for h in chosen]


def fmt(fig: dict | None, digits: int = 3) -> str:
    """'0.912 (0.871-0.944)' for a figure with an interval, 'n/a' when undefined."""
    if not fig or fig.get("value") is None:
        return "n/a"
    s = f"{fig['value']:.{digits}f}"
    if "p_exact" in fig:  # a perfect ranking on too few samples for any resample to differ
        return s + f" (no interval; chance p {fig['p_exact']:.2g})"
    if "ci_none" in fig:  # a PR AUC of too few patients of a class, or a proportion no resample changes
        return s + f" (no interval: {fig['ci_none']})"
    return s + (f" ({fig['ci_low']:.{digits}f}-{fig['ci_high']:.{digits}f})" if "ci_low" in fig else "")


def warnings_of(result: dict) -> list[str]:
    """The plain-words warnings a reviewer must see first."""
    out = []
    ev, tr = result["collapse"]["evaluation"], result["collapse"].get("training") or {}
    if ev["collapsed"] and result.get("split", "test") not in ("test", "val"):  # new data: the scans, most likely
        out.append(
            f"predictions are (nearly) the same for every scan of this data on {', '.join(ev['flat_labels'])}: "
            "check its scans against the training ones first (the domain check; another scaling, bit depth or "
            "orientation), then the model on its own test split"
        )
    elif ev["collapsed"]:
        out.append(collapse_message(ev))
    elif ev["flat_labels"]:
        out.append(f"near-constant predictions on {', '.join(ev['flat_labels'])}")
    if tr.get("collapsed_epochs"):
        out.append(f"collapse during training in epoch(s) {tr['collapsed_epochs']}")
    per_label = result["model"]["per_label"]
    undefined = [n for n in result["beats_prior"] if per_label[n]["roc_auc"]["value"] is None]
    if undefined:
        out.append(
            f"ROC AUC undefined for {', '.join(undefined)}: this data holds one class only (or no known label) there, "
            "so nothing can be ranked; its sensitivity or specificity still says how the positives or negatives fared"
        )
    losers = [n for n, ok in result["beats_prior"].items() if not ok and n not in undefined]
    if losers:
        out.append(
            "does not beat the prior baseline (AUC interval not above 0.5, or for a few patients its exact chance not "
            "small, or PR AUC not above prevalence): " + ", ".join(losers)
        )
    keys = ("warning_label_numbering", "warning_same_split", "warning_small_split", "warning_small_val",
            "warning_domain", "warning_training_overlap", "warning_unconfirmed_copies", "warning_resampled_copies",
            "warning_cropped_copies", "warning_own_test", "warning_shared_patients", "warning_threshold_shift",
            "warning_argmax_misses")  # fmt: skip
    out += [result[k] for k in keys if k in result]
    return out


def _summary_rows(result: dict) -> list[tuple[str, dict]]:
    """(row name, metrics block) for the model and each baseline."""
    baselines = [b for b in BASELINES if b in result["baselines"]]  # multi-class has no all-negative
    return [("model", result["model"])] + [(f"baseline: {b}", result["baselines"][b]) for b in baselines]


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


HARD = {"baseline: all_negative": "n/a (p = 0)", "baseline: majority": "n/a (p = 0 or 1)"}


def _cell(row: str, key: str, figure: dict | None) -> str:
    """A table cell; a log loss of hard 0/1 probabilities (all-negative, majority) is none: the clip's -log."""
    return HARD[row] if row in HARD and "log" in key else fmt(figure)


def _label_section(result: dict, name: str) -> dict:
    """One label's table (model and baselines), whether it beats the prior, and its operating-point trade-off rows."""
    rows = [
        [row, *(_cell(row, k, block["per_label"][name].get(k)) for k in HEADLINE)]
        for row, block in _summary_rows(result)
    ]
    tradeoff = [
        [
            r["rule"],
            f"{r['threshold']:.4g}",
            f"{r['val_sensitivity']:.3f}",
            f"{r['val_specificity']:.3f}",
            *(_with_ci(r, f"test_{k}") for k in ("sensitivity", "specificity", "ppv", "npv")),
        ]
        for r in (result.get("tradeoff") or {}).get(name, [])
    ]
    curve = (result.get("decision_curve") or {}).get(name)
    return {
        "name": name,
        "header": ["", *(TITLES[k] for k in HEADLINE)],
        "rows": rows,
        "beats_prior": result["beats_prior"][name] or result["model"]["per_label"][name]["roc_auc"]["value"] is None,
        "tradeoff": tradeoff,
        "decision": {
            "text": _decision_text(curve, result["split"], result["beats_prior"][name]),
            "rows": decision_table(curve),
        }
        if curve
        else None,  # fmt: skip
    }


def _with_ci(row: dict, key: str) -> str:
    """A trade-off figure with its interval when the evaluation bootstrapped."""
    value = _num(row.get(key))
    if f"{key}_ci" in row and row[f"{key}_ci"] is None:  # no resample changed it: one patient's images, most likely
        return value + " (no interval: every resample the same)"
    return value + (" ({:.3f}-{:.3f})".format(*row[f"{key}_ci"]) if row.get(f"{key}_ci") else "")


def _subgroup_section(result: dict) -> dict | None:
    """Subgroups of one manifest column: figures with intervals per value, and the largest gap in words."""
    sub = result.get("subgroups")
    if not sub:
        return None
    labels = next((list(r["label_roc_auc"]) for r in sub["groups"].values() if "label_roc_auc" in r), [])[:8]
    macro = "macro " if labels else ""
    header = ["subgroup", "samples", "patients", *(macro + TITLES[k] for k in SUBGROUP_FIGURES)]
    header += [f"ROC AUC {n}" for n in labels]  # each label's, where a macro gap can hide one
    width = len(SUBGROUP_FIGURES) + len(labels)
    rows = [
        [g, str(r["samples"]), str(r["patients"]),
         *([*(fmt(r["figures"][k]) for k in SUBGROUP_FIGURES), *(fmt(r["label_roc_auc"][n]) for n in labels)]
           if "figures" in r else ["unknown" if "unknown" in r.get("unscored", "") else "too few"] * width)]
        for g, r in sub["groups"].items()
    ]  # fmt: skip
    return {"column": sub["column"], "text": subgroup_text(sub), "header": header, "rows": rows}


def _decision_text(curve: dict, split: str, beats_prior: bool = True) -> str:
    """The decision curve in words; for a model that does not beat the prior, a gain at a few thresholds is chance."""
    useful = curve["useful_range"]
    span = f"from {useful[0]:.0%} to {useful[1]:.0%}" if useful else ""
    if useful and not curve.get("useful_contiguous", True):
        n, total = curve["useful_points"], len(curve["thresholds"])
        span = f"at {n} of {total} points between {useful[0]:.0%} and {useful[1]:.0%}"
    where = (
        f"acting on the model adds net benefit over treating everyone and no one for threshold probabilities {span}"
        if useful
        else "acting on the model adds no net benefit over treating everyone or no one at any threshold probability"
    )
    chance = "; the model does not beat the prior here, so such gains are likely chance"
    chance = chance if useful and not beats_prior else ""
    return f"Decision curve ({split}, prevalence {curve['prevalence']:.1%}): {where} (point estimates{chance})."


def _overall_section(result: dict) -> dict:
    """Macro, overall and (multi-label) micro figures of the model and each baseline."""
    per = result["model"]["per_label"]
    scored = sum(per[n]["roc_auc"].get("value") is not None for n in per)
    of = f" ({scored} of {len(per)} labels)" if scored < len(per) else ""  # undefined labels are left out
    keys = [f"macro ROC AUC{of}", "macro PR AUC"] + [TITLES[k] for k in result["model"]["overall"]]
    micro = bool(result["model"]["micro"])
    if micro:
        keys += ["micro ROC AUC", "micro PR AUC"]
    rows = []
    for row, block in _summary_rows(result):
        values = [block["macro"]["roc_auc"], block["macro"]["pr_auc"]] + [
            block["overall"][k] for k in result["model"]["overall"]
        ]
        if micro:
            values += [block["micro"].get("roc_auc"), block["micro"].get("pr_auc")]
        rows.append([row, *(_cell(row, k.lower(), v) for k, v in zip(keys, values))])
    return {"header": ["", *keys], "rows": rows}


def transfer_summary(run: Run) -> str:
    """Where the weights came from and how they were fine-tuned (frozen blocks, unfreezing, the backbone's rate)."""
    t, init, weights = run.config.train, run.training.get("init_from") or {}, run.config.model.weights
    if not (t.init_from or weights):
        return ""
    made = f", a {init['model']} encoder" if init.get("model") else ""
    out = f"; initialised from {t.init_from}{made}" if t.init_from else f"; pretrained weights {weights}"
    out += f" ({init['loaded']} tensors, a new head)" if init.get("loaded") else ""
    out += f"; first conv adapted ({'; '.join(init['adapted'])})" if init.get("adapted") else ""
    if t.finetune_depth != "all":
        n = t.finetune_depth
        out += "; the backbone frozen, the head trained" if n == 0 else f"; the head and the last {n} block(s) trained"
        out += f", one more block unfrozen every {t.unfreeze_every} epoch(s)" if t.unfreeze_every else ""
    return out + (f"; backbone learning rate {t.backbone_lr_mult:g} x the head's" if t.backbone_lr_mult != 1 else "")


def _model_section(run: Run) -> dict:
    training = run.training
    if run.is_sequence:
        model_input = f"input token sequences padded to {run.vocab.max_len}, vocabulary {run.vocab.size}"
    else:
        prep = run.preprocess
        model_input = (
            f"input {prep.channels} x {prep.image_size[0]} x {prep.image_size[1]}, normalisation {prep.normalize}"
        )
    summary = _training_summary(training) + transfer_summary(run)
    return {
        "name": run.architecture(),
        "input": model_input,
        "training": summary,
        "config": yaml.safe_dump(run.config.model_dump(mode="json"), sort_keys=False),
    }


def report_context(run: Run, result: dict, figures: dict[str, Path]) -> dict:
    """Every section of the report as plain values; both templates render this one context."""
    info, cal, names = run.data_info, result["calibration"], result["labels"]
    b = result["bootstrap"]
    competition = competition_for(run)
    comp = None
    if competition and competition.name in result:
        header, rows = score_table(result[competition.name], competition.keys(result[competition.name]))
        comp = {"title": competition.title, "note": competition.note, "header": header, "rows": rows}
    return {
        "name": run.path.name,
        "split": result["split"],
        "n_samples": result["n_samples"],
        "n_patients": patients_text(result, run),
        "rule": result["operating_point"]["rule"],
        "intervals": (
            f"{b['resamples']} bootstrap resamples of patients, {b['ci']:.0%} intervals (a proportion of 0 or 1, "
            "where every resample agrees: its exact binomial interval)"
            if b["resamples"]
            else "no bootstrap intervals (bootstrap 0)"
        ),
        "warnings": warnings_of(result),
        "internal": INTERNAL_NOTE if result["split"] in ("test", "val") else "",
        "data": data_section(run, result, info),
        "model": _model_section(run),
        "plan": plan_section(run),
        "subgroups": _subgroup_section(result),
        "competition": comp,
        "labels": [_label_section(result, n) for n in names],
        "tradeoff_header": tradeoff_header(result["split"]),
        "decision_header": DECISION_HEADER,
        "overall": _overall_section(result),
        "calibration": calibration_lines(cal, names, result["split"]),
        "figures": figure_list(figures, result),
    }
