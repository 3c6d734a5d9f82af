"""New labelled data for a trained run (`meddx evaluate RUN --data OTHER`): read with the run's settings and its
class names, whatever case or order the new data spells them in."""

from __future__ import annotations

import re

from meddx.config import DataConfig, validate_section
from meddx.data.manifest import columns_holding
from meddx.data.readers import read_dataset
from meddx.data.records import DataSet, UnknownPositiveClass
from meddx.errors import DataError
from meddx.run import Run


def read_external(run: Run, data: dict) -> DataSet:
    """The new data set (`data`: data-config fields over the run's), its labels in the run's order and names; one
    line naming the data when its labels are not the run's."""
    fields = {**run.config.data.model_dump(), "label_names": None, **data}
    if _is_manifest(data) and run.task != "multilabel" and not {"label_column", "label_columns"} & set(data):
        if len(holding := columns_holding(data["path"], run.label_names)) == 1:  # `group` holding the run's HC/PD
            fields["label_column"], fields["label_columns"] = holding[0], None
    if run.task == "binary" and "positive_class" not in data:
        fields["positive_class"] = run.label_names[0]  # `covid/` beside `Viral/`: the run's positive, in any case
    try:
        ds = read_dataset(validate_section(DataConfig, fields, "data."))
    except UnknownPositiveClass:
        if "positive_class" in data:
            raise
        fields["positive_class"] = run.config.data.positive_class  # other class names: their own rule, then a mismatch
        ds = read_dataset(validate_section(DataConfig, fields, "data."))
    synthetic = all(re.fullmatch(r"(class|label)_\d+", n) for n in ds.label_names)  # MedMNIST files carry no names
    if synthetic and len(ds.label_names) == len(run.label_names) and ds.task == run.task:
        ds.label_names = list(run.label_names)
    elif ds.task == run.task and not ds.align_labels(run.label_names):  # `pneumonia/` for a run's `PNEUMONIA`
        _one_binary_label(run, ds, data)
    if problem := ds.label_mismatch(run.label_names, run.task):
        raise DataError(f"{ds.origin}: {problem}")
    if len(splits := sorted({r.split for r in ds.records if r.split})) > 1:
        ds.notes.append(f"its official splits ({', '.join(splits)}) pooled: every labelled sample is evaluated")
    return ds


def _is_manifest(data: dict) -> bool:
    path = data.get("path")
    return isinstance(path, str | dict) and (isinstance(path, dict) or path.lower().endswith((".csv", ".tsv")))


GENERIC = {"1", "true", "yes", "positive", "label", "labels", "target", "y", "outcome", "class", "diagnosis"}


def _one_binary_label(run: Run, ds: DataSet, data: dict) -> None:
    """A binary run's one label under another name that names no class: a 0/1 column `target` for the run's `label`,
    folders `0/ 1/` for its `PNEUMONIA`, or the one 0/1 column the user named (--label-columns); said in the notes."""
    if run.task != "binary" or ds.label_names == run.label_names:
        return
    theirs, ours = ds.label_names[0], run.label_names[0]
    named = len(data.get("label_columns") or []) == 1
    if named or {theirs.strip().casefold(), ours.strip().casefold()} & GENERIC:
        ds.notes.append(f"this data's 0/1 label '{theirs}' read as the run's '{ours}' (1 = {ours})")
        ds.label_names = [ours]
