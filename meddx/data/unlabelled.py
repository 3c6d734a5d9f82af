"""Unlabelled images for self-supervised pretraining: every image of the folders, CSV manifests and array files a
user names (labels, if any, ignored); the test images of a run to be fine-tuned can be left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meddx.data.columns import image_column
from meddx.data.images import READABLE_EXTENSIONS, load_array_file
from meddx.data.readers import BUNDLED, bundled_path
from meddx.data.records import Record
from meddx.data.tables import line_numbers, read_table
from meddx.errors import DataError, not_found

NO_LABELS = np.zeros(0, np.float32)


def _folder(path: Path) -> list[Record]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in READABLE_EXTENSIONS)
    return [Record(str(p.relative_to(path)), str(p), str(p), NO_LABELS) for p in files]


def _csv(path: Path) -> list[Record]:
    frame = read_table(path)
    column = image_column(frame, None, str(path))[0]
    values = frame[column].str.strip()
    records = [
        Record(v, str(path.parent / v), str(path.parent / v), NO_LABELS, row=f"{path} row {line}")
        for line, v in zip(line_numbers(frame), values)
        if v
    ]
    missing = [r for r in records if not Path(r.source).is_file()]
    if missing:
        raise DataError(
            f"{missing[0].row}: {len(missing)} of {len(records)} images named in {path.name} do not exist, "
            f"e.g. {missing[0].source} (name their folder instead)"
        )
    return records


def _arrays(path: Path) -> list[Record]:
    keys = [k for k in np.load(path, mmap_mode="r").files if k.endswith("images")]
    if not keys:
        raise DataError(f"{path}: no array named *images")
    return [
        Record(f"{k}_{i}", f"{path.name}:{k}_{i}", str(path), NO_LABELS, index=i, key=k)
        for k in keys
        for i in range(len(load_array_file(str(path), k)))
    ]


def read_unlabelled(paths: list[str], exclude: set[str] | None = None) -> list[Record]:
    """Records of every image in `paths` (folders recursively, CSVs by their image column, .npz by every *images
    array, or a bundled name); `exclude`: source paths or record ids to leave out (a target's test split)."""
    records: list[Record] = []
    for name in paths:
        path = bundled_path(name) if name in BUNDLED else Path(name)
        if not path.exists():
            raise DataError(not_found("pretraining data", name))
        reader = _folder if path.is_dir() else _arrays if path.suffix.lower() == ".npz" else _csv
        records += reader(path)
    exclude = exclude or set()
    kept = [r for r in records if r.source not in exclude and r.id not in exclude]
    if not kept:
        raise DataError(f"no images in {', '.join(paths)}" + (" after the exclusions" if records else ""))
    return kept
