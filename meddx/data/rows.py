"""Checks on the rows of a CSV manifest once read: image paths that leave its folder or do not exist, and images
listed twice (dropped when the rows agree, refused when they do not)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from meddx.data.records import Record
from meddx.errors import DataError


def check_paths(records: list[Record], bases: dict, check_files: bool, allow_outside_root: bool) -> None:
    """One DataError for image paths that leave the manifest's folder (unless allowed), then for missing files."""
    outside = [
        f"{r.row}: {r.id}"
        for r in records
        if not (allow_outside_root or _inside(bases[r.split], r.id.replace("\\", "/")))  # as the source is read
    ]
    if outside:
        raise DataError(
            f"{len(outside)} image path(s) in the manifest leave its folder (absolute or '..'), e.g. {outside[0]}; "
            "if that is intended, pass --allow-outside-root (data.allow_outside_root=true)"
        )
    absent = [r for r in records if check_files and not Path(r.source).is_file()]
    if absent:
        missing = [f"{r.row}: {r.source}" for r in absent]
        raise DataError(
            f"{len(missing)} image file(s) named in the manifest do not exist, e.g.\n  "
            + "\n  ".join(missing[:5])
            + _root_hint(absent, bases)
        )


def _root_hint(absent: list[Record], bases: dict) -> str:
    """A folder the missing paths are found under as written (the working folder, a parent of the manifest's or a
    folder beside it), so that --root is a fix that works: said with how many of the first 200 it finds."""
    base = Path(next(iter(bases.values())))
    paths = [r.id.replace("\\", "/") for r in absent[:200]]
    beside = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    for folder in [Path("."), *list(base.resolve().parents)[:3], *beside]:
        found = sum((folder / p).is_file() for p in paths)
        if found:
            return f"\n  {found} of the first {len(paths)} are under {folder}: --root {folder}"
    return ""


def _inside(base: Path, image: str) -> bool:
    """Whether a manifest's image path stays inside its folder (relative, and no '..' climbing out of it)."""
    if os.path.isabs(image) or Path(image).drive:
        return False
    root = os.path.abspath(base)  # `manifest.csv` in the working folder: its base is '.', which no path starts with
    path = os.path.abspath(os.path.join(root, image))
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def drop_repeated_rows(
    records: list[Record], names: list[str] | None = None, classes: list[str] | None = None
) -> tuple[list[Record], list[str]]:
    """Rows naming an image already listed for the same split: dropped (with a note) when they say the same; a
    DataError naming both rows when they give it other labels or another patient (one image, one truth). An image in
    two official splits is left to the leakage gate."""
    first: dict[str, Record] = {}
    kept, dropped = [], []
    for r in records:
        key = f"{r.split}:{os.path.normpath(r.source)}"
        seen = first.setdefault(key, r)
        if seen is r:
            kept.append(r)
            continue
        for what, a, b in (("labels", seen.labels, r.labels), ("patient", seen.patient_id, r.patient_id)):
            same = np.array_equal(a, b, equal_nan=True) if what == "labels" else a == b
            if not same:
                there = seen.row.removeprefix(r.row.rsplit(" row ", 1)[0] + " ")  # "row 2" within one file
                raise DataError(
                    f"{r.row}: {r.id} is also on {there} with other {what} "
                    f"({_show(a, names, classes)} there, {_show(b, names, classes)} here)"
                )
        dropped.append(r.row)
    shown = ", ".join(dropped[:3]) + (", ..." if len(dropped) > 3 else "")
    note = f"{len(dropped)} repeated row(s) naming an image already listed, with the same labels: dropped ({shown})"
    return kept, [note] if dropped else []


def _show(value, names: list[str] | None = None, classes: list[str] | None = None) -> str:
    """A label vector as its class ('PNEUMONIA', the other class of a binary set, or the labels set to 1)."""
    if not isinstance(value, np.ndarray):
        return repr(value)
    if not names or len(names) != len(value) or np.isnan(value).any():
        return str(np.asarray(value).tolist())
    on = [n for n, v in zip(names, value) if v >= 0.5]
    other = [c for c in classes or [] if c not in names]
    if len(names) == 1:
        return f"'{on[0] if on else other[0]}'" if len(other) == 1 else f"{names[0]}={int(value[0] >= 0.5)}"
    return "'" + ", ".join(on) + "'" if on else "none of the labels"
