"""Grad-CAM: the sanity check on real data (maps change when weights are randomised), target layers, overlays,
gallery."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

from meddx.data.tensors import Preprocess
from meddx.errors import MeddxError
from meddx.explain import Explainer, explain_file, find_target_layer, gallery, overlay
from meddx.explain.gallery import pick_cases
from meddx.export.package import check_images
from meddx.models import MODEL_INFO, create_model, list_models

from conftest import need, run_cli


def test_maps_fail_the_randomisation_sanity_check_only_when_they_should(datscan_run):
    """Adebayo et al.: a map that survives randomising the weights explains the image, not the model."""
    images = check_images(datscan_run, "test", 16)
    trained = Explainer.from_run(datscan_run).maps(images, 0)
    random_model = copy.deepcopy(datscan_run.model)
    torch.manual_seed(0)
    for module in random_model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    randomised = Explainer(random_model, datscan_run.preprocess, datscan_run.label_names, datscan_run.task).maps(
        images, 0
    )
    assert trained.shape == (16, 48, 48) and trained.min() >= 0 and trained.max() <= 1
    # an empty map is Grad-CAM's answer for a scan with no evidence for the class (an HC slice for PD): allowed for a
    # few scans (the trained model varies with the machine's float order), never for most
    assert (trained.std(axis=(1, 2)) > 0.01).mean() >= 0.75, "constant maps explain nothing"
    rank = [spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(trained, randomised)]
    assert np.nanmean(rank) < 0.5, f"maps barely change when the weights are randomised: {np.round(rank, 2)}"


IMAGE_MODELS = {n for n in list_models() if MODEL_INFO[n].kind == "image"}


@pytest.mark.parametrize(
    "name",
    sorted(
        IMAGE_MODELS
        | {
            "resnet18",
            "densenet121",
            "efficientnet_b0",
            "convnext_atto",
            "mobilenetv3_small_100",
            "vit_tiny_patch16_224",
        }
    ),
)
def test_target_layer_found_for_each_architecture(name):
    size = 224 if name.startswith("vit") else 64
    model = create_model(name, 1, 2)
    explainer = Explainer(model, Preprocess(1, (size, size), "none"), ["a", "b"], "multilabel")
    maps = explainer.maps(torch.randn(2, 1, size, size), 1)
    assert maps.shape == (2, size, size) and np.isfinite(maps).all()
    layer_name, layer = find_target_layer(model, 1, (size, size))
    assert layer_name == explainer.layer_name and layer is model.get_submodule(layer_name)


def test_layer_override_and_unknown_names():
    model = create_model("small_cnn", 1, 1)
    assert find_target_layer(model, 1, (32, 32), "features.1")[0] == "features.1"
    with pytest.raises(Exception, match="no layer 'nope'"):
        find_target_layer(model, 1, (32, 32), "nope")


def test_overlay_keeps_grey_levels_and_blends():
    grey = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(1, 40, 30)
    flat = overlay(grey, np.zeros((8, 8), np.float32), alpha=0.0)
    assert flat.shape == (40, 30, 3) and (flat[..., 0] == flat[..., 1]).all()
    np.testing.assert_allclose(flat[..., 0] / 255.0, grey[0], atol=1 / 255)
    dim = overlay(grey * 0.29, np.zeros((8, 8), np.float32), alpha=0.0)  # SPECT counts: a quarter of the range
    assert dim.min() == 0 and dim.max() == 255  # stretched from the scan's own darkest to brightest, linearly
    hot = overlay(grey, np.ones((8, 8), np.float32), alpha=0.4)
    assert not np.array_equal(hot, flat) and abs(int(hot[0, 0, 0]) - int(flat[0, 0, 0])) > 10


def test_explain_cli_and_gallery(datscan_run, data_dir, tmp_path):
    scan = sorted((need(data_dir, "datscan_spect_ppmi_2d") / "train" / "PD").iterdir())[0]
    out = tmp_path / "map.png"
    proc = run_cli("explain", str(datscan_run.path), str(scan), "--label", "PD", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "p(PD) = " in proc.stdout
    with Image.open(out) as im, Image.open(scan) as original:
        factor = im.width // original.width  # enlarged by a whole factor, the legend's band below
        assert im.mode == "RGB" and im.width == factor * original.width >= 320 and im.height > factor * original.height
        band = np.asarray(im)[factor * original.height :]
        red = (band[..., 0] > 200) & (band[..., 2] < 60)  # the bar's two ends (white, the background, is neither)
        blue = (band[..., 2] > 100) & (band[..., 0] < 60) & (band[..., 1] < 60)
        assert red.any() and blue.any() and (band.max(axis=2) < 60).any()  # the bar and black words
    plain = run_cli("explain", str(datscan_run.path), str(scan), "--no-legend", "-o", str(tmp_path / "plain.png"))
    with Image.open(tmp_path / "plain.png") as im, Image.open(scan) as original:
        assert plain.returncode == 0 and im.size == original.size  # pixel for pixel on the scan
    assert "WARNING" not in proc.stderr  # a DaTscan slice: in the training domain
    xray = sorted((need(data_dir, "nih_chestxray14_64px_binary") / "valid").rglob("*.png"))[0]
    other = run_cli("explain", str(datscan_run.path), str(xray), "-o", str(tmp_path / "xray.png"))
    assert other.returncode == 0 and "WARNING: outside the training scans' input domain" in other.stderr  # as predict
    bad = run_cli("explain", str(datscan_run.path), str(scan), "--label", "nope")
    assert bad.returncode == 2 and "unknown label 'nope'" in bad.stderr
    path, prob, name = explain_file(datscan_run, scan)
    assert path.is_file() and 0 <= prob <= 1 and name == datscan_run.label_names[0]
    page = gallery(datscan_run, "test", k=2, out_dir=tmp_path / "gallery")
    html = page.read_text()
    assert "true positives" in html and "false negatives" in html
    pngs = sorted((tmp_path / "gallery").glob("*-cam.png"))
    assert 1 <= len(pngs) <= 6 and all(p.name in html for p in pngs)
    import shutil

    import meddx

    tested = datscan_run.predictions("test")["id"]  # new data: a folder of scans the run never trained on
    for i in [*tested[tested.str.contains("/HC/")][:4], *tested[tested.str.contains("/PD/")][:4]]:
        (tmp_path / "site" / i.split("/")[-2]).mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / "datscan_spect_ppmi_2d" / i, tmp_path / "site" / i.split("/")[-2])
    meddx.evaluate(datscan_run.path, "gallery-site", data={"path": str(tmp_path / "site")}, bootstrap=0)
    page = gallery(datscan_run, "gallery-site", k=1, out_dir=tmp_path / "site-gallery")  # was a KeyError on its ids
    assert "true positives" in page.read_text() and list((tmp_path / "site-gallery").glob("*-cam.png"))


def test_ensemble_map_is_the_weighted_mean_of_its_members_maps():
    """A planned ensemble is explained, not refused: its map is the members' maps averaged as their probabilities."""
    from meddx.explain.gradcam import EnsembleExplainer
    from meddx.models.ensemble import ProbabilityAverage

    torch.manual_seed(0)
    members = [create_model("small_cnn", 1, 1).eval() for _ in range(2)]
    prep = Preprocess(channels=1, image_size=(32, 32), normalize="none")
    ensemble = EnsembleExplainer(ProbabilityAverage(members, "binary", [0.25, 0.75]), prep, ["x"], "binary")
    images = torch.randn(3, 1, 32, 32)
    own = [Explainer(m, prep, ["x"], "binary").maps(images, 0) for m in copy.deepcopy(members)]
    np.testing.assert_allclose(ensemble.maps(images, 0), 0.25 * own[0] + 0.75 * own[1], atol=1e-5)
    assert not np.allclose(own[0], own[1])  # the members disagree, so the mean is a real mixture


def test_a_multiclass_gallery_picks_cases_by_the_class_called_not_by_half():
    """A multi-class run calls a class at p 0.4 when no other class is more probable; one-vs-rest at 0.5 never did."""
    y, p = np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.4, 0.45, 0.35, 0.2])
    chosen = pick_cases(y, p, 0.5, 3, called=np.array([True, False, True, False]))
    assert list(chosen["true positives"]) == [0] and list(chosen["false negatives"]) == [1]
    assert list(chosen["false positives"]) == [2]
    assert not len(pick_cases(y, p, 0.5, 3)["true positives"])  # at 0.5 nothing would be called


def test_gallery_cases_skip_unknown_labels_and_label_folders_stay_apart():
    """An unknown label (new data lacking its column) called positive was listed as a false positive; two labels
    whose names make one folder name ('a+b', 'a&b') overwrote each other's page."""
    from meddx.explain.gallery import _folders

    y, p = np.array([np.nan, 0.0, 1.0]), np.array([0.9, 0.8, 0.7])
    chosen = pick_cases(y, p, 0.5, 3)
    assert list(chosen["false positives"]) == [1] and list(chosen["true positives"]) == [2]
    assert _folders(["a+b", "a&b", "c/d"]) == ["a_b", "a_b-2", "c_d"]


def test_a_binary_runs_negative_class_and_any_case_can_be_explained(datscan_run, data_dir):
    """`--label hc` and `--label HC` (the negative class) were refused ('this model's labels are [PD]'): names match
    in any case, and the negative class's map is what lowers the one output, its probability 1 - p."""
    from meddx.explain.gradcam import Explainer

    scan = sorted((need(data_dir, "datscan_spect_ppmi_2d") / "train" / "HC").iterdir())[0]
    explainer = Explainer.from_run(datscan_run)
    _, pd_map, p_pd = explainer.explain(scan, "pd")
    _, hc_map, p_hc = explainer.explain(scan, "hc")
    assert p_hc == pytest.approx(1 - p_pd) and not np.allclose(pd_map, hc_map)
    with pytest.raises(MeddxError, match=r"unknown label 'nope'; this model's classes are \['PD', 'HC'\]"):
        explainer.label_index("nope")


def test_explain_says_when_a_map_is_empty_or_coarse(datscan_run, data_dir, monkeypatch, tmp_path):
    """A flat blue map (p 0.28) came with no word, and DenseNet at 64 px explained a 2x2 feature map unsaid."""
    from meddx.explain.gradcam import explain_scan

    scan = sorted((need(data_dir, "datscan_spect_ppmi_2d") / "train" / "PD").iterdir())[0]
    explainer = Explainer.from_run(datscan_run)
    done = explain_scan(datscan_run, explainer, scan, None, tmp_path / "a.png")
    assert len(explainer.grid) == 2 and any("coarse" in n for n in done["notes"]) == (min(explainer.grid) <= 4)
    flat = explainer.explain(scan)
    monkeypatch.setattr(explainer, "explain", lambda *a: (flat[0], np.zeros_like(flat[1]), flat[2]))
    assert any(
        "the map is empty" in n for n in explain_scan(datscan_run, explainer, scan, None, tmp_path / "b.png")["notes"]
    )
