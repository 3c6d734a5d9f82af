"""Patient ids guessed from file names: the `<patient>_<number>` convention found on the shared folders exactly as
their hand-written regexes give it, names that follow no convention left alone, and official splits that share a
guessed patient mended by the gate instead of stopping `meddx train --data FOLDER`."""

from __future__ import annotations

from collections import defaultdict

import pytest

from meddx.config import SplitConfig
from meddx.data import enforce_no_leakage
from meddx.data.patients import guess_patients
from meddx.data.readers import read_folder
from meddx.data.split import assign_splits
from meddx.errors import LeakageError

from conftest import need

KERMANY_REGEX = r"(person\d+|(?:NORMAL2-)?IM-\d+)"
NIH_REGEX = r"^(\d{8})_"


def test_guess_reads_the_common_conventions():
    names = ["00000005_000.png", "00000005_001.png", "00000013_004.png", "person447_bacteria_1932.jpeg",
             "person447_virus_921.jpeg", "person447_virus_921_1.jpeg", "IM-0429-0001.jpeg", "IM-0429-0001-0002.jpeg",
             "NORMAL2-IM-0641-0001.jpeg", "NORMAL2-IM-0650-0001.jpeg", "person1_bacteria_2.jpeg"]  # fmt: skip
    ids, why = guess_patients(names)
    assert ids == ["00000005", "00000005", "00000013", "person447", "person447", "person447", "IM-0429", "IM-0429",
                   "NORMAL2-IM-0641", "NORMAL2-IM-0650", "person1"]  # fmt: skip
    assert "7 patients for 11 images, 7 of them sharing a patient, at most 3 ('person447')" in why


@pytest.mark.parametrize(
    ("names", "reason"),
    [
        ([f"case{i}.png" for i in range(50)], "not <patient>_<number>"),  # DaTscan: a number, no patient
        ([f"img_{i:04d}.png" for i in range(50)], "not <patient>_<number>"),  # the prefix holds no digit
        ([f"scan{i}_1.png" for i in range(50)], "no two file names share"),  # one image per patient: nothing to group
        ([f"site12_{i}.png" for i in range(40)] + [f"site{i}_1.png" for i in range(20, 60)], "not one patient"),
    ],
)
def test_guess_declines_names_that_name_no_patient(names, reason):
    ids, why = guess_patients(names)
    assert ids is None and reason in why


def _partition(ds) -> set[frozenset[str]]:
    groups = defaultdict(set)
    for r in ds.records:
        groups[r.patient_id].add(r.id)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize(
    ("name", "regex"), [("chest_xray_pneumonia_224", KERMANY_REGEX), ("nih_chestxray14_64px_binary", NIH_REGEX)]
)
def test_guess_on_the_shared_folders_equals_their_hand_regex(data_dir, name, regex):
    guessed, given = read_folder(need(data_dir, name)), read_folder(data_dir / name, patient_regex=regex)
    assert guessed.patients_guessed and not given.patients_guessed and guessed.patients_known
    assert _partition(guessed) == _partition(given)
    assert "patient ids guessed from the file names" in guessed.notes[-1]
    off = read_folder(data_dir / name, guess_patients=False)
    assert not off.patients_known and len(_partition(off)) == len(off)


def test_datscan_names_name_no_patient(data_dir):
    ds = read_folder(need(data_dir, "datscan_spect_ppmi_2d"))
    assert ds.patients_guessed is None and not ds.patients_known and "each image is its own patient" in ds.notes[-1]


def test_official_splits_sharing_guessed_patients_lose_them_from_train(data_dir):
    """NIH 64 px: the official train and valid folders share 15 patients (67 train and 76 valid images). Guessed, they
    go from train before test is carved from it, and valid stays whole; given by the user, the gate still stops and
    points to use_official."""
    ds = read_folder(need(data_dir, "nih_chestxray14_64px_binary"))
    val = {r.id for r in ds.records if r.split == "val"}
    assign_splits(ds, SplitConfig())
    report = enforce_no_leakage(ds, SplitConfig())
    assert report.ok and {r.id for r in ds.records if r.split == "val"} == val and len(val) == 200
    assert len(ds.records) == 800 - 67 and any("dropped 67 train image(s) of 15 patient(s)" in n for n in ds.notes)
    given = read_folder(data_dir / "nih_chestxray14_64px_binary", patient_regex=NIH_REGEX)
    assign_splits(given, SplitConfig())
    with pytest.raises(LeakageError, match="split.use_official=false"):
        enforce_no_leakage(given, SplitConfig())
    again = read_folder(data_dir / "nih_chestxray14_64px_binary")
    assign_splits(again, SplitConfig(use_official=False))
    assert len(again.records) == 800 and enforce_no_leakage(again, SplitConfig(use_official=False)).ok


def _copy_scans(data_dir, layout: dict[str, int], tmp_path) -> None:
    """Real DaTscan slices copied into `tmp_path/<relative folder>` (value: how many)."""
    scans = iter(sorted((need(data_dir, "datscan_spect_ppmi_2d") / "train" / "HC").glob("*.png")))
    for folder, n in layout.items():
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            src = next(scans)
            (tmp_path / folder / src.name).write_bytes(src.read_bytes())


def test_patient_subfolders_of_class_folders_are_read_and_name_the_patient(data_dir, tmp_path):
    """`class/patient/scan.png` (torchvision's ImageFolder reads class folders recursively): every image is read and
    the subfolder is the patient; in a mixed layout the subfolders' images are read too (they were silently left out)
    and the notes count them."""
    _copy_scans(data_dir, {"HC/p1": 3, "HC/p2": 2, "PD/p3": 4, "PD/p4/day2": 2}, tmp_path / "nested")
    ds = read_folder(tmp_path / "nested")
    assert len(ds) == 11 and {r.patient_id for r in ds.records} == {"p1", "p2", "p3", "p4"}
    assert "patient ids from the subfolders of the class folders: 4 patients" in ds.notes[-1]
    _copy_scans(data_dir, {"HC": 3, "HC/p2": 2, "PD": 3}, tmp_path / "mixed")
    mixed = read_folder(tmp_path / "mixed")
    assert len(mixed) == 8 and "2 image(s) read from subfolders of the class folders" in mixed.notes[-1]


def test_image_and_mask_subfolders_are_neither_patients_nor_scans(data_dir, tmp_path):
    """The COVID-19 Radiography layout, `class/images/` beside `class/masks/`: the masks are left out (and named), and
    `images` holding every scan of its class is no patient."""
    _copy_scans(data_dir, {"HC/images": 20, "HC/masks": 20, "PD/images": 20, "PD/masks": 20}, tmp_path)
    ds = read_folder(tmp_path)
    assert len(ds) == 40 and not any("masks" in r.id for r in ds.records)
    assert "2 segmentation-mask folder(s) left out" in " ".join(ds.notes)
    assert not ds.patients_known and "40 image(s) read from subfolders" in ds.notes[-1]


def test_a_tiny_official_val_is_merged_into_train_and_val_carved(data_dir, tmp_path):
    """Kermany's original layout has a 16-image val folder (8 per class): too few to choose a model, the epochs or an
    operating point on. It joins train and val is carved by patient; `split.min_val_class=0` keeps it; a val with
    enough of each class stays official."""
    layout = {"train/HC": 30, "train/PD": 30, "val/HC": 3, "val/PD": 3, "test/HC": 10, "test/PD": 10}
    _copy_scans(data_dir, layout, tmp_path)
    ds = assign_splits(read_folder(tmp_path), SplitConfig())
    official_val = {r.id for r in ds.records if r.id.startswith("val/")}
    assert "val by patient, test official" in next(n for n in ds.notes if n.startswith("splits:"))
    assert sum(r.split == "val" for r in ds.records) > 0 and len(ds.subset("test")) == 20
    assert any("the official val split holds 6 images, 3 of its rarest class" in n for n in ds.notes)
    kept = assign_splits(read_folder(tmp_path), SplitConfig(min_val_class=0))
    assert {r.id for r in kept.records if r.split == "val"} == official_val
    enough = assign_splits(read_folder(tmp_path), SplitConfig(min_val_class=3))
    assert {r.id for r in enough.records if r.split == "val"} == official_val
