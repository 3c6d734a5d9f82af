"""Reading a CSV manifest as strings: its encoding and separator told from its first bytes and header."""

from __future__ import annotations

import csv as csv_module
import re
from pathlib import Path

import pandas as pd

from meddx.errors import DataError


def read_table(csv: str | Path) -> pd.DataFrame:
    """A CSV as strings, blank cells kept: UTF-8 or UTF-16, comma, semicolon or tab separated; one line when
    unreadable. Rows with every cell blank (blank lines, Excel's trailing `,,,`) are left out and the index keeps
    each row's first line in the file, so `line_numbers` name file lines (header = 1) past them and past cells
    quoted across lines."""
    try:
        encoding = _encoding(str(csv))
        sep = _sep(str(csv), encoding)
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False, encoding=encoding, sep=sep, skip_blank_lines=False)
    except Exception as e:  # noqa: BLE001 - a decoding or parsing error, for every caller (predict too)
        said = " ".join(str(e).split())  # pandas' messages end with a newline
        if isinstance(e, UnicodeDecodeError):
            said = _not_utf8(str(csv))
        raise DataError(f"{csv}: not a readable CSV ({type(e).__name__}: {said})") from None
    if frame.empty:
        return frame
    starts = _row_lines(str(csv), encoding, sep)
    if len(starts) == len(frame):  # else (a reader disagreement): the row's place, as before
        frame.index = [line - 2 for line in starts]
    return frame[~frame.apply(lambda col: col.str.strip() == "").all(axis=1)]


def line_numbers(frame: pd.DataFrame) -> list[int]:
    """Each row's line in its file (header = 1), blank lines and cells quoted across lines before it counted."""
    return [int(i) + 2 for i in frame.index]


def _row_lines(csv: str, encoding: str, sep: str) -> list[int]:
    """The line each data row starts on (header = 1), as the csv module counts them; empty when it cannot read."""
    try:
        with open(csv, encoding=encoding, newline="") as f:
            reader = csv_module.reader(f, delimiter=sep)
            next(reader, None)
            starts, done = [], reader.line_num
            for _ in reader:
                starts.append(done + 1)
                done = reader.line_num
    except (OSError, UnicodeDecodeError, csv_module.Error):
        return []
    return starts


def _sep(csv: str, encoding: str) -> str:
    """The separator: a comma, else the semicolon (Excel in many European locales) or tab the header holds."""
    with open(csv, encoding=encoding, errors="replace") as f:
        header = f.readline()
    header = re.sub(r'"[^"]*"', "", header)  # separators inside quoted names do not count
    if csv.lower().endswith(".tsv"):
        return "\t"
    return max((",", ";", "\t"), key=header.count)  # a tie (none): the comma


def _encoding(csv: str) -> str:
    """UTF-16 (as Excel saves 'Unicode text') or UTF-8 with or without a byte-order mark, from the first bytes."""
    with open(csv, "rb") as f:
        head = f.read(3)
    return "utf-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"


def _not_utf8(csv: str) -> str:
    """Where a file that is not UTF-8 (Latin-1, as older Excel saves) first breaks it, and what to do."""
    raw = Path(csv).read_bytes()
    try:
        raw.decode("utf-8-sig")
    except UnicodeDecodeError as u:
        line = raw[: u.start].count(b"\n") + 1
        return f"byte {raw[u.start : u.start + 1]!r} on line {line} is not UTF-8; save the file as UTF-8"
    return "not UTF-8; save the file as UTF-8"
