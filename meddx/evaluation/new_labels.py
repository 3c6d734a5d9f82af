"""How new data's labels meet a run's (`meddx evaluate RUN --data OTHER`): the run's classes, MedMNIST's 0/1
numbering for a run trained on an .npz, a multi-label run's labels the new data has no column for, and a class the
run never learnt that would be scored as its negative."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from meddx.data.records import NEGATIVE_CLASS, DataSet, UnknownPositiveClass
from meddx.errors import DataError
from meddx.evaluation.new_patients import read_patients
from meddx.run import DATA, Run, read_json


def run_classes(run: Run) -> list[str] | None:
    """The class names a run's labels came from (a binary run's both, recorded since 2026-12-07), so new data holding
    some of them (a folder of normals only) reads; None when not known."""
    if run.task == "multiclass":
        return list(run.label_names)
    return read_json(Path(run.path) / DATA).get("classes") or None if run.task == "binary" else None


GENERIC = {"1", "true", "yes", "positive", "label", "labels", "target", "y", "outcome", "class", "diagnosis", "finding"}


NUMBERING = "this data's classes 0 and 1 read by the run's MedMNIST numbering"


def medmnist_numbering(run: Run, ds: DataSet, theirs: str) -> bool:
    """New data naming its classes 0 and 1 (folders `0/ 1/`, or a 0/1 column) for a run trained on a MedMNIST .npz:
    MedMNIST's numbering, whose 0 may be the positive class (BreastMNIST's malignant); read so, inverted where it
    is, and said in the notes. Whether it applied."""
    classes = run_classes(run) or []
    digits = {c.strip() for c in ds.classes} <= {"0", "1"} and theirs.strip() in ("1", *GENERIC)
    origin = str(read_json(Path(run.path) / DATA).get("origin", ""))
    if not (origin.endswith(".npz") and len(classes) == 2 and digits):
        return False
    ours = run.label_names[0]
    if classes.index(ours) == 0:  # this data's 1 is the run's negative class
        for r in ds.records:
            r.labels = 1 - r.labels  # unknown (NaN) stays unknown
    ds.notes.append(f"{NUMBERING}: 0 {classes[0]}, 1 {classes[1]} (the run's positive: '{ours}')")
    ds.label_names = [ours]
    return True


def unknown_labels(run: Run, ds: DataSet) -> None:
    """A multi-label image run's labels this data's manifest has no column for: unknown (NaN) on every row, so the
    others are scored, said in the notes (reports, whose label sets are a competition's round, must match)."""
    missing = [n for n in run.label_names if n not in ds.label_names]
    sequences = any(r.tokens is not None for r in ds.records[:1])
    if (
        run.task != "multilabel"
        or ds.task == "multiclass"
        or sequences
        or not missing
        or len(missing) == len(run.label_names)
    ):
        return  # (one 0/1 column reads as a binary task: one of the run's labels, the rest unknown)
    where = {n: ds.label_names.index(n) for n in run.label_names if n in ds.label_names}
    for r in ds.records:
        r.labels = np.array([r.labels[where[n]] if n in where else np.nan for n in run.label_names], np.float32)
    ds.label_names, ds.task = list(run.label_names), "multilabel"
    ds.notes.append(f"no column for label(s) {missing}: unknown on every row, left out of their figures")


NOT_CLASS = re.compile(r"(not|non|no)[ _-]+(.+)", re.IGNORECASE)  # `Not pneumonia`: the negative of the positive
NEGATIVE_WORDS = {"0", "false", "no", "n", "negative", "absent"}  # a 0/1, yes/no or TRUE/FALSE column's negative


def unnumbered(name: str) -> str:
    """A class name less its leading number (`1_abnormal` -> `abnormal`); a name that is only a number stays."""
    return re.sub(r"^\d+[\s_-]+(?=\D)", "", name.strip())


def _key(name: str) -> str:
    """A class name compared without case, separators or a leading number (`0_bacteria` is `Bacteria`)."""
    return re.sub(r"[\s_-]+", " ", unnumbered(name)).casefold()


def unlearnt_negative(ds: DataSet, known: list[str] | None, positive_named: bool, own_positive: str) -> None:
    """A binary run's data whose non-positive class is none of the run's (`Bronchiolitis/` beside `PNEUMONIA/` for a
    NORMAL/PNEUMONIA run) would be scored as the run's negative: one line naming its samples, unless the name reads
    as a negative (`normal`, `benign`, `Not pneumonia`) or the user named the positive class (then: a note)."""
    if ds.task != "binary" or len(ds.classes) != 2:
        return
    positive = ds.label_names[0]  # the run's name; `own_positive`: this data's, which may differ (`abnormal`)
    other = next((c for c in ds.classes if _key(c) not in (_key(positive), _key(own_positive))), None)
    if other is None or _key(other) in {_key(k) for k in known or []} or _key(other) in NEGATIVE_WORDS:
        return
    denied = NOT_CLASS.fullmatch(other.strip())  # `Not pneumonia` denies the positive; `Non-Hodgkin lymphoma` does not
    if NEGATIVE_CLASS.fullmatch(other.strip()) or (denied and _key(denied[2]) in (_key(positive), _key(own_positive))):
        return
    if not known:  # an older run, or one trained from 0/1 columns: no class names to check against
        ds.notes.append(f"the run records no class names to check '{other}' against: scored as its negative unchecked")
        return
    rows = [r.row or r.id for r in ds.records if not r.labels[0] >= 0.5]
    negative = next((k for k in known if _key(k) != _key(positive)), "its negative")
    if positive_named:
        ds.notes.append(f"'{other}' ({len(rows)} sample(s)) scored as the run's negative '{negative}', as asked")
        return
    raise DataError(
        f"{ds.origin}: class '{other}' is not the run's ({', '.join(known)}): {len(rows)} sample(s), e.g. "
        f"{'; '.join(rows[:3])}; they would be scored as its '{negative}'. Leave them out to evaluate the rest, "
        f"or name the positive class (--positive-class {own_positive}) to score them as '{negative}'"
    )


def positive_unnumbered(run: Run, fields: dict, data: dict) -> tuple[DataSet, str]:
    """New data without the run's positive class: read with that class less its number (`abnormal/` for a run's
    `1_abnormal`, said in a note), else by the run's own rule (a mismatch is named after); and the data's own name
    for its positive class."""
    ours = run.label_names[0]
    bare = unnumbered(ours)
    if bare and bare != ours:
        try:
            ds = read_patients({**fields, "positive_class": bare}, data)
        except UnknownPositiveClass:
            pass
        else:
            own = ds.label_names[0]
            ds.notes.append(f"this data's '{own}' read as the run's '{ours}' (its positive, 1)")
            ds.label_names = [ours]
            return ds, own
    ds = read_patients({**fields, "positive_class": run.config.data.positive_class}, data)
    return ds, ds.label_names[0]
