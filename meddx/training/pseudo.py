"""Pseudo-labels (semi-supervised, as the Tianchi 2021 teams used them): earlier runs' confident predictions on
unlabelled descriptions join the training split as soft targets. Fold-safe: a source model may label only if it never
trained on this run's test rows (nor on its val rows), checked on the runs' own split files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from meddx.config import RunConfig
from meddx.data.records import PSEUDO_PREFIX, DataSet, Record
from meddx.data.reports import read_tianchi
from meddx.data.sequences import is_sequence
from meddx.errors import ConfigError
from meddx.run import Run


def _safe(run: Run, val: set[str], test: set[str]) -> bool:
    """True when `run` trained on none of the test rows and chose its epochs on none of them either, and its training
    rows hold none of the val rows."""
    table = run.split_table()
    seen = set(table.loc[table["split"].isin(["train", "val"]), "id"])
    trained = set(table.loc[table["split"] == "train", "id"])
    return not (seen & test) and not (trained & val)


def source_runs(source: Path, val: set[str], test: set[str], label_names: list[str]) -> list[Run]:
    """The runs of a run or `meddx cv` folder allowed to label for this split (for a CV folder: the fold whose model
    never saw this run's test rows); anything else is one ConfigError line."""
    if (source / "cv.json").is_file():
        candidates = [Run(source / name) for name in json.loads((source / "cv.json").read_text())["runs"]]
    elif (source / "config.yaml").is_file():
        candidates = [Run(source)]
    else:
        raise ConfigError(f"train.pseudo_labels: {source} is not a run or `meddx cv` folder")
    safe = [r for r in candidates if _safe(r, val, test)]
    if not safe:
        raise ConfigError(
            f"train.pseudo_labels: every model in {source} trained on some of this run's test or val reports, so its "
            "labels would leak them; use a source made with the same data, folds and split seed"
        )
    if safe[0].label_names != label_names:
        raise ConfigError(f"train.pseudo_labels: {source} predicts {len(safe[0].label_names)} labels, this run "
                          f"{len(label_names)}; use a source trained on the same labels")  # fmt: skip
    return safe


def pseudo_records(cfg: RunConfig, ds: DataSet) -> tuple[list[Record], str | None]:
    """Confident soft-labelled training records for `ds` (already split) and a note on them; none when not asked."""
    pc = cfg.train.pseudo_labels
    if not pc.sources:
        return [], None
    if not is_sequence(ds):
        raise ConfigError("train.pseudo_labels labels unlabelled `|,|` descriptions; this data set is not one")
    val = {r.id for r in ds.records if r.split == "val"}
    test = {r.id for r in ds.records if r.split == "test"}
    runs = [run for s in pc.sources for run in source_runs(Path(s), val, test, ds.label_names)]
    unlabelled = [(Path(f).name, r) for f in pc.data for r in read_tianchi(f, require_labels=False).records]
    if not unlabelled:
        return [], None
    probs = np.mean([run.predict_proba([r for _, r in unlabelled]) for run in runs], axis=0)
    c = pc.confidence
    keep = np.flatnonzero(((probs <= 1 - c) | (probs >= c)).all(1))
    records = []
    for i in keep:
        name, r = unlabelled[i]
        rid = f"{PSEUDO_PREFIX}{name}:{r.id}"  # test A and B reuse ids: the file name keeps them apart
        records.append(
            Record(rid, rid, r.source, probs[i].astype(np.float32), split="train", row=r.row, tokens=r.tokens)
        )
    note = (
        f"{len(records)} of {len(unlabelled)} unlabelled reports added to train with soft pseudo-labels (every label "
        f"at most {1 - c:.2g} or at least {c:.2g}) from {len(runs)} source model(s) that never saw the test rows"
    )
    return records, note
