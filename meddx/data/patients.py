"""Patient ids guessed when the data give none: from file names of the form `<patient>_<image number>.ext` (NIH's
`00000005_001.png`, Kermany's `person1000_bacteria_2931.jpeg` and `IM-0248-0001.jpeg`), the commonest convention, or
from `class/<patient>/` subfolders. An image-level split of such data puts one patient's images on both sides of it;
a guess that looks like classes, batches, dates or numbers restarting in each split is refused."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import PurePath

from meddx.data.images import DICOM_EXTENSIONS
from meddx.data.records import SPLITS, Record

# group 1: the name up to its last number, less any letters-only words before that number (Kermany's `_bacteria`);
# it must hold a digit itself (`img_0001.png` or `case1000.png` name no patient)
PATIENT_GUESS = r"^(.*?\d.*?)(?:[-_. ]+[A-Za-z]+)*[-_. ]*(?<!\d)\d+\.\w+$"
SUBFOLDERS = "the first subfolder of each class folder"
DICOM_TAG = "the DICOM PatientID tag (0010,0020)"
MIN_GROUPS = 10  # fewer groups (or under two per class) are classes, batches or scanners, not patients
MAX_GROUP_SHARE = 0.25  # a group holding more than this share of the images is a site, not a person ...
MAX_GROUP_FLOOR = 30  # ... unless the data are so few that a real patient's images pass that share
MAX_STRAYS = 0.05  # names that do not follow the convention, at most this share, are each their own patient
STRAY = "file:"  # the patient id of such a name: the name itself, marked so that it is told from a guessed id
DATE = re.compile(r"(19|20)\d\d(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])")


def ids_from_names(names: list[str]) -> tuple[list[str] | None, str]:
    """Patient ids the file names name by PATIENT_GUESS, and why not (None when more than MAX_STRAYS of the names do
    not follow it). A few names that do not (a stray `scan.jpeg`) are each their own patient, keeping the others'."""
    regex = re.compile(PATIENT_GUESS)
    matches = [regex.search(n) for n in names]
    strays = [n for n, m in zip(names, matches) if not m]
    if not names or len(strays) > MAX_STRAYS * len(names):
        why = f"file names are not <patient>_<number> with a digit in <patient> (e.g. {strays[0]})"
        return None, why if names else "no file names"
    ids = _merge_extended([m.group(1) for m in matches if m])
    guessed = iter(ids)
    return [next(guessed) if m else STRAY + n for n, m in zip(names, matches)], ""


def refusal(ids: list[str], records: list[Record]) -> str | None:
    """Why these ids cannot be the records' patients, or None when they can."""
    sizes = Counter(ids)
    (top, largest), classes = sizes.most_common(1)[0], max(2, len(records[0].labels))  # binary: 2; else its labels
    if all(n == 1 for n in sizes.values()):
        return "no two images share one"
    if len(sizes) < max(MIN_GROUPS, 2 * classes):
        return f"only {len(sizes)} groups for {len(ids)} images of {classes} classes: classes or batches, not patients"
    if largest > max(MAX_GROUP_FLOOR, MAX_GROUP_SHARE * len(ids)):
        return f"'{top}' would hold {largest} of {len(ids)} images: not one patient"
    if sum(bool(DATE.search(i)) for i in sizes) > len(sizes) / 2:
        return f"most groups are dates (e.g. '{top}'), not patients"
    earlier: set[str] = set()
    for split in SPLITS:
        mine = {i for i, r in zip(ids, records) if r.split == split}
        if earlier and len(mine & earlier) > len(mine) / 2:
            return f"{len(mine & earlier)} of the {len(mine)} of the official {split} split are in an earlier split too"
        earlier |= mine
    return None


def ids_from_dicom(records: list[Record]) -> list[str] | None:
    """Every record's PatientID when each is a DICOM file (by its suffix) holding a non-empty one, else None."""
    if not records or not all(PurePath(r.source).suffix.lower() in DICOM_EXTENSIONS for r in records):
        return None
    import pydicom

    ids = []
    for r in records:
        try:
            tag = pydicom.dcmread(r.source, stop_before_pixels=True, specific_tags=["PatientID"]).get("PatientID")
        except Exception:  # noqa: BLE001 - an unreadable header is the image reader's to report
            return None
        if not str(tag or "").strip():
            return None
        ids.append(str(tag).strip())
    return ids


def _from_dicom(records: list[Record]) -> tuple[str | None, str]:
    """Give records their DICOM PatientIDs, in place, and say so: (note, ""); (None, why not) when the files hold
    none, or one id holds so many images that it is an anonymiser's constant, not a patient."""
    ids = ids_from_dicom(records)
    if ids is None:
        return None, ""
    (top, largest), n = Counter(ids).most_common(1)[0], len(set(ids))
    if n > 1 and largest <= max(MAX_GROUP_FLOOR, MAX_GROUP_SHARE * len(ids)):
        for r, patient in zip(records, ids):
            r.patient_id = patient
        return f"patient ids from {DICOM_TAG}: {n} patients for {len(ids)} images, at most {largest} ('{top}')", ""
    return None, f"{DICOM_TAG}: '{top}' on {largest} of {len(ids)} files, an anonymiser's constant, not used; "


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


def _own_patients(records: list[Record]) -> None:
    """Each record its own patient, by its whole id: `NORMAL/1.png` and `PNEUMONIA/1.png` are two (their stems, the
    id a folder gives before guessing, would make them one in the split and the bootstrap)."""
    for r in records:
        r.patient_id = r.id


def assign_guessed_patients(
    records: list[Record], origin: str, subfolders: list[tuple] | None = None, guess: bool = True
) -> tuple:
    """Give records their DICOM files' PatientIDs, else the patients their file names name, else the subfolders below
    their class folder (`subfolders`), in place: (DICOM_TAG, PATIENT_GUESS or SUBFOLDERS, a note) or (None, why not)."""
    note, dicom_no = _from_dicom(records)
    if note:  # given by the files, not guessed: read whatever `guess` says
        return DICOM_TAG, note
    if not guess:
        _own_patients(records)
        return None, f"{origin}: no patient ids given and data.guess_patients=false: each image is its own patient"
    ids, why_not = ids_from_names([PurePath(r.id.replace("\\", "/")).name for r in records])
    source, how = PATIENT_GUESS, f"the file names by patient_regex '{PATIENT_GUESS}'"
    if ids is not None:  # a stray is its own patient by its whole id (two splits' `scan.jpeg` are two images)
        ids = [STRAY + r.id if i.startswith(STRAY) else i for i, r in zip(ids, records)]
        guessed = [(i, r) for i, r in zip(ids, records) if not i.startswith(STRAY)]  # judged without the strays
        why_not = refusal([i for i, _ in guessed], [r for _, r in guessed])
    extra = ""
    if why_not and subfolders and any(subfolders):  # an image straight in its class folder is its own patient
        ids, source, how = [sub[0] if sub else r.id for sub, r in zip(subfolders, records)], SUBFOLDERS, SUBFOLDERS
        inside = [(i, r) for i, r, sub in zip(ids, records, subfolders) if sub]  # judged without the loose images
        no = refusal([i for i, _ in inside], [r for _, r in inside])
        why_not = f"{why_not}; subfolders: {no}" if no else None
        extra = _subfolder_caveats(ids, records, subfolders)
    if why_not:
        _own_patients(records)
        return None, f"{origin}: no patient ids ({dicom_no}file names: {why_not}): each image is its own patient"
    for r, patient in zip(records, ids):
        r.patient_id = patient
    sizes = Counter(ids)
    (top, largest), shared = sizes.most_common(1)[0], sum(n for n in sizes.values() if n > 1)
    strays = [r.id for r, i in zip(records, ids) if i.startswith(STRAY)] if source == PATIENT_GUESS else []
    if strays:
        extra += (
            f"; {len(strays)} file name(s) do not follow <patient>_<number> (e.g. {', '.join(strays[:3])}), each "
            "its own patient: check they are not another patient's images"
        )
    return source, (
        f"patient ids guessed from {how}: {len(sizes)} patients for {len(ids)} images, {shared} of them sharing a "
        f"patient, at most {largest} ('{top}'){extra}; --patient-regex or a patient column overrides, "
        "data.guess_patients=false turns it off"
    )


def _subfolder_caveats(ids: list[str], records: list[Record], subfolders: list[tuple]) -> str:
    """What a reviewer must know about patients from subfolders: images outside any (each its own patient), and
    folder names under several classes (one patient each: safe for the split, wrong if numbered per class)."""
    flat = sum(not sub for sub in subfolders)
    classes: dict[str, set] = {}
    for patient, r, sub in zip(ids, records, subfolders):
        if sub:
            classes.setdefault(patient, set()).add(tuple(float(x) for x in r.labels))
    several = sorted(p for p, c in classes.items() if len(c) > 1)
    out = f"; {flat} image(s) straight in a class folder, each its own patient" if flat else ""
    if several:
        out += (
            f"; {len(several)} subfolder name(s) under several classes (e.g. '{several[0]}'), each read as one "
            "patient across them"
        )
    return out
