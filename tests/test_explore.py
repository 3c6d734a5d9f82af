"""`explore` on real data: counts, patients, labels, missing files, sizes, duplicates; JSON and Markdown."""

from __future__ import annotations

import json

import meddx

from conftest import need, run_cli


def test_explore_nih_csv_counts_and_missing_files(data_dir):
    folder = need(data_dir, "nih_chestxray14_course_small")
    s = meddx.explore(
        {
            "path": {"train": str(folder / "train-small.csv"), "valid": str(folder / "valid-small.csv")},
            "root": str(folder / "images-small"),
            "patient_column": "PatientId",
        }
    )
    assert s["rows"] == 1109 and s["task"] == "multilabel"
    assert s["labels"]["Effusion"]["positives"] >= 128 and s["labels"]["Hernia"]["positives"] >= 2
    assert s["files"]["missing"] == 1109 - 6  # only 6 images of the course subset exist
    assert s["duplicate_ids"] == sorted(s["duplicate_ids"]) and len(s["duplicate_ids"]) == 1
    assert s["files"]["sizes"] == {"1024x1024": 6}
    assert s["images_per_patient"]["max"] >= 2 and s["patients"] < s["rows"]


def test_explore_cli_folder_writes_json_and_markdown(data_dir, tmp_path):
    folder = need(data_dir, "nih_chestxray14_64px_binary")
    proc = run_cli("explore", "--data", str(folder), "--patient-regex", r"^(\d{8})_", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    s = json.loads((tmp_path / "explore.json").read_text())
    assert s["rows"] == 800 and s["splits"] == {"train": 600, "val": 200}
    assert s["labels"]["1_abnormal"] == {
        "positives": 400, "negatives": 400, "missing": 0, "by_split": {"train": 300, "val": 100}
    }  # fmt: skip
    assert s["files"]["channels_or_depth"] == {"3": 800}  # 780 RGB + 20 RGBA, alpha dropped
    assert s["files"]["sizes"] == {"64x64": 800} and s["files"]["unreadable"] == 0
    md = (tmp_path / "explore.md").read_text()
    assert "| 1_abnormal | 400 | 400 | 0 | 50.0% | train 300, val 100 |" in md
    assert "800 rows" in proc.stdout


def test_explore_finds_duplicate_images_in_bundled_set():
    s = meddx.explore({"path": "pneumoniamnist"})
    assert s["rows"] == 4690 + 524 + 624 and not s["patients_known"]
    assert s["files"]["duplicate_image_groups"] >= 8


def test_explore_shows_each_splits_positives_rare_labels_shared_patients_and_the_root_hint(data_dir):
    """A student saw 'Hernia 52' pooled over the course's splits (2 in train, 0 in valid, 50 in test), no prevalence,
    no word on the 11 patients train and valid share, and 'missing: 1000' with no hint that --root was needed."""
    from meddx.data.explore import rare_labels, to_markdown

    folder = need(data_dir, "nih_chestxray14_course_small")
    data = {"train": str(folder / "train-small.csv"), "valid": str(folder / "valid-small.csv"),
            "test": str(folder / "test.csv")}  # fmt: skip
    s = meddx.explore({"path": data, "patient_column": "PatientId"})
    assert s["labels"]["Hernia"]["by_split"] == {"train": 2, "val": 0, "test": 50}
    assert s["patients_in_several_splits"] == 11
    assert "Hernia: 2 positive(s) in train; none in val" in rare_labels(s)
    text = to_markdown(s)
    assert "| Hernia | 52 | 1477 | 0 | 3.4% | train 2, val 0, test 50 |" in text
    assert "none of the paths exist as written: name the folder they are relative to with --root" in text
