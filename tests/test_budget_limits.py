"""The budget's time limit on planned models: never below the minutes planned for one model, and said in the report
when it ended a model before early stopping."""

from __future__ import annotations

import pytest

import meddx
from meddx.training.plan import Plan

from conftest import need


def test_the_budgets_time_limit_never_cuts_a_model_below_its_planned_minutes():
    """A seed begun after the budget had run out (setup or the first seed overran) was capped at 6 s and averaged in
    untrained; its limit is now the budget left, or the minutes the plan gave one model if that is more."""
    import time

    from meddx.config import as_config
    from meddx.training.autofit import _until

    plan = Plan({}, 4, "cpu", estimate={"training_s": 240.0})
    member = as_config({"train": {"ensemble": 2}})  # 2 models planned in 4 minutes: 2 minutes each
    assert _until(member, time.monotonic() - 100, plan).train.max_minutes == pytest.approx(2.0)
    assert _until(member, time.monotonic() + 600, plan).train.max_minutes == pytest.approx(10.0, abs=0.01)


def test_a_model_stopped_by_its_time_limit_says_so(tmp_path, data_dir):
    """The plan's time limit may end a model before early stopping would (a machine busier than at the pilot); the
    report said only 'best epoch 3 of 3', as if it had converged."""
    from meddx.evaluation.sections import _training_summary

    cfg = {"data": {"path": str(need(data_dir, "medmnist/breastmnist.npz"))}, "output_dir": str(tmp_path),
           "plan": {"enabled": False}, "evaluate": {"bootstrap": 0},
           "train": {"max_epochs": 200, "patience": 200, "max_minutes": 0.05, "progress_bar": False}}  # fmt: skip
    run = meddx.train(cfg)
    assert run.training["stopped_by_time_limit"] == 0.05 and run.training["epochs_run"] < 200
    assert "stopped at its time limit (0.05 min: train.max_minutes" in _training_summary(run.training)
