"""De-identified report files of token ids, `report_ID|,|tokens[|,|labels]` (Tianchi 2021, rounds 1 and 2): the reader
returns token records; identical descriptions share a patient id."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meddx.data.records import DataSet, Record
from meddx.errors import DataError, not_found

SEP = "|,|"
N_REGIONS, N_TYPES = 17, 12
REGION_NAMES = [f"region_{i}" for i in range(N_REGIONS)]
TYPE_NAMES = [f"type_{i}" for i in range(N_TYPES)]
INT64_MAX = np.iinfo(np.int64).max


def is_tianchi_file(path: str | Path) -> bool:
    """True when the file's first line uses the `|,|` field separator."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return SEP in f.readline()
    except OSError:
        return False


def _ids(text: str, limit: int | None, what: str, where: str) -> list[int]:
    out = []
    for t in text.split():
        if not (t.isascii() and t.isdigit()):  # '²' is a digit to str.isdigit, not to int()
            raise DataError(f"{where}: {what} {t[:40]!r} is not a non-negative integer")
        if len(t) > 18 and int(t) > INT64_MAX:  # NumPy's int64 tokens (it was an OverflowError traceback)
            raise DataError(f"{where}: {what} {t[:40]}{'...' if len(t) > 40 else ''} is larger than 2^63 - 1")
        v = int(t)
        if limit is not None and v >= limit:
            raise DataError(f"{where}: {what} {v} is out of range (0-{limit - 1})")
        out.append(v)
    return out


class _Format:
    """What the first line of a file fixes: 2 or 3 fields, and (labelled files) round 1 or 2 labels."""

    def __init__(self) -> None:
        self.n_fields: int | None = None
        self.round2: bool | None = None

    def fields(self, line: str, where: str) -> list[str]:
        fields = line.split(SEP)
        if self.n_fields is None:
            self.n_fields = len(fields)
            if self.n_fields not in (2, 3):
                raise DataError(f"{where}: {self.n_fields} fields; expected report_ID|,|description[|,|label]")
        if len(fields) != self.n_fields:
            raise DataError(
                f"{where}: {len(fields)} fields where the file's first line has {self.n_fields} (one of the two "
                "lacks or adds a field)"
            )
        return fields

    def labels(self, label: str, where: str) -> tuple[list[int], list[int] | None]:
        """Region ids and (round 2) type ids of one label field; empty = normal (in round 2, ',' or nothing)."""
        if not label.strip():
            return [], None
        if self.round2 is None:
            self.round2 = "," in label
        if self.round2 != ("," in label):
            raise DataError(
                f"{where}: label {label.strip()!r} is not in the file's format "
                f"({'regions,types' if self.round2 else 'region ids without a comma'})"
            )
        reg_text, _, type_text = label.partition(",")
        regions = _ids(reg_text, N_REGIONS, "region id", where)
        return regions, _ids(type_text, N_TYPES, "type id", where) if self.round2 else None


def _lines(path: Path) -> list[str]:
    """The file's lines as UTF-8 (a leading byte-order mark dropped, not kept in the first report_ID)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        hint = "; it looks like UTF-16: save it as UTF-8" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        line = data[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path} line {line}: not UTF-8 text (byte {e.start}){hint}; a Tianchi file "
            "is lines of report_ID|,|token ids"
        ) from None


def _rows(path: Path, form: _Format) -> list[tuple]:
    """(report id, tokens, regions, types, where) per non-blank line, every field checked."""
    rows, seen = [], set()
    for n, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        fields = form.fields(line, where)
        rid = fields[0].strip()
        if not rid:
            raise DataError(f"{where}: empty report_ID")
        if rid in seen:
            raise DataError(f"{where}: report_ID {rid} appears twice")
        seen.add(rid)
        if not rows and not rid.isdigit() and not fields[1].replace(" ", "").isdigit():
            raise DataError(f"{where}: {line[:60]!r} looks like a header; Tianchi files have none: remove that line")
        tokens = _ids(fields[1], None, "token", where)
        if not tokens:
            raise DataError(f"{where}: empty description")
        regions, types = form.labels(fields[2], where) if len(fields) == 3 else (None, None)
        rows.append((rid, tokens, regions, types, where))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def read_tianchi(path: str | Path, label_set: str = "both", require_labels: bool = True) -> DataSet:
    """A Tianchi file `report_ID|,|tokens|,|label` (train) or `report_ID|,|tokens` (test), rounds 1 and 2.

    Round 1 labels are region ids; round 2 labels are `regions,types`. Empty label = normal. Identical
    descriptions share a patient id so that a split never puts them on two sides.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: a folder, not a Tianchi file" if path.is_dir() else not_found("Tianchi file", path))
    form = _Format()
    rows = _rows(path, form)
    labelled = form.n_fields == 3
    if require_labels and not labelled:
        raise DataError(f"{path}: no label field (report_ID|,|description only); it is a test file")
    if label_set == "types" and labelled and not form.round2:
        raise DataError(f"{path}: label_set 'types' needs a round-2 file (labels 'regions,types')")
    use_regions = label_set in ("both", "regions") or not labelled
    use_types = bool(form.round2) and label_set in ("both", "types")
    names = (REGION_NAMES if use_regions else []) + (TYPE_NAMES if use_types else [])
    first_by_text: dict[bytes, str] = {}
    records = []
    for rid, tokens, regions, types, where in rows:
        y = np.zeros(len(names), np.float32)
        if use_regions and regions:
            y[regions] = 1
        if use_types and types:
            y[[(N_REGIONS if use_regions else 0) + t for t in types]] = 1
        arr = np.asarray(tokens, dtype=np.int64)
        patient = first_by_text.setdefault(arr.tobytes(), rid)
        records.append(Record(rid, patient, str(path), y, row=where, tokens=arr))
    dups = sum(1 for r in records if r.patient_id != r.id)
    notes = [
        "each report is its own patient"
        + (f"; {dups} duplicate description(s) grouped with their first copy" if dups else "")
    ]
    if not labelled:
        notes.append("unlabelled file (test set): labels are all zero")
    return DataSet(records, names, "multilabel", origin=str(path), notes=notes)


def read_descriptions(paths: list[str]) -> list[np.ndarray]:
    """Token arrays of unlabelled (or labelled) `|,|` files, labels ignored: the vocabulary and MLM corpus."""
    return [r.tokens for p in paths for r in read_tianchi(p, require_labels=False).records]
