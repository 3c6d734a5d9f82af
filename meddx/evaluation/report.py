"""`evaluate_run`: a run folder's predictions to metrics.json, figures, and the report sections (`sections.py`)
rendered by jinja2 templates to report.md and a self-contained report.html."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from statistics import NormalDist

import numpy as np

from meddx.atomic import write_text
from meddx.config import EvaluateConfig
from meddx.errors import ConfigError, DataError
from meddx.evaluation.calibration import scaled_for_figures
from meddx.evaluation.decision import decision_curves
from meddx.evaluation.evaluation import decisions, evaluate_arrays
from meddx.evaluation.intervals import patient_counts
from meddx.evaluation.new_labels import NUMBERING
from meddx.evaluation.plots import write_figures
from meddx.evaluation.scores import competition_for
from meddx.evaluation.sections import report_context
from meddx.evaluation.subgroups import NOT_LISTED, subgroup_scores
from meddx.evaluation.training_summary import collapse_record
from meddx.run import DATA, PREDICTIONS, Run, read_json, split_suffix


def _arrays(run: Run, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    df = run.predictions(split)
    names = run.label_names
    return (
        df[names].to_numpy(np.float64),
        df[[f"p_{n}" for n in names]].to_numpy(np.float64),
        df["patient_id"].to_numpy(),
    )


SMALL_SPLIT = 30  # patients: below this an AUC interval is about +-0.1 or wider


SHIFT = 0.15  # sensitivity or specificity this much further from val's (and outside both intervals): it does not
# transfer (0.3 before: a specificity of 0.68 (0.62-0.74) on test against 0.98 of 135 on val went unsaid; audit)


def wilson(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion `share` of `n` (all of 0-1 when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    centre, half = share + z * z / (2 * n), z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def argmax_misses(result: dict) -> dict:
    """Multi-class: classes whose cases argmax seldom calls (VIRUS: 0.15 of them), however well their AUC ranks;
    their balanced accuracy is the macro sensitivity."""
    if result.get("task") != "multiclass":
        return {}
    per = result["model"]["per_label"]
    low = [f"{n} {v:.2f}" for n, m in per.items() if (v := m["sensitivity"].get("value")) is not None and v < 0.5]
    if not low:
        return {}
    return {
        "warning_argmax_misses": f"argmax calls fewer than half of the cases of {', '.join(low)} (its sensitivity): "
        "a class can rank well (ROC AUC) and still seldom be chosen over the others; the confusion matrix shows "
        "what it is taken for, and the macro sensitivity is the balanced accuracy"
    }


LOOSE = 0.1  # val's own interval this wide each side: val places the threshold only roughly


def val_patients(y_val: np.ndarray, patients: np.ndarray, names: list[str]) -> dict:
    """Per label, val's distinct patients with a positive and with a negative scan: what val's own figures rest on."""
    y, ids = np.asarray(y_val, np.float64), np.asarray(patients).astype(str)
    return {n: patient_counts(ids, y[:, j] >= 0.5, y[:, j] < 0.5)[:2] for j, n in enumerate(names)}


def threshold_shift(result: dict, split: str = "", val_counts: dict | None = None) -> dict:
    """A warning when, at the operating point chosen on val, this split's sensitivity or specificity lies far from
    val's (0.08 against 0.96), outside its interval (without intervals: on 100 patients or more) and outside val's
    own (Wilson, on val's positive or negative patients, `val_counts` per label, else its scans): its scores sit
    elsewhere, so the threshold does not transfer."""
    rule, found, loose = result["operating_point"]["rule"], [], False
    z = NormalDist().inv_cdf(0.5 + result.get("bootstrap", {}).get("ci", 0.95) / 2)
    for label, rows in (result.get("tradeoff") or {}).items():
        row = next((r for r in rows if r.get("rule") == rule), None)
        for i, (what, count) in enumerate((("sensitivity", "val_positives"), ("specificity", "val_negatives"))):
            val, test = (row or {}).get(f"val_{what}"), (row or {}).get(f"test_{what}")
            if val is None or test is None or abs(val - test) < SHIFT:
                continue
            ci = row.get(f"test_{what}_ci")
            beyond = not ci[0] <= val <= ci[1] if ci and None not in ci else result.get("n_patients", 0) >= 100
            n = min(row.get(count, np.inf), (val_counts or {}).get(label, (np.inf, np.inf))[i])
            low, high = wilson(val, n, z) if n < np.inf else (val, val)
            if beyond and not low <= test <= high:
                found.append(f"{label}: {what} {test:.2f} here against {val:.2f} on val")
                apart = ci and None not in ci and (ci[1] < low or ci[0] > high)  # val's size alone cannot explain it
                loose |= (high - low) / 2 > LOOSE and not apart
    if not found:
        return {}
    if split == "test" and loose:  # the run's own test split, and a val too small to place the threshold well
        why = (
            "the threshold chosen on val does not hold on the run's own test split, and val is small enough to be "
            "the cause (more val patients, or `meddx cv`, place it better)"
        )
    else:
        where = "the test split's" if split == "test" else "this data's"
        why = (
            f"{where} scores sit elsewhere than val's (another population, scanner or preprocessing), so the threshold "
            "does not transfer even where the AUC still ranks; a site using it needs a threshold chosen on its own "
            "labelled scans"
        )
    return {"warning_threshold_shift": f"at the operating point chosen on val ({rule}), {'; '.join(found)}: {why}"}


def _optimism_warnings(run: Run, split: str, n_patients: int) -> dict:
    """Why this split's figures may mislead: thresholds chosen on it, too few patients, scans unlike the training
    ones, copies of training images left out, or patients the model has seen."""
    out = {}
    if n_patients < SMALL_SPLIT:
        out["warning_small_split"] = (
            f"only {n_patients} patients in this split: its intervals are wide, and a difference between two models "
            "on it is rarely real (`meddx compare` tests one)"
        )
    val = read_json(run.path / DATA).get("sizes", {}).get("val", {}).get("patients")
    if val is not None and val < SMALL_SPLIT and split != "val":
        out["warning_small_val"] = (
            f"only {val} patients in val, where the operating point was chosen and training stopped: the threshold "
            "may not hold on other data (more val patients, or `meddx cv`, place it better)"
        )
    if split == "val":
        out["warning_same_split"] = (
            "thresholds were chosen on this same split: figures at the operating point are optimistic"
        )
    source = read_json(run.path / PREDICTIONS / f"{split}.data.json")
    if numbering := next((n for n in source.get("notes", []) if NUMBERING in n), None):
        out["warning_label_numbering"] = (
            f"{numbering}; if this data's 1 means the run's positive class instead, evaluate again with "
            "--positive-class 1: read the other way, every figure here would be the opposite (AUC 1 - AUC)"
        )
    domain = source.get("domain") or {}
    if domain.get("outside", 0) > max(0.05 * domain.get("checked", 0), 2):  # it flags ~1% of training-like scans
        why = "; ".join(f"{reason} ({n})" for reason, n in domain["reasons"])
        named = f"; e.g. {', '.join(domain['flagged'][:3])}" if domain.get("flagged") else ""
        out["warning_domain"] = (
            f"{domain['outside']} of {domain['checked']} scans checked fall outside the training scans' input domain "
            f"({why}{named}): the model may never have seen this kind of scan, so these figures say little about it"
        )
    return out | overlap_warnings(read_json(run.path / PREDICTIONS / f"{split}.leakage.json"))


def overlap_warnings(check: dict) -> dict:
    """What the check of new data against the run's training images found: copies left out, look-alikes kept."""
    out = {}
    if check.get("dropped"):
        out["warning_training_overlap"] = (
            f"{check['dropped']} of {check['files']} file(s) of this data are copies (identical or near-identical) "
            "of the run's train/val images: left out, the figures are on the rest (--stop-on-training-overlap stops)"
        )
    if unconfirmed := check.get("near_unconfirmed"):
        out["warning_unconfirmed_copies"] = (
            f"{unconfirmed} file(s) of this data look like the run's train/val images (perceptual hash), but those "
            "training files are not readable from here to confirm it (moved, or named relative to another folder): "
            "kept in the figures"
        )
    if volumes := check.get("resampled_volumes"):
        out["warning_resampled_copies"] = (
            f"{volumes} of {check['files']} volume(s) of this data look like the run's train/val volumes at another "
            f"depth or size ({check['resampled_volume_rule']}; e.g. {check['resampled_examples'][0]}): the same cases "
            "resampled, most likely, so these figures are optimistic; kept in the figures, since a match cannot be "
            "confirmed"
            + (
                " (evaluate on cases the model never saw, such as that file's test split: --data test=FILE)"
                if volumes > 0.1 * check["files"]
                else ""
            )
        )
    if (crops := check.get("cropped_images", 0)) >= max(2, 0.01 * check.get("files", 0)):  # one: the data text
        out["warning_cropped_copies"] = (
            f"{crops} of {check['files']} image(s) of this data look like the run's train/val images cropped and "
            f"resized ({check['cropped_rule']}; e.g. {check['cropped_examples'][0]}): the same scans, most likely "
            "(MedMNIST sets are cut from public collections), so these figures are optimistic; kept in the figures, "
            "since a match cannot be confirmed"
        )
    kept, own = check.get("files", 0) - check.get("dropped", 0), check.get("same_as_test", 0)
    if own and own >= 0.1 * kept:  # a few may be chance copies between collections; a tenth is the run's test again
        distinct = check.get("same_as_test_distinct", own)
        out["warning_own_test"] = (
            f"{'all' if own >= kept else f'{own} of'} {kept} {'sample' if kept == 1 else 'samples'} evaluated here "
            f"are the run's own test images, identical or re-saved ({distinct} distinct): these figures are not an "
            "external validation"
        )
    if shared := check.get("shared_patient_ids"):
        out["warning_shared_patients"] = (
            f"{shared} patient id(s) of this data also name patients the model trained or was tuned on: if they are "
            "the same people, these figures are optimistic (ids may also coincide across sources)"
        )
    return out


def _check_operating_point(run: Run, cfg: EvaluateConfig) -> None:
    """An operating point asked of a multi-class run, which has none to set, is an error (it was ignored)."""
    if run.task == "multiclass" and cfg.operating_point != run.config.evaluate.operating_point:
        raise ConfigError(
            f"operating point '{cfg.operating_point}': a multi-class run decides by argmax (its most probable class), "
            "so there is no threshold to set; operating points are for binary and multi-label runs"
        )


def _warnings(run: Run, split: str, result: dict, val_counts: dict) -> dict:
    """Every warning of one evaluation: what may make it optimistic, a threshold that does not transfer, classes
    argmax seldom calls."""
    shift = threshold_shift(result, split, val_counts)
    return _optimism_warnings(run, split, result["n_patients"]) | shift | argmax_misses(result)


def evaluate_run(
    run: Run | str | Path,
    split: str = "test",
    config: EvaluateConfig | None = None,
    name: str | None = None,
    groups: dict | None = None,
) -> dict:
    """Evaluate one split of a run (thresholds and temperature from val) and write metrics.json and the reports;
    `name` keeps an evaluation with other settings apart (metrics-<name>.json) from the split's own; `groups`
    ({"column", "values": {sample id: value}}) adds every figure per subgroup."""
    run = run if isinstance(run, Run) else Run(run)
    cfg = config or run.config.evaluate
    _check_operating_point(run, cfg)
    names = run.label_names
    if not (run.path / PREDICTIONS / f"{split}.csv").is_file():
        raise DataError(f"{run.path}: no predictions for split '{split}' ({PREDICTIONS}/{split}.csv)")
    y_val, p_val, patients_val = _arrays(run, "val")
    y, p, patients = _arrays(run, split)
    prior = run.train_prior()
    result = evaluate_arrays(y_val, p_val, y, p, patients, prior, run.task, names, cfg, split=split)
    competition = competition_for(run)
    if competition:  # e.g. the Tianchi track: the competition's score beside its baselines
        result[competition.name] = competition.score(y, p, names, prior=prior, seed=cfg.seed)
    result["evaluated_at"] = datetime.now().isoformat(timespec="seconds")
    result |= _warnings(run, split, result, val_patients(y_val, patients_val, names))
    result["collapse"] = collapse_record(run, result["collapse"])
    p, thresholds = scaled_for_figures(p, result, names, run.task)
    result["name"] = name or split
    suffix = split_suffix(name or split)  # the test split's report is the run's headline
    result["decision_curve"] = decision_curves(y, p, names)
    if groups:
        values = [groups["values"].get(i, NOT_LISTED) for i in run.predictions(split)["id"]]
        pred = decisions(p, run.task, thresholds)
        result["subgroups"] = subgroup_scores(
            y, p, pred, run.task, names, patients, values, groups["column"], cfg, groups.get("bands", 0)
        )
    figures = write_figures(
        y,
        p,
        decisions(p, run.task, thresholds),
        names,
        run.task,
        thresholds,
        result["calibration"]["per_label"],
        run.path / f"figures{suffix}",
        result["decision_curve"],
        patients,
        {n: m["roc_auc"] for n, m in result["model"]["per_label"].items()},
        split,
        run.negative_class,
    )
    write_text(run.path / f"metrics{suffix}.json", json.dumps(result, indent=2))
    context = report_context(run, result, figures)
    write_text(run.path / f"report{suffix}.md", render("report.md.j2", context))
    write_text(run.path / f"report{suffix}.html", render("report.html.j2", context))
    return result


@cache
def _environment(autoescape: bool):
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("meddx.evaluation", "templates"),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def render(template: str, context: dict) -> str:
    """A report template filled with the sections of `report_context` (HTML escaped, Markdown as is)."""
    return _environment(template.endswith(".html.j2")).get_template(template).render(**context)
