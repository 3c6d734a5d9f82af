"""Run folders written before the redesign (commit 2de0548) still load, predict, evaluate and export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import meddx

OLD_RUN = Path(__file__).parent / "fixtures" / "run-2de0548"


@pytest.fixture()
def old_run(tmp_path):
    return meddx.load_run(shutil.copytree(OLD_RUN, tmp_path / OLD_RUN.name))


def test_old_run_predicts_what_it_predicted(old_run):
    saved = old_run.predictions("test")
    records = {r.id: r for r in meddx.read_dataset(old_run.config.data).records}
    again = old_run.predict([records[i] for i in saved["id"]])
    assert old_run.label_names == ["pneumonia"] and old_run.task == "binary"
    np.testing.assert_allclose(again["p_pneumonia"], saved["p_pneumonia"], atol=1e-6)


def test_old_run_evaluates_with_the_same_schema(old_run):
    before = json.loads((OLD_RUN / "metrics.json").read_text())
    result = meddx.evaluate(old_run, bootstrap=20)
    assert result["schema"] == before["schema"] and set(before) <= set(result) | {"evaluated_at"}
    assert result["model"]["per_label"]["pneumonia"]["roc_auc"]["value"] > 0.8
    name = result["name"]  # other settings than the run's: kept apart from the headline report
    assert name == "test-bootstrap20" and (old_run.path / f"report-{name}.html").is_file()


def test_old_run_exports_with_parity(old_run, tmp_path):
    package = meddx.export_run(old_run, "onnx", tmp_path / "package")
    assert json.loads((package / "parity.json").read_text())["passed"]
