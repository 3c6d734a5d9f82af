"""Per-fold figures of bench/tianchi.py's neural rows, kept in the repository (bench/results/tianchi-rN/KEY/foldK.json):
figures only, never predictions (the Tianchi data is internal). A 5-fold row that outlasts one machine resumes on the
next: its folds finished elsewhere are read back as figures and only the missing folds train."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from meddx.evaluation.metrics import mlogloss, roc_auc

RESULTS = Path(__file__).parent / "results"
SHARE = 0.6  # round 2: score = 0.6 x (1 - region mlogloss) + 0.4 x (1 - type mlogloss)


def loss(y: np.ndarray, p: np.ndarray, names: list[str]) -> tuple[float, ...]:
    """(combined loss = 1 - score, mlogloss over every label, regions', types'); round 1: regions only."""
    types = np.array([n.startswith("type_") for n in names])
    everything = mlogloss(y, p)
    if not types.any():
        return everything, everything, everything, float("nan")
    r, t = mlogloss(y[:, ~types], p[:, ~types]), mlogloss(y[:, types], p[:, types])
    return SHARE * r + (1 - SHARE) * t, everything, r, t


def mean_auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.nanmean([roc_auc(y[:, j], p[:, j])[0] for j in range(y.shape[1])]))


def fold_figures(y: np.ndarray, p: np.ndarray, names: list[str]) -> dict:
    """One fold's scored rows as figures: how many, the three losses, the mean AUC over labels."""
    combined, _, regions, types = loss(y, p, names)
    types = None if np.isnan(types) else types  # round 1 has none (JSON has no NaN)
    return {"rows": len(y), "combined": combined, "regions": regions, "types": types, "auc": mean_auc(y, p)}


def pooled(folds: list[dict], field: str) -> float:
    """A figure over every row of `folds`: losses are means over reports, so the rows-weighted mean is exact; the AUC
    so pooled is the folds' mean, not the AUC over all rows."""
    rows = np.array([f["rows"] for f in folds], float)
    return float(rows @ np.array([f[field] for f in folds], float) / rows.sum())


def commit() -> str:
    """The commit of the code that ran (`+` when the work tree had changes), for the ledger."""
    try:
        git = ["git", "-C", str(Path(__file__).parents[1])]
        rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        code = ["meddx", "bench/*.py"]  # not bench/results: the ledger's own files would mark every later fold
        dirty = subprocess.run([*git, "status", "--porcelain", "--", *code], capture_output=True, text=True)
        return rev.stdout.strip() + ("+" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Ledger:
    """The figures of each finished fold of each row, one small JSON file per fold, under a folder named by what the
    folds depend on beyond the row (`tag`: epochs, fold count, a data file given with --data), so a run of another
    recipe never reads them as its own."""

    def __init__(self, round_: int, root: Path = RESULTS, tag: str = ""):
        self.folder = root / f"tianchi-r{round_}" / tag

    def get(self, key: str, k: int) -> dict | None:
        f = self.folder / key / f"fold{k}.json"
        return json.loads(f.read_text()) if f.is_file() else None

    def put(self, key: str, k: int, entry: dict) -> None:
        f = self.folder / key / f"fold{k}.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")

    def folds(self, key: str, count: int) -> dict[int, dict]:
        return {k: e for k in range(count) if (e := self.get(key, k)) is not None}


def fold_span(args) -> str:
    """Which folds the neural rows ran on, e.g. 'folds 0-4 of 5'."""
    first = f"folds 0-{args.neural_folds - 1}" if args.neural_folds > 1 else "fold 0"
    return f"{first} of {args.folds}"


def fold_note(args) -> str:
    return f"{fold_span(args)}, {args.epochs} epochs max"
