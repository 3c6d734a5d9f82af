"""Export to ONNX and TorchScript with the parity check on real test images; onnxruntime + numpy alone reproduce it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from meddx.export import ExportError, export_run
from meddx.export.package import check_images

from conftest import run_cli


@pytest.fixture(scope="module")
def small_run(datscan_run):
    return datscan_run


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity_on_real_images(small_run, fmt, tmp_path):
    out = export_run(small_run, fmt, tmp_path / fmt)
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4 and parity["images"] > 10
    for f in (
        "preprocess.json",
        "labels.json",
        "thresholds.json",
        "card.md",
        "model.onnx" if fmt == "onnx" else "model.ts",
    ):
        assert (out / f).is_file(), f
    assert json.loads((out / "labels.json").read_text()) == {"labels": ["PD"], "task": "binary"}
    assert "ROC AUC" in (out / "card.md").read_text()


def test_onnxruntime_and_numpy_alone_reproduce_meddx(small_run, data_dir, tmp_path):
    import onnxruntime as ort

    out = export_run(small_run, "onnx", tmp_path / "pkg")
    prep = json.loads((out / "preprocess.json").read_text())
    files = sorted((data_dir / "datscan_spect_ppmi_2d/train/PD").iterdir())[:3]
    xs = []
    for f in files:  # the model card's snippet, by hand: decode, resize, scale, normalise per image
        img = Image.open(f).resize(tuple(prep["image_size"][::-1]), Image.BILINEAR)
        x = np.asarray(img, dtype=np.float32)[None] / 255.0
        xs.append((x - x.mean((1, 2), keepdims=True)) / (x.std((1, 2), ddof=1, keepdims=True) + 1e-6))
    p = ort.InferenceSession(str(out / "model.onnx")).run(
        ["probabilities"], {"image": np.stack(xs).astype(np.float32)}
    )[0]
    expected = small_run.predict([str(f) for f in files])["p_PD"].to_numpy()
    np.testing.assert_allclose(p[:, 0], expected, atol=0.02)  # PIL's resize differs slightly from torch's antialias


def test_parity_failure_is_an_error(small_run, tmp_path):
    with pytest.raises(ExportError, match="differ from PyTorch"):
        export_run(small_run, "onnx", tmp_path / "strict", tolerance=-1.0)
    assert len(check_images(small_run)) > 10


def test_cli_export(small_run, tmp_path):
    proc = run_cli("export", str(small_run.path), "--format", "torchscript", "-o", str(tmp_path / "ts"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "parity on" in proc.stdout and (tmp_path / "ts" / "model.ts").is_file()
