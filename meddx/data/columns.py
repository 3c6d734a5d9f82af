"""Which columns of a CSV manifest hold the image path, the patient id and the labels, by name or by their values."""

from __future__ import annotations

import re

import pandas as pd

from meddx.data.images import READABLE_EXTENSIONS
from meddx.errors import DataError, NotInData

# column names as `_plain` writes them: lower case, letters and digits only (`Image Index`, `image_path`, `FILENAME`)
IMAGE_NAMES = ("image", "path", "filename", "file", "imageindex", "imagepath", "filepath", "imgpath", "img",
               "imagefile", "imagename", "imageid", "filepaths", "images", "dicom", "dicompath")  # fmt: skip
PATIENT_NAMES = (
    "patientid",
    "patient",
    "subjectid",
    "subject",
    "caseid",
    "participantid",
    "participant",
    "mrn",
    "patientcode",
    "patientnumber",
)  # fmt: skip (not `case`: case/control columns are labels)
MAX_CLASSES = 50
COVARIATES = (
    "age",
    "sex",
    "gender",
    "patientage",
    "patientsex",
    "patientgender",
    "race",
    "ethnicity",
    "weight",
    "height",
    "bmi",
    "view",
    "viewposition",
    "position",
    "projection",
    "site",
    "hospital",
    "centre",
    "center",
    "institution",
    "scanner",
    "manufacturer",
    "date",
    "studydate",
    "followup",
)  # fmt: skip (never labels)
LABEL_COLUMN_GUESSES = ("label", "labels", "class", "diagnosis", "target", "finding", "category", "outcome", "y")


def _plain(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def pick_column(columns: list[str], wanted: str | None, guesses: tuple[str, ...], what: str, where: str) -> str | None:
    """The column asked for (a DataError when absent), else the first whose plain name is a guess, else None."""
    if wanted is not None:
        if wanted not in columns:
            field = {"image": "image_column", "patient id": "patient_column"}.get(what, f"{what}_column")
            why = f"is not a column of {where} ({', '.join(columns)})"
            raise NotInData(f"{where}: no {what} column '{wanted}'; columns are {columns}", field, why)
        return wanted
    return next((c for guess in guesses for c in columns if _plain(c) == guess), None)


def _image_names(values: pd.Series) -> float:
    """The share of a column's non-blank values that end like an image file."""
    values = values.str.strip().str.lower()
    return float(values[values != ""].str.endswith(tuple(READABLE_EXTENSIONS)).mean() or 0.0)


def image_column(frame: pd.DataFrame, wanted: str | None, where: str) -> tuple[str, list[str]]:
    """(the image path column, notes): the one asked for, else one named like it (`image`, `path`, `filename`,
    `img`...), else the one column whose values are image file names; one line naming the option otherwise."""
    cols = list(frame.columns)
    if column := pick_column(cols, wanted, IMAGE_NAMES, "image", where):
        return column, []
    files = [c for c in cols if _image_names(frame[c]) > 0.9]
    if len(files) == 1:
        return files[0], [f"image paths from column '{files[0]}' (its values are image files; --image-column sets it)"]
    raise DataError(
        f"{where}: no image path column (columns are {cols}); name it: --image-column COLUMN, or call it `image`"
    )


def _values(frames: dict, column: str) -> pd.Series:
    """A column's stripped values over every CSV that has it."""
    return pd.concat([df[column].str.strip() for df in frames.values() if column in df])


def _holds_labels(frames: dict, column: str) -> bool:
    """Whether every value of a column is a 0/1 label: 0 to 1, -1 (uncertain) or blank."""
    values = _values(frames, column)
    numbers = pd.to_numeric(values, errors="coerce")
    return bool((values.isin(["", "nan", "NaN"]) | numbers.between(0, 1) | (numbers == -1)).all())


def _empty(frames: dict, column: str) -> bool:
    """A column with no value at all (Excel's trailing separators: `Unnamed: 2`)."""
    return bool((_values(frames, column) == "").all())


def guess_label_columns(where: str, frames: dict, others: list[str]) -> tuple[list[str], str | None, list[str]]:
    """(0/1 label columns, class-name column or None, notes) when the user named neither: the one column named like a
    label (label, class, diagnosis...); else every other column when all hold 0/1 (multi-label); else the only other
    column. Columns named like a covariate (age, sex, view, site) are never labels. A class-name column must hold few
    values (not an age)."""
    covariates = [c for c in others if _plain(c) in COVARIATES]  # `Sex`, `Age`: read by --by, never labels
    others = [c for c in others if not _empty(frames, c) and c not in covariates]
    named = [c for c in others if c.strip().lower() in LABEL_COLUMN_GUESSES]
    not_binary = [c for c in others if not _holds_labels(frames, c)]
    if len(named) == 1:
        column = named[0]
    elif others and not not_binary:
        return others, None, []
    elif len(others) == 1:
        column = others[0]
    else:
        none = "no label column" + (f" ({covariates} are covariates, never guessed as labels)" if covariates else "")
        raise DataError(
            f"{where}: " + (f"columns {named} are all named like a label" if named else
                            f"column(s) {not_binary} hold values other than 0/1 and none is named like a label "
                            f"({', '.join(LABEL_COLUMN_GUESSES[:4])}...)" if others else none)
            + "; name it: --label-column COLUMN (class names) or --label-columns A,B (0/1 columns)"
            + ("; a column of patient ids: --patient-column COLUMN" if not_binary else "")
        )  # fmt: skip
    if column not in not_binary:
        return [column], None, [f"labels: 0/1 column '{column}'"]
    _check_classes(where, frames, column)
    return [], column, [f"labels: the class names in column '{column}' (data.label_column)"]


def _check_classes(where: str, frames: dict, column: str) -> None:
    """A DataError when a column read as class names holds so many values that it is a measurement or an id."""
    values = _values(frames, column)
    distinct = values[values != ""].unique()
    numeric = pd.to_numeric(pd.Series(distinct), errors="coerce").notna().all()
    if len(distinct) > MAX_CLASSES or (numeric and len(distinct) > 10):
        raise DataError(
            f"{where}: column '{column}' holds {len(distinct)} different values (e.g. {', '.join(distinct[:3])}): "
            "not classes; name the label column: --label-column COLUMN or --label-columns A,B"
        )


def named_patient_column(frames: dict, columns: list[str]) -> tuple[str | None, list[str]]:
    """(the column named like a patient id, notes), used when it holds at least 10 ids that are not 0/1 values."""
    column = pick_column(columns, None, PATIENT_NAMES, "patient id", "")
    if column is None:
        return None, []
    values = _values(frames, column)
    if values.nunique() < 10 or _holds_labels(frames, column):
        return None, [f"column '{column}' not used for patients: {values.nunique()} values, not patient ids"]
    return column, [f"patient ids from column '{column}' (--patient-column sets another)"]


def guess_patient_column(where: str, frames: dict, unused: list[str]) -> tuple[str | None, list[str]]:
    """(the one unread column whose values look like patient ids, notes): text ids, none blank, at least 10 of them,
    some repeated, none holding over a quarter of the rows; (None, []) when no column or several do, with a note for
    a column that would be the patient's but for blank cells (never dropped without a word)."""
    found, blank = [], []
    for column in unused:
        values = _values(frames, column)
        counts = values.value_counts()
        ids = counts.drop("", errors="ignore")
        text = pd.to_numeric(pd.Series(ids.index), errors="coerce").isna().all()
        if text and len(ids) >= 10 and ids.max() > 1 and ids.max() <= 0.25 * len(values):
            (blank if "" in counts else found).append((column, len(ids), int(counts.get("", 0))))
    if len(found) != 1:
        return None, [
            f"column '{c}' looks like patient ids but {b} of its cells are blank: not used for patients "
            f"(--patient-column {c} names the blank rows)"
            for c, _, b in blank
        ]
    column, n, _ = found[0]
    return column, [
        f"patient ids from column '{column}' ({n} ids, repeated like a patient's; --patient-column sets it)"
    ]
