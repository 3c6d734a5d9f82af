"""The fused bootstrap pass (numba) equals scikit-learn and the earlier numpy implementation on the same patient
resamples (1e-12), whatever the chunking; the model and the baselines share one draw; the ROC figure's band draws the
same resamples in chunks; the kernel's disk cache falls back where no cache directory is writable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from meddx.config import EvaluateConfig
from meddx.evaluation import fused, plots
from meddx.evaluation import metrics as M
from meddx.evaluation.calibration import ece_weighted
from meddx.evaluation.evaluation import bootstrap_weights, decisions, evaluate_arrays, tradeoff_table
from meddx.evaluation.fused import FusedPass
from meddx.evaluation.intervals import PER_LABEL, add_predictor, predictor_arrays

TOL = 1e-12


def _data(n: int, labels: int, seed: int, task: str = "multilabel"):
    """Labels with unknown and soft entries, scores with many ties, patients with several samples."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < rng.uniform(0.05, 0.4, labels)).astype(float)
    if task == "multiclass":
        y = np.eye(labels)[rng.integers(0, labels, n)]
    p = np.clip(0.3 * y + 0.7 * rng.random((n, labels)), 0, 1)
    p[: n // 2] = np.round(p[: n // 2], 1)  # ties
    if task == "multiclass":
        p /= p.sum(1, keepdims=True)
    elif task == "multilabel":
        y[rng.random(y.shape) < 0.05] = np.nan
        y[:7, 0] = 0.7  # soft labels: positive in the ranking, soft in the log loss
    return y, p, rng.integers(0, int(n * 0.7), n)


def _old_score(y, p, pred, task, names, w) -> dict:
    """The bootstrap before the fused pass: numpy metrics on (B, N) sample weights (meddx 965763a)."""
    per = {}
    for j, n in enumerate(names):
        known, yb = M.known_binary(y[:, j])
        wj, pj = w[:, known], p[known, j]
        m = M.ranking_metrics(yb[known], pj, wj)
        soft = y[known, j]
        m.update(log_loss=M.log_loss_binary(soft, pj, wj), brier=M.brier(soft, pj, wj))
        m.update(M.confusion_metrics(yb[known], pred[known, j], wj))
        per[n] = m
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        macro = {k: np.nanmean(np.stack([per[n][k] for n in names]), axis=0) for k in PER_LABEL}
    overall: dict = {}
    if task == "multiclass":
        overall = {"log_loss": M.categorical_log_loss(y, p, w), "accuracy": M.exact_match(y, pred, w)}
    else:
        overall["mlogloss"] = M.mlogloss_weighted(y, p, w)
    micro = {}
    if task == "multilabel":
        overall["exact_match"] = M.exact_match(y, pred, w)
        micro = M.confusion_metrics(y, pred, w)
        known, yb = M.known_binary(y.ravel())
        rows = np.repeat(np.arange(len(y)), y.shape[1])[known]
        micro.update(M.ranking_metrics(yb[known], p.ravel()[known], w, rows))
    return {"per_label": per, "macro": macro, "micro": micro, "overall": overall}


def _assert_same(new: dict, old: dict, path: str = "") -> None:
    assert list(new) == list(old), path
    for k in old:
        if isinstance(old[k], dict):
            _assert_same(new[k], old[k], f"{path}/{k}")
        else:
            np.testing.assert_allclose(new[k], old[k], rtol=TOL, atol=TOL, equal_nan=True, err_msg=f"{path}/{k}")


def _weights(patients, resamples: int, seed: int) -> np.ndarray:
    return np.vstack([np.ones(len(patients)), bootstrap_weights(patients, resamples, seed)])


def test_auc_ap_and_confusion_match_sklearn_on_each_resample():
    """Ties, resamples with one class only (NaN, as sklearn refuses them), patient counts as sample weights."""
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(3), np.zeros(27)]
    p = np.round(rng.random(30), 1)
    patients = np.repeat(np.arange(15), 2)
    pred = (p >= 0.5).astype(float)
    fp = FusedPass(patients, 300, 5)
    seg = fp.add(np.stack([y, 1 - y, y * pred, (1 - y) * pred], 1), p)
    fp.run()
    w = _weights(patients, 300, 5)
    one_class = 0
    for r, wr in enumerate(w):
        pos = wr[y == 1].sum()
        if pos == 0:
            one_class += 1
            assert np.isnan(seg.auc[r]) and np.isnan(seg.ap[r])
            continue
        assert seg.auc[r] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=wr), abs=TOL)
        assert seg.ap[r] == pytest.approx(skm.average_precision_score(y, p, sample_weight=wr), abs=TOL)
        tp, fp_ = seg.cum[r, 0, 2], seg.cum[r, 0, 3]
        assert tp / pos == pytest.approx(skm.recall_score(y, pred, sample_weight=wr), abs=TOL)
        assert fp_ == pytest.approx(wr[(y == 0) & (pred == 1)].sum(), abs=TOL)
    assert one_class > 10  # the case was exercised


@pytest.mark.parametrize("task", ["multilabel", "binary", "multiclass"])
def test_fused_pass_equals_the_numpy_implementation(task):
    labels = {"multilabel": 5, "binary": 1, "multiclass": 4}[task]
    y, p, patients = _data(400, labels, 1, task)
    names = [f"l{j}" for j in range(labels)]
    pred = decisions(p, task, None if task == "multiclass" else np.full(labels, 0.5))
    unknown = task == "multilabel"  # a label known for no sample (the numpy implementation failed on it)
    if unknown:
        y, p, pred, names = np.c_[y, np.full(len(y), np.nan)], np.c_[p, p[:, 0]], np.c_[pred, pred[:, 0]], [*names, "x"]
    fp = FusedPass(patients, 200, 3)
    pr = add_predictor(fp, y, p, pred, task)
    fp.run()
    new = predictor_arrays(pr, names)
    if unknown:
        assert all(np.isnan(v).all() for v in new["per_label"].pop("x").values())
        y, p, pred, names = y[:, :-1], p[:, :-1], pred[:, :-1], names[:-1]
    _assert_same(new, _old_score(y, p, pred, task, names, _weights(patients, 200, 3)))


def test_chunks_of_any_size_give_the_same_figures():
    y, p, patients = _data(300, 3, 2)
    pred = (p >= 0.5).astype(float)

    def arrays(chunk_bytes: int) -> dict:
        fp = FusedPass(patients, 150, 4, chunk_bytes)
        pr = add_predictor(fp, y, p, pred, "multilabel")
        fp.run()
        return predictor_arrays(pr, ["a", "b", "c"])

    n_patients = fused.patient_index(patients)[1]
    assert fused.chunk_sizes(151, n_patients, 20 * n_patients * 20) == [16, 16, 16, 16, 16, 16, 16, 16, 16, 7]
    whole, small = arrays(fused.CHUNK_BYTES), arrays(20 * n_patients * 20)
    _assert_same(small, whole)
    parts = np.vstack(list(fused.count_chunks(n_patients, 4, [3, 0, 50, 97])))
    assert np.array_equal(parts, next(fused.count_chunks(n_patients, 4, [150])))


def test_counts_over_255_take_the_float32_copy():
    """Counts fit uint8 in practice (a patient drawn 256 times of P); where one does not, float32 gives the same."""
    from meddx.evaluation._walk import walk

    y, p, patients = _data(200, 2, 5)
    fp = FusedPass(patients, 0, 0)
    add_predictor(fp, y, p, (p >= 0.5).astype(float), "multilabel")
    args, cut_offsets = fused._flatten(fp.segments)
    counts = np.random.default_rng(0).integers(0, 300, (40, fp.n_patients))
    blocks = fused._blocked(counts, 16, point=True)
    assert blocks.dtype == np.float32 and fused._blocked(counts % 256, 16).dtype == np.uint8
    out = []
    for copy in (blocks, (blocks % 256).astype(np.uint8), blocks % 256):
        rank, cut = np.zeros((48, len(fp.segments), 2)), np.zeros((48, cut_offsets[-1], fused.MASSES))
        walk(copy, *args, rank, cut)
        out.append((rank, cut))
    assert not np.array_equal(out[0][1], out[1][1])
    assert np.array_equal(out[1][0], out[2][0]) and np.array_equal(out[1][1], out[2][1])


def test_the_model_and_baselines_share_one_draw_and_match_the_separate_bootstraps(monkeypatch):
    """One draw of resamples for the model, the four baselines, the trade-off table and the ECE intervals; each
    equal to what its own bootstrap on the same seed gave."""
    draws = []
    count_chunks = fused.count_chunks
    monkeypatch.setattr(fused, "count_chunks", lambda *a: draws.append(a) or count_chunks(*a))
    y, p, patients = _data(300, 2, 3, "multilabel")
    yv, pv, _ = _data(200, 2, 4, "multilabel")
    names, cfg = ["a", "b"], EvaluateConfig(bootstrap=120, seed=7)
    r = evaluate_arrays(yv, pv, y, p, patients, np.nanmean(yv, 0), "multilabel", names, cfg)
    assert len(draws) == 1
    w = bootstrap_weights(patients, 120, 7)
    for j, n in enumerate(names):
        old = tradeoff_table(yv[:, j], pv[:, j], y[:, j], p[:, j], w, cfg.ci, patients=patients)
        for new_row, old_row in zip(r["tradeoff"][n], old):
            assert new_row.keys() == old_row.keys()
            for k, v in old_row.items():
                assert new_row[k] == (v if isinstance(v, str) else pytest.approx(v, abs=TOL)), k
        ece = np.percentile(ece_weighted(y[:, j], p[:, j], w, cfg.calibration_bins), [2.5, 97.5])
        assert r["calibration"]["per_label"][n]["ece_ci"] == pytest.approx(ece.tolist(), abs=TOL)
    prior = r["baselines"]["prior"]["per_label"]["a"]
    assert prior["roc_auc"]["value"] == 0.5 and prior["roc_auc"]["ci_low"] == 0.5


def test_the_roc_band_draws_the_evaluations_resamples_in_chunks(monkeypatch):
    """The band's resamples, as sample indices, are the rows of the evaluation's weight matrix on the same seed, drawn
    a chunk of 16 at a time instead of all at once; the band is the same."""
    y, p, patients = _data(300, 1, 6, "binary")
    y, p = y[:, 0], p[:, 0]
    n_patients = fused.patient_index(patients)[1]
    whole = bootstrap_weights(patients, plots.BAND_RESAMPLES, 0).astype(int)
    old = [np.repeat(np.arange(300), row) for row in whole]
    sizes = []

    def small(rows: int, n: int) -> list[int]:
        sizes.append(fused.chunk_sizes(rows, n, 20 * 16 * n))
        return sizes[-1]

    monkeypatch.setattr(plots, "chunk_sizes", small)
    new = list(plots._resamples(300, patients))
    assert sizes == [[16] * 12 + [8]] and n_patients < 300
    assert len(new) == len(old) and all(np.array_equal(a, b) for a, b in zip(new, old))
    band = plots._roc_band(y, p, plots._resamples(300, patients))
    assert np.array_equal(band, plots._roc_band(y, p, iter(old)))


@pytest.mark.parametrize("decimals", [None, 1])
def test_the_roc_band_is_the_band_of_scikit_learns_curves(decimals):
    """The band from cumulative counts over scores sorted once equals interpolating `roc_curve` on every resample
    (tied scores included, where a curve has vertical and diagonal steps)."""
    from sklearn.metrics import roc_curve

    y, p, patients = _data(300, 1, 6, "binary")
    y, p = y[:, 0], (p[:, 0] if decimals is None else np.round(p[:, 0], decimals))
    curves = []
    for idx in plots._resamples(300, patients):
        fpr, tpr, _ = roc_curve(y[idx], p[idx])
        curves.append(np.interp(plots.FPR_GRID, fpr, tpr))
    band = plots._roc_band(y, p, plots._resamples(300, patients))
    np.testing.assert_allclose(band, np.percentile(curves, [2.5, 97.5], axis=0), atol=1e-12)
    assert np.ptp(band[1] - band[0]) > 0


def _kernel_cache(tree: Path, env: dict) -> str:
    code = "from meddx.evaluation._walk import walk; print(type(walk._cache).__name__, walk._cache.cache_path)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_kernel_cache_falls_back_where_the_package_is_not_writable(tmp_path):
    """The package's __pycache__ unusable: numba caches in the user's cache directory; that unusable too: no cache,
    no error (compiled in each process). No compilation here: the cache is chosen when the module is imported."""
    shutil.copytree(Path(fused.__file__).parents[2] / "meddx", tmp_path / "tree" / "meddx")
    pycache = tmp_path / "tree" / "meddx" / "evaluation" / "__pycache__"
    shutil.rmtree(pycache, ignore_errors=True)
    pycache.write_text("a file where the cache directory would go")  # unwritable even for root
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(tmp_path / "tree"), PYTHONDONTWRITEBYTECODE="1", XDG_CACHE_HOME=str(tmp_path / "user"))
    kind, path = _kernel_cache(tmp_path / "tree", env).split(" ", 1)
    assert kind == "FunctionCache" and path.startswith(str(tmp_path / "user" / "numba"))
    (tmp_path / "blocked").write_text("")
    env["XDG_CACHE_HOME"] = str(tmp_path / "blocked" / "cache")
    assert _kernel_cache(tmp_path / "tree", env).startswith("NullCache")
