"""The ensemble rows of bench/tianchi.py: weights chosen on each fold's val, Platt-scaled on val, and cross-fitted
out-of-fold weights, over the rows whose predictions are on this machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from _tianchi_ledger import fold_note

from meddx.config import EvaluateConfig
from meddx.evaluation.calibration import apply_platt, fit_platt
from meddx.evaluation.ensemble import ensemble_runs, greedy_weights
from meddx.tianchi import calibrate_oof, label_groups


def oof(folder: Path, names: list[str], index: dict, y: np.ndarray, neural: np.ndarray, folds_run: int, split="oof"):
    """Probabilities in train-file order from an oof.csv (cv folder) or the test predictions of fold runs."""
    files = (
        [folder / "oof.csv"] if split == "oof" else [folder / f"fold{k}/predictions/test.csv" for k in range(folds_run)]
    )
    frame = pd.concat([pd.read_csv(f, dtype={"id": str}) for f in files])
    p = np.zeros_like(y)
    p[[index[i] for i in frame["id"]]] = frame[[f"p_{n}" for n in names]].to_numpy()
    return p[neural]


def ensembles(rows, probs, cv_dirs, ds, y, neural, args, index) -> None:
    """Weights chosen on each fold's val (`meddx ensemble --weights val`), and when every fold ran, cross-fitted
    out-of-fold weights (fold k's from the other folds' OOF rows only): neither lets a scored row choose."""
    note = fold_note(args)

    def val_weighted():
        weights = []
        for k in range(args.neural_folds):
            shutil.rmtree(rows.folder / "ensemble_val" / f"fold{k}", ignore_errors=True)
            ens = ensemble_runs([d / f"fold{k}" for d in cv_dirs], rows.folder / "ensemble_val" / f"fold{k}",
                                EvaluateConfig(bootstrap=0), weights="val")  # fmt: skip
            weights.append(json.loads((ens.path / "ensemble.json").read_text())["weights"])
        mean_w = ", ".join(f"{d.name} {w:.2f}" for d, w in zip(cv_dirs, np.mean(weights, 0)) if w > 0)
        p = oof(rows.folder / "ensemble_val", ds.label_names, index, y, neural, args.neural_folds, "folds")
        return p, "meddx ensemble, weights chosen on each fold's val", note + f"; mean weights: {mean_w}"

    rows.add_cached("ensemble_val-" + "+".join(d.name for d in cv_dirs), val_weighted, neural)
    rows.add_cached("ensemble_val_platt-" + "+".join(d.name for d in cv_dirs), lambda: _val_platt(rows, ds, y, neural,
                    index, args), neural)  # fmt: skip
    if args.neural_folds == args.folds:
        blended, used = np.zeros_like(probs[0]), np.zeros(len(probs))
        fold_of = rows.folds[neural]
        for k in range(args.folds):
            other, this = fold_of != k, fold_of == k
            w = greedy_weights([p[other] for p in probs], y[neural][other], "multilabel")
            blended[this] = sum(wi * p[this] for wi, p in zip(w, probs))
            used += w / args.folds
        mean_w = ", ".join(f"{d.name} {w:.2f}" for d, w in zip(cv_dirs, used) if w > 0)
        name = "meddx ensemble, cross-fitted out-of-fold weights"
        rows.add(name, blended, neural, 0, note + f"; mean weights: {mean_w}")
        scaled = calibrate_oof(y[neural], blended, fold_of, label_groups(ds.label_names))
        rows.add(name + ", Platt-scaled out of fold", scaled, neural, 0, note + "; `meddx tianchi blend`'s calibration")


def _val_platt(rows, ds, y, neural, index, args) -> tuple:
    """The val-weighted ensemble of each fold, Platt-scaled (regions and types apart) by slopes fitted on its val."""
    groups, names = label_groups(ds.label_names), ds.label_names
    for k in range(args.neural_folds):
        folder = rows.folder / "ensemble_val" / f"fold{k}" / "predictions"
        val, test = (pd.read_csv(folder / f"{s}.csv", dtype={"id": str}) for s in ("val", "test"))
        cols = [f"p_{n}" for n in names]
        slopes = fit_platt(val[names].to_numpy(np.float64), val[cols].to_numpy(np.float64), groups)
        test[cols] = apply_platt(test[cols].to_numpy(np.float64), groups, slopes)
        (rows.folder / "ensemble_val_platt" / f"fold{k}" / "predictions").mkdir(parents=True, exist_ok=True)
        test.to_csv(rows.folder / "ensemble_val_platt" / f"fold{k}" / "predictions" / "test.csv", index=False)
    p = oof(rows.folder / "ensemble_val_platt", names, index, y, neural, args.neural_folds, "folds")
    return p, "meddx ensemble, weights and Platt slopes chosen on each fold's val", fold_note(args)
