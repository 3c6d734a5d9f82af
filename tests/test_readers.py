"""Every reader on the real files of the shared data folder, plus small files the tests write."""

from __future__ import annotations

import re

import numpy as np
import pydicom
import pytest
from PIL import Image

from meddx.config import DataConfig
from meddx.data import read_csv_manifest, read_dataset, read_folder, read_medmnist
from meddx.data.images import load_image
from meddx.data.readers import load_pneumoniamnist
from meddx.data.records import Record, class_labels, file_record
from meddx.errors import DataError

from conftest import need

NIH_LABELS = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
]


def test_bundled_pneumoniamnist_keeps_official_splits():
    ds = load_pneumoniamnist()
    sizes = {s: len(ds.subset(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 4690, "val": 524, "test": 624}
    assert ds.task == "binary" and ds.label_names == ["pneumonia"]
    test = ds.subset("test").labels[:, 0]
    assert (int(test.sum()), int((test == 0).sum())) == (390, 234)
    assert load_image(ds.records[0]).shape == (1, 28, 28)


def test_nih_csvs_multilabel_by_column_name(data_dir):
    folder = need(data_dir, "nih_chestxray14_course_small")
    files = {
        s: str(folder / f)
        for s, f in [("train", "train-small.csv"), ("valid", "valid-small.csv"), ("test", "test.csv")]
    }
    ds = read_csv_manifest(files, root=folder / "images-small", patient_column="PatientId", check_files=False)
    assert ds.task == "multilabel" and sorted(ds.label_names) == sorted(NIH_LABELS)
    assert {s: len(ds.subset(s)) for s in ("train", "val", "test")} == {"train": 1000, "val": 109, "test": 420}
    train = ds.subset("train").labels
    counts = dict(zip(ds.label_names, train.sum(0).astype(int)))
    assert counts["Effusion"] == 128 and counts["Hernia"] == 2 and counts["Infiltration"] == 175
    # test.csv orders its columns differently: the values must follow the names, not the positions.
    import pandas as pd

    raw = pd.read_csv(folder / "test.csv")
    first = ds.subset("test").records[0]
    for j, name in enumerate(ds.label_names):
        assert first.labels[j] == raw.loc[0, name]
    assert first.patient_id == str(raw.loc[0, "PatientId"])


def test_csv_of_class_names_and_check_files(data_dir, tmp_path):
    folder = need(data_dir, "nih_chestxray14_course_small/images-small")
    names = sorted(p.name for p in folder.glob("*.png"))
    csv = tmp_path / "m.csv"
    csv.write_text(
        "path,patient,finding\n" + "".join(f"{n},{n[:8]},{'sick' if i % 2 else 'well'}\n" for i, n in enumerate(names))
    )
    ds = read_csv_manifest(csv, root=folder, image_column="path", patient_column="patient", label_column="finding")
    assert ds.task == "binary" and ds.label_names == ["well"]  # last class in sorted order is positive
    ds = read_csv_manifest(
        csv, root=folder, image_column="path", patient_column="patient", label_column="finding", positive_class="sick"
    )
    assert ds.label_names == ["sick"] and [r.labels[0] for r in ds.records] == [0, 1, 0, 1, 0, 1]
    img = load_image(ds.records[0])
    assert img.shape == (1, 1024, 1024) and 0 <= img.min() and img.max() <= 1


def test_folder_kermany_patient_regex(data_dir):
    folder = need(data_dir, "chest_xray_pneumonia_224")
    ds = read_folder(folder, patient_regex=r"(person\d+|(?:NORMAL2-)?IM-\d+)")
    assert len(ds) == 5216 and ds.task == "binary" and ds.label_names == ["PNEUMONIA"]
    assert int(ds.labels.sum()) == 3875
    assert {r.split for r in ds.records} == {"train"}
    bacteria = next(r for r in ds.records if "person1000_bacteria_2931" in r.id)
    virus = next(r for r in ds.records if "person1000_virus_1681" in r.id)
    assert bacteria.patient_id == virus.patient_id == "person1000"
    assert ds.patients_known and len({r.patient_id for r in ds.records}) < len(ds)
    assert load_image(bacteria).shape == (3, 224, 224)
    assert load_image(bacteria, channels=1).shape == (1, 224, 224)
    with pytest.raises(DataError, match="does not match .* file name"):
        read_folder(folder, patient_regex=r"person\d+")


def test_folder_datscan_and_nih64_official_splits(data_dir):
    dat = read_folder(need(data_dir, "datscan_spect_ppmi_2d"))
    assert len(dat) == 1097 and dat.label_names == ["PD"] and int(dat.labels.sum()) == 745
    img = load_image(dat.records[0])
    assert img.shape == (1, 109, 91) and img.max() < 0.5  # low counts, not stretched: per-image normalisation needed
    nih = read_folder(need(data_dir, "nih_chestxray14_64px_binary"), patient_regex=r"^(\d{8})_")
    assert {s: len(nih.subset(s)) for s in ("train", "val")} == {"train": 600, "val": 200}
    assert nih.label_names == ["1_abnormal"]
    rgba = next(r for r in nih.records if r.id.endswith("00000059_001.png"))
    assert Image.open(rgba.source).mode == "RGBA"
    assert load_image(rgba).shape == (3, 64, 64)  # alpha dropped
    assert load_image(rgba, channels=1).shape == (1, 64, 64)


def test_medmnist_2d_and_3d_with_views(data_dir):
    breast = read_medmnist(need(data_dir, "medmnist/breastmnist.npz"))  # labels stored flat, (N,)
    assert {s: len(breast.subset(s)) for s in ("train", "val", "test")} == {"train": 546, "val": 78, "test": 156}
    adrenal = read_medmnist(need(data_dir, "medmnist/adrenalmnist3d.npz"))
    rec = adrenal.records[0]
    with pytest.raises(DataError, match="views"):
        load_image(rec)
    img = load_image(rec, views=[0, 14, -1])
    vol = np.load(data_dir / "medmnist/adrenalmnist3d.npz")["train_images"][0] / 255.0
    assert img.shape == (3, 28, 28)
    np.testing.assert_allclose(img[1], vol[14], atol=1e-6)
    np.testing.assert_allclose(img[2], vol[27], atol=1e-6)
    side = load_image(rec, views=[5], view_axis=2)
    np.testing.assert_allclose(side[0], vol[:, :, 5], atol=1e-6)
    with pytest.raises(DataError, match=r"views \[28\] out of range"):
        load_image(rec, views=[28])


def test_views_chosen_on_28_slices_take_the_same_positions_in_64(data_dir):
    """A run on AdrenalMNIST3D (28 slices, views 8, 14, 20) evaluated on its 64-slice copy read slices 8, 14 and 20
    of 64 (near the top) and scored AUC 0.54 against 0.74; the views now keep their relative positions, and the
    training depth travels in preprocess.json."""
    from meddx.data.tensors import base_preprocess

    small = read_medmnist(need(data_dir, "medmnist/adrenalmnist3d.npz")).records[0]
    large = read_medmnist(need(data_dir, "medmnist/adrenalmnist3d_64.npz")).records[0]
    prep = base_preprocess(DataConfig(path="x.npz", views=[8, 14, 20], image_size=28), small)
    assert prep.view_depth == 28
    vol = np.load(data_dir / "medmnist/adrenalmnist3d_64.npz")["train_images"][0] / 255.0
    img = load_image(large, views=[8, 14, 20], depth=prep.view_depth)
    np.testing.assert_allclose(img[1], vol[33], atol=1e-6)  # slice 14 of 0-27 is 33 of 0-63 (ends kept)
    for k, z in ((0, 19), (2, 47)):
        np.testing.assert_allclose(img[k], vol[z], atol=1e-6)
    assert vol[33].any() and not np.allclose(vol[14], vol[33])  # the old reading differed
    np.testing.assert_allclose(load_image(small, views=[8], depth=28)[0], load_image(small, views=[8])[0])
    from meddx.data.stacks import rescale_views

    assert rescale_views([0, -1], 28, 64) == [0, 63] and rescale_views([25], 20, 64) == [25]  # ends; out of range
    assert (
        base_preprocess(
            DataConfig(path="x.npz", image_size=28),
            read_medmnist(need(data_dir, "medmnist/breastmnist.npz")).records[0],
        ).view_depth
        is None
    )


def test_projection_stack_views_written_array(tmp_path):
    stack = np.random.default_rng(0).integers(0, 500, size=(120, 16, 16)).astype(np.int16)
    path = tmp_path / "datscan_projections.npy"
    np.save(path, stack)
    img = load_image(file_record(path), views=[0, 60])
    assert img.shape == (2, 16, 16)
    np.testing.assert_array_equal(img[1], stack[60].astype(np.float32))
    npz = tmp_path / "one.npz"
    np.savez(npz, volume=stack)
    assert load_image(Record("a", "a", str(npz), np.zeros(1)), views=[119]).shape == (1, 16, 16)
    with pytest.raises(DataError, match=r"out of range for a stack of 120"):
        load_image(file_record(path), views=[0, 120])


def test_png_8_and_16_bit_gray_rgb_jpeg(tmp_path, data_dir):
    src = np.asarray(Image.open(need(data_dir, "datscan_spect_ppmi_2d/train/HC/case0.png")))
    Image.fromarray((src.astype(np.uint16) * 1000)).save(tmp_path / "g16.png")
    back = np.asarray(Image.open(tmp_path / "g16.png"))
    assert back.dtype in (np.uint16, np.int32)
    img16 = load_image(file_record(tmp_path / "g16.png"))
    np.testing.assert_allclose(img16[0], src.astype(np.float64) * 1000 / 65535.0, atol=1e-6)
    Image.fromarray(src).convert("RGB").save(tmp_path / "rgb.png")
    assert load_image(file_record(tmp_path / "rgb.png")).shape == (3, 109, 91)
    Image.fromarray(src).save(tmp_path / "g.jpg", quality=95)
    assert load_image(file_record(tmp_path / "g.jpg")).shape == (1, 109, 91)


@pytest.mark.parametrize(
    "name",
    [
        "693_UNCR.dcm",
        "CT_small.dcm",
        "JPEG2000_UNC.dcm",
        "MR2_UNCR.dcm",
        "MR_small.dcm",
        "RG1_UNCR.dcm",
        "US1_UNCR.dcm",
        "emri_small.dcm",
    ],
)
def test_every_real_dicom(data_dir, name):
    path = need(data_dir, f"dicom/{name}")
    ds = pydicom.dcmread(path)
    rec = file_record(path)
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        img = load_image(rec, views=[0, 9])
        assert img.shape == (2, 64, 64)
    else:
        img = load_image(rec)
        assert img.shape[1:] == ds.pixel_array.shape[:2]
        assert img.shape[0] == (3 if ds.SamplesPerPixel == 3 else 1)
    assert np.isfinite(img).all() and img.min() >= 0 and img.max() <= 1 and img.std() > 0


def test_dicom_rescale_window_and_monochrome1(data_dir):
    ct = pydicom.dcmread(need(data_dir, "dicom/693_UNCR.dcm"))
    hu = ct.pixel_array.astype(np.float64) * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    img = load_image(file_record(data_dir / "dicom/693_UNCR.dcm"))[0]  # file's window 40/100 (brain)
    expected = np.clip((hu - (40 - 50)) / 100, 0, 1)
    np.testing.assert_allclose(img, expected, atol=1e-5)
    wide = load_image(file_record(data_dir / "dicom/693_UNCR.dcm"), dicom_window=(300.0, 2000.0))[0]
    np.testing.assert_allclose(wide, np.clip((hu - (300 - 1000)) / 2000, 0, 1), atol=1e-5)
    cr = pydicom.dcmread(data_dir / "dicom/RG1_UNCR.dcm")
    raw = cr.pixel_array.astype(np.float64)
    img = load_image(file_record(data_dir / "dicom/RG1_UNCR.dcm"))[0]
    expected = 1 - np.clip((raw - (15000 - 15000)) / 30000, 0, 1)  # MONOCHROME1: high values are dark
    np.testing.assert_allclose(img, expected, atol=1e-5)


def test_read_dataset_dispatch(data_dir):
    assert read_dataset(DataConfig(path="pneumoniamnist")).origin == "bundled:pneumoniamnist"
    assert read_dataset(DataConfig(path=str(need(data_dir, "medmnist/breastmnist.npz")))).task == "binary"
    assert len(read_dataset(DataConfig(path=str(data_dir / "datscan_spect_ppmi_2d")))) == 1097


@pytest.mark.parametrize(
    ("classes", "positive"),
    [(["NORMAL", "PNEUMONIA"], "PNEUMONIA"), (["HC", "PD"], "PD"), (["0_normal", "1_abnormal"], "1_abnormal"),
     (["Abnormal", "Normal"], "Abnormal"), (["Disease", "Healthy"], "Disease"), (["benign", "malignant"], "malignant"),
     (["a", "b"], "b")],
)  # fmt: skip
def test_the_positive_of_two_classes_is_not_the_one_named_normal(classes, positive):
    """The last class in sorted order was positive, so `Abnormal/` beside `Normal/` made every sensitivity one of
    finding normals; a class named like a negative (normal, healthy, benign, control, HC) is the negative now."""
    notes = []
    names, task, vec = class_labels(classes, None, "x", notes)
    assert names == [positive] and vec[positive][0] == 1.0 and task == "binary"
    assert bool(notes) == (positive != classes[-1])
    assert class_labels(classes, classes[0], "x")[0] == [classes[0]]  # data.positive_class still decides


def test_npy_with_channels_last_is_colour_not_a_stack(tmp_path):
    """(64, 64, 3) arrays, as numpy and PIL write colour, were read as 64 slices 3 px wide: the plan then asked for
    8 px at least and its views fell outside the stack. Channels-first arrays and stacks stay as they were."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)
    np.save(tmp_path / "last.npy", rgb)
    np.save(tmp_path / "first.npy", np.moveaxis(rgb, -1, 0))
    np.save(tmp_path / "stack.npy", rng.integers(0, 255, (5, 64, 48), dtype=np.uint8))
    last, first = (load_image(file_record(tmp_path / f"{n}.npy")) for n in ("last", "first"))
    assert last.shape == first.shape == (3, 64, 48) and np.array_equal(last, first)
    assert load_image(file_record(tmp_path / "stack.npy"), views=[1, 2, 3]).shape == (3, 64, 48)


@pytest.mark.parametrize("keep, says", [(20, "ends after tag (0019,1058)"), (2, "DICOM pixels cannot be decoded")])
def test_a_dicom_cut_short_says_so(data_dir, tmp_path, keep, says):
    """A DICOM copied half-way said 'no pixel data', as if it held none; now it says where it ends."""
    from meddx.data.images import read_pixels

    whole = need(data_dir, "dicom/CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(whole[: len(whole) // keep])
    with pytest.raises(DataError, match=re.escape(says)):
        read_pixels(file_record(tmp_path / "cut.dcm"))


def test_a_folder_one_level_above_the_classes_says_where_they_are(tmp_path):
    """`--data dm4` with `dm4/data/images/{HC,PD}` said "only one class found (['data'])"."""
    for cls in ("HC", "PD"):
        (tmp_path / "dm4" / "data" / "images" / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "dm4" / "data" / "images" / cls / "a1.png")
    where = str(tmp_path / "dm4" / "data" / "images")
    with pytest.raises(
        DataError, match=re.escape(f"if its 2 subfolders (HC, PD) are the classes, point --data at {where}")
    ):
        read_folder(tmp_path / "dm4")
    (tmp_path / "one" / "HC" / "p1").mkdir(parents=True)  # one class whose images lie in one folder: as before
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "one" / "HC" / "p1" / "a1.png")
    with pytest.raises(DataError, match=r"only one class found \(\['HC'\]\)"):
        read_folder(tmp_path / "one")


def test_images_outside_the_class_folders_and_other_files_are_named_not_dropped_silently(tmp_path):
    """An image at the top of a class-folder layout (no class) and non-image files are left out, each kind in a note
    naming the files (every one up to five)."""
    for cls in ("NORMAL", "PNEUMONIA"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / cls / "a1.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "unsorted_1.jpeg")
    (tmp_path / "NORMAL" / "Thumbs.db").write_bytes(b"x")
    for k in range(6):
        (tmp_path / "PNEUMONIA" / f"notes{k}.txt").write_text("x")
    ds = read_folder(tmp_path)
    assert len(ds.records) == 2
    assert f"1 image(s) outside any class folder ignored: {tmp_path / 'unsorted_1.jpeg'}" in ds.notes
    other = next(n for n in ds.notes if "non-image" in n)
    assert other.startswith("7 non-image file(s) ignored: ") and other.endswith(", ... and 2 more")
    for split in ("train", "test"):  # split folders: an image beside them, and one beside a split's class folders
        for cls in ("NORMAL", "PNEUMONIA"):
            (tmp_path / "s" / split / cls).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "s" / split / cls / f"{split}1.png")
    for stray in ("s/unsorted_1.png", "s/train/stray_1.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / stray)
    (tmp_path / "s" / "labels.csv").write_text("path,label\n")  # beside the split folders: not what gives labels
    notes = read_folder(tmp_path / "s").notes
    assert any(n.startswith("2 image(s) outside any class folder ignored: ") and "unsorted_1" in n for n in notes)
    assert f"1 table(s) not read: the class folders give the labels: {tmp_path / 's' / 'labels.csv'}" in notes
    assert not any("non-image" in n for n in notes)  # the table is named once


def test_class_folders_spelled_otherwise_than_the_runs_are_read_with_a_note(tmp_path):
    """New data's `normal/` maps to the run's NORMAL, as documented, and now a note says so (a CSV's case variants
    already had one)."""
    for cls in ("normal", "PNEUMONIA"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / cls / "a1.png")
    ds = read_folder(tmp_path, classes=["NORMAL", "PNEUMONIA"])
    assert ds.label_names == ["PNEUMONIA"]
    assert "class names read in the run's spelling: 'normal' as 'NORMAL'" in ds.notes
    assert not any("spelling" in n for n in read_folder(tmp_path).notes)  # no run: nothing to match
    (tmp_path / "PNEUMONIA").rename(tmp_path / "pneumonia")  # a binary run that recorded no classes: labels aligned
    ds = read_folder(tmp_path)
    assert ds.align_labels(["PNEUMONIA"])
    assert "labels read in the run's spelling: 'pneumonia' as 'PNEUMONIA'" in ds.notes


def test_known_medmnist_files_carry_their_class_names_and_the_finding_is_positive(data_dir, tmp_path):
    """BreastMNIST's class 1 is 'normal, benign': read as `class_1`, the report's sensitivity was for benign, and
    --positive-class was ignored for .npz files. Known MedMNIST files now carry their table's names, the finding is
    positive (malignant), and --positive-class picks by name or index; an unknown name is an error."""
    breast = read_medmnist(need(data_dir, "medmnist/breastmnist.npz"))
    y = np.load(data_dir / "medmnist/breastmnist.npz")["train_labels"].ravel()
    assert breast.label_names == ["malignant"] and breast.task == "binary"
    assert breast.subset("train").labels[:, 0].tolist() == (y == 0).astype(float).tolist()
    assert any("0 malignant, 1 normal_or_benign" in n for n in breast.notes)
    other = read_medmnist(need(data_dir, "medmnist/breastmnist.npz"), positive_class="1")
    assert other.label_names == ["normal_or_benign"] and other.subset("train").labels[:, 0].tolist() == y.tolist()
    with pytest.raises(DataError, match=r"positive_class 'cancer' is not one of the classes"):
        read_dataset(DataConfig(path=str(data_dir / "medmnist/breastmnist.npz"), positive_class="cancer"))
    assert read_medmnist(need(data_dir, "medmnist/pneumoniamnist_subsetA.npz")).label_names == ["pneumonia"]
    assert read_medmnist(need(data_dir, "medmnist/adrenalmnist3d_64.npz")).label_names == ["hyperplasia"]
    unknown = tmp_path / "scans.npz"
    np.savez(unknown, train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.array([0, 1, 0, 1]))
    assert read_medmnist(unknown).label_names == ["class_1"]
    assert read_medmnist(unknown, positive_class="class_0").labels[:, 0].tolist() == [1, 0, 1, 0]


def test_one_split_of_an_npz_is_read_when_named(data_dir):
    """`evaluate --data test=file.npz` read the .npz as a CSV ('not a readable CSV (UnicodeDecodeError...)'); it reads
    that official split only, and two files or an unknown split name are one line."""
    npz = str(need(data_dir, "medmnist/pneumoniamnist_subsetB.npz"))
    ds = read_dataset(DataConfig(path={"test": npz}))
    assert {r.split for r in ds.records} == {"test"} and len(ds.records) == 468
    assert any("only its test split read (468 samples)" in n for n in ds.notes)
    assert len(read_dataset(DataConfig(path={"valid": npz})).records) == 270
    with pytest.raises(DataError, match="an .npz holds its own splits"):
        read_dataset(DataConfig(path={"train": npz, "test": npz}))
    with pytest.raises(DataError, match=r"^tset=\S+subsetB.npz: an .npz holds its own splits"):  # as typed, not a dict
        read_dataset(DataConfig(path={"tset": npz}))


def test_an_npz_with_one_stray_label_is_one_line(data_dir, tmp_path):
    """BreastMNIST with one train label set to 2 trained a three-class model and lost MedMNIST's names."""
    arrays = dict(np.load(need(data_dir, "medmnist/breastmnist.npz")))
    arrays["train_labels"] = arrays["train_labels"].copy()
    arrays["train_labels"][5] = 2
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    with pytest.raises(DataError, match=r"class '2' has 1 sample\(s\) \(train_labels\[5\]\)"):
        read_medmnist(tmp_path / "breastmnist.npz")


def test_a_grey_ultrasound_with_a_colour_doppler_box_is_colour(data_dir, tmp_path):
    """US1_UNCR.dcm: a grey scan whose colour box covers 5% of it passed as grey (the mean channel spread is small),
    so a grey-trained model took it without the colour warning; grey stored as RGB stays grey."""
    from meddx.data.images import is_colour, read_pixels

    pixels, layout = read_pixels(file_record(need(data_dir, "dicom/US1_UNCR.dcm")))
    assert layout == "hwc" and is_colour(pixels, layout)
    grey = np.repeat(pixels.mean(-1, keepdims=True), 3, -1)
    assert not is_colour(grey, layout)
    jpeg = next((data_dir / "chest_xray_pneumonia_224/train/NORMAL").iterdir())  # RGB-stored grey JPEG
    assert not is_colour(*read_pixels(file_record(jpeg)))


def test_a_missing_relative_path_says_where_it_was_looked_for(tmp_path, monkeypatch):
    """`cd /tmp && meddx explore -c trial/r1.yaml` said 'CSV manifest not found: data/r1_train.csv': YAML paths are
    read from the folder meddx runs in, which the message now says."""
    from meddx.config import DataConfig
    from meddx.data.readers import read_dataset
    from meddx.errors import DataError

    monkeypatch.chdir(tmp_path)
    for path, what in (("data/r1_train.csv", "CSV manifest"), ("scans", "data path")):
        with pytest.raises(DataError) as e:
            read_dataset(DataConfig(path=path))
        assert str(e.value) == f"{what} not found: {path} (a relative path: looked for from {tmp_path})"
    with pytest.raises(DataError) as e:
        read_dataset(DataConfig(path=str(tmp_path / "scans")))
    assert str(e.value) == f"data path not found: {tmp_path / 'scans'}"
