"""Subgroups: every headline figure per value of a manifest column (sex, age band, site, view, scanner) with its
patient-bootstrap interval, and the largest gap between subgroups flagged."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from meddx.config import EvaluateConfig
from meddx.data.manifest import column_values
from meddx.errors import ConfigError, DataError, NotInData
from meddx.evaluation.intervals import score_with_intervals

MIN_SAMPLES = 20  # fewer samples in a subgroup give intervals too wide to read
MIN_PATIENTS = 5  # a patient bootstrap over fewer patients gives intervals of no width (one patient: a point)
MANY_VALUES = 8  # a numeric column of more distinct values (age in years) gets a hint to band it
MAX_AGE = 125  # years: an age column's values outside 0-125 are typing errors or another unit
MISSING = "(missing)"
NOT_LISTED = "(not in the manifest)"  # a sample whose row the manifest no longer holds (edited since the run)
FIGURES = ("roc_auc", "pr_auc", "sensitivity", "specificity")


def subgroup_column(
    table: str | dict, by: str | None, image_column: str | None, runs_column: bool = False
) -> dict | None:
    """`--by COLUMN[:N]`: each sample's value (N quantile bands of a number); new data lacking the run's image column
    (`runs_column`) stops naming the option that sets this data's, as its reader does."""
    if not by:
        return None
    try:
        return _subgroup_column(table, by, image_column)
    except NotInData as e:
        if runs_column and e.field == "image_column":
            raise DataError(f"{e} (--image-column names this data's)") from None
        raise


def _subgroup_column(table: str | dict, by: str, image_column: str | None) -> dict:
    column, sep, bands = by.rpartition(":")
    try:  # the column as named (its name may hold ':')
        return {"column": by, "values": column_values(table, by, image_column), "bands": 0}
    except DataError:
        if not sep:
            raise
        if not bands.isdigit() or int(bands) < 2:
            raise ConfigError(f"--by {by}: the bands after ':' must be a whole number, 2 or more (age:4)") from None
    return {"column": column, "values": column_values(table, column, image_column), "bands": int(bands)}


def subgroup_scores(
    y, p, pred, task: str, names: list[str], patients, values, column: str, cfg: EvaluateConfig, bands: int = 0
) -> dict:
    """Macro figures per subgroup (labels averaged), groups under MIN_SAMPLES or MIN_PATIENTS counted but not scored,
    the largest ROC AUC gap with whether the two subgroups' intervals overlap; `bands`: quantile bands of a numeric
    column."""
    groups, order, how = subgroups_of(list(values), bands)
    out: dict = {"column": column, "min_samples": MIN_SAMPLES, "min_patients": MIN_PATIENTS, "groups": {}, **how}
    if re.search(r"(^|[^A-Za-z])(age|Age|AGE)|[a-z]Age", column):  # age, Patient Age, PatientAge; not image, stage
        ages = np.array([_number("" if v is None or v != v else str(v).strip()) for v in values])
        out["implausible_ages"] = int(((ages < 0) | (ages > MAX_AGE)).sum())
    if not how["bands"]:  # a patient's age may cross a band between visits; a sex or site should not change
        per_patient = pd.Series(groups).groupby(np.asarray(patients, dtype=str)).nunique()
        out["patients_in_several_groups"] = int((per_patient > 1).sum())
    for g in order:
        m = groups == g
        row = {"samples": int(m.sum()), "patients": int(len(set(np.asarray(patients)[m])))}
        enough = m.sum() >= MIN_SAMPLES and row["patients"] >= MIN_PATIENTS
        if not enough:
            row["unscored"] = f"fewer than {MIN_SAMPLES} samples or {MIN_PATIENTS} patients"
        elif np.isnan(y[m]).all():  # new data lacking the label's column: nothing to score, not 'one class'
            row["unscored"] = "every label unknown"
        else:  # a group of one class (every `bacteria` case positive) keeps its sensitivity or specificity
            row["one_class"] = not 0 < np.nansum(y[m]) < np.sum(~np.isnan(y[m]))
            figures = score_with_intervals(y[m], p[m], pred[m], task, names, np.asarray(patients)[m], cfg)
            row["figures"] = {k: figures["macro"][k] for k in FIGURES}
            if len(names) > 1:  # a macro gap can hide one label's (Viral: F 0.833, M 0.738 under a 0.022 macro gap)
                row["label_roc_auc"] = {n: figures["per_label"][n]["roc_auc"] for n in names}
        out["groups"][g] = row
    rows = out["groups"].items()
    if gap := _largest_gap({g: r["figures"]["roc_auc"] for g, r in rows if "figures" in r}):
        out["largest_gap"] = gap
    per_label = [(n, {g: r["label_roc_auc"][n] for g, r in rows if "label_roc_auc" in r}) for n in names]
    label_gaps = [{**gap, "label": n} for n, scored in per_label if (gap := _largest_gap(scored))]
    if label_gaps:
        out["largest_label_gap"] = {**max(label_gaps, key=lambda gap: gap["gap"]), "of_labels": len(label_gaps)}
    return out


def _largest_gap(scored: dict[str, dict]) -> dict | None:
    """The highest and lowest ROC AUC of the groups that have one, and whether their intervals overlap."""
    scored = {g: f for g, f in scored.items() if f.get("value") is not None}
    if len(scored) < 2:
        return None
    hi, lo = max(scored, key=lambda g: scored[g]["value"]), min(scored, key=lambda g: scored[g]["value"])
    a, b = scored[hi], scored[lo]
    overlap = None if "ci_low" not in a or "ci_low" not in b else bool(b["ci_high"] >= a["ci_low"])
    return {"metric": "roc_auc", "high": hi, "low": lo, "gap": a["value"] - b["value"], "intervals_overlap": overlap,
            "values": [a["value"], b["value"]]}  # fmt: skip


def subgroups_of(values: list, bands: int = 0) -> tuple[np.ndarray, list[str], dict]:
    """Each sample's subgroup, the subgroups in order (missing last) and how they were made. Spellings of one value
    are one group (F and f, 1 and 01), named as most rows write it; samples the manifest no longer lists are a group
    apart. With `bands`, numbers (90+ as 90, DICOM ages such as 045Y in years) fall in that many quantile bands named
    by their range (`41 to 56`; ties may leave fewer), other text in groups of its own."""
    text = pd.Series(values, dtype=object).map(lambda v: "" if v is None or v != v else str(v).strip())
    numbers = text.map(_number)
    key = text.where(numbers.isna(), numbers.map(lambda v: f"{v:.10g}")).str.casefold()
    named = text.groupby(key).agg(lambda spellings: spellings.value_counts().index[0])
    groups = np.where(text == "", MISSING, key.map(named)).astype(object)
    merged = int((text[text != ""].groupby(key).nunique() > 1).sum())
    how = {"bands": 0, "numeric_values": int(numbers.nunique()), "asked_bands": bands, "merged_spellings": merged}
    how["not_listed"] = int((text == NOT_LISTED).sum())
    if bands and numbers.notna().sum():
        cut = pd.qcut(numbers[numbers.notna()], bands, labels=False, duplicates="drop")
        for digits in (3, 6, 10):  # as short as keeps the bands' names apart
            names = {b: _band_name(numbers[cut.index[cut == b]], digits) for b in sorted(set(cut))}
            if len(set(names.values())) == len(names):
                break
        if len(set(names.values())) >= 2:
            groups[cut.index] = [names[b] for b in cut]
            how.update(bands=len(names), other_values=int((text != "").sum() - len(cut) - how["not_listed"]))
    return groups, _in_order(groups, numbers), how


def _number(text: str) -> float:
    """A value as a number: 45, 45.5, 90+ (as 90), a DICOM age string (045Y, 006M, 010W, 020D, in years); else NaN."""
    if m := re.fullmatch(r"(\d+)([DWMY])", text):
        return int(m.group(1)) / {"D": 365.25, "W": 52.1775, "M": 12, "Y": 1}[m.group(2)]
    value = pd.to_numeric(text.removesuffix("+").strip(), errors="coerce") if text else np.nan
    return float(value) if np.isfinite(value) else np.nan


def _band_name(values: pd.Series, digits: int) -> str:
    lo, hi = (f"{v:.0f}" if float(v).is_integer() else f"{v:.{digits}g}" for v in (values.min(), values.max()))
    return lo if lo == hi else f"{lo} to {hi}"


def _in_order(groups: np.ndarray, numbers: pd.Series) -> list[str]:
    """Groups by number (a band by its lower end), then text, then missing."""
    first = pd.Series(numbers.to_numpy(), index=groups).groupby(level=0).min()

    def key(g: str) -> tuple:
        v = first.get(g, np.nan)
        return (g == MISSING, g == NOT_LISTED, v != v, 0.0 if v != v else v, g)

    return sorted(set(groups), key=key)


def subgroup_text(sub: dict) -> str:
    """How subgroups were made, the largest gap in words, and patients whose rows fall in more than one subgroup."""
    column, shared = sub["column"], sub.get("patients_in_several_groups", 0)
    if sub.get("bands"):
        fewer = (
            f" (ties left {sub['bands']} of the {sub['asked_bands']} asked)"
            if sub["bands"] < sub["asked_bands"]
            else ""
        )
        other = f"; {sub['other_values']} non-numeric value(s) in groups of their own" if sub["other_values"] else ""
        how = f"{column} cut into {sub['bands']} bands of about equal size{fewer}{other}. "
    elif sub.get("asked_bands") and not sub.get("numeric_values"):
        how = f"{column} holds no numbers to cut into bands: one subgroup per value. "
    elif sub.get("asked_bands"):
        how = f"{column}: ties (or too few numbers) leave fewer than 2 bands, so one subgroup per value. "
    elif sub.get("numeric_values", 0) > MANY_VALUES:
        how = (
            f"{column} holds {sub['numeric_values']} numbers, one subgroup each: --by {column}:4 cuts it into 4 bands. "
        )
    else:
        how = ""
    note = (
        f" {shared} patient(s) have rows in more than one subgroup of {column}; check the column, or read the gap"
        " with care: such subgroups are not independent."
        if shared
        else ""
    )
    groups = sub.get("groups", {})
    total = sum(g["samples"] for g in groups.values())
    if total >= 2 * MIN_SAMPLES and len(groups) > total / 2:
        how += f"{column} holds nearly one value per sample ({len(groups)} for {total}): no groups to compare. "
    if sub.get("merged_spellings"):
        how += "Values written differently (case, leading zeros) are one subgroup. "
    if sub.get("implausible_ages"):
        how += (
            f"{sub['implausible_ages']} value(s) of {column} lie outside 0-{MAX_AGE} years (a typing error, or "
            "months?): they are grouped as written; check the manifest. "
        )
    if sub.get("not_listed"):
        how += f"{sub['not_listed']} sample(s) are no longer in the manifest (edited since?): a group apart. "
    return how + _gap_text(sub) + note


def _gap_text(sub: dict) -> str:
    gap = sub.get("largest_gap")
    if not gap:
        return (
            f"Fewer than two subgroups of {sub['column']} with {sub['min_samples']} samples, "
            f"{sub.get('min_patients', 1)} patients and both classes."
        )
    g = sub["groups"]
    macro = "macro " if "largest_label_gap" in sub else ""
    text = (
        f"Largest gap in {macro}ROC AUC: {gap['high']} {g[gap['high']]['figures']['roc_auc']['value']:.3f} against "
        f"{gap['low']} {g[gap['low']]['figures']['roc_auc']['value']:.3f} ({gap['gap']:.3f}); {_verdict(gap)}."
    )
    if one := sub.get("largest_label_gap"):
        high, low = one["values"]
        apart = {**VERDICTS, False: "their intervals do not overlap, but it is the largest of several: check it anew"}
        text += (
            f" Largest gap of one label (the largest of {one.get('of_labels', '?')} labels' gaps): {one['label']}, "
            f"{one['high']} {high:.3f} against {one['low']} {low:.3f} ({one['gap']:.3f}); "
            f"{apart[one['intervals_overlap']]}."
        )
    return text


VERDICTS = {None: "no intervals to compare (bootstrap 0, or too few patients of a class)",
            True: "their intervals overlap", False: "their intervals do not overlap: a real gap"}  # fmt: skip


def _verdict(gap: dict) -> str:
    return VERDICTS[gap["intervals_overlap"]]
