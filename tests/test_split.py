"""Splits by patient, stratified over labels, and the leakage check on real data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from meddx.config import SplitConfig
from meddx.data import assign_splits, check_leakage, enforce_no_leakage, read_csv_manifest, read_folder
from meddx.data.readers import load_pneumoniamnist
from meddx.errors import DataError, LeakageError

from conftest import need, run_cli

KERMANY_REGEX = r"(person\d+|(?:NORMAL2-)?IM-\d+)"


def _nih(data_dir, splits=("train", "valid", "test")):
    folder = need(data_dir, "nih_chestxray14_course_small")
    files = {"train": "train-small.csv", "valid": "valid-small.csv", "test": "test.csv"}
    return read_csv_manifest({s: str(folder / files[s]) for s in splits}, patient_column="PatientId", check_files=False)


def test_kermany_split_by_patient_stratified(data_dir):
    ds = read_folder(need(data_dir, "chest_xray_pneumonia_224"), patient_regex=KERMANY_REGEX)
    assign_splits(ds, SplitConfig(seed=3))
    sides = {}
    for r in ds.records:
        sides.setdefault(r.patient_id, set()).add(r.split)
    assert all(len(s) == 1 for s in sides.values()), "a patient sits on two sides"
    n = {s: len(ds.subset(s)) for s in ("train", "val", "test")}
    assert abs(n["train"] / len(ds) - 0.8) < 0.03 and abs(n["test"] / len(ds) - 0.1) < 0.02
    prevalence = ds.labels.mean()
    for s in ("train", "val", "test"):
        assert abs(ds.subset(s).labels.mean() - prevalence) < 0.03
    assert check_leakage(ds, images=False).ok
    again = read_folder(data_dir / "chest_xray_pneumonia_224", patient_regex=KERMANY_REGEX)
    assign_splits(again, SplitConfig(seed=3))
    assert [r.split for r in again.records] == [r.split for r in ds.records]  # the seed fixes the split


def test_multilabel_iterative_stratification(data_dir):
    ds = _nih(data_dir, splits=("train",))
    assign_splits(ds, SplitConfig(ratios=(0.6, 0.2, 0.2), seed=0))
    full = ds.labels.sum(0)
    for s in ("val", "test"):
        part = ds.subset(s).labels.sum(0)
        common = full >= 30  # labels with enough positives to stratify meaningfully
        np.testing.assert_allclose(part[common] / full[common], 0.2, atol=0.07)
    assert check_leakage(ds, images=False).ok


def test_nih_train_valid_share_exactly_11_patients(data_dir):
    ds = _nih(data_dir)
    import pandas as pd

    folder = data_dir / "nih_chestxray14_course_small"
    tr = set(pd.read_csv(folder / "train-small.csv")["PatientId"].astype(str))
    va = set(pd.read_csv(folder / "valid-small.csv")["PatientId"].astype(str))
    te = set(pd.read_csv(folder / "test.csv")["PatientId"].astype(str))
    assign_splits(ds)
    report = check_leakage(ds, images=False)
    assert not report.ok
    expected = (tr & va) | (tr & te) | (va & te)
    assert set(report.shared_patients) == expected
    train_valid = {p for p, s in report.shared_patients.items() if s[:2] == ["train", "val"]}
    assert train_valid == tr & va and len(train_valid) == 11
    with pytest.raises(LeakageError, match="11 patient|patient"):
        enforce_no_leakage(ds)


def test_cli_check_leakage_names_patients(data_dir):
    folder = need(data_dir, "nih_chestxray14_course_small")
    proc = run_cli(
        "check-leakage",
        "--data",
        f"train={folder / 'train-small.csv'}",
        "--data",
        f"valid={folder / 'valid-small.csv'}",
        "--patient-column",
        "PatientId",
        "--set",
        "data.format=csv",
    )
    assert proc.returncode == 1
    assert "11 patient(s) on two sides" in proc.stdout and "train + val" in proc.stdout


def test_bundled_duplicates_found_and_dropped():
    ds = load_pneumoniamnist()
    assign_splits(ds)
    report = check_leakage(ds)
    dup_train = {i for g in report.duplicate_images for i, s in g if s == "train"}
    assert len(dup_train) == 8 and not report.shared_patients
    with pytest.raises(LeakageError, match="identical image"):
        enforce_no_leakage(ds, SplitConfig(on_duplicate_images="error"))
    final = enforce_no_leakage(ds, SplitConfig(on_duplicate_images="drop_from_train"))
    assert final.ok and len(ds.subset("train")) == 4690 - 8
    assert not dup_train & {r.id for r in ds.records}
    assert dup_train <= {d["id"] for d in final.to_dict()["dropped"] if d["split"] == "train"}  # all, not 20


def test_official_val_kept_and_test_carved_by_patient(data_dir):
    ds = read_folder(need(data_dir, "nih_chestxray14_64px_binary"), patient_regex=r"^(\d{8})_")
    val_before = {r.id for r in ds.records if r.split == "val"}
    assign_splits(ds, SplitConfig())
    assert {r.id for r in ds.subset("val").records} == val_before
    assert len(ds.subset("test")) > 0
    train_pat = {r.patient_id for r in ds.subset("train").records}
    assert not train_pat & {r.patient_id for r in ds.subset("test").records}


def test_patient_regex_applies_to_csv_manifests(data_dir, tmp_path):
    """Without its patient column, the NIH manifests still leak 11 patients: --patient-regex on the file names finds
    them (it was ignored for CSVs and "no leakage" was printed); a regex that misses rows names them."""
    import pandas as pd

    folder = need(data_dir, "nih_chestxray14_course_small")
    args = []
    for split, name in (("train", "train-small.csv"), ("valid", "valid-small.csv")):
        pd.read_csv(folder / name).drop(columns="PatientId").to_csv(tmp_path / name, index=False)
        args += ["--data", f"{split}={tmp_path / name}"]
    root = ["--root", str(folder / "images-small")]
    proc = run_cli("check-leakage", *args, *root, "--patient-regex", r"^(\d{8})_")
    assert proc.returncode == 1 and "11 patient(s) on two sides" in proc.stdout
    assert "splits: train official, val official, test by patient (as training would" in proc.stdout  # test: carved
    guessed = run_cli("check-leakage", *args, *root)  # the names are <patient>_<number>: the same 11, guessed
    assert guessed.returncode == 1 and "11 patient(s) on two sides" in guessed.stdout
    assert "patient ids guessed from the file names" in guessed.stdout
    missed = run_cli("check-leakage", *args, *root, "--patient-regex", r"^(\d{9})_")
    assert missed.returncode == 2 and "does not match" in missed.stderr and "row 2 (00008270_015.png)" in missed.stderr
    bad = run_cli("check-leakage", *args, *root, "--patient-regex", r"^((\d{8})_")
    assert bad.returncode == 2 and "not a valid regular expression" in bad.stderr and "Traceback" not in bad.stderr


def test_official_splits_sharing_patients_point_to_use_official(data_dir):
    ds = _nih(data_dir, splits=("train", "valid"))
    assign_splits(ds)
    with pytest.raises(LeakageError, match="split.use_official=false"):
        enforce_no_leakage(ds)
    again = _nih(data_dir, splits=("train", "valid"))
    assign_splits(again, SplitConfig(use_official=False))
    assert enforce_no_leakage(again).ok and "official" not in next(n for n in again.notes if n.startswith("splits"))


def test_near_duplicates_across_splits_are_found_and_dropped(data_dir, tmp_path):
    """A resized JPEG copy of a training scan in test escapes SHA-1; the perceptual check finds it (and only it among
    40 distinct DaTscan slices of look-alike anatomy), and the gate drops the training copy."""
    from PIL import Image

    sources = sorted((need(data_dir, "datscan_spect_ppmi_2d") / "train" / "HC").glob("*.png"))[:40]
    for i, src in enumerate(sources):
        split = "train" if i < 30 else "test"
        (tmp_path / split / "HC").mkdir(parents=True, exist_ok=True)
        (tmp_path / split / "PD").mkdir(parents=True, exist_ok=True)
        shutil.copy(src, tmp_path / split / ("HC" if i % 2 else "PD") / src.name)
    image = Image.open(sources[3])
    image.resize((image.width * 2, image.height * 2)).convert("RGB").save(
        tmp_path / "test" / "HC" / "x.jpg", quality=70
    )
    ds = read_folder(tmp_path)
    assign_splits(ds, SplitConfig(ratios=(0.9, 0.1, 0.0)))
    report = check_leakage(ds)
    copy_of = f"train/HC/{sources[3].name}"
    assert not report.duplicate_images and report.near_duplicates == [[("test/HC/x.jpg", "test"), (copy_of, "train")]]
    assert "1 near-duplicate image pair(s) on two sides (perceptual hash within 10" in report.summary()
    final = enforce_no_leakage(ds, SplitConfig(ratios=(0.9, 0.1, 0.0)))
    assert final.ok and copy_of not in {r.id for r in ds.records} and len(ds.records) == 40
    assert any("--patient-regex" in a for a in final.actions)  # files without patient ids: the regex is suggested
    assert check_leakage(ds, near=False).near_rule == ""


def test_breastmnist_official_splits_share_near_duplicates(data_dir):
    """MedMNIST's official BreastMNIST splits hold 84 pairs of the same scan on two sides (mean pixel difference at most
    5.8 grey levels against 28 or more for 95% of distinct pairs; 4 pairs disagree on the label): 51 train-test, 28
    train-val and 5 val-test. 37 of them, at 32 px correlation 0.99-0.998, were missed until close hashes that are each
    other's best match by a margin counted (audit). Train copies go, a val-test pair loses its val copy, and the test
    split stays whole."""
    from meddx.data.readers import read_medmnist

    ds = read_medmnist(need(data_dir, "medmnist/breastmnist.npz"))
    assign_splits(ds)
    report = check_leakage(ds)
    sides = sorted(tuple(sorted(s for _, s in g)) for g in report.near_duplicates)
    assert len(sides) == 84 and sides.count(("test", "val")) == 5 and sides.count(("test", "train")) == 51
    final = enforce_no_leakage(ds)
    assert final.ok and len(ds.subset("test")) == 156 and len(ds.subset("val")) == 78 - 5
    assert any(a.startswith("dropped 5 val image(s) (near-)identical to test ones") for a in final.actions)
    assert not any("--patient-regex" in a for a in final.actions)  # no file names to take patients from


def test_twins_hidden_behind_a_copy_are_found_and_a_repeated_scan_hides_none(data_dir):
    """The looser rule (each other's best match by a margin) lost twins beside a third copy: after the gate dropped
    BreastMNIST's copies, a fresh check still found 8 pairs across splits; and new data holding each test scan twice
    had 4 of 40 twins found instead of 80 (review). Copies of either image are no rivals now, and the gate checks
    again after dropping."""
    import copy

    from meddx.data.near_duplicates import hash_records, near_training
    from meddx.data.readers import read_medmnist

    ds = read_medmnist(need(data_dir, "medmnist/breastmnist.npz"))
    assign_splits(ds)
    train = [r for r in ds.records if r.split == "train"]
    test = [r for r in ds.records if r.split == "test"]
    enforce_no_leakage(ds)
    again = check_leakage(ds)
    assert again.ok and not again.near_duplicates
    hash_records(train)
    training = {f"{r.source}::{r.key}[{r.index}]": r.phash for r in train}
    once = near_training(test, training)[0]
    repeats = [copy.copy(r) for r in test]
    for r in repeats:
        r.id += "-again"
    assert len(once) > 30 and len(near_training(test + repeats, training)[0]) == 2 * len(once)


def test_a_class_with_no_sample_in_val_or_test_is_named_at_the_split_and_in_the_macro_header():
    """A 3-class set whose 6 virus images all fell in train reported 'macro ROC AUC 1.000' over the two classes left,
    with nothing at the split; the split's notes now name the class, and the report's macro header says 2 of 3."""
    from meddx.data.records import DataSet, Record
    from meddx.evaluation.sections import _overall_section

    eye = np.eye(3, dtype=np.float32)
    records = [Record(f"a{i}", f"p{i}", f"a{i}.png", eye[i % 2]) for i in range(300)]
    records += [Record(f"v{i}", "pv", f"v{i}.png", eye[2]) for i in range(6)]  # one patient: one split
    ds = DataSet(records, ["bacteria", "normal", "virus"], "multiclass", "x")
    assign_splits(ds, SplitConfig(seed=0))
    where = {r.split for r in records if r.id.startswith("v")}
    note = next((n for n in ds.notes if "'virus' (6 in all) has no sample in" in n), "")
    assert len(where) == 1 and note and "macro averages leave it out" in note
    assert ("test" in note) == (where != {"test"}) and ("val" in note) == (where != {"val"})
    figure = {"value": 0.9}
    block = {"per_label": {n: {"roc_auc": figure if n != "virus" else {"value": None}} for n in ds.label_names},
             "macro": {"roc_auc": figure, "pr_auc": figure}, "overall": {}, "micro": {}}  # fmt: skip
    assert _overall_section({"model": block, "baselines": {}})["header"][1] == "macro ROC AUC (2 of 3 labels)"


def test_a_carved_split_far_from_its_ratio_says_why():
    """200 images split 149/15/36 (one child's 13 images in test) without a word; a carved split whose share is far
    from its ratio is now named, with the largest patient."""
    from meddx.data.records import DataSet, Record
    from meddx.data.split import _skewed_sizes

    records = [Record(f"a{i}", f"p{i}", f"a{i}.png", np.ones(1)) for i in range(187)]
    records += [Record(f"b{i}", "big", f"b{i}.png", np.ones(1)) for i in range(13)]
    for i, r in enumerate(records):
        r.split = "test" if r.patient_id == "big" or i < 23 else "val" if i < 38 else "train"
    ds = DataSet(records, ["x"], "binary", "x")
    note = _skewed_sizes(ds, {"test": 20.0, "val": 18.0})
    assert note.startswith("test holds 36 images (18%) where its ratio carves about 20")
    assert "(the most: 13, 'big')" in note
    assert "val holds" not in note  # 15 where 18 were due is near
    assert _skewed_sizes(ds, {"val": 18.0}) == ""  # an official test split is the user's
    for r in records:  # one image per patient: a carve by patients is exact, whatever the pool it came from
        r.patient_id = r.id
    assert _skewed_sizes(ds, {"test": 20.0}) == ""


def test_check_leakage_takes_a_folder_per_split(data_dir, tmp_path):
    """`check-leakage --data train=A --data test=B` with two folders stopped: "train=PATH takes a CSV manifest";
    each folder is now read as its split, and a child with images in both is found."""
    import shutil

    src = need(data_dir, "chest_xray_pneumonia_224/train")
    normal, sick = sorted((src / "NORMAL").iterdir())[:24], sorted((src / "PNEUMONIA").iterdir())[:24]
    for side, files in (("A", normal[:12] + sick[:12]), ("B", normal[12:] + sick[11:])):  # sick[11]: both sides
        for f in files:
            (tmp_path / side / f.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, tmp_path / side / f.parent.name / f.name)
    proc = run_cli("check-leakage", "--data", f"train={tmp_path / 'A'}", "--data", f"test={tmp_path / 'B'}")
    assert proc.returncode == 1, proc.stderr[-2000:]
    child = sick[11].name.split("_")[0]
    assert "on two sides" in proc.stdout and child in proc.stdout and "train + test" in proc.stdout
    from meddx.config import DataConfig
    from meddx.data.readers import read_dataset

    ds = read_dataset(DataConfig(path={"train": str(tmp_path / "A"), "test": str(tmp_path / "B")}))
    assert {r.split for r in ds.records} == {"train", "test"} and ds.records[0].id.startswith("train/")
    for cls, f in (("NORMAL", normal[0]), ("COVID", sick[0])):  # another disease than A's
        (tmp_path / "C" / cls).mkdir(parents=True)
        shutil.copy(f, tmp_path / "C" / cls)
    with pytest.raises(DataError, match="every split needs the same classes"):
        read_dataset(DataConfig(path={"train": str(tmp_path / "A"), "test": str(tmp_path / "C")}))


def test_a_class_with_fewer_patients_than_folds_is_refused_by_name():
    """A class of one image (SWEDD) trained silently and its fold-less AUC of 0.05 entered the mean; now one line."""
    from meddx.data.split import fold_indices
    from meddx.errors import DataError

    table = np.zeros((81, 3), np.float32)
    table[:40, 0], table[40:80, 1], table[80, 2] = 1, 1, 1
    with pytest.raises(DataError, match=r"cannot make 3 folds: patients per class \(SWEDD: 1\) fewer than the folds"):
        fold_indices(table, "multiclass", 3, names=["HC", "PD", "SWEDD"])
    assert set(fold_indices(table[:80], "multiclass", 3, names=["HC", "PD", "SWEDD"])) == {0, 1, 2}


def test_check_leakage_names_the_files_splits_when_test_was_carved_from_train(data_dir):
    """The course's train-small and valid-small share 11 patients; with test carved from train, two of them read
    'val + test' (their train rows went to test), with no remedy. The files' own sides are named now, and the fix."""
    from meddx.api import leakage

    course = need(data_dir, "nih_chestxray14_course_small")
    data = {"path": {"train": str(course / "train-small.csv"), "valid": str(course / "valid-small.csv")},
            "patient_column": "PatientId"}  # fmt: skip
    report = leakage(data)
    assert len(report.shared_patients) == 11 and report.shared_patients["18253"] == ["val", "test"]
    said = [a for a in report.actions if a.startswith("as the files give them")]
    assert said and "18253: train + val" in said[0] and "4461" not in said[0]  # 4461 already reads train + val
    assert "split.use_official=false" in said[0]
