"""New labelled data for a trained run (`meddx evaluate RUN --data OTHER`): read with the run's settings and its
class names, whatever case or order the new data spells them in."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from meddx.data.columns import image_column
from meddx.data.leakage import overlap_with_training
from meddx.data.manifest import read_table
from meddx.data.medmnist import known_names
from meddx.data.readable import drop_unreadable
from meddx.data.readers import manifest_path
from meddx.data.records import NEGATIVE_CLASS, DataSet, UnknownPositiveClass
from meddx.data.stacks import rescale_views
from meddx.data.tensors import stack_depth
from meddx.errors import ConfigError, DataError
from meddx.evaluation.new_labels import (
    GENERIC,
    medmnist_numbering,
    positive_unnumbered,
    run_classes,
    unknown_labels,
    unlearnt_negative,
)
from meddx.evaluation.new_patients import PATIENT_SETTINGS, read_patients
from meddx.run import DATA, PREDICTIONS, Run, read_json


def read_external(run: Run, data: dict) -> DataSet:
    """The new data set (`data`: data-config fields over the run's), its labels in the run's order and names; one
    line naming the data when its labels are not the run's. A manifest whose labels do not read as the run's is read
    once more from the one column that holds the run's class names (`group` holding HC/PD), if there is one."""
    fields = {**run.config.data.model_dump(), "label_names": None, "classes": run_classes(run), **data}
    if any(k in data for k in PATIENT_SETTINGS):  # this data's patients as the user names them, not the run's
        fields.update({k: data.get(k) for k in PATIENT_SETTINGS})
    fields = _multilabel_columns(run, data, fields)
    try:
        return _pooled(run, _read_rooted(run, data, fields))
    except DataError:
        column = _class_column(run, data, fields)
        if column is None:
            raise
    ds = _read_rooted(run, data, {**fields, "label_column": column, "label_columns": None})
    ds.notes.append(f"labels: column '{column}', the one holding the run's class names (data.label_column)")
    return _pooled(run, ds)


def read_checked(run: Run, data: dict, drop_overlap: bool) -> tuple[DataSet, dict]:
    """New data read as the run's, checked against its training images (copies stop it, or with `drop_overlap` are
    left out) and, with data["skip_unreadable"] (this call's choice), its unreadable images left out and named; the
    check counts only the files evaluated or left out as copies."""
    ds = read_external(run, data)
    trained_known = read_json(Path(run.path) / DATA).get("patients_known", True) is not False
    ds.records, check = overlap_with_training(ds.records, run.split_table(), drop_overlap, ds.origin, ds.patients_known)
    check["run_patients_known"] = trained_known
    unreadable = drop_unreadable(ds, skip=bool(data.get("skip_unreadable")))
    check["files"] -= len(unreadable)
    return ds, check


def _read_rooted(run: Run, data: dict, fields: dict) -> DataSet:
    """A new CSV's paths are relative to --root, else to its own folder (the README's rule), not to the run's root;
    only when none of its first images is beside it but some are under the run's root (a test.csv beside the
    training one), that root reads them, said in a note."""
    csv = manifest_path(data.get("path"))
    if "root" in data or not run.config.data.root or csv is None:
        return _read_as_run(run, data, fields)
    csv = next(iter(csv.values())) if isinstance(csv, dict) else csv
    names = _first_paths(csv, fields.get("image_column"))
    if any((Path(csv).parent / n).is_file() for n in names) or not any(
        (Path(run.config.data.root) / n).is_file() for n in names
    ):
        return _read_as_run(run, data, {**fields, "root": None})
    ds = _read_as_run(run, data, fields)
    ds.notes.append(
        f"image paths read under the run's root {run.config.data.root}, none beside the CSV (--root sets it)"
    )
    return ds


def _first_paths(csv: str, column: str | None, n: int = 20) -> list[str]:
    """The first image paths a CSV names (relative ones), [] when they cannot be told."""
    try:
        table = read_table(csv)
        name = image_column(table, column, csv)[0]
    except DataError:
        return []
    return [v.strip().replace("\\", "/") for v in table[name][:n] if v.strip() and not os.path.isabs(v.strip())]


def _read_as_run(run: Run, data: dict, fields: dict) -> DataSet:
    """Read with `fields`, the binary run's positive class tried first, and match the labels to the run's."""
    if run.task == "binary" and "positive_class" not in data:
        fields = {**fields, "positive_class": run.label_names[0]}  # `covid/` beside `Viral/`: the run's, in any case
    if all(SYNTHETIC.fullmatch(n) for n in run.label_names) and "label_names" not in data:  # a run on an .npz read
        k = 2 if run.task == "binary" else len(run.label_names)  # before MedMNIST's names: its indices, its meaning
        fields = {
            **fields,
            "label_names": [f"{'label' if run.task == 'multilabel' else 'class'}_{i}" for i in range(k)],
        }
    elif fields.get("classes") and "label_names" not in data and _unnamed_npz(data.get("path")):  # its indices
        fields = {**fields, "label_names": list(fields["classes"])}  # as the run's were: a renamed BreastMNIST's 0
    try:
        ds = read_patients(fields, data)
    except UnknownPositiveClass:
        if "positive_class" in data:
            raise
        ds, own_positive = positive_unnumbered(run, fields, data)
    else:
        own_positive = ds.label_names[0]  # this data's name for it, before it takes the run's
    unknown_labels(run, ds)
    synthetic = all(SYNTHETIC.fullmatch(n) for n in ds.label_names)  # an .npz of no known set carries no names
    if synthetic and len(ds.label_names) == len(run.label_names) and ds.task == run.task:
        ds.label_names = list(run.label_names)
    elif ds.task == run.task and not ds.align_labels(run.label_names):  # `pneumonia/` for a run's `PNEUMONIA`
        _one_binary_label(run, ds, data)
    if problem := ds.label_mismatch(run.label_names, run.task):
        hint = _unknown_class_rows(ds, fields.get("classes"))
        if run.task == ds.task == "binary":
            hint += (
                f"; if one of this data's classes is the run's '{run.label_names[0]}', name it: --positive-class "
                "CLASS (or its 0/1 column: --label-columns COLUMN)"
            )
        raise DataError(f"{ds.origin}: {problem}{hint}")
    unlearnt_negative(ds, fields.get("classes"), "positive_class" in data, own_positive)
    return ds


def _unknown_class_rows(ds: DataSet, known: list[str] | None) -> str:
    """Where new data holds a class the run never learnt (`COVID` for a NORMAL/PNEUMONIA run): its first rows."""
    if ds.task == "binary" and len(ds.classes) == 2:  # `normal/ covid/` for a normal/bacteria/virus run
        negative = next(c for c in ds.classes if c != ds.label_names[0])
        class_of = [ds.label_names[0] if r.labels[0] >= 0.5 else negative for r in ds.records]
    elif ds.task == "multiclass":
        class_of = [ds.label_names[int(np.argmax(r.labels))] for r in ds.records]
    else:
        return ""
    unknown = {c for c in set(class_of) if known and c.casefold() not in {k.casefold() for k in known}}
    if not unknown:
        return ""
    rows = [r.row or r.id for r, c in zip(ds.records, class_of) if c in unknown]
    return (
        f"; class(es) {sorted(unknown)} are not the run's ({', '.join(known)}): {len(rows)} sample(s), e.g. "
        f"{'; '.join(rows[:3])}; leave them out to evaluate the rest"
    )


def external_name(run: Run, path, wanted: str | None = None) -> str:
    """The name new data's predictions and report take: `wanted` (--split), else `external-<file or folder name>`,
    numbered when that name already holds another data set's (siteA/data and siteB/data), so one evaluation never
    replaces another's; a wanted name holding another data set's is an error."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(path)).stem)
    base = wanted or (stem if stem.casefold().startswith("external") else f"external-{stem}")
    for k in range(1, 1000):
        name = base if k == 1 else f"{base}-{k}"
        source = read_json(run.path / PREDICTIONS / f"{name}.data.json")
        origin = source.get("path", source.get("origin"))  # the path the user gave (older files: the data read)
        if origin is None or _same_source(origin, path):
            return name
        if wanted:
            raise ConfigError(f"--split {wanted}: {run.path} already holds the evaluation of {origin} under that "
                              "name; choose another (or leave --split out: a new name is made)")  # fmt: skip
    return base


def _unnamed_npz(path) -> bool:
    """An .npz (or one split of it) whose name is no known MedMNIST set's: its class indices carry no names."""
    files = list(path.values()) if isinstance(path, dict) else [path]
    return all(str(f).lower().endswith(".npz") and known_names(str(f))[0] is None for f in files)


def data_source(ds: DataSet, data: dict) -> dict:
    """predictions/<name>.data.json: the data read, the path given (absolute, so a name's owner is known from any
    folder), its reading notes and how patients were guessed."""
    given, options = _absolute(data.get("path")), {k: v for k, v in data.items() if k != "path"}
    if options.get("root"):
        options["root"] = _absolute(options["root"])
    return {"origin": ds.origin, "path": given, "options": options, "notes": ds.notes,
            "patients_guessed": ds.patients_guessed}  # fmt: skip


def _absolute(path):
    """A data path (or {split: path}) made absolute against the working folder."""
    if isinstance(path, dict):
        return {k: os.path.abspath(v) for k, v in path.items()}
    return os.path.abspath(path) if isinstance(path, str | Path) else path


def _same_source(origin, path) -> bool:
    if isinstance(path, dict) or isinstance(origin, dict):
        return origin == _absolute(path)
    return Path(str(origin)).resolve() == Path(str(path)).resolve()


def _multilabel_columns(run: Run, data: dict, fields: dict) -> dict:
    """A multi-label run's label columns named for the reader when the new data's manifest holds them all: an `age`
    or `sex` column beside them is then left unread (for `--by sex`), not taken for a label."""
    manifest = manifest_path(data["path"]) if "path" in data else None
    if run.task != "multilabel" or manifest is None or {"label_column", "label_columns"} & set(data):
        return fields
    header = _first_table(manifest).columns
    present = [n for n in run.label_names if n in header]  # a label this data lacks is read as unknown (NaN)
    return {**fields, "label_columns": present} if present else fields


def _pooled(run: Run, ds: DataSet) -> DataSet:
    """The data set, a note added when it came in several official splits (all are evaluated) or in stacks of
    another depth than the run's (its views taken at the same relative positions)."""
    if getattr(run, "is_sequence", False):  # tokens the run never saw read as unk: much of it means other data
        c = run.vocab.coverage([r.tokens for r in ds.records])
        if c["unknown"]:
            ds.notes.append(
                f"{c['unknown']} of {c['tokens']} tokens ({c['unknown'] / max(c['tokens'], 1):.1%}; "
                f"{c['distinct_unknown']} distinct) are not in the run's vocabulary: read as unknown"
            )
        if c["cut"]:
            ds.notes.append(
                f"{c['cut']} of {c['reports']} reports longer than the run's {run.vocab.max_len} tokens: cut"
            )
    if len(splits := sorted({r.split for r in ds.records if r.split})) > 1:
        ds.notes.append(f"its official splits ({', '.join(splits)}) pooled: every labelled sample is evaluated")
    prep = run.preprocess if run.config.data.views and ds.records else None  # stacks read as slices
    n = stack_depth(ds.records[0], prep.view_axis, prep.dicom_window) if prep and prep.view_depth else None
    if n and n != prep.view_depth:
        ds.notes.append(
            f"stacks of {n} slices: the run's views {prep.views} of {prep.view_depth} read at the same relative "
            f"positions, {rescale_views(prep.views, prep.view_depth, n)}"
        )
    return ds


def _class_column(run: Run, data: dict, fields: dict) -> str | None:
    """The one manifest column holding the run's class names, when the user named no label column and it is not
    the column already read."""
    manifest = manifest_path(data["path"]) if "path" in data else None  # a folder may be read by its CSV
    if manifest is None or run.task == "multilabel" or {"label_column", "label_columns"} & set(data):
        return None
    holding = columns_holding(manifest, run.label_names)
    return holding[0] if len(holding) == 1 and holding[0] != fields.get("label_column") else None


SYNTHETIC = re.compile(r"(class|label)_\d+")  # the names of an .npz's indices


def _one_binary_label(run: Run, ds: DataSet, data: dict) -> None:
    """A binary run's one label under a name of this data that names no class (a 0/1 column `target` for the run's
    `label`, folders `0/ 1/` for its `PNEUMONIA`), or the column or positive class the user named; said in the notes."""
    if run.task != "binary" or ds.label_names == run.label_names:
        return
    theirs, ours = ds.label_names[0], run.label_names[0]
    if "positive_class" in data and any(c.strip().casefold() == ours.strip().casefold() for c in ds.classes):
        raise DataError(
            f"{ds.origin}: --positive-class {data['positive_class']}: this data holds the run's positive class "
            f"'{ours}' itself, so reading '{theirs}' as it would invert the labels; leave --positive-class out"
        )
    named = len(data.get("label_columns") or []) == 1 or "positive_class" in data  # the user said which is 1
    if not named and medmnist_numbering(run, ds, theirs):
        return
    others = [c for c in ds.classes if c.strip().casefold() != theirs.strip().casefold()]
    clear = (  # `1_abnormal` beside `0_normal` for a run's generic `label`; never one disease for another
        ours.strip().casefold() in GENERIC
        and len(others) == 1
        and NEGATIVE_CLASS.fullmatch(others[0].strip())
        and not NEGATIVE_CLASS.fullmatch(theirs.strip())
    )
    if named or clear or theirs.strip().casefold() in GENERIC:  # else a class chosen by sort order: ask
        ds.notes.append(f"this data's '{theirs}' read as the run's '{ours}' (its positive, 1)")
        ds.label_names = [ours]


def _first_table(manifest: str | dict):
    return read_table(next(iter(manifest.values())) if isinstance(manifest, dict) else manifest)


def columns_holding(manifest: str | dict, names: list[str]) -> list[str]:
    """The columns of a manifest (its first CSV) whose values hold one of `names`, case ignored: where a run's class
    names are in new data whose label column is named otherwise."""
    first, wanted = _first_table(manifest), {n.strip().casefold() for n in names}
    return [c for c in first.columns if wanted & {v.strip().casefold() for v in first[c].unique()}]
