"""`meddx compare`: DeLong's test against a plain implementation, paired intervals against a plain resampling loop
on two real runs, and runs on different test sets refused."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import meddx
from meddx.errors import ConfigError
from meddx.evaluation.compare import compare_runs, delong
from meddx.evaluation.evaluation import bootstrap_weights

from conftest import datscan_variant, run_cli


def _delong_plain(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """DeLong et al. (1988) written from the paper: structural components over every positive-negative pair."""
    y = y.astype(bool)
    comps = []
    for p in (a, b):
        x, z = p[y], p[~y]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        comps.append((psi.mean(1), psi.mean(0)))
    s10 = np.cov(np.vstack([comps[0][0], comps[1][0]]))
    s01 = np.cov(np.vstack([comps[0][1], comps[1][1]]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / y.sum() + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / (~y).sum()
    z = (comps[0][0].mean() - comps[1][0].mean()) / math.sqrt(var)
    return math.erfc(abs(z) / math.sqrt(2))


def test_delong_agrees_with_a_plain_implementation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    a = np.round(y + rng.normal(0, 1.2, 300), 1)  # rounded: ties inside and across classes
    b = np.round(y + rng.normal(0, 1.5, 300) + 0.3 * a, 1)
    result = delong(y, a, b)
    assert result["p"] == pytest.approx(_delong_plain(y, a, b), abs=1e-6)
    assert result["auc_a"] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert delong(y, a, a)["p"] == 1.0


@pytest.mark.slow
def test_compare_two_real_runs(datscan_run, data_dir, tmp_path):
    """Two DaTscan runs on the same split: the paired interval equals a plain loop over the same patient resamples
    (scikit-learn with sample weights), DeLong matches the plain version, and the files are written."""
    short = datscan_variant(data_dir, tmp_path, "short", {"max_epochs": 1, "lr": 1e-3}, bootstrap=0)
    result = meddx.compare([datscan_run.path, short.path], tmp_path / "cmp", resamples=300)
    best, other = result["runs"]
    runs = {r.path.name: r for r in (datscan_run, short)}
    frames = {n: r.predictions("test") for n, r in runs.items()}
    y = frames[best["name"]][runs[best["name"]].label_names[0]].to_numpy()
    p = {n: f[f"p_{runs[n].label_names[0]}"].to_numpy() for n, f in frames.items()}
    w = bootstrap_weights(frames[best["name"]]["patient_id"].to_numpy(), 300, 0)
    diffs = [
        roc_auc_score(y, p[other["name"]], sample_weight=row) - roc_auc_score(y, p[best["name"]], sample_weight=row)
        for row in w
    ]
    assert other["vs_best"]["roc_auc"]["ci"] == pytest.approx(list(np.quantile(diffs, [0.025, 0.975])), abs=1e-9)
    test = next(iter(other["delong"].values()))
    assert test["p"] == pytest.approx(_delong_plain(y, p[other["name"]], p[best["name"]]), abs=1e-6)
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["best"] == best["run"]
    assert "DeLong" in (tmp_path / "cmp" / "compare.html").read_text()
    resplit = datscan_variant(data_dir, tmp_path, "resplit", {"max_epochs": 1}, 0, split={"seed": 1})
    with pytest.raises(ConfigError, match="holds other samples"):
        compare_runs([datscan_run, resplit])
    proc = run_cli("compare", str(datscan_run.path), str(resplit.path), "-o", str(tmp_path / "bad"))
    assert proc.returncode == 2 and "compare runs on the same test set" in proc.stderr
    assert "Traceback" not in proc.stderr
