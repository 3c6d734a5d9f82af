"""Patient ids guessed from file names when the data give none: `<patient>_<image number>.ext` (NIH's
`00000005_001.png`, Kermany's `person1000_bacteria_2931.jpeg` and `IM-0248-0001.jpeg`) is the commonest convention,
and an image-level split of such a folder puts one patient's images on both sides of it."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import PurePath

from meddx.data.records import Record

# group 1: the name up to its last number, less any letters-only words before that number (Kermany's `_bacteria`);
# it must hold a digit itself (`img_0001.png` or `case1000.png` name no patient)
PATIENT_GUESS = r"^(.*?\d.*?)(?:[-_. ]+[A-Za-z]+)*[-_. ]*(?<!\d)\d+\.\w+$"
MAX_GROUP_SHARE = 0.1  # a guessed patient holding more than this share of the images is a site or a date, not a person
MAX_GROUP_FLOOR = 30  # ... unless the folder is so small that a real patient's images pass that share


def guess_patients(names: list[str]) -> tuple[list[str] | None, str]:
    """Patient ids for file names (None when the names do not follow the convention) and why, in one line."""
    regex = re.compile(PATIENT_GUESS)
    matches = [regex.search(n) for n in names]
    if not names or not all(matches):
        missing = next((n for n, m in zip(names, matches) if not m), None)
        return None, f"file names are not <patient>_<number> (e.g. {missing})" if missing else "no file names"
    ids = _merge_extended([m.group(1) for m in matches])
    sizes = Counter(ids)
    (top, largest), shared = sizes.most_common(1)[0], sum(n for n in sizes.values() if n > 1)
    if shared == 0:
        return None, "no two file names share a <patient>_ prefix"
    if too_large(largest, len(names)):
        return None, f"'{top}' would hold {largest} of {len(names)} images: not one patient"
    why = (
        f"patient ids guessed from the file names by patient_regex {PATIENT_GUESS!r}: {len(sizes)} patients for "
        f"{len(names)} images, {shared} of them sharing a patient, at most {largest} ('{top}'); "
        "--patient-regex or a patient column overrides, data.guess_patients=false turns it off"
    )
    return ids, why


def too_large(largest: int, images: int) -> bool:
    """Whether a group of `largest` of `images` images is too large to be one patient."""
    return largest > max(MAX_GROUP_FLOOR, MAX_GROUP_SHARE * images)


def _merge_extended(ids: list[str]) -> list[str]:
    """Ids that extend another id by a number (`IM-0429-0001` of `IM-0429-0001-0002.jpeg` beside `IM-0429`) joined
    to it: a patient's later series numbered below its first."""
    known, shorter = set(ids), {}
    for key in known:
        root = key
        while (m := re.fullmatch(r"(.+?)(?:[-_. ]+[A-Za-z]+)*[-_. ]+\d+", root)) and m.group(1) in known:
            root = m.group(1)
        shorter[key] = root
    return [shorter[k] for k in ids]


def assign_guessed_patients(records: list[Record], origin: str) -> tuple[str | None, str]:
    """Give records the patients their file names name (in place): (the regex, a note), or (None, a note) when the
    names name none and each image stays its own patient."""
    ids, why = guess_patients([PurePath(r.id).name for r in records])
    if ids is None:
        return None, f"{origin}: no patient ids ({why}): each image is its own patient"
    for r, patient in zip(records, ids):
        r.patient_id = patient
    return PATIENT_GUESS, why
