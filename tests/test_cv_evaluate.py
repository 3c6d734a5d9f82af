"""`meddx evaluate CVDIR --data LABELLED` scores the fold ensemble `submit` uses (the folds' mean), with the
out-of-fold predictions as val, in CVDIR/ensemble; new data is checked against every fold's training rows. One tiny
2-fold CV of real round-2 reports (about 10 s) and one of 240 DaTscan slices (about 15 s with its evaluation)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_bad_input import _assert_clean_error

from meddx.errors import ConfigError

from conftest import need, run_cli

R2 = "tianchi_round2/train.csv"
DATSCAN = "datscan_spect_ppmi_2d/train"


@pytest.fixture(scope="module")
def r2_cv(data_dir, tmp_path_factory):
    """A 2-fold CV of a tiny TextCNN on the first 300 round-2 reports (1 epoch) and the next 60 as held-out data."""
    import meddx

    root = tmp_path_factory.mktemp("cveval")
    lines = need(data_dir, R2).read_text().splitlines()
    (root / "r2.csv").write_text("\n".join(lines[:300]) + "\n")
    (root / "held_out.csv").write_text("\n".join(lines[300:360]) + "\n")
    cfg = {
        "output_dir": str(root / "runs"),
        "name": "cv",
        "data": {"path": str(root / "r2.csv")},
        "model": {"name": "textcnn", "kwargs": {"embed_dim": 16, "filters": 8}},
        "train": {"max_epochs": 1, "batch_size": 64, "class_weights": "off", "progress_bar": False},
        "evaluate": {"bootstrap": 100},
        "plan": {"enabled": False},
    }
    return root, meddx.cross_validate(cfg, folds=2), lines


def _bce(y: np.ndarray, p: np.ndarray) -> float:
    """The competition's mlogloss by hand: BCE clipped at 1e-15, averaged over labels, then reports."""
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(np.mean(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)), axis=1)))


@pytest.mark.slow
def test_cv_folder_evaluates_as_its_fold_ensemble(r2_cv):
    import meddx
    from meddx.data.reports import read_tianchi
    from meddx.evaluation.operating import choose_threshold
    from meddx.tianchi import predict_file

    root, cv_dir, _ = r2_cv
    proc = run_cli("evaluate", str(cv_dir), "--data", str(root / "held_out.csv"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cv_dir / "ensemble"
    assert f"report: {out / 'report-external-held_out.html'}" in proc.stdout
    assert not [p for p in cv_dir.glob("fold*/*") if "external" in p.name]  # no fold's own files touched

    records = read_tianchi(root / "held_out.csv").records
    folds = [meddx.load_run(cv_dir / f"fold{k}").predict_proba(records) for k in (0, 1)]
    pred = meddx.load_run(out).predictions("external-held_out")
    names = meddx.load_run(cv_dir / "fold0").label_names
    p, y = pred[[f"p_{n}" for n in names]].to_numpy(np.float64), pred[names].to_numpy(np.float64)
    assert pred["id"].tolist() == [r.id for r in records]
    np.testing.assert_allclose(p, np.mean(folds, axis=0), atol=1e-6)  # the folds' mean
    np.testing.assert_allclose(p, predict_file(cv_dir, root / "held_out.csv")[1], atol=1e-6)  # what submit sends
    assert np.abs(folds[0] - folds[1]).max() > 1e-3  # the two folds differ: the mean is not either one

    metrics = json.loads((out / "metrics-external-held_out.json").read_text())
    score = 0.6 * (1 - _bce(y[:, :17], p[:, :17])) + 0.4 * (1 - _bce(y[:, 17:], p[:, 17:]))
    assert metrics["n_samples"] == 60 and metrics["tianchi"]["model"]["score"] == pytest.approx(score, abs=1e-9)
    assert f"tianchi: score {score:.4f}" in proc.stdout
    auc = metrics["model"]["per_label"]["region_15"]["roc_auc"]
    assert "ci_low" in auc and "prior" in metrics["baselines"]

    oof = pd.read_csv(cv_dir / "oof.csv")  # val is the out-of-fold predictions: the thresholds come from them
    both = [n for n in names if 0 < oof[n].sum() < len(oof)]
    chosen = metrics["operating_point"]["thresholds"]
    on_oof = {n: choose_threshold(oof[n].to_numpy(), oof[f"p_{n}"].to_numpy(), "youden") for n in both}
    assert both and all(chosen[n] == on_oof[n] for n in both)
    report = (out / "report-external-held_out.md").read_text()
    assert "## Competition score" in report and f"\n- fold ensemble of {cv_dir}" in report
    assert "training data: fold ensemble" not in report  # about the model, not its data
    fold0 = cv_dir / "fold0"  # `meddx compare RUN CVDIR` stopped: "not a meddx run folder (no config.yaml)"
    assert run_cli("evaluate", str(fold0), "--data", str(root / "held_out.csv")).returncode == 0
    compared = meddx.compare([fold0, cv_dir], root / "cmp", split="external-held_out", resamples=50)
    assert {r["run"] for r in compared["runs"]} == {str(fold0), str(out)}  # the cv folder as its fold ensemble
    assert {r["name"] for r in compared["runs"]} == {"fold0", f"{cv_dir.name} (folds)"}  # not 'ensemble'
    with pytest.raises(ConfigError, match=r"no predictions for split 'test'; it has external-held_out, val"):
        meddx.compare([fold0, cv_dir], root / "cmp2", resamples=50)  # a cv folder has no test split of its own


@pytest.mark.slow
def test_new_data_is_checked_against_every_folds_training_rows(r2_cv, tmp_path):
    from meddx.api import predict_external
    from meddx.data.leakage import overlap_with_training
    from meddx.data.reports import read_tianchi
    from meddx.evaluation.folds import fold_ensemble
    from meddx.run import Run

    root, cv_dir, lines = r2_cv
    fold0 = Run(cv_dir / "fold0").split_table()
    test_id = fold0.loc[fold0["split"] == "test", "id"].iloc[0]  # trained on by fold 1 only
    copy = "99999|,|" + lines[int(test_id)].split("|,|", 1)[1]  # its description under a new report id
    leaky = tmp_path / "leaky.csv"
    leaky.write_text("\n".join([*lines[300:320], copy]) + "\n")
    records = read_tianchi(leaky).records
    assert overlap_with_training(records, fold0, drop=True)[1]["identical_to_training"] == 0  # fold 0 alone: missed

    proc = run_cli("evaluate", str(cv_dir), "--data", str(leaky), "--stop-on-training-overlap")
    _assert_clean_error(proc, str(leaky), "1 of 21 report(s) are identical", "99999 = ", "--drop-training-overlap")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr

    ensemble = fold_ensemble(cv_dir)  # what the flag does: the same check, the copy left out
    name = predict_external(ensemble, {"path": str(leaky)}, "external-leaky", drop_overlap=True)
    assert ensemble.predictions(name)["id"].tolist() == [str(i) for i in range(300, 320)]
    check = json.loads((ensemble.path / "predictions" / "external-leaky.leakage.json").read_text())
    assert check["dropped"] == 1 and check["files"] == 21
    from meddx.evaluation.data_section import leakage_text

    line = leakage_text(ensemble, name, {})  # in a report's words, not an image's
    assert line.startswith("21 reports of this data checked against the run's train and val reports (SHA-1") and (
        "image" not in line)  # fmt: skip


@pytest.mark.slow
def test_cv_folder_needs_labelled_data(r2_cv, tmp_path):
    root, cv_dir, lines = r2_cv
    unlabelled = tmp_path / "test.csv"
    unlabelled.write_text("".join(ln.rsplit("|,|", 1)[0] + "\n" for ln in lines[300:320]))
    for args, needles in [
        (["--data", str(unlabelled)], [str(unlabelled), "no label field", "it is a test file"]),
        ([], [str(cv_dir), "evaluated as its fold ensemble on new labelled data", "--data"]),
    ]:
        proc = run_cli("evaluate", str(cv_dir), *args)
        _assert_clean_error(proc, *needles)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.slow
def test_image_cv_folds_normalised_apart_evaluate_as_their_mean(data_dir, tmp_path):
    import meddx
    from meddx.data.readers import read_dataset

    folder = need(data_dir, DATSCAN)
    rows = [(p, c) for c in ("HC", "PD") for p in sorted((folder / c).glob("*.png"))[:140]]
    rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    for name, part in (("cv.csv", rows[:240]), ("held_out.csv", rows[240:])):
        (tmp_path / name).write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in part))
    data = {"image_size": 32, "label_column": "label", "allow_outside_root": True}
    cfg = {
        "output_dir": str(tmp_path / "runs"),
        "name": "cv",
        "data": {"path": str(tmp_path / "cv.csv"), **data},
        "train": {"max_epochs": 1, "batch_size": 64, "progress_bar": False, "diagnostics": False},
        "evaluate": {"bootstrap": 0},
        "plan": {"enabled": False},
    }
    cv_dir = meddx.cross_validate(cfg, folds=2)
    folds = [meddx.load_run(cv_dir / f"fold{k}") for k in (0, 1)]
    assert folds[0].preprocess.mean != folds[1].preprocess.mean  # each fold's own training images' statistics
    result = meddx.evaluate(cv_dir, data={"path": str(tmp_path / "held_out.csv")})
    assert result["n_samples"] == 40 and result["name"] == "external-held_out"
    records = read_dataset(meddx.load_run(cv_dir / "ensemble").config.data.model_copy(
        update={"path": str(tmp_path / "held_out.csv")})).records  # fmt: skip
    p = meddx.load_run(cv_dir / "ensemble").predictions("external-held_out")["p_PD"].to_numpy()
    each = [f.predict_proba(records)[:, 0] for f in folds]
    assert np.abs(each[0] - each[1]).max() > 1e-4  # the two folds differ: the mean is not either one
    np.testing.assert_allclose(p, np.mean(each, axis=0), atol=1e-6)  # each fold fed its own normalisation
    scans = [r.source for r in records[:5]]  # `meddx predict CVDIR` was 'not a meddx run folder': the fold ensemble
    predicted = meddx.predict(cv_dir, scans)
    assert "error" not in predicted or predicted["error"].isna().all()
    np.testing.assert_allclose(predicted["p_PD"], np.mean(each, axis=0)[:5], atol=1e-5)
    from meddx.export import export_run  # `meddx export CVDIR` was 'not a meddx run folder'
    from meddx.serve.predictor import Predictor

    package = export_run(cv_dir, "onnx", tmp_path / "pkg")
    assert json.loads((package / "parity.json").read_text())["max_abs_diff"] <= 1e-4
    point = json.loads((package / "thresholds.json").read_text())  # no test split: chosen on the out-of-fold ones
    assert point["chosen_on"].startswith("out-of-fold predictions") and 0 < point["thresholds"]["PD"] < 1
    assert "## Cross-validation (2 folds; this model is their mean)" in (package / "card.md").read_text()
    served = Predictor(cv_dir)  # `meddx serve CVDIR` too
    assert served.labels == ["PD"] and served.path == cv_dir / "ensemble"


def test_renormalised_member_sees_its_own_normalisation():
    from meddx.models.ensemble import Renormalised

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(), torch.nn.LazyLinear(1))
    raw = torch.rand(4, 2, 8, 8) * 5
    given, own = ([0.5, 2.0], [1.5, 0.25]), ([3.0, -1.0], [0.5, 4.0])

    def norm(x: torch.Tensor, stats: tuple[list[float], list[float]]) -> torch.Tensor:
        return (x - torch.tensor(stats[0]).view(1, -1, 1, 1)) / torch.tensor(stats[1]).view(1, -1, 1, 1)

    expected = model(norm(raw, own))
    torch.testing.assert_close(Renormalised(model, given, own)(norm(raw, given)), expected, atol=1e-4, rtol=1e-5)
    assert not torch.allclose(model(norm(raw, given)), expected, atol=1e-2)  # unadapted, the member sees other inputs


@pytest.mark.slow
def test_cv_takes_data_and_options_as_train_does(data_dir, tmp_path):
    """`meddx cv` took a YAML file only; `--data` and train's recipe options now make its config as they do train's."""
    lines = need(data_dir, R2).read_text().splitlines()
    (tmp_path / "r2.csv").write_text("\n".join(lines[:200]) + "\n")
    none = run_cli("cv")
    _assert_clean_error(none, "give a YAML run config or --data")
    options = [
        "--model",
        "textcnn",
        "--epochs",
        "1",
        "--folds",
        "2",
        "--name",
        "quick",
        "--set",
        "evaluate.bootstrap=0",
    ]
    proc = run_cli("cv", "--data", str(tmp_path / "r2.csv"), "--output-dir", str(tmp_path / "runs"), *options)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cv = json.loads((tmp_path / "runs" / "quick" / "cv.json").read_text())
    assert cv["folds"] == 2 and cv["model"]["name"] == "textcnn" and "out-of-fold" in proc.stdout
    more = [o if o != "1" else "2" for o in options]  # the same CV asked with 2 epochs: its folds are not reused
    again = run_cli("cv", "--data", str(tmp_path / "r2.csv"), "--output-dir", str(tmp_path / "runs"), *more)
    _assert_clean_error(again, "quick: its folds were planned under other settings (train.max_epochs: 1 then, 2 now)")
    more = [o if o != "2" else "3" for o in options]  # 3 folds asked of a 2-fold CV: fold0 is another fold
    folds = run_cli("cv", "--data", str(tmp_path / "r2.csv"), "--output-dir", str(tmp_path / "runs"), *more)
    _assert_clean_error(folds, "quick: its folds were planned under other settings (folds: 2 then, 3 now)")
    cpu = run_cli("cv", "--data", str(tmp_path / "r2.csv"), "--output-dir", str(tmp_path / "runs"), *options,
                  "--set", "train.num_workers=1")  # fmt: skip
    assert cpu.returncode == 0, cpu.stderr[-2000:]  # where a fold runs is not what it learns: reused
    split = run_cli("cv", "--data", f"train={tmp_path / 'r2.csv'}", "--data", f"test={tmp_path / 'r2.csv'}")
    _assert_clean_error(split, "cross-validation makes its own folds over all the data")


def test_a_cv_folder_is_named_after_its_data_even_when_given_as_dot(tmp_path, monkeypatch):
    from meddx.config import DataConfig, data_name

    monkeypatch.chdir(tmp_path)
    assert data_name(DataConfig(path=".")) == tmp_path.name and data_name(DataConfig(path="a b/scans.csv")) == "scans"


def test_a_cv_losing_to_the_prior_is_warned_and_a_binary_all_zero_is_not_shown(tmp_path):
    from meddx.evaluation.cv_summary import cv_summary

    cv = {"labels": 1, "task": "binary", "model": {"mlogloss": 0.7157, "mean_roc_auc": 0.935, "exact_match": 0.43},
          "baselines": {"prior": {"mlogloss": 0.6261}, "all_zero": {"mlogloss": 23.52}}}  # fmt: skip
    (tmp_path / "cv.json").write_text(json.dumps(cv))
    line, warning = cv_summary(tmp_path)
    assert "all-zero" not in line and "log loss 0.7157; prior 0.6261" in line
    assert warning.startswith("out-of-fold log loss 0.7157 is no better than the prior's 0.6261") and "rank" in warning
    cv["model"]["mlogloss"] = 0.3
    (tmp_path / "cv.json").write_text(json.dumps(cv))
    assert cv_summary(tmp_path)[1] is None


def test_the_cv_line_counts_pseudo_labelled_reports_and_names_a_recipe_all_yours(tmp_path):
    """Pseudo-labels were reported in each fold's data.json only; the terminal now counts them."""
    from meddx.evaluation.cv_summary import cv_summary

    plan = {"model": "textcnn", "image_size": None, "max_epochs": 4, "budget_minutes": 15, "planned": []}
    model = {"mlogloss": 0.12, "mean_roc_auc": 0.9, "exact_match": 0.5}
    baselines = {"prior": {"mlogloss": 0.27}, "all_zero": {"mlogloss": 2.8}}
    cv = {"labels": 17, "folds": 2, "runs": ["fold0", "fold1"], "model": model, "baselines": baselines, "plan": plan}
    (tmp_path / "cv.json").write_text(json.dumps(cv))
    for k, n in ((0, 126), (1, 134)):
        (tmp_path / f"fold{k}").mkdir()
        note = f"{n} of 6000 unlabelled reports added to train with soft pseudo-labels (...)"
        (tmp_path / f"fold{k}" / "data.json").write_text(json.dumps({"notes": ["each report...", note]}))
    line, warning = cv_summary(tmp_path)
    assert "\nrecipe: textcnn, up to 4 epochs a fold (every field yours)" in line and warning is None
    assert "pseudo-labelled reports added to train: fold0 126 of 6000, fold1 134 of 6000" in line
