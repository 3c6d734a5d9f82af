"""`meddx cv` plans as `meddx train` does: the rules' recipe made once (on fold 0) with the budget shared by the folds,
saved in the CV folder, reused by every fold and by a rerun, and a rerun under other settings refused by name."""

from __future__ import annotations

import json

import pytest

import meddx
import meddx.training.autofit
from meddx.config import as_config, load_config
from meddx.errors import ConfigError
from meddx.evaluation.cv_summary import cv_summary
from meddx.training.fold_plan import changed_choices
from meddx.training.plan import Plan

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
    assert "one model a fold: the 2 folds' models are the ensemble" in choice["train.ensemble"]["reason"]
    assert " for 2 model(s) at " in choice["train.max_epochs"]["reason"]  # the epochs fit every fold, not one
    assert plan["estimate"]["training_s"] == pytest.approx(2 * choice["train.max_epochs"]["value"] * plan["pilot"][
        "seconds_per_epoch"], rel=0.01)  # fmt: skip
    line, _ = cv_summary(cv_dir)  # the terminal says what was planned
    assert (
        f"recipe: small_cnn 28 px, up to {choice['train.max_epochs']['value']} epochs a fold; planned by meddx: "
        in line
    )
    assert "data.image_size" in line.split("planned by meddx: ")[1] and "num_workers" not in line
    for k in (0, 1):
        fold = load_config(cv_dir / f"fold{k}" / "config.yaml")
        assert (fold.data.normalize, fold.train.batch_size) == (choice["data.normalize"]["value"], 16)
        assert fold.train.class_weights == "on" and fold.train.max_epochs == choice["train.max_epochs"]["value"]
        assert (cv_dir / f"fold{k}" / "plan.json").is_file()

    def no_planning(*args, **kwargs):
        raise AssertionError("planned again")

    monkeypatch.setattr(meddx.training.autofit, "plan_run", no_planning)
    assert meddx.cross_validate({**cfg, "train": {"progress_bar": False, "num_workers": 1}}, folds=2) == cv_dir
    assert "2 of 2 folds trained by an earlier call: reused" in cv_summary(cv_dir)[0]  # said, not silent
    saved = Plan.from_dict(json.loads((cv_dir / "plan.json").read_text()))
    assert not changed_choices(as_config(cfg), saved, 2)
    assert changed_choices(as_config(cfg), saved, 3)[0] == "folds: 2 then, 3 now"  # a plan for other folds or data
    assert saved.value("train.channels_last") is not None  # the pilot timed the layout on fold 0
    layout = {**cfg, "train": {"channels_last": not saved.value("train.channels_last")}}  # the other one now
    assert not changed_choices(as_config(layout), saved, 2)  # a speed setting, as compile: it may change on a rerun
    other = as_config({**cfg, "data": {"path": str(npz.with_name("pneumoniamnist.npz"))}})
    assert changed_choices(other, saved, 2)[0].startswith("data.path: ")  # is not reused, even before a fold trains
    with pytest.raises(ConfigError, match=r"planned under other settings \(data.image_size: planned 28 then, 32 now"):
        meddx.cross_validate({**cfg, "data": {"path": str(npz), "image_size": 32}}, folds=2)


def test_a_fold_is_reused_with_what_training_resolved_and_a_cv_needs_two_folds(tmp_path):
    """A CV with word vectors could not be resumed: training wrote the vectors' vocab.json and model sizes into each
    fold's config, and the rerun's own config (without them) was 'trained with other settings'."""
    from meddx.config import as_config, save_config
    from meddx.training.cv import _same_settings, cross_validate

    w2v = tmp_path / "w2v"  # a `meddx pretrain --objective word2vec` folder
    w2v.mkdir()
    (w2v / "vocab.json").write_text("{}")
    (w2v / "model_kwargs.json").write_text('{"embed_dim": 128}')
    asked = {"data": {"path": str(tmp_path / "train.csv")}, "model": {"name": "rcnn", "embeddings": str(w2v)}}
    (tmp_path / "fold0").mkdir()

    def trained(kwargs: dict) -> None:  # fold 0's config as training wrote it
        done = as_config(asked, {"data.vocab": str(w2v / "vocab.json"), "model.kwargs": kwargs})
        save_config(done, tmp_path / "fold0" / "config.yaml")

    trained({"embed_dim": 128})
    _same_settings(tmp_path / "fold0", as_config(asked))  # resolved by training from the folder: the same settings
    _same_settings(tmp_path / "fold0", as_config(asked, {"data.cache": False}))  # where images come from, not what
    trained({"embed_dim": 128, "size": "cpu"})
    _same_settings(tmp_path / "fold0", as_config(asked, {"model.kwargs": {"size": "auto"}}))  # auto made concrete
    with pytest.raises(ConfigError, match="model.kwargs"):
        _same_settings(tmp_path / "fold0", as_config(asked, {"model.kwargs": {"embed_dim": 64}}))
    trained({"embed_dim": 128, "dropout": 0.3})  # the user's own, given once and dropped now: the folds would differ
    with pytest.raises(ConfigError, match="model.kwargs"):
        _same_settings(tmp_path / "fold0", as_config(asked))
    trained({"embed_dim": 128})
    with pytest.raises(ConfigError, match="data.vocab"):
        _same_settings(tmp_path / "fold0", as_config(asked, {"data.vocab": str(tmp_path / "other.json")}))
    for folds in (0, 1):
        with pytest.raises(ConfigError, match=f"--folds {folds}: cross-validation needs 2 folds at least"):
            cross_validate(asked, folds)


def test_a_cv_begun_before_cv_planned_is_found_under_its_old_name(tmp_path, monkeypatch):
    """The default folder lost the model's name (the plan chooses the model); a CV killed under the old name
    (<data>-<model>-cv<k>, no plan.json) is still the one a rerun resumes, unplanned as it began."""
    import meddx.training.cv as cv

    legacy = tmp_path / "scans-small_cnn-cv2" / "fold0"
    legacy.mkdir(parents=True)
    (legacy / "config.yaml").write_text("name: fold0\n")
    seen = []
    monkeypatch.setattr(cv, "_fold_run", lambda cfg, cv_dir, *args: seen.append((cv_dir, cfg)))
    assert cv.cross_validate({"data": {"path": "scans.npz"}, "output_dir": str(tmp_path)}, 2) == legacy.parent
    assert seen[0][0] == legacy.parent and seen[0][1].data.image_size is None  # not planned: as it was trained


def test_a_cv_whose_data_gained_files_is_not_reused(tmp_path, monkeypatch):
    """21 scans added to a class folder, the same command again: the old folds' figure was printed as current."""
    import meddx.training.cv as cv

    scans = tmp_path / "scans" / "NORMAL"
    scans.mkdir(parents=True)
    for i in range(3):
        (scans / f"{i}.png").write_bytes(b"x" * (10 + i))
    monkeypatch.setattr(cv, "_fold_run", lambda *args: None)  # training is not under test: the record of the data is
    cfg = {
        "data": {"path": str(tmp_path / "scans")},
        "output_dir": str(tmp_path),
        "name": "c",
        "plan": {"enabled": False},
    }
    cv_dir = cv.cross_validate(cfg, 2)
    assert json.loads((cv_dir / "source.json").read_text()) == {"data": {"files": 3, "bytes": 33}}
    (cv_dir / "fold0").mkdir()
    (cv_dir / "fold0" / "config.yaml").write_text("name: fold0\n")  # a fold trained on those 3
    assert cv.cross_validate(cfg, 2) == cv_dir  # the same files: reused
    (scans / "3.png").write_bytes(b"y")
    with pytest.raises(
        ConfigError, match=r"its data changed since its folds trained \(data: \{'files': 3, 'bytes': 33\}"
    ):
        cv.cross_validate(cfg, 2)


def test_the_data_record_counts_scans_only(tmp_path):
    """Thumbs.db, a notebook's hidden checkpoints and the CV's own folder inside the data (`--data .`) were counted:
    a rerun was refused though no scan changed."""
    from meddx.config import as_config
    from meddx.training.cv import source_summary

    for name in ("NORMAL/0.png", "NORMAL/1.dcm", "NORMAL/IM0001", "PNEU/2.jpeg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"xx")
    before = source_summary(as_config({"data": {"path": str(tmp_path)}}), skip=tmp_path / "runs")
    noises = ("NORMAL/Thumbs.db", ".ipynb_checkpoints/3.png", "runs/cv/oof.csv", "runs/cv/fold0/x.png", ".DS_Store")
    for noise in noises:
        (tmp_path / noise).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / noise).write_bytes(b"noise")
    after = source_summary(as_config({"data": {"path": str(tmp_path)}}), skip=tmp_path / "runs")
    assert before == after == {"data": {"files": 4, "bytes": 8}}
