"""New 3-D data that holds the run's training volumes at another depth or size (AdrenalMNIST3D's 64-voxel file
against a run on the 28-voxel one): the perceptual hash of a middle slice missed every one; now they are counted as
likely copies, kept in the figures and warned about."""

from __future__ import annotations

import pandas as pd

from meddx.data.leakage import overlap_with_training
from meddx.data.medmnist import read_medmnist
from meddx.evaluation.report import overlap_warnings

from conftest import need


def _split_table(records) -> pd.DataFrame:
    """split.csv's columns the check reads (sources as `file::key[index]`, as meddx writes them)."""
    rows = [{"id": r.id, "patient_id": r.patient_id, "split": r.split, "source": f"{r.source}::{r.key}[{r.index}]"}
            for r in records]  # fmt: skip
    return pd.DataFrame(rows)


def test_training_volumes_at_another_depth_are_counted_and_warned_not_dropped(data_dir):
    small = read_medmnist(need(data_dir, "medmnist/adrenalmnist3d.npz"))
    large = read_medmnist(need(data_dir, "medmnist/adrenalmnist3d_64.npz"))
    table = _split_table(small.records)
    kept, check = overlap_with_training(large.records, table, drop=True)
    trained = sum(r.split in ("train", "val") for r in large.records)  # 1,386 cases the run trained or tuned on
    assert len(kept) == len(large.records) and check["dropped"] == 0  # a likely copy is never dropped
    assert 0.97 * trained <= check["resampled_volumes"] <= trained
    assert check["resampled_examples"][0].split(" ~ ")[1].endswith("adrenalmnist3d.npz::train_images[0]")
    warning = overlap_warnings(check)["warning_resampled_copies"]
    assert warning.startswith(f"{check['resampled_volumes']} of {len(large.records)} volume(s)") and "test=" in warning
    assert check["resampled_test"] >= 0.97 * (len(large.records) - trained)  # the run's own test cases, resampled
    unseen = [r for r in large.records if r.split == "test"]  # other patients: none of them looks like a training case
    test_only = overlap_with_training(unseen, table, drop=True)[1]
    assert test_only["resampled_volumes"] <= 0.01 * len(unseen) and test_only["resampled_test"] >= 0.97 * len(unseen)
    assert "test=FILE" not in overlap_warnings({**check, "resampled_volumes": 1}).get("warning_resampled_copies")


def test_two_dimensional_data_is_not_decoded_for_the_volume_check(data_dir, monkeypatch):
    """2-D images (and a run on them) skip the 3-D check after a look at a few records."""
    from meddx.data import volume_copies

    seen = []
    real = volume_copies.signature
    monkeypatch.setattr(volume_copies, "signature", lambda r: seen.append(r) or real(r))
    pneumonia = read_medmnist(need(data_dir, "medmnist/pneumoniamnist.npz"))
    _, check = overlap_with_training(pneumonia.records[:2000], _split_table(pneumonia.records[2000:4000]), drop=True)
    assert check["resampled_volumes"] == 0 and len(seen) <= volume_copies.PROBE
    assert "warning_resampled_copies" not in overlap_warnings(check)


def test_identical_copies_of_the_test_volumes_are_not_also_called_resampled(data_dir):
    """The run's own test volumes exported again byte for byte were counted twice: as its test images and as volumes
    'at another depth or size'."""
    from meddx.data.leakage import content_hash

    small = read_medmnist(need(data_dir, "medmnist/adrenalmnist3d.npz"))
    table = _split_table(small.records).assign(sha1=[content_hash(r) for r in small.records])
    test = [r for r in small.records if r.split == "test"]
    check = overlap_with_training(test, table, drop=True)[1]
    assert check["same_as_test"] == len(test) and check["resampled_test"] == 0
