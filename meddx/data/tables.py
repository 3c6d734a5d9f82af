"""Reading a CSV manifest as strings: its encoding and separator told from its first bytes and header."""

from __future__ import annotations

import csv as csv_module
import re
import warnings
from pathlib import Path

import pandas as pd

from meddx.errors import DataError


def read_table(csv: str | Path) -> pd.DataFrame:
    """A CSV as strings (UTF-8 or UTF-16; comma, semicolon or tab), all-blank rows left out, indexed so `line_numbers`
    name each row's first line in the file; one line when unreadable."""
    try:
        encoding = _encoding(str(csv))
        lead = _leading_blank_lines(str(csv), encoding)  # a header after blank lines is still the header
        sep = _sep(str(csv), encoding, lead)
        with warnings.catch_warnings():  # cells past the header's: checked below, never dropped unsaid
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            frame = pd.read_csv(
                csv,
                dtype=str,
                keep_default_na=False,
                encoding=encoding,
                sep=sep,
                skip_blank_lines=False,
                skiprows=lead,
                index_col=False,
            )  # fmt: skip (`a,1,` rows)
    except Exception as e:  # noqa: BLE001 - a decoding or parsing error, for every caller (predict too)
        said = " ".join(str(e).split())  # pandas' messages end with a newline
        if isinstance(e, UnicodeDecodeError):
            said = _not_utf8(str(csv))
        raise DataError(f"{csv}: not a readable CSV ({type(e).__name__}: {said})") from None
    if frame.empty:
        return frame
    starts, extra = _row_lines(str(csv), encoding, sep, lead)
    if extra:
        raise DataError(
            f"{csv}: row {extra[0]} has {extra[1]} cells, the header names {len(frame.columns)} columns; its cells "
            "past the header's would be lost (row names without a header cell, as R's write.table writes them? a "
            "separator inside an unquoted cell?)"
        )
    frame.index = [line - 2 for line in starts] if len(starts) == len(frame) else [i + lead for i in range(len(frame))]
    return frame[~frame.apply(lambda col: col.str.strip() == "").all(axis=1)]


def line_numbers(frame: pd.DataFrame) -> list[int]:
    """Each row's line in its file (header = 1), blank lines and cells quoted across lines before it counted."""
    return [int(i) + 2 for i in frame.index]


def _row_lines(csv: str, encoding: str, sep: str, lead: int) -> tuple[list[int], tuple[int, int] | None]:
    """The line each data row starts on (header = 1), as the csv module counts them (empty when it cannot read), and
    the first row with non-blank cells past the header's: (its line, its cells)."""
    starts: list[int] = []
    extra = None
    try:
        with open(csv, encoding=encoding, newline="") as f:
            reader = csv_module.reader(f, delimiter=sep)
            for _ in range(lead):
                next(reader, None)
            width, done = len(next(reader, [])), reader.line_num
            for row in reader:
                starts.append(done + 1)
                if extra is None and any(cell.strip() for cell in row[width:]):
                    extra = (done + 1, len(row))
                done = reader.line_num
    except (OSError, UnicodeDecodeError, csv_module.Error):
        return [], None
    return starts, extra


def _leading_blank_lines(csv: str, encoding: str) -> int:
    with open(csv, encoding=encoding, errors="replace") as f:
        return next((i for i, line in enumerate(f) if line.strip()), 0)


def _sep(csv: str, encoding: str, lead: int = 0) -> str:
    """The separator: a comma, else the semicolon (Excel in many European locales) or tab the header holds."""
    with open(csv, encoding=encoding, errors="replace") as f:
        header = next((line for i, line in enumerate(f) if i >= lead), "")
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
