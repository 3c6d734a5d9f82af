"""Transfer learning, regularisation, SWA, TensorBoard diagnostics and ensembles (issue 6)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import meddx
from meddx.api import ensemble, model_info
from meddx.errors import ConfigError
from meddx.models import create_model
from meddx.models.finetune import blocks, describe, freeze_all_but, head_name, load_pretrained

from conftest import FIXED_RECIPE, need, run_cli


@pytest.mark.parametrize("name,in_chans", [("small_cnn", 1), ("resnet18", 1), ("efficientnet_b0", 3)])
def test_frozen_set_is_exactly_what_model_info_lists(name, in_chans):
    model = create_model(name, in_chans, 2)
    n_blocks = len(blocks(model)) - 1
    all_params = {n for n, _ in model.named_parameters()}
    assert set().union(*(b.params for b in blocks(model))) == all_params  # every parameter sits in exactly one block
    assert sum(len(b.params) for b in blocks(model)) == len(all_params)
    for depth in [0, 1, 2, "all"]:
        trainable = set(freeze_all_but(model, depth))
        assert trainable == {n for n, p in model.named_parameters() if p.requires_grad}
        rows = describe(model, depth)
        listed = {n for r, b in zip(rows, blocks(model)) if r["trainable"] for n in b.params}
        assert trainable == listed
        expected = n_blocks if depth == "all" else depth
        assert sum(r["trainable"] for r in rows if r["block"] != "head") == expected
        assert sum(r["params"] for r in rows if r["trainable"]) == sum(
            p.numel() for p in model.parameters() if p.requires_grad
        )
    assert [r["name"] for r in describe(model)][-1] == head_name(model)


def test_model_info_cli_lists_blocks():
    proc = run_cli("model-info", "small_cnn", "--in-chans", "1", "--finetune-depth", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.split()[:2] == ["1", "features.2"] and line.split()[-1] == "yes" for line in lines)
    assert any(line.split()[:2] == ["3", "features.0"] and line.split()[-1] == "no" for line in lines)
    assert any(line.split()[0] == "head" and line.split()[-1] == "yes" for line in lines)


def test_load_pretrained_skips_the_head_and_names_other_mismatches(tmp_path):
    src = create_model("small_cnn", 1, 4)
    torch.save(src.state_dict(), tmp_path / "src.pt")
    dst = create_model("small_cnn", 1, 1)
    head_before = dst.head[-1].weight.detach().clone()
    report = load_pretrained(dst, tmp_path / "src.pt")
    assert sorted(report["skipped_head"]) == ["head.2.bias", "head.2.weight"]
    for k, v in src.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(dst.state_dict()[k], v), k
    assert torch.equal(dst.head[-1].weight, head_before)  # head freshly initialised, not taken from the file
    with pytest.raises(ConfigError, match=r"features\.0\.0\.0\.weight"):  # a wider body: mismatch named
        wide = create_model("small_cnn_wide", 1, 4)
        torch.save(wide.state_dict(), tmp_path / "wide.pt")
        load_pretrained(create_model("small_cnn", 1, 1), tmp_path / "wide.pt")
    state = src.state_dict()
    del state["features.1.0.1.running_mean"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match=r"missing: features\.1\.0\.1\.running_mean"):
        load_pretrained(create_model("small_cnn", 1, 1), tmp_path / "missing.pt")


def test_three_channel_weights_adapted_to_one_channel_like_timm(tmp_path):
    from timm.models import adapt_input_conv

    src = create_model("resnet18", 3, 1000)  # stands in for ImageNet weights the user downloaded
    torch.save(src.state_dict(), tmp_path / "imagenet.pt")
    dst = create_model("resnet18", 1, 2)
    report = load_pretrained(dst, tmp_path / "imagenet.pt")
    assert report["adapted"] == ["conv1.weight: 3 -> 1 channels"]
    expected = adapt_input_conv(1, src.conv1.weight.detach())
    torch.testing.assert_close(dst.conv1.weight.detach(), expected)
    torch.testing.assert_close(dst.conv1.weight.detach(), src.conv1.weight.detach().sum(1, keepdim=True))
    torch.testing.assert_close(dst.layer4[1].conv2.weight, src.layer4[1].conv2.weight)


def test_grey_weights_spread_over_three_channels(tmp_path):
    """A one-channel encoder (pretrained on X-rays) on RGB input: each grey filter split evenly over R, G and B, so a
    grey image stored as RGB gives the same first-layer response."""
    src = create_model("small_cnn", 1, 1)
    torch.save(src.state_dict(), tmp_path / "grey.pt")
    dst = create_model("small_cnn", 3, 1)
    assert load_pretrained(dst, tmp_path / "grey.pt")["adapted"] == ["features.0.0.0.weight: 1 -> 3 channels"]
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(dst.features[0][0][0](x.repeat(1, 3, 1, 1)), src.features[0][0][0](x))


def test_mixup_on_a_multilabel_batch():
    from meddx.training.augment import mixup_batch

    torch.manual_seed(0)
    x = torch.randn(8, 1, 6, 6)
    y = torch.tensor(
        [[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 1, 1], [0, 1, 0]], dtype=torch.float32
    )
    y[3, 2] = float("nan")  # unknown label stays unknown in both mixed rows
    xm, ym, lam, perm = mixup_batch(x, y, alpha=0.4)
    assert 0 < lam < 1 and sorted(perm.tolist()) == list(range(8))
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x[perm])
    known = ~torch.isnan(ym)
    torch.testing.assert_close(ym[known], (lam * y + (1 - lam) * y[perm])[known])
    assert torch.isnan(ym[3, 2]) and torch.isnan(ym[(perm == 3).nonzero().item(), 2])
    assert ((ym[known] >= 0) & (ym[known] <= 1)).all() and ym[known].unique().numel() > 2  # soft targets
    from meddx.training.module import Classifier

    clf = Classifier({"name": "small_cnn"}, {"mixup": 0.4}, "multilabel", 1, 3)
    loss = clf.loss(clf(xm), ym)
    assert torch.isfinite(loss)


def test_label_smoothing_binary_and_multiclass():
    from meddx.training.module import Classifier

    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 0.2, 1.5]])
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    multi = Classifier({"name": "small_cnn"}, {}, "multiclass", 1, 3)
    assert multi.loss(logits, y, smoothing=0.1).item() == pytest.approx(
        F.cross_entropy(logits, y.argmax(1), label_smoothing=0.1).item(), rel=1e-6
    )
    binary = Classifier({"name": "small_cnn"}, {}, "multilabel", 1, 3)
    smooth = y * 0.9 + 0.05
    manual = F.binary_cross_entropy_with_logits(logits, smooth)  # class weights off: plain BCE (both weights 1)
    assert binary.loss(logits, y, smoothing=0.1).item() == pytest.approx(manual.item(), rel=1e-6)
    assert binary.loss(logits, y, smoothing=0.1).item() != pytest.approx(binary.loss(logits, y).item(), rel=1e-3)


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
    run = meddx.load_run(tmp_path / "ft")
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
        buf = io.BytesIO()
        np.save(buf, np.load(ens.config.data.path)["test_images"][0])  # a BreastMNIST test scan as .npy
        assert client.post("/predict", files={"file": ("s.npy", buf.getvalue())}).status_code == 200
        r = client.post("/predict?cam=true", files={"file": ("s.npy", buf.getvalue())})
        assert r.status_code == 400 and "Grad-CAM needs the PyTorch weights" in r.json()["detail"]
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


def test_gradual_unfreezing_lets_the_optimizer_update_the_next_block():
    from meddx.training.callbacks import GradualUnfreezing
    from meddx.training.module import Classifier

    torch.manual_seed(0)
    clf = Classifier({"name": "small_cnn"}, {"finetune_depth": 1, "backbone_lr_mult": 0.1}, "binary", 1, 1)
    opt = clf.configure_optimizers()["optimizer"]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([clf.train_cfg.lr * 0.1, clf.train_cfg.lr])
    cb = GradualUnfreezing(1, every=1)
    x, y = torch.randn(8, 1, 16, 16), torch.tensor([[1.0], [0.0]] * 4)

    def step() -> dict:
        before = {k: v.detach().clone() for k, v in clf.model.named_parameters()}
        opt.zero_grad()
        clf.loss(clf(x), y).backward()
        opt.step()
        return {k for k, v in clf.model.named_parameters() if not torch.equal(v, before[k])}

    cb.freeze_before_training(clf)
    changed = step()
    assert changed and all(k.startswith(("features.2.", "head.")) for k in changed)
    cb.finetune_function(clf, 1, opt)
    changed = step()
    assert any(k.startswith("features.1.") for k in changed) and not any(k.startswith("features.0.") for k in changed)


def test_cli_names_a_mismatched_tensor_in_one_line(data_dir, tmp_path):
    torch.save(create_model("small_cnn_wide", 1, 1).state_dict(), tmp_path / "wide.pt")
    proc = run_cli(
        "train",
        "--data",
        str(need(data_dir, "medmnist/breastmnist.npz")),
        "--init-from",
        str(tmp_path / "wide.pt"),
        "--finetune-depth",
        "0",
        "--epochs",
        "1",
        "--output-dir",
        str(tmp_path / "runs"),
        "--set",
        "train.progress_bar=false",
        "--set",
        "split.on_duplicate_images=drop_from_train",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "features.0.0.0.weight (64, 1, 3, 3) in the file vs (32, 1, 3, 3) in the model" in proc.stderr
    proc = run_cli("train", "--finetune-depth", "-1", "--epochs", "1")
    assert proc.returncode == 2 and "finetune_depth" in proc.stderr
