"""Which columns of a CSV manifest hold the image path, the patient id and the labels, by name or by their values."""

from __future__ import annotations

import pandas as pd

from meddx.errors import DataError

IMAGE_COLUMN_GUESSES = ("Image", "image", "path", "Path", "filename", "file", "Image Index")
PATIENT_COLUMN_GUESSES = ("PatientId", "patient_id", "Patient ID", "patient", "PatientID", "subject_id")
LABEL_COLUMN_GUESSES = ("label", "labels", "class", "diagnosis", "target", "finding", "category", "outcome", "y")


def pick_column(columns: list[str], wanted: str | None, guesses: tuple[str, ...], what: str, where: str) -> str | None:
    """The column asked for (a DataError when absent), else the first guess present, else None."""
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{where}: no {what} column '{wanted}'; columns are {columns}")
        return wanted
    return next((c for c in guesses if c in columns), None)


def _holds_labels(frames: dict, column: str) -> bool:
    """Whether every value of a column is a 0/1 label: 0 to 1, -1 (uncertain) or blank."""
    values = pd.concat([df[column].str.strip() for df in frames.values()])
    numbers = pd.to_numeric(values, errors="coerce")
    return bool((values.isin(["", "nan", "NaN"]) | numbers.between(0, 1) | (numbers == -1)).all())


def guess_label_columns(where: str, frames: dict, others: list[str]) -> tuple[list[str], str | None, list[str]]:
    """(0/1 label columns, class-name column or None, notes) when the user named neither.

    Every other column when all hold 0/1 values (multi-label, as before); otherwise the one other column, or the one
    named like a label (label, class, diagnosis...), read as class names unless it holds 0/1 values.
    """
    if not others:
        raise DataError(f"{where}: no label column besides the image and patient columns")
    not_binary = [c for c in others if not _holds_labels(frames, c)]
    if not not_binary:
        return others, None, []
    named = [c for c in others if c.strip().lower() in LABEL_COLUMN_GUESSES]
    if len(others) == 1 or len(named) == 1:
        column = others[0] if len(others) == 1 else named[0]
        unused = [c for c in others if c != column]
        notes = [f"columns {unused} not read (not labels; data.label_columns names 0/1 columns)"] if unused else []
        if column not in not_binary:
            return [column], None, [f"labels: 0/1 column '{column}'", *notes]
        return [], column, [f"labels: the class names in column '{column}' (data.label_column)", *notes]
    raise DataError(
        f"{where}: column(s) {not_binary} hold values other than 0/1 and no single column is named like a label "
        f"({', '.join(LABEL_COLUMN_GUESSES[:4])}...); name it: --set data.label_column=COLUMN (class names) or "
        f"--label-columns A,B (0/1 columns)"
    )
