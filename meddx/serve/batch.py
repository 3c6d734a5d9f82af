"""`meddx predict` for many scans: files, folders (recursively) and CSV manifests in; per scan the probabilities, the
decision at the run's operating point and the input-domain check out, with a file that cannot be read named in its
own row instead of stopping the batch."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pandas as pd

from meddx.data.columns import image_column
from meddx.data.images import READABLE_EXTENSIONS
from meddx.data.tables import line_numbers, read_table
from meddx.errors import DataError, MeddxError, MeddxWarning
from meddx.export.card import model_caveats
from meddx.serve.predictor import Predictor

BLANK = Path("")  # a CSV row with no image path: an error row of its own, never dropped


def expand_inputs(inputs: list[str | Path], root: str | Path | None = None) -> list[tuple[str, Path]]:
    """(id, path) per scan: a file as given; a folder's images with ids relative to it (`HC/case0.png`, as
    `meddx evaluate --data` names them; of several folders, with the folder as given in front); a CSV's image
    column, relative to `root` or else to the CSV's folder."""
    items: list[tuple[str, Path]] = []
    folders = [Path(i) for i in inputs if Path(i).is_dir()]
    for given in map(Path, inputs):
        if given.is_dir():
            files = sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in READABLE_EXTENSIONS)
            if not files:
                raise DataError(f"{given}: no image files inside")
            named = given if len(folders) > 1 else Path()  # several folders: ids keep theirs (a/x.png, b/x.png)
            items += [((named / p.relative_to(given)).as_posix(), p) for p in files]
        elif given.suffix.lower() in (".csv", ".tsv"):
            table = read_table(given)
            column = image_column(table, None, str(given))[0]
            values, lines = list(table[column]), line_numbers(table)
            if column.strip().lower().endswith(tuple(READABLE_EXTENSIONS)):  # no header: its first line is a scan
                values, lines = [column, *values], [1, *lines]
            base = Path(root) if root else given.parent
            items += [(v, base / v.strip().replace("\\", "/")) if v.strip() else
                      (f"{given} row {line}", BLANK) for line, v in zip(lines, values)]  # fmt: skip
        else:
            items.append((str(given), given))
    return items


def predict_files(path: str | Path, inputs: list[str | Path], root: str | Path | None = None) -> pd.DataFrame:
    """One row per scan: id, p_<label>, decision (the labels called positive, or the class), the operating point,
    in_domain and the domain warnings; `error` names a scan that could not be read (None for one that was: select
    failures with `frame.error.notna()`); `root`: where CSV paths start. The model's caveats (a collapsed model, one
    that does not beat the prior) are warned of and kept in `frame.attrs["model_caveats"]`."""
    predictor = Predictor(path)
    rows = []
    for scan_id, file in expand_inputs(inputs, root):
        row: dict = {"id": scan_id}
        try:
            if file == BLANK:
                raise DataError("blank image path")
            if not file.is_file():
                raise DataError(f"file not found (looked at {file.resolve()})")
            out = predictor.predict(file.read_bytes())
        except MeddxError as e:  # the service's wording ('NPY upload: ...') named for a file
            said = re.sub(r"^(?:[A-Z0-9]+ )?upload:? *", "", str(e)).replace("'upload'", f"'{file.name}'")
            said = said.replace("empty upload: the file has no bytes", "the file is empty (0 bytes)")
            rows.append({**row, "error": f"{file}: {said}"})
            continue
        row.update({f"p_{n}": round(p, 6) for n, p in out["probabilities"].items()})
        positive = [n for n, d in out["decisions"].items() if d]
        row["decision"] = "; ".join(positive) if positive else predictor.negative
        row["operating_point"] = predictor.rule
        row["in_domain"] = out["domain"]["in_distribution"]
        row["domain_warnings"] = "; ".join(out["domain"]["warnings"])
        rows.append(row)
    frame = with_caveats(pd.DataFrame(rows), path, predictor.caveats, depth=4)
    errors = frame["error"] if "error" in frame else pd.Series([None] * len(frame), dtype=object)
    frame["error"] = errors.astype(object).where(errors.notna(), None)  # missing where the scan was read, as pandas
    return frame[[c for c in frame.columns if c != "error"] + ["error"]]  # last, whichever row came first


def with_caveats(
    frame: pd.DataFrame, path: str | Path, caveats: list[str] | None = None, depth: int = 3
) -> pd.DataFrame:
    """`frame` with the model's caveats (of `path`, unless given) in `frame.attrs["model_caveats"]`, each also warned
    of (a MeddxWarning): a notebook's user sees them and keeps them with the predictions."""
    frame.attrs["model_caveats"] = model_caveats(path) if caveats is None else caveats
    for caveat in frame.attrs["model_caveats"]:
        warnings.warn(f"{path}: {caveat}", MeddxWarning, stacklevel=depth)  # depth: the user's call
    return frame


def short_table(frame: pd.DataFrame, width: int = 70) -> pd.DataFrame:
    """The table for a terminal: long warnings and errors cut to `width` characters (the CSV and JSON keep them)."""
    out = frame.copy()
    for column in ("domain_warnings", "error"):
        if column in out:
            out[column] = [v if len(str(v)) <= width else str(v)[: width - 3] + "..." for v in out[column].fillna("")]
    return out.drop(columns=[c for c in ("error",) if c in out and not (out[c] != "").any()])  # "": none failed
