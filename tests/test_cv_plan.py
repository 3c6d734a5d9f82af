"""`meddx cv` plans as `meddx train` does: the rules' recipe made once (on fold 0) with the budget shared by the folds,
saved in the CV folder, reused by every fold and by a rerun, and a rerun under other settings refused by name."""

from __future__ import annotations

import json

import pytest

import meddx
import meddx.training.autofit
from meddx.config import load_config
from meddx.errors import ConfigError
from meddx.evaluation.cv_summary import cv_summary

from conftest import need


@pytest.mark.slow
def test_a_cv_plans_once_for_every_fold_and_a_rerun_reuses_the_plan(data_dir, tmp_path, monkeypatch):
    """It trained the fixed defaults at the native size (a 224 px small CNN on Kermany); now each fold gets the plan."""
    npz = need(data_dir, "medmnist/breastmnist.npz")
    cfg = {"data": {"path": str(npz)}, "output_dir": str(tmp_path), "plan": {"budget_minutes": 1},
           "evaluate": {"bootstrap": 0}, "train": {"progress_bar": False}}  # fmt: skip
    cv_dir = meddx.cross_validate(cfg, folds=2)
    assert cv_dir.name == "breastmnist-cv2"  # the model is the plan's: not in the name
    plan = json.loads((cv_dir / "plan.json").read_text())
    choice = {c["field"]: c for c in plan["choices"]}
    assert plan["budget_minutes"] == 1 and choice["train.ensemble"]["value"] == 1
    assert "(the 2 folds' models are the ensemble), 0.5 of 1 min" in choice["train.ensemble"]["reason"]
    line, _ = cv_summary(cv_dir)  # the terminal says what was planned
    assert f"planned (1 min for 2 folds): small_cnn 28 px, up to {choice['train.max_epochs']['value']} epochs" in line
    for k in (0, 1):
        fold = load_config(cv_dir / f"fold{k}" / "config.yaml")
        assert (fold.data.normalize, fold.train.batch_size) == (choice["data.normalize"]["value"], 16)
        assert fold.train.class_weights == "on" and fold.train.max_epochs == choice["train.max_epochs"]["value"]
        assert (cv_dir / f"fold{k}" / "plan.json").is_file()

    def no_planning(*args, **kwargs):
        raise AssertionError("planned again")

    monkeypatch.setattr(meddx.training.autofit, "plan_run", no_planning)
    assert meddx.cross_validate({**cfg, "train": {"progress_bar": False, "num_workers": 1}}, folds=2) == cv_dir
    with pytest.raises(ConfigError, match=r"planned under other settings \(data.image_size: planned 28 then, 32 now"):
        meddx.cross_validate({**cfg, "data": {"path": str(npz), "image_size": 32}}, folds=2)
