"""New 2-D images cut from the run's training images and shrunk (a run on PneumoniaMNIST evaluated on the Kermany
folder its 28 px images were cropped from): the whole-image hashes missed them, and the 'external' AUC (0.989) was
scored mostly on training scans; now they are counted as likely copies, kept in the figures and warned about."""

from __future__ import annotations

import json

import numpy as np
from test_volume_copies import _split_table

from meddx.data.crop_copies import cropped_copies
from meddx.data.leakage import overlap_with_training
from meddx.data.medmnist import read_medmnist
from meddx.data.readers import read_folder
from meddx.evaluation.report import overlap_warnings

from conftest import need


def test_images_cut_from_training_scans_are_counted_and_warned_not_dropped(data_dir):
    pneumonia = read_medmnist(need(data_dir, "medmnist/pneumoniamnist.npz"))
    kermany = read_folder(str(need(data_dir, "chest_xray_pneumonia_224")))
    picked = [kermany.records[i] for i in np.random.default_rng(0).choice(len(kermany.records), 80, replace=False)]
    kept, check = overlap_with_training(picked, _split_table(pneumonia.records), drop=True)
    assert len(kept) == len(picked) and check["dropped"] == 0  # a likely copy is never dropped
    assert check["cropped_images"] >= 0.8 * len(picked) and check["cropped_test"] == 0  # PneumoniaMNIST's test: other
    warning = overlap_warnings(check)["warning_cropped_copies"]
    assert warning.startswith(f"{check['cropped_images']} of 80 image(s) of this data look like the run's train/val")
    assert "pneumoniamnist.npz::" in check["cropped_examples"][0]


def test_other_childrens_scans_are_not_called_crops(data_dir):
    """PneumoniaMNIST's test split (children the Kermany training folder does not hold) against that folder, and
    against PneumoniaMNIST's own train and val: no match either way."""
    pneumonia = read_medmnist(need(data_dir, "medmnist/pneumoniamnist.npz"))
    test = [r for r in pneumonia.records if r.split == "test"]
    kermany = read_folder(str(need(data_dir, "chest_xray_pneumonia_224")))
    assert cropped_copies(test, [r.source for r in kermany.records])["found"] == []
    trained = _split_table([r for r in pneumonia.records if r.split != "test"])["source"].tolist()
    assert cropped_copies(test, trained)["found"] == []
    some_train = [r for r in pneumonia.records if r.split == "train"][:200]  # the other way round: found
    assert len(cropped_copies(some_train, [r.source for r in kermany.records])["found"]) >= 0.8 * len(some_train)
    nih = read_folder(str(need(data_dir, "nih_chestxray14_64px_binary")))  # 64 px chest X-rays of other patients
    patient = {r.id: r.id.split("/")[-1].split("_")[0] for r in nih.records}
    half = sorted(set(patient.values()))[::2]  # an even split by patient: no copies either way (it called 1-2)
    ours = [r for r in nih.records if patient[r.id] in half]
    theirs = [r.source for r in nih.records if patient[r.id] not in half]
    assert cropped_copies(ours, theirs)["found"] == []


def test_images_too_many_to_compare_are_said_not_looked_for(data_dir, monkeypatch):
    """Past MAX_PAIRS the crop check is skipped for 2-D images, and the report says so; token sequences never ask."""
    from meddx.data import crop_copies

    pneumonia = read_medmnist(need(data_dir, "medmnist/pneumoniamnist.npz"))
    monkeypatch.setattr(crop_copies, "MAX_PAIRS", 10)
    test = [r for r in pneumonia.records if r.split == "test"][:20]
    check = overlap_with_training(test, _split_table(pneumonia.records[:100]), drop=True)[1]
    assert check["cropped_unchecked"] == "too many images to compare" and check["cropped_images"] == 0
    moved = _split_table(pneumonia.records[:100]).assign(source=lambda t: "/gone/" + t["source"])  # data moved
    monkeypatch.setattr(crop_copies, "MAX_PAIRS", 4e7)
    check = overlap_with_training(test, moved, drop=True)[1]
    assert check["cropped_unchecked"] == "the training images are not readable here"


def test_token_reports_are_never_looked_at_for_crops(data_dir):
    from meddx.data.reports import read_tianchi

    reports = read_tianchi(need(data_dir, "tianchi_round2/train.csv")).records[:50]
    assert cropped_copies(reports, ["elsewhere.png"]) == {"found": [], "unchecked": "", "unreadable": 0}


def test_the_report_says_when_cut_copies_were_not_looked_for(tmp_path):
    from types import SimpleNamespace

    from meddx.evaluation.data_section import leakage_text

    (tmp_path / "predictions").mkdir()
    check = {"checked": True, "files": 9, "dropped": 0, "shared_patient_ids": 0, "cropped_unreadable": 0,
             "cropped_unchecked": "the training images are not readable here"}  # fmt: skip
    (tmp_path / "predictions" / "external-x.leakage.json").write_text(json.dumps(check))
    text = leakage_text(SimpleNamespace(path=tmp_path), "external-x", {})
    assert "copies cut from training images not looked for (the training images are not readable here)" in text
    check.update(cropped_unchecked="", cropped_unreadable=4, cropped_images=3)
    (tmp_path / "predictions" / "external-x.leakage.json").write_text(json.dumps(check))
    text = leakage_text(SimpleNamespace(path=tmp_path), "external-x", {})
    assert (
        "4 training image(s) not readable here" in text
        and "3 image(s) look like its train/val images cropped and resized" in text
    )
