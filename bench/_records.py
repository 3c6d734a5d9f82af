"""Finished benchmark runs kept in the repository as plain data (the recipe fields they were trained with, val and test
predictions, seconds), so a benchmark that outlasts one machine resumes on the next instead of training again.
Internal data sets (DaTscan, Tianchi) are never recorded: their predictions stay on the machine that made them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd

RECORDS = Path(__file__).parent / "results"
INTERNAL = ("datscan", "tianchi")  # names of sets whose predictions must not enter the repository
SPLITS = ("val", "test")


class Record:
    """What the benchmarks read of a finished run (`Run`'s `predictions`, `training`, `label_names`, `path`)."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    @property
    def label_names(self) -> list[str]:
        return self.data["label_names"]

    @property
    def training(self) -> dict:
        return {"seconds": self.data["seconds"]}

    @property
    def row(self) -> dict | None:
        return self.data.get("row")

    def field(self, name: str):
        return self.data["fields"].get(name)

    def predictions(self, split: str) -> pd.DataFrame:
        return pd.DataFrame(self.data["predictions"][split]).astype({"id": str, "patient_id": str})


def record_path(bench: str, set_name: str, run_name: str, root: Path = RECORDS) -> Path | None:
    """Where a run of `set_name` is recorded, or None for an internal set."""
    if any(name in set_name.lower() for name in INTERNAL):
        return None
    return root / bench / set_name / f"{run_name}.json.gz"


def save_record(path: Path | None, run, fields: dict, row: dict | None = None) -> None:
    """Keep a finished `Run` (or, with `run` None, only a table row): the values it was trained with for `fields`,
    its val/test predictions and seconds, and the benchmark's `row` for it."""
    if path is None:
        return
    data: dict = {"row": row}
    if run is not None:
        saved = run.config.model_dump(mode="json")
        columns = ["id", "patient_id", *run.label_names, *(f"p_{n}" for n in run.label_names)]
        data |= {
            "label_names": run.label_names,
            "seconds": run.training.get("seconds", 0),
            "fields": {name: dotted(saved, name) for name in fields},
            "predictions": {s: run.predictions(s)[columns].to_dict(orient="list") for s in SPLITS},
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as f:  # the same run gives the same bytes
        f.write(json.dumps(data, separators=(",", ":")).encode())


def load_record(path: Path | None, label_names: list[str] | None = None) -> Record | None:
    """The record at `path`; None when there is none, or when its labels are not `label_names` (the data is read
    otherwise today, e.g. BreastMNIST's `class_1` became `malignant`: its predictions would not pair)."""
    if path is None or not path.is_file():
        return None
    with gzip.open(path, "rt", encoding="utf-8") as f:
        record = Record(path, json.load(f))
    if label_names is not None and record.data.get("label_names") not in (None, label_names):
        print(f"{path}: labels {record.data['label_names']}, today {label_names}: not reused", flush=True)
        return None
    return record


def dotted(tree: dict, name: str):
    for part in name.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree
