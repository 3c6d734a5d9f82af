"""`meddx compare`: DeLong's test against a plain implementation, paired intervals against a plain resampling loop
on two real runs and against the full weight matrix it once built, the same for any chunking of the draw, within a
bounded allocation, and runs on different test sets refused."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import meddx
from meddx.errors import ConfigError
from meddx.evaluation import metrics as M
from meddx.evaluation.compare import FIGURES, compare_runs, delong
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
    for page in ("compare.html", "compare.md"):  # they said 'and every DeLong p-value' decides; the interval does
        text = " ".join((tmp_path / "cmp" / page).read_text().split())
        assert "real when its paired patient interval excludes 0;" in text and "every DeLong" not in text
    resplit = datscan_variant(data_dir, tmp_path, "resplit", {"max_epochs": 1}, 0, split={"seed": 1})
    with pytest.raises(ConfigError, match="holds other samples"):
        compare_runs([datscan_run, resplit])
    proc = run_cli("compare", str(datscan_run.path), str(resplit.path), "-o", str(tmp_path / "bad"))
    assert proc.returncode == 2 and "compare runs on the same test set" in proc.stderr
    assert "Traceback" not in proc.stderr


class _Run:
    """What `compare_runs` reads of a run: its folder, task, label names and predictions."""

    def __init__(self, name: str, frame: pd.DataFrame, labels: list[str]) -> None:
        self.path, self.label_names, self.frame, self.task = Path(name), labels, frame, "multilabel"

    def predictions(self, split: str) -> pd.DataFrame:
        return self.frame


def _runs(n: int, labels: int, count: int, seed: int = 0) -> list[_Run]:
    """`count` runs of one split: several samples per patient, tied scores, an unknown and a soft label here and there,
    each run's rows in its own order."""
    rng = np.random.default_rng(seed)
    names = [f"l{j}" for j in range(labels)]
    y = (rng.random((n, labels)) < 0.3).astype(float)
    if labels > 1:
        y[rng.random(n) < 0.1, 1], y[:5, 0] = np.nan, 0.7
    base = pd.DataFrame({"id": [f"s{i}" for i in range(n)], "patient_id": rng.integers(0, int(0.6 * n), n)})
    runs = []
    for k in range(count):
        p = np.round(np.clip((0.2 + 0.1 * k) * np.nan_to_num(y) + rng.random((n, labels)), 0, 1), 2)
        frame = pd.concat(
            [base, pd.DataFrame(y, columns=names), pd.DataFrame(p, columns=[f"p_{c}" for c in names])], axis=1
        )
        runs.append(_Run(f"run{k}", frame.sample(frac=1, random_state=k).reset_index(drop=True), names))
    return runs


def _full_matrix(runs: list[_Run], resamples: int, seed: int) -> list[dict]:
    """Each run's figures per resample as `compare_runs` computed them before its draw was chunked: numpy metrics on
    the whole (1 + B, N) weight matrix."""
    first = runs[0].frame
    y = first[runs[0].label_names].to_numpy(np.float64)
    w = np.vstack([np.ones(len(y)), bootstrap_weights(first["patient_id"].to_numpy(), resamples, seed)])
    fns = {"roc_auc": M.roc_auc, "pr_auc": M.average_precision, "brier": M.brier, "log_loss": M.log_loss_binary}
    out = []
    for run in runs:
        p = run.frame.set_index("id").loc[first["id"], [f"p_{n}" for n in run.label_names]].to_numpy()
        per_label = {
            name: [M.on_known(fn, y[:, j], p[:, j], w, name in ("roc_auc", "pr_auc")) for j in range(y.shape[1])]
            for name, fn in fns.items()
        }
        out.append({name: np.nanmean(np.column_stack(v), axis=1) for name, v in per_label.items()})
    return out


def _leaves(tree, path: str = "") -> dict:
    """A result's leaves by path ('runs/1/vs_best/roc_auc/ci/0'), each an interval bound, a value or a verdict."""
    if isinstance(tree, dict | list):
        items = tree.items() if isinstance(tree, dict) else enumerate(tree)
        return {k: v for key, sub in items for k, v in _leaves(sub, f"{path}/{key}").items()}
    return {path: tree}


def test_paired_intervals_equal_the_full_matrix_and_any_chunking():
    """Chunked (8 resamples a chunk) and unchunked draws give the same result, ranking figures and verdicts to the bit
    (log loss and Brier: sums of a matrix product whose rounding follows its shape, 1e-12); both equal the figures,
    intervals and paired differences of the whole weight matrix on the same seed (1e-12)."""
    runs = _runs(600, 2, 3)
    n_patients = runs[0].frame["patient_id"].nunique()
    small, whole = (compare_runs(runs, resamples=300, seed=3, chunk_bytes=c) for c in (20 * 8 * n_patients, 2**40))
    small_leaves, whole_leaves = _leaves(small), _leaves(whole)
    assert small_leaves.keys() == whole_leaves.keys() and small["best"] == "run2"
    for key, value in small_leaves.items():
        close = isinstance(value, float) and ("/brier/" in key or "/log_loss/" in key)
        assert value == (pytest.approx(whole_leaves[key], rel=1e-12) if close else whole_leaves[key]), key
    old, q = _full_matrix(runs, 300, 3), [0.025, 0.975]
    for row in small["runs"]:
        i = int(row["name"][3:])
        for name in FIGURES:
            got = row["figures"][name]
            expected = [old[i][name][0], *np.nanquantile(old[i][name][1:], q)]
            assert [got["value"], *got["ci"]] == pytest.approx(expected, abs=1e-12), (i, name)
            if i != 2:  # the paired difference from the best: the same resample of both runs
                d, got = old[i][name] - old[2][name], row["vs_best"][name]
                assert [got["diff"], *got["ci"]] == pytest.approx([d[0], *np.nanquantile(d[1:], q)], abs=1e-12)


def test_a_paired_comparison_allocates_a_chunk_not_the_whole_weight_matrix():
    """10,000 patients and 400 resamples: the whole weight matrix is 32 MB; drawn in chunks of 1 MiB, the comparison
    allocates under a quarter of that at its peak, and in one chunk it allocates the matrix and more."""
    n, resamples = 10_000, 400
    runs = _runs(n, 1, 2, seed=1)
    for run in runs:
        run.frame["patient_id"] = run.frame["id"]  # every sample its own patient
    full_matrix = (1 + resamples) * n * 8
    compare_runs(_runs(200, 1, 2), resamples=10)  # the kernel compiled (or loaded) outside the measurement
    peaks = {}
    for chunk_bytes in (2**20, 2**40):
        tracemalloc.start()
        try:
            compare_runs(runs, resamples=resamples, chunk_bytes=chunk_bytes)
            peaks[chunk_bytes] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peaks[2**20] < full_matrix / 4 < full_matrix < peaks[2**40], peaks


def test_the_table_says_what_its_multiclass_figures_are_and_why_an_excluding_interval_is_not_real():
    """A 3-class compare showed 'log loss 0.4705' beside the report's 0.732 (one-vs-rest mean against categorical),
    and 'not distinguishable' beside an interval that excluded 0 (DeLong, per image and per label, disagreed): the
    patients' paired interval decides, as everywhere in meddx, and the disagreement is said."""
    from meddx.evaluation.compare import comparison_table

    figure = {"value": 0.8, "ci": [0.7, 0.9]}
    figures = {k: figure for k in ("roc_auc", "pr_auc", "brier", "log_loss")}
    second = {
        "name": "b",
        "figures": figures,
        "delong": {"x": {"p": 0.2}},
        "vs_best": {"roc_auc": {"diff": -0.03, "ci": [-0.07, -0.002], "real": True, "delong_agrees": False}},
    }
    result = {"task": "multiclass", "runs": [{"name": "a", "figures": figures, "vs_best": {}}, second]}  # fmt: skip
    header, rows = comparison_table(result)
    assert header[6] == "log loss (one-vs-rest, mean over classes)" and "one-vs-rest" in header[5]
    assert rows[1][-1].startswith("worse (real) by the patients' paired interval; DeLong's per-image p is not below")
    assert comparison_table({**result, "task": "binary"})[0][6] == "log loss"


def test_an_ensemble_of_one_run_twice_is_refused(tmp_path):
    """`meddx ensemble runs/a runs/a` averaged a run with itself, weights 0.5 and 0.5, without a word."""
    from meddx.errors import ConfigError
    from meddx.evaluation.ensemble import ensemble_runs

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.yaml").write_text("name: a\n")
    with pytest.raises(ConfigError, match="lists one run twice"):
        ensemble_runs([tmp_path / "a", str(tmp_path / "a" / ".." / "a")], tmp_path / "out")


def test_the_table_says_when_a_run_is_not_above_chance():
    """Four NIH runs between 0.41 and 0.56, all intervals holding 0.5: the table said 'best' and 'not
    distinguishable', while each report said the run does not beat the prior."""
    from meddx.evaluation.compare import comparison_table

    def figures(lo: float) -> dict:
        return {k: {"value": 0.6, "ci": [lo, 0.7]} for k in ("roc_auc", "pr_auc", "brier", "log_loss")}

    second = {"name": "b", "figures": figures(0.55), "delong": {"x": {"p": 0.4}},
              "vs_best": {"roc_auc": {"diff": -0.01, "ci": [-0.05, 0.03], "real": False}}}  # fmt: skip
    first = {"name": "a", "figures": figures(0.45), "vs_best": {}}
    _, rows = comparison_table({"task": "binary", "runs": [first, second]})
    assert rows[0][-1] == "best; not above chance (its ROC AUC interval holds 0.5)"
    assert rows[1][-1] == "not distinguishable from the best"
    below = {**first, "figures": {k: {"value": 0.3, "ci": [0.2, 0.4]} for k in first["figures"]}}
    _, rows = comparison_table({"task": "binary", "runs": [below]})
    assert rows[0][-1].startswith("best; below chance (its ROC AUC interval lies under 0.5")
    few = comparison_table({"task": "binary", "runs": [first, second], "fewest_class_patients": 1})[1]
    assert all(r[-1].endswith("a label has 1 patient(s) of a class: too few to tell") for r in few)  # as the report
