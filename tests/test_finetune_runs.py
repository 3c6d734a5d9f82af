"""Runs that build on runs: SWA, TensorBoard diagnostics, fine-tuning from a run, and ensembles of runs (issue 6)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import meddx
from meddx.api import ensemble, model_info
from meddx.errors import ConfigError

from conftest import FIXED_RECIPE, need, run_cli


def _breast(data_dir, out, name, **train):
    return {
        "name": name,
        "output_dir": str(out),
        "data": {"path": str(need(data_dir, "medmnist/breastmnist.npz"))},
        "split": {"on_duplicate_images": "drop_from_train"},
        "train": {"max_epochs": 3, "batch_size": 64, "progress_bar": False, **train},
        "evaluate": {"bootstrap": 200},
        "plan": {"enabled": False},
    }


@pytest.fixture(scope="module")
def swa_run(data_dir, tmp_path_factory):
    """A source run with SWA, mixup, label smoothing and diagnostics on."""
    out = tmp_path_factory.mktemp("ft")
    return meddx.train(_breast(data_dir, out, "swa", swa=True, swa_epoch_start=0.5, mixup=0.3, label_smoothing=0.05))


def test_swa_model_is_the_average_and_evaluates(swa_run, data_dir):
    cfg = meddx.load_config(swa_run.path / "config.yaml")
    assert cfg.train.swa and cfg.train.mixup == 0.3 and cfg.train.label_smoothing == 0.05
    training = json.loads((swa_run.path / "training.json").read_text())
    assert training["model_pt"] == "swa" and training["epochs_run"] >= 3
    saved = torch.load(swa_run.path / "model.pt", weights_only=True)
    last = torch.load(swa_run.path / "checkpoints" / "last.ckpt", weights_only=True)
    swa_state = next(v for k, v in last["callbacks"].items() if k.startswith("StochasticWeightAveraging"))
    assert swa_state["n_averaged"] >= 2  # more than one set of weights went into the average
    average = swa_state["average_model_state"]
    params = dict(meddx.load_run(swa_run.path).model.named_parameters())
    assert params
    for k in params:  # model.pt holds the averaged parameters
        torch.testing.assert_close(saved[k], average[f"model.{k}"])
    var = saved["features.0.0.1.running_var"]
    assert not torch.allclose(var, torch.ones_like(var))  # BatchNorm statistics re-estimated, not left reset
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point())
    metrics = json.loads((swa_run.path / "metrics.json").read_text())
    auc = metrics["model"]["per_label"][metrics["labels"][0]]["roc_auc"]
    assert 0.5 < auc["value"] <= 1 and auc["ci_low"] < auc["value"] < auc["ci_high"]
    run = meddx.load_run(swa_run.path)
    from meddx.data.readers import read_dataset
    from meddx.data.split import assign_splits
    from meddx.data.tensors import ImageDataset

    ds = read_dataset(cfg.data)
    assign_splits(ds, cfg.split)
    again = run.predict(ImageDataset(ds.subset("test").records, run.preprocess))
    col = f"p_{run.label_names[0]}"
    np.testing.assert_allclose(again[col].to_numpy(), run.predictions("test")[col].to_numpy(), atol=1e-6)


def test_tensorboard_has_scalars_histograms_and_roc_figure(swa_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted((swa_run.path / "tb").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(swa_run.path / "tb"), size_guidance={"histograms": 0, "images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    name = swa_run.label_names[0]
    for scalar in ("train_loss", "val_loss", "val_auc", f"val_auc/{name}"):
        assert scalar in tags["scalars"], (scalar, tags["scalars"])
    assert any(t.startswith("lr") for t in tags["scalars"])
    for kind in ("positives", "negatives"):
        tag = f"val_prob/{name}/{kind}"
        assert tag in tags["histograms"], tags["histograms"]
        hist = acc.Histograms(tag)
        assert len(hist) == 4  # one per epoch (3 + SWA's BatchNorm epoch), not the sanity check
        h = hist[-1].histogram_value
        assert h.min >= 0 and h.max <= 1 and h.num > 0
    assert "val_roc" in tags["images"] and len(acc.Images("val_roc")) == 4
    assert acc.Images("val_roc")[0].encoded_image_string[:4] == b"\x89PNG"
    val = pd.read_csv(swa_run.path / "predictions" / "val.csv")
    positives = int(val[name].sum())
    assert acc.Histograms(f"val_prob/{name}/positives")[0].histogram_value.num == positives


def test_finetune_from_a_run_freezes_what_model_info_says(swa_run, data_dir, tmp_path):
    proc = run_cli(
        "train",
        "--data",
        str(need(data_dir, "medmnist/breastmnist.npz")),
        "--init-from",
        str(swa_run.path),
        "--finetune-depth",
        "1",
        "--epochs",
        "2",
        "--output-dir",
        str(tmp_path),
        "--name",
        "ft",
        *FIXED_RECIPE,
        "--set",
        "train.unfreeze_every=1",
        "--set",
        "train.backbone_lr_mult=0.1",
        "--set",
        "split.on_duplicate_images=drop_from_train",
        "--set",
        "evaluate.bootstrap=100",
        "--set",
        "train.diagnostics=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = "val scans are copies (identical, near-identical, or cropped and resized) of scans the initial weights (swa)"
    said += " trained or were chosen on: val figures overstate, and val"  # test: not named, swa never saw it
    assert said in " ".join(proc.stdout.split())  # a note (the same split: its val scans are swa's own val)
    assert "fine-tuning: initialised from" in proc.stdout and "tensors, a new head" in proc.stdout  # it loaded
    run = meddx.load_run(tmp_path / "ft")
    assert said in (run.path / "report.md").read_text()
    cfg = run.config
    assert cfg.train.init_from == str(swa_run.path) and cfg.train.finetune_depth == 1 and cfg.train.unfreeze_every == 1
    training = json.loads((run.path / "training.json").read_text())
    assert training["init_from"]["skipped_head"] and training["init_from"]["loaded"] > 0
    src = torch.load(swa_run.path / "model.pt", weights_only=True)
    new = torch.load(run.path / "model.pt", weights_only=True)
    # depth 1, one more block after epoch 1: block 3 (features.0) never trained, its BatchNorm statistics kept
    for k, v in new.items():
        if k.startswith("features.0."):
            assert torch.equal(v, src[k]), k
    assert not torch.equal(new["features.2.1.0.weight"], src["features.2.1.0.weight"])  # block 1 trained
    # after the second epoch's unfreezing, what trains is what model-info lists for depth 2
    rows = model_info("small_cnn", 1, 1, 2)
    assert training["trainable_parameters"] == sum(r["params"] for r in rows if r["trainable"])
    assert training["trainable_parameters"] < training["total_parameters"]
    assert (run.path / "metrics.json").is_file()
    # reloading needs no init_from: the file may be gone
    shutil.copytree(run.path, tmp_path / "copy")
    assert len(meddx.load_run(tmp_path / "copy").model.state_dict()) == len(new)


def test_ensemble_of_two_runs(swa_run, data_dir, tmp_path):
    second = meddx.train(_breast(data_dir, tmp_path, "seed1", max_epochs=2, seed=1, diagnostics=False))
    ens = ensemble([swa_run.path, second.path], tmp_path / "ens", bootstrap=100)
    col = f"p_{swa_run.label_names[0]}"
    for split in ("val", "test"):
        mean = (swa_run.predictions(split)[col] + second.predictions(split)[col]) / 2
        np.testing.assert_allclose(ens.predictions(split)[col].to_numpy(), mean.to_numpy(), atol=1e-8)
    metrics = json.loads((ens.path / "metrics.json").read_text())
    assert (
        metrics["n_samples"] == 156 and metrics["model"]["per_label"][swa_run.label_names[0]]["roc_auc"]["value"] > 0.5
    )
    from meddx.data.readers import read_dataset
    from meddx.data.split import assign_splits
    from meddx.data.tensors import ImageDataset

    ds = read_dataset(ens.config.data)
    assign_splits(ds, ens.config.split)
    again = meddx.load_run(ens.path).predict(ImageDataset(ds.subset("test").records, ens.preprocess))
    np.testing.assert_allclose(again[col].to_numpy(), ens.predictions("test")[col].to_numpy(), atol=1e-5)
    from meddx.export import export_run

    package = export_run(ens.path, "onnx", tmp_path / "pkg")  # parity with PyTorch checked on real test images
    assert json.loads((package / "parity.json").read_text())["max_abs_diff"] <= 1e-4
    from fastapi.testclient import TestClient  # the ensemble is served by ONNX; Grad-CAM is refused with a reason

    from meddx.serve import create_app

    with TestClient(create_app(package)) as client:
        assert client.get("/model").json()["grad_cam"] is False
        assert client.get("/model").json()["name"] == client.get("/health").json()["model"] == ens.path.name
        assert isinstance(client.get("/health").json()["batching"]["max_batch"], int)  # counts stay whole numbers
        buf = io.BytesIO()
        np.save(buf, np.load(ens.config.data.path)["test_images"][0])  # a BreastMNIST test scan as .npy
        assert client.post("/predict", files={"file": ("s.npy", buf.getvalue())}).status_code == 200
        r = client.post("/predict?cam=true", files={"file": ("s.npy", buf.getvalue())})
        answer = r.json()  # the prediction is kept; the map is refused with a reason (it was a 400, prediction lost)
        assert r.status_code == 200 and "no PyTorch weights" in answer["cam_error"] and "cam_png" not in answer
        assert answer["probabilities"]
    with TestClient(create_app(ens.path)) as client:  # the run folder itself: PyTorch, members' maps averaged
        r = client.post("/predict?cam=true", files={"file": ("s.npy", buf.getvalue())})
        assert r.status_code == 200 and r.json()["cam_png"] and client.get("/model").json()["grad_cam"] is True
    # a run on another split is refused by name
    other = tmp_path / "other"
    shutil.copytree(second.path, other)
    split = pd.read_csv(other / "split.csv", dtype=str)
    i = split.index[split["split"] == "test"][0]
    split.loc[i, "split"] = "train"
    split.to_csv(other / "split.csv", index=False)
    with pytest.raises(ConfigError, match="split differs"):
        ensemble([swa_run.path, other], tmp_path / "ens2")
    proc = run_cli("ensemble", str(swa_run.path), str(other), "-o", str(tmp_path / "ens3"))
    assert proc.returncode == 2 and "split differs" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_an_ensemble_of_members_at_two_image_sizes_is_one_model(swa_run, data_dir, tmp_path):
    """A 28 px small CNN and a 40 px one were refused ('preprocessing differs'). The ensemble now takes 28 px scans
    (their own size) and resizes for the 40 px member as its own preprocessing does, so its predictions are the
    members' own; val/test are that one model's, as `predict`, Grad-CAM and the ONNX export give."""
    from meddx.explain import explain_file
    from meddx.export import export_run

    cfg = _breast(data_dir, tmp_path, "px40", max_epochs=2, seed=1, diagnostics=False)
    larger = meddx.train({**cfg, "data": {**cfg["data"], "image_size": 40}})
    ens = ensemble([swa_run.path, larger.path], tmp_path / "ens", bootstrap=50, weights="val")
    info = json.loads((ens.path / "ensemble.json").read_text())
    assert tuple(ens.preprocess.image_size) == (28, 28) and info["input"]["size"] == [28, 28]
    assert max(info["input"]["largest_gap_from_own_val_predictions"].values()) < 1e-4  # each member as it was alone
    col, w = f"p_{swa_run.label_names[0]}", info["weights"]
    again = ens.predict(ens.records("test"))
    np.testing.assert_allclose(again[col].to_numpy(), ens.predictions("test")[col].to_numpy(), atol=1e-5)
    for split in ("val", "test"):
        mean = w[0] * swa_run.predictions(split)[col] + w[1] * larger.predictions(split)[col]
        np.testing.assert_allclose(ens.predictions(split)[col].to_numpy(), mean.to_numpy(), atol=1e-4)
    assert json.loads((ens.path / "metrics.json").read_text())["n_samples"] == 156
    from meddx.evaluation.ensemble import against_members

    line = against_members(ens)  # the weights and val beside the best member, printed by `meddx ensemble`
    assert line.startswith("weights (chosen on val, so val favours the ensemble): swa ") and "best member" in line
    assert "weighted mean, weights chosen on val" in (ens.path / "report.md").read_text()
    again_of_ensemble = ensemble([ens.path, swa_run.path], tmp_path / "ens_of_ens", bootstrap=0)  # a member that is
    assert "an ensemble itself" in (again_of_ensemble.path / "report.md").read_text()  # an ensemble: no crash
    scan = ens.records("test")[0]
    path, prob, _ = explain_file(ens, scan, out=tmp_path / "cam.png", layer="features.1")  # the member's own layer name
    assert path.is_file() and prob == pytest.approx(ens.predictions("test").set_index("id").loc[scan.id, col], abs=1e-4)
    package = export_run(ens.path, "onnx", tmp_path / "pkg")
    assert json.loads((package / "parity.json").read_text())["max_abs_diff"] <= 1e-4
    card = (package / "card.md").read_text()  # the card named the members' architecture only
    assert f"swa `small_cnn` 28x28 (weight {w[0]:.2f}); px40 `small_cnn` 40x40 (weight {w[1]:.2f})" in card
    assert "each member resizes the input to its own size" in card
    other = meddx.train({**cfg, "name": "sample", "data": {**cfg["data"], "normalize": "sample"}})
    with pytest.raises(ConfigError, match=r"preprocessing \(preprocess.json: normalize\) differs"):
        ensemble([swa_run.path, other.path], tmp_path / "ens2")


@pytest.mark.slow
def test_members_smaller_than_the_scans_take_the_scans_own_size(datscan_run, data_dir, tmp_path):
    """DaTscan slices are 109 x 91; members at 48 and 32 px with per-image z-scores. The ensemble takes 109 x 91 and
    each member resizes and standardises from it as it did alone, so nothing is resized twice."""
    from conftest import datscan_variant

    data = {"path": str(need(data_dir, "datscan_spect_ppmi_2d")), "image_size": 32, "normalize": "sample"}
    small = datscan_variant(data_dir, tmp_path, "px32", {"max_epochs": 1}, 0, data=data)
    ens = ensemble([datscan_run.path, small.path], tmp_path / "ens", bootstrap=0)
    info = json.loads((ens.path / "ensemble.json").read_text())["input"]
    assert info["size"] == [109, 91] and "the scans' own size" in info["why"]
    assert max(info["largest_gap_from_own_val_predictions"].values()) < 1e-3
