"""CSV manifests: an image path column, a patient id column, and 0/1 label columns or one column of class names;
one file, or a {split: csv} mapping that keeps official splits."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from meddx.data.columns import guess_label_columns, guess_patient_column, named_patient_column, pick_column
from meddx.data.columns import image_column as find_image_column
from meddx.data.patients import assign_guessed_patients
from meddx.data.records import DataSet, Record, class_labels, merge_classes, normalise_class_names
from meddx.data.rows import check_paths, drop_repeated_rows
from meddx.data.tables import line_numbers, read_table
from meddx.errors import DataError, NotInData, not_found

SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def compile_patient_regex(pattern: str | None) -> re.Pattern | None:
    """The compiled --patient-regex, or a one-line DataError naming what is wrong with it."""
    try:
        return re.compile(pattern) if pattern else None
    except re.error as e:
        raise DataError(f"--patient-regex '{pattern}' is not a valid regular expression: {e}") from None


def patient_from_name(name: str, regex: re.Pattern | None) -> str | None:
    """The patient id in a file name: the regex's group 1 (or its whole match); the stem without a regex; None when
    the regex does not match."""
    if regex is None:
        return Path(name).stem
    m = regex.search(name)
    if not m:
        return None
    return m.group(1) if m.groups() else m.group(0)


def _patients_by_regex(where: str, images: np.ndarray, regex: re.Pattern, lines: list[int]) -> np.ndarray:
    """Patient ids from the file names of a manifest's image column; a DataError naming rows it does not match."""
    found = [patient_from_name(Path(str(image)).name, regex) for image in images]
    bad = [f"row {lines[i]} ({images[i]})" for i, p in enumerate(found) if p is None]
    if bad:
        message = f"{where}: patient_regex '{regex.pattern}' does not match {len(bad)} file name(s), e.g. "
        message += ", ".join(bad[:3])
        matched = (
            f"{len(found) - len(bad)} of the {len(found)}" if len(bad) < len(found) else f"none of the {len(found)}"
        )
        raise NotInData(message, "patient_regex", f"matches {matched} file names (not e.g. {bad[0]})")
    return np.array(found, dtype=object)


def _read_frames(path: str | Path | dict[str, str]) -> tuple[dict, dict[str | None, pd.DataFrame]]:
    """{split or None: csv path} and the CSVs read as strings; bad split names, missing or empty files are errors."""
    if isinstance(path, dict):
        files = {SPLIT_ALIASES.get(k.lower(), k): v for k, v in path.items()}
    else:
        files = {None: str(path)}
    bad = [k for k in files if k is not None and k not in ("train", "val", "test")]
    if bad:
        raise DataError(f"split names {bad} not understood; use train, val (or valid) and test")
    frames = {}
    for split, csv in files.items():
        if Path(csv).is_dir():  # a folder's own train/val/test subfolders are its official splits
            raise DataError(f"{csv}: a folder; {split or 'a split'}=PATH takes a CSV (or .npz; or all folders)")
        if not Path(csv).is_file():
            raise DataError(not_found("CSV manifest", csv))
        frames[split] = read_table(csv)
        if frames[split].empty:
            raise DataError(f"{csv}: has a header but no rows")
    return files, frames


def _columns(
    files: dict,
    frames: dict,
    image_column: str | None,
    patient_column: str | None,
    label_columns: list[str] | None,
    label_column: str | None,
) -> tuple[str, str | None, list[str], str | None, list[str]]:
    """(image column, patient column or None, 0/1 label columns, class-name column or None, notes), chosen on the
    first CSV and required in every CSV."""
    first_csv, first = next(iter(files.values())), next(iter(frames.values()))
    cols = list(first.columns)
    img_col, notes = find_image_column(first, image_column, first_csv)
    if patient_column:
        pat_col = pick_column(cols, patient_column, (), "patient id", first_csv)
    else:
        pat_col, said = named_patient_column(
            frames, [c for c in cols if c not in (label_column, *(label_columns or []))]
        )
        notes += said
    guessed, found = not (label_column or label_columns), []
    if guessed:
        others = [c for c in cols if c not in (img_col, pat_col)]
        label_columns, label_column, found = guess_label_columns(first_csv, frames, others)
    unread = [c for c in cols if c not in (img_col, pat_col, label_column, *(label_columns or []))]
    if pat_col is None:  # a repeated text column left is the patient (`child`), the labels guessed or named
        pat_col, said = guess_patient_column(first_csv, frames, unread)
        unread, found = [c for c in unread if c != pat_col], found + said
    why = "not labels; --label-columns names 0/1 columns, " if guessed else ""
    notes += found + ([f"columns {unread} not read ({why}--by COLUMN shows every figure per value)"] if unread else [])
    wanted = [label_column] if label_column else label_columns
    for split, df in frames.items():  # the columns read, in every CSV
        missing = [c for c in [img_col, *([pat_col] if pat_col else []), *wanted] if c not in df.columns]
        if missing:
            raise DataError(f"{files[split]}: missing column(s) {missing}; columns are {list(df.columns)}")
    return img_col, pat_col, wanted, label_column, notes


def _blank_rows(csv: str, df: pd.DataFrame, column: str, what: str) -> None:
    """A DataError naming the first blank rows of a column (CSV row numbers, header = 1)."""
    blank = np.flatnonzero(df[column].str.strip() == "")
    if len(blank):
        raise DataError(f"{csv}: blank {what} on row(s) {[line_numbers(df)[i] for i in blank[:10]]}")


def _binary_matrix(csv: str, df: pd.DataFrame, label_cols: list[str], uncertain: str = "ignore") -> np.ndarray:
    """Label columns as a float matrix: 0 and 1; blank for unknown (NaN: left out of the loss and the metrics); -1
    for uncertain (CheXpert), by `uncertain`: ignore (unknown), ones, zeros; values between 0 and 1 as soft labels
    (several raters averaged). Anything else is an error naming row and column."""
    values = df[label_cols].apply(lambda s: s.str.strip())
    numbers = values.apply(pd.to_numeric, errors="coerce")
    blank = values.isin(["", "nan", "NaN"])
    ok = blank | ((numbers >= 0) & (numbers <= 1)) | (numbers == -1)
    if not ok.all().all():
        r, c = np.argwhere(~ok.to_numpy())[0]
        n_bad = int((~ok).to_numpy().sum())
        raise DataError(
            f"{csv}: row {line_numbers(df)[r]}, column '{label_cols[c]}': label value {values.iat[r, c]!r} is not "
            f"0, 1, blank (unknown), -1 (uncertain) or a soft label in [0, 1] ({n_bad} such value(s) in the file)"
            + (f"; a column of class names: --label-column {label_cols[c]}" if len(label_cols) == 1 else "")
        )
    matrix = np.array(numbers.to_numpy(np.float32), copy=True)  # pandas may hand out a read-only view
    matrix[blank.to_numpy()] = np.nan
    matrix[matrix == -1] = {"ignore": np.nan, "ones": 1.0, "zeros": 0.0}[uncertain]
    return matrix


def label_notes(labels: np.ndarray, raw_uncertain: int, uncertain: str) -> list[str]:
    """What the reader did with labels beyond 0/1, for the report's data notes."""
    notes = []
    if raw_uncertain:
        notes.append(f"{raw_uncertain} uncertain (-1) label(s): {uncertain} (data.uncertain_labels)")
    unknown = int(np.isnan(labels).sum())
    if unknown:
        notes.append(f"{unknown} unknown label(s) (blank or uncertain-ignored): left out of the loss and the metrics")
    soft = int(((labels > 0) & (labels < 1)).sum())
    if soft:
        notes.append(f"{soft} soft label(s) in (0, 1): trained as BCE targets, judged as positive from 0.5")
    return notes


def _label_rows(
    files: dict,
    frames: dict,
    label_cols: list[str],
    label_column: str | None,
    positive_class: str | None,
    uncertain: str = "ignore",
    known: list[str] | None = None,
) -> tuple[list[str], str, dict, list[str]]:
    """(label names, task, {split: per-row label vectors}, notes on class names)."""
    if label_column is None:
        names, task = list(label_cols), ("binary" if len(label_cols) == 1 else "multilabel")
        return names, task, {s: _binary_matrix(files[s], df, label_cols, uncertain) for s, df in frames.items()}, []
    for split, df in frames.items():
        _blank_rows(files[split], df, label_column, f"'{label_column}'")
    canonical, notes = normalise_class_names([v for df in frames.values() for v in df[label_column]])
    all_names = [canonical[v] for df in frames.values() for v in df[label_column]]
    rows = [f"{files[s]} row {line}" for s, df in frames.items() for line in line_numbers(df)]
    names, task, vec = class_labels(all_names, positive_class, next(iter(files.values())), notes, rows, known)
    return names, task, {s: [vec[canonical[c]] for c in df[label_column]] for s, df in frames.items()}, notes


def _records(files: dict, frames: dict, labels: dict, columns: tuple, regex: re.Pattern | None, root) -> tuple:
    """(records, {split: the folder its image paths are relative to}); the patient is the image itself without a
    patient column or regex."""
    (img_col, pat_col), records, bases = columns, [], {}
    for split, df in frames.items():
        bases[split] = Path(root) if root is not None else Path(files[split]).parent
        images = df[img_col].str.strip().to_numpy()
        patients = df[pat_col].str.strip().to_numpy() if pat_col else images
        lines = line_numbers(df)
        if regex:
            patients = _patients_by_regex(files[split], images, regex, lines)
        for i, image in enumerate(images):
            where = f"{files[split]} row {lines[i]}"
            if not image:
                raise DataError(f"{where}: blank image path in column '{img_col}'")
            source = str(bases[split] / image.replace("\\", "/"))  # a Windows path: its backslashes as slashes
            records.append(Record(image, patients[i], source, labels[split][i], split=split, row=where))
    return records, bases


def read_csv_manifest(
    path: str | Path | dict[str, str],
    root: str | Path | None = None,
    image_column: str | None = None,
    patient_column: str | None = None,
    label_columns: list[str] | None = None,
    label_column: str | None = None,
    positive_class: str | None = None,
    check_files: bool = True,
    patient_regex: str | None = None,
    uncertain: str = "ignore",
    allow_outside_root: bool = False,
    guess_patients: bool = True,
    classes: list[str] | None = None,
) -> DataSet:
    """CSV(s) with an image path, a patient id and 0/1 label columns or one class-name column.

    A {split: csv} mapping keeps official splits; columns are matched by name, so their order may differ. With
    `patient_regex` the patient id comes from each image's file name instead of a patient column; with neither, from
    names of the form <patient>_<number> when `guess_patients`.
    """
    files, frames = _read_frames(path)
    if patient_regex and patient_column:
        raise DataError("give either a patient column or a patient regex, not both")
    regex = compile_patient_regex(patient_regex)
    img_col, pat_col, label_cols, label_column, notes = _columns(
        files, frames, image_column, patient_column, label_columns, label_column
    )
    if regex:
        notes.append(f"patient ids from the file names by patient_regex '{patient_regex}'")
    if regex and pat_col:
        notes = [n for n in notes if not n.startswith(f"patient ids from column '{pat_col}'")]
        notes.append(f"patient_regex given: column '{pat_col}' not used for patients")
        pat_col = None
    if pat_col:
        for split, df in frames.items():
            _blank_rows(files[split], df, pat_col, f"patient id in column '{pat_col}'")
    label_names, task, labels, class_notes = _label_rows(
        files, frames, label_cols, label_column, positive_class, uncertain, classes
    )
    notes += class_notes
    written = [c for df in frames.values() for c in df[label_column]] if label_column else []
    found = list(normalise_class_names(written)[0].values())  # `Normal` and `normal`: one class
    classes = merge_classes(found, classes) if label_column else []
    if label_column is None:
        raw = sum(int(df[label_cols].apply(lambda s: pd.to_numeric(s, errors="coerce")).eq(-1).to_numpy().sum())
                  for df in frames.values())  # fmt: skip
        notes += label_notes(np.concatenate(list(labels.values())), raw, uncertain)
    records, bases = _records(files, frames, labels, (img_col, pat_col), regex, root)
    check_paths(records, bases, check_files, allow_outside_root)
    guessed, origin = None, ", ".join(files.values())
    if not pat_col and not regex:
        guessed, note = assign_guessed_patients(records, origin, guess=guess_patients)
        notes.append(note)
    records, repeated = drop_repeated_rows(records, label_names, classes)
    notes += repeated
    return DataSet(records, label_names, task, origin=origin, notes=notes, patients_guessed=guessed, classes=classes)


def column_values(path: str | Path | dict[str, str], column: str, image_column: str | None = None) -> dict[str, str]:
    """{sample id (the image path as written): value} of one manifest column, for subgroups; a DataError names the
    columns there are."""
    if not isinstance(path, dict) and not str(path).lower().endswith((".csv", ".tsv")):
        raise DataError(f"{path}: subgroups need a CSV manifest holding the column '{column}'")
    files, frames = _read_frames(path)
    values: dict[str, str] = {}
    for split, df in frames.items():
        cols = list(df.columns)
        img = find_image_column(df, image_column, files[split])[0]
        same = [c for c in cols if c.casefold() == column.casefold()]  # `--by sex` for a column `Sex`
        name = column if column in cols else same[0] if len(same) == 1 else None
        if name is None:
            raise DataError(f"{files[split]}: no column '{column}' for subgroups; columns are {cols}")
        values.update(zip(df[img].str.strip(), df[name].str.strip()))
    return values
