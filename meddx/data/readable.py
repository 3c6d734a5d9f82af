"""Images that cannot be decoded: all named in one line, or, on request (`data.skip_unreadable`,
`--skip-unreadable`), left out and named in the data's notes; never a silent loss."""

from __future__ import annotations

from meddx.data.images import read_pixels
from meddx.data.records import DataSet, Record
from meddx.errors import DataError

SHOWN = 5  # unreadable files named in a line; the run's data.json keeps them all


def unreadable(records: list[Record]) -> dict[str, str]:
    """Record id -> why its pixels cannot be read, for the image records not yet read (one with a perceptual hash
    was decoded for the copy check already)."""
    reasons: dict[str, str] = {}
    for r in records:
        if r.tokens is not None or r.phash:
            continue
        try:
            read_pixels(r)
        except (DataError, OSError) as e:
            reasons[r.id] = str(e).splitlines()[0]
    return reasons


def _listed(reasons: dict[str, str]) -> str:
    more = f"; and {len(reasons) - SHOWN} more" if len(reasons) > SHOWN else ""
    return "; ".join(list(reasons.values())[:SHOWN]) + more


def drop_unreadable(ds: DataSet, skip: bool = True) -> list[str]:
    """With `skip`, remove the records that cannot be read and add one note naming them; without it, stop naming
    every one at once. Returns every reason, one per file left out."""
    reasons = unreadable(ds.records)
    if not reasons:
        return []
    if not skip or len(reasons) == len(ds.records):
        raise DataError(
            f"{len(reasons)} of {len(ds.records)} image(s) cannot be read (fix or remove them"
            + (", or --skip-unreadable leaves them out" if not skip else "")
            + f"): {_listed(reasons)}"
        )
    ds.records = [r for r in ds.records if r.id not in reasons]
    patients = len({r.patient_id for r in ds.records})  # the reader's notes counted the files as read
    left = f"{len(ds.records)} images of {patients} patients remain"
    ds.notes.append(f"left out {len(reasons)} unreadable image(s) (--skip-unreadable): {_listed(reasons)}; {left}")
    return list(reasons.values())
