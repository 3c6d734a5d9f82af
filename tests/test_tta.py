"""Test-time augmentation: the shifts move content without wrapping, the wrapper averages probabilities, and a run
that takes it on val predicts, explains and exports with it consistently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import meddx
from meddx.evaluation import selection
from meddx.models.tta import ShiftAverage, shifted, without_tta


def test_a_shift_moves_the_image_and_repeats_its_edge():
    x = torch.zeros(1, 1, 6, 6)
    x[0, 0, 2, 3] = 1.0
    x[0, 0, 5, :] = 2.0  # the bottom row: repeated, not wrapped to the top, when moving up
    down = shifted(x, 1, 0)[0, 0]
    assert down[3, 3] == 1.0 and down[2, 3] == 0.0 and (down[0] == 0).all()
    up = shifted(x, -1, 0)[0, 0]
    assert up[1, 3] == 1.0 and (up[4] == 2.0).all() and (up[5] == 2.0).all() and (up[0] == 0).all()
    assert shifted(x, 0, -2)[0, 0, 2, 1] == 1.0


def test_the_wrapper_averages_probabilities_over_five_views():
    class FirstPixel(nn.Module):  # a model that sees only the top-left pixel: every shift changes its input
        def forward(self, x):
            return x[:, :, 0, 0]

    x = torch.arange(100.0).reshape(1, 1, 10, 10) / 100 - 0.5
    views = [x, shifted(x, 1, 0), shifted(x, -1, 0), shifted(x, 0, 1), shifted(x, 0, -1)]
    expected = torch.stack([torch.sigmoid(v[:, :, 0, 0]) for v in views]).mean(0)
    wrapped = ShiftAverage(FirstPixel(), "binary")
    assert torch.allclose(torch.sigmoid(wrapped(x)), expected, atol=1e-6)
    assert isinstance(without_tta(wrapped), FirstPixel)


@pytest.mark.slow
def test_a_run_that_takes_tta_predicts_and_exports_with_it(datscan_run, tmp_path, monkeypatch):
    """Forced on (the verdict patched), the run's config, val and test predictions, `Run.model` and its ONNX package
    all agree; Grad-CAM explains the model itself."""
    run_dir = tmp_path / "run"
    shutil.copytree(datscan_run.path, run_dir)
    real = selection.compare_predictions
    monkeypatch.setattr(selection, "compare_predictions", lambda *a, **k: {**real(*a, **k), "chosen": "on"})
    before = meddx.load_run(run_dir).predictions("test")
    verdict = selection.choose_tta(meddx.load_run(run_dir))
    assert [r["candidate"] for r in verdict["rows"]] == ["off", "on"]
    run = meddx.load_run(run_dir)
    assert run.config.model.tta and isinstance(run.model, ShiftAverage)
    test = run.predictions("test")
    cols = [f"p_{n}" for n in run.label_names]
    assert not np.allclose(test[cols].to_numpy(), before[cols].to_numpy())  # written again, with the shifts
    again = run.predict(run.records("test")).set_index("id").loc[test["id"], cols].to_numpy()
    assert np.allclose(again, test[cols].to_numpy(), atol=1e-6)
    val = run.predictions("val")
    on_row = next(r for r in verdict["rows"] if r["candidate"] == "on")
    assert on_row["val_auc"] == pytest.approx(selection.macro_auc(
        val[run.label_names].to_numpy(), val[cols].to_numpy(), np.ones((1, len(val))))[0], abs=1e-4)  # fmt: skip
    from meddx.explain import Explainer
    from meddx.export.package import export_run

    assert not isinstance(Explainer.from_run(run).model, ShiftAverage)
    pkg = export_run(run, "onnx", tmp_path / "pkg")
    parity = json.loads((pkg / "parity.json").read_text())
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4
    from meddx.serve.predictor import Predictor

    scan = Path(run.records("test")[0].source).read_bytes()
    served = [Predictor(pkg, backend).predict(scan)["probabilities"] for backend in ("onnx", "pytorch")]
    assert served[0] == pytest.approx(served[1], abs=1e-5)  # the package's PyTorch backend averages the shifts too
