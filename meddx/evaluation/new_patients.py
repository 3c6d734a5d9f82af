"""The patients of new labelled data read with a run's settings (`meddx evaluate RUN --data OTHER`): the run's
patient column or regex where they fit this data, else found as for any data, said in the notes."""

from __future__ import annotations

from pathlib import Path

from meddx.config import DataConfig, validate_section
from meddx.data.images import DICOM_EXTENSIONS
from meddx.data.patients import DICOM_TAG
from meddx.data.readers import read_dataset
from meddx.data.records import DataSet
from meddx.errors import DataError, NotInData

PATIENT_SETTINGS = ("patient_column", "patient_regex")


def read_patients(fields: dict, data: dict) -> DataSet:
    """Read with the run's settings. Its patient column or regex, where the new data lack that column or some of its
    file names do not follow the regex (another hospital's), or are DICOM files (their PatientID tags come first), is
    dropped unless the user named this data's, and patients are found as for any data (a column named like one, the
    tags, the file names, or one per image), said first in the notes; an image column the data lack stops it
    (guessing it could pair labels with other images)."""
    notes: list[str] = []
    while True:
        try:
            ds = read_dataset(validate_section(DataConfig, fields, "data."))
            break
        except NotInData as e:
            flag = f"--{e.field.replace('_', '-')}"
            if e.field not in PATIENT_SETTINGS or e.field in data or not fields.get(e.field):
                raise DataError(f"{e} ({flag} names this data's)" if e.field not in data else str(e)) from None
            notes.append(f"the run's {e.field} '{fields[e.field]}' {e.why}: read without it ({flag} sets this data's)")
            fields = {**fields, e.field: None}
    regex = fields.get("patient_regex")
    if regex and "patient_regex" not in data and any(_is_dicom(r.source) for r in ds.records):
        tagged = read_dataset(validate_section(DataConfig, {**fields, "patient_regex": None}, "data."))
        if tagged.patients_guessed == DICOM_TAG:  # usable tags (not an anonymiser's constant): they name patients
            ds = tagged
            notes.append(f"the run's patient_regex '{regex}' not used: DICOM files, their PatientID tags first")
    ds.notes[:0] = notes
    return ds


def _is_dicom(source: str) -> bool:
    return Path(source).suffix.lower() in DICOM_EXTENSIONS
