"""Round 2 as a first-class task: the example recipe trains 29 outputs and reports regions, types and the combined
score; its submission checks without a flag; `meddx evaluate RUN --data` scores labelled `|,|` reports. Synthetic
files only (written to a temporary folder), one tiny run trained for a few steps (about 15 s with its report's
29-label figures; `slow`, as every test that trains)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_bad_input import _assert_clean_error

from conftest import FIXED_RECIPE, REPO, run_cli

EXAMPLE = REPO / "examples" / "tianchi_round2.yaml"


def _reports(path, ids: range, seed: int, labels: str = "round2") -> str:
    """A synthetic `|,|` file: random descriptions with round-2 labels (`regions,types`), round-1 labels or none."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in ids:
        line = f"{i}|,|{' '.join(map(str, rng.integers(3, 60, rng.integers(3, 12))))} "
        regions = " ".join(map(str, sorted(set(rng.integers(0, 17, rng.integers(0, 3))))))
        types = " ".join(map(str, sorted(set(rng.integers(0, 12, rng.integers(0, 3))))))
        line += {"round2": f"|,|{regions} ,{types} ", "round1": f"|,|{regions} ", "none": ""}[labels]
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def r2(tmp_path_factory):
    """The example's recipe on 160 synthetic round-2 reports, one epoch of a few batches."""
    root = tmp_path_factory.mktemp("round2")
    train = _reports(root / "train.csv", range(160), 0)
    sets = ["data.path=" + train, f"output_dir={root / 'runs'}", "train.max_epochs=1", "train.limit_train_batches=2"]
    sets += ["evaluate.bootstrap=0", "train.diagnostics=false", "name=r2"]
    proc = run_cli("train", "-c", str(EXAMPLE), *FIXED_RECIPE, *[a for s in sets for a in ("--set", s)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, root / "runs" / "r2", proc.stdout


def test_the_example_recipe_is_round_2():
    from meddx.config import load_config

    cfg = load_config(EXAMPLE)
    assert cfg.data.path.endswith("shared/data/tianchi_round2/train.csv") and cfg.data.label_set == "both"
    assert cfg.model.name == "bilstm" and cfg.train.class_weights == "off"


@pytest.mark.slow
def test_round2_run_reports_regions_types_and_score(r2):
    _, run, stdout = r2
    assert json.loads((run / "data.json").read_text())["label_names"][-1] == "type_11"
    t = json.loads((run / "metrics.json").read_text())["tianchi"]["model"]
    assert t["score"] == pytest.approx(0.6 * (1 - t["regions_mlogloss"]) + 0.4 * (1 - t["types_mlogloss"]))
    table = (run / "report.md").read_text().split("## Competition score")[1]
    assert "| mlogloss | score | regions_mlogloss | types_mlogloss |" in table
    assert f"regions_mlogloss {t['regions_mlogloss']:.4f}" in stdout


@pytest.mark.slow
def test_round2_submission_checks_without_a_flag(r2, tmp_path):
    _, run, _ = r2
    test = _reports(tmp_path / "test.csv", range(12), 1, labels="none")
    sub = tmp_path / "sub.csv"
    proc = run_cli("submit", str(run), "--data", test, "-o", str(sub))
    assert proc.returncode == 0 and "WARNING" not in proc.stderr
    labelled = _reports(tmp_path / "labelled.csv", range(12), 1)  # a train file given for the test file: said
    warned = run_cli("submit", str(run), "--data", labelled, "-o", str(tmp_path / "sub2.csv"))
    assert warned.returncode == 0 and "labelled.csv holds labels" in warned.stderr and "meddx evaluate" in warned.stderr
    lines = sub.read_text().splitlines()
    assert len(lines) == 12 and all(len(ln.split("|,|")[1].split()) == 29 for ln in lines)
    checked = run_cli("tianchi", "check", str(sub), "--data", test)
    assert checked.returncode == 0 and "valid, round 2" in checked.stdout, checked.stderr
    r1_line = "2|,|" + " ".join(["0.5"] * 17)  # a round-1 line within a round-2 file
    sub.write_text("\n".join([lines[0].replace("|,|", ",", 1), lines[1], r1_line, *lines[3:]]) + "\n")
    mixed = run_cli("check-submission", str(sub), "--data", test)
    assert mixed.returncode == 1
    # the round is read from the first well-formed line (line 1 lacks the separator: line 2's 29)
    assert "line 1: expected 'report_ID|,|p0 ... p28'" in mixed.stderr, mixed.stderr
    assert "line 3: 17 probabilities, expected 29" in mixed.stderr and len(mixed.stderr.splitlines()) == 2


@pytest.mark.slow
def test_evaluate_a_sequence_run_on_labelled_reports(r2):
    root, run, _ = r2
    held_out = _reports(root / "held_out.csv", range(500, 540), 2)
    proc = run_cli("evaluate", str(run), "--data", held_out)
    assert proc.returncode == 0 and "tianchi: score" in proc.stdout, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics-external-held_out.json").read_text())
    assert metrics["n_samples"] == 40 and "regions_mlogloss" in metrics["tianchi"]["model"]
    report = (run / "report-external-held_out.md").read_text()
    assert "mlogloss" in report and "## Competition score" in report


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, needles",
    [
        ("none", ["no label field", "it is a test file"]),
        ("round1", ["17 multilabel labels (region_0 ... region_16) differ from the run's 29", "type_11"]),
        ("copy", ["report(s) are identical", "training/val reports", "--drop-training-overlap"]),
    ],
)
def test_evaluate_bad_files_one_line(r2, tmp_path, kind, needles):
    root, run, _ = r2
    bad = str(root / "train.csv") if kind == "copy" else _reports(tmp_path / f"{kind}.csv", range(20), 3, kind)
    stop = ["--stop-on-training-overlap"] if kind == "copy" else []  # by default copies are left out, and warned
    proc = run_cli("evaluate", str(run), "--data", bad, *stop)
    _assert_clean_error(proc, bad, *needles)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cv_line_gives_regions_and_types(tmp_path, monkeypatch):
    import meddx.api

    scores = {"mlogloss": 0.25, "regions_mlogloss": 0.2, "types_mlogloss": 0.3, "score": 0.76}
    result = {"model": {**scores, "mean_roc_auc": 0.8, "exact_match": 0.4}}
    result["baselines"] = {"prior": {"mlogloss": 0.3}, "all_zero": {"mlogloss": 2.5}}
    (tmp_path / "cv.json").write_text(json.dumps(result))
    monkeypatch.setattr(meddx.api, "cross_validate", lambda config, folds, **sets: tmp_path)
    proc = run_cli("cv", str(EXAMPLE), "--folds", "2")
    assert proc.returncode == 0, proc.stderr
    assert ("mlogloss 0.2500 over all labels; score 0.7600 = 0.6 x (1 - regions mlogloss 0.2000) + 0.4 x (1 - types "
            "mlogloss 0.3000)") in proc.stdout  # fmt: skip
    binary = {
        "labels": 1,
        "model": {"mlogloss": 0.3, "mean_roc_auc": 0.9, "exact_match": 0.8},
        "baselines": result["baselines"],
    }  # fmt: skip  (an image task: no competition's words)
    (tmp_path / "cv.json").write_text(json.dumps(binary))
    proc = run_cli("cv", str(EXAMPLE), "--folds", "2")
    assert "out-of-fold log loss 0.3000" in proc.stdout and "accuracy at 0.5 0.8000" in proc.stdout
    assert "mlogloss" not in proc.stdout and "exact match" not in proc.stdout
