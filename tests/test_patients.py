"""Patient ids guessed from file names: the `<patient>_<number>` convention found on the shared folders exactly as
their hand-written regexes give it, names that follow no convention left alone, and official splits that share a
guessed patient mended by the gate instead of stopping `meddx train --data FOLDER`."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from meddx.config import SplitConfig
from meddx.data import enforce_no_leakage
from meddx.data.patients import assign_guessed_patients, ids_from_names
from meddx.data.readers import read_folder
from meddx.data.records import Record
from meddx.data.split import assign_splits
from meddx.errors import LeakageError

from conftest import need

KERMANY_REGEX = r"(person\d+|(?:NORMAL2-)?IM-\d+)"
NIH_REGEX = r"^(\d{8})_"


def _guess(names: list[str], labels: list[int] | None = None, splits: list | None = None) -> tuple:
    """(patient ids or None, the note) for records of these names, labels (class indices, default alternating 0/1)
    and official splits."""
    labels = labels or [i % 2 for i in range(len(names))]
    eye = np.eye(max(labels) + 1, dtype=np.float32)
    recs = [Record(n, n, n, eye[c], split=s) for n, c, s in zip(names, labels, splits or [None] * len(names))]
    source, note = assign_guessed_patients(recs, "x")
    return ([r.patient_id for r in recs] if source else None), note


def test_guess_reads_the_common_conventions():
    names = ["00000005_000.png", "00000005_001.png", "00000013_004.png", "person447_bacteria_1932.jpeg",
             "person447_virus_921.jpeg", "person447_virus_921_1.jpeg", "IM-0429-0001.jpeg", "IM-0429-0001-0002.jpeg",
             "NORMAL2-IM-0641-0001.jpeg", "NORMAL2-IM-0650-0001.jpeg", "person1_bacteria_2.jpeg"]  # fmt: skip
    ids, _ = ids_from_names(names)
    assert ids == ["00000005", "00000005", "00000013", "person447", "person447", "person447", "IM-0429", "IM-0429",
                   "NORMAL2-IM-0641", "NORMAL2-IM-0650", "person1"]  # fmt: skip
    more = [f"{p:08d}_{k:03d}.png" for p in range(100, 110) for k in range(3)]
    ids, note = _guess(names + more)
    assert ids[:11] == ids_from_names(names)[0] and "17 patients for 41 images, 37 of them sharing a patient" in note


def test_a_stray_name_is_its_own_patient_and_keeps_the_others_guess():
    """One `scan.jpeg` among 899 `personNNN_...` names turned the guess off for the whole folder: 70 children on both
    sides of the split behind 'leakage check: passed'. A few such names (at most 5%) are now each their own patient
    and named in the note; more than that still turn the guess off."""
    names = [f"person{p}_bacteria_{k}.jpeg" for p in range(40) for k in range(3)]
    ids, note = _guess([*names, "scan.jpeg", "IMG.jpeg"])
    assert ids[:3] == ["person0"] * 3 and ids[-2:] == ["file:scan.jpeg", "file:IMG.jpeg"]
    assert "42 patients for 122 images" in note and "2 file name(s) do not follow <patient>_<number>" in note
    assert "scan.jpeg, IMG.jpeg" in note
    ids, why = _guess(names + [f"scan{c}.jpeg" for c in "abcdefgh"])  # 8 of 128: more than 5%
    assert ids is None and "not <patient>_<number> with a digit in <patient> (e.g. scana.jpeg)" in why
    ids, _ = _guess([*names, "train/NORMAL/scan.jpeg", "test/NORMAL/scan.jpeg"])  # two images, not one patient
    assert ids[-2:] == ["file:train/NORMAL/scan.jpeg", "file:test/NORMAL/scan.jpeg"]
    batches = [f"batch{b}_{k}.png" for b in range(4) for k in range(200)]  # 4 scanner batches: refused, strays or not
    assert _guess([*batches, *(f"x{i}.png" for i in range(40))])[0] is None


@pytest.mark.parametrize(
    ("names", "labels", "splits", "reason"),
    [
        ([f"case{i}.png" for i in range(50)], None, None, "not <patient>_<number>"),  # DaTscan: a number, no patient
        ([f"img_{i:04d}.png" for i in range(50)], None, None, "not <patient>_<number>"),  # no digit before the number
        ([f"scan{i}_1.png" for i in range(50)], None, None, "no two images share one"),  # one image each: no groups
        ([f"site12_{i}.png" for i in range(40)] + [f"site{i}_1.png" for i in range(20, 60)], None, None,
         "'site12' would hold 40 of 80 images"),  # a site or a scanner
        ([f"{k}_{n}.png" for k in range(12) for n in range(100)], [k for k in range(12) for _ in range(100)], None,
         "only 12 groups for 1200 images of 12 classes"),  # the class index, not a patient
        ([f"1.2.826.0.1.3680043.8.498.{n}.dcm" for n in range(28)], None, None, "only 1 groups"),  # DICOM UIDs
        ([f"IMG_202103{d:02d}_12{n:04d}.jpg" for d in range(1, 31) for n in range(3)], None, None, "dates"),
        ([f"p{p}_{i}.png" for p in [*range(100), *range(30)] for i in range(2)], None,
         ["train"] * 200 + ["test"] * 60, "30 of the 30 of the official test split are in an earlier split"),
    ],
)  # fmt: skip
def test_guess_declines_names_that_name_no_patient(names, labels, splits, reason):
    ids, why = _guess(names, labels, splits)
    assert ids is None and reason in why and "each image is its own patient" in why


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
    """`class/patient/scan.png`: every image is read (subfolders were silently left out) and, names naming none, the
    subfolder is the patient; in a mixed layout the subfolders' images are read too and the notes count them."""
    layout = {f"{'HC' if p < 6 else 'PD'}/p{p}{'/day2' if p == 11 else ''}": 2 for p in range(12)}
    _copy_scans(data_dir, layout, tmp_path / "nested")
    ds = read_folder(tmp_path / "nested")
    assert len(ds) == 24 and {r.patient_id for r in ds.records} == {f"p{p}" for p in range(12)}
    assert "patient ids guessed from the first subfolder of each class folder: 12 patients" in ds.notes[-1]
    _copy_scans(data_dir, {"HC": 3, "HC/p2": 2, "PD": 3}, tmp_path / "mixed")
    mixed = read_folder(tmp_path / "mixed")
    assert len(mixed) == 8 and "2 image(s) read from subfolders of the class folders" in mixed.notes[-1]


def test_patient_subfolders_in_train_beside_a_flat_val_still_name_the_patients(data_dir, tmp_path):
    """`train/hc/patient HC-003/*.png` beside a flat `val/HC/*.png`: the flat val turned the subfolder rule off for
    every split, each image its own patient, and 59 of 205 patients landed on both sides of the split with the
    leakage gate passing. Folders named alike under two classes (`HC/v0`, `PD/v0`) are one patient, and said."""
    layout = {f"train/{'hc' if p < 8 else 'pd'}/patient {p:03d}": 3 for p in range(16)}
    _copy_scans(data_dir, {**layout, "val/HC": 4, "val/PD": 4}, tmp_path / "mixed")
    ds = read_folder(tmp_path / "mixed")
    train = [r for r in ds.records if r.split == "train"]
    assert {r.patient_id for r in train} == {f"patient {p:03d}" for p in range(16)}
    assert len({r.patient_id for r in ds.records if r.split == "val"}) == 8
    assert "8 image(s) straight in a class folder, each its own patient" in ds.notes[-1]
    _copy_scans(data_dir, {f"{c}/v{p}": 2 for c in ("HC", "PD") for p in range(12)}, tmp_path / "alike")
    alike = read_folder(tmp_path / "alike")
    assert len({r.patient_id for r in alike.records}) == 12
    assert "12 subfolder name(s) under several classes (e.g. 'v0'), each read as one patient" in alike.notes[-1]


def test_image_and_mask_subfolders_are_neither_patients_nor_scans(data_dir, tmp_path):
    """The COVID-19 Radiography layout, `class/images/` beside `class/masks/` (or `Mask_PNG/`, ...): the masks are left
    out and named, and `images` holding every scan of its class is no patient."""
    layout = {"HC/images": 20, "HC/masks": 2, "HC/Mask_PNG": 2, "PD/images": 20, "PD/segmentation_masks": 2}
    _copy_scans(data_dir, layout, tmp_path)
    ds = read_folder(tmp_path)
    assert len(ds) == 40 and all("/images/" in r.id for r in ds.records)
    assert "3 segmentation-mask or linked folder(s) left out" in " ".join(ds.notes)
    assert not ds.patients_known and "40 image(s) read from subfolders" in ds.notes[-1]


def test_nih_train_alone_keeps_its_patients(data_dir):
    """One NIH patient holds 61 of the 600 train images: many follow-up scans are a patient, not a site."""
    ds = read_folder(need(data_dir, "nih_chestxray14_64px_binary") / "train")
    assert ds.patients_guessed and len({r.patient_id for r in ds.records}) == 165


def test_a_tiny_official_val_is_merged_into_train_and_val_carved(data_dir, tmp_path):
    """Kermany's original layout has a 16-image val folder (8 per class): too few to choose a model, the epochs or an
    operating point on. It joins train and val is carved by patient; `split.min_val_class=0` keeps it; a val with
    enough of each class stays official."""
    layout = {"train/HC": 30, "train/PD": 30, "val/HC": 3, "val/PD": 3, "test/HC": 10, "test/PD": 10}
    _copy_scans(data_dir, layout, tmp_path)
    unknown = assign_splits(read_folder(tmp_path), SplitConfig())  # DaTscan's case<n>.png name no patient
    assert any("rarest class" in n and "kept: patient ids are unknown" in n for n in unknown.notes)
    assert sum(r.split == "val" for r in unknown.records) == 6  # carving by image could split a patient it kept whole
    for i, f in enumerate(sorted(tmp_path.rglob("*.png"))):  # two scans per patient, numbered across the splits
        f.rename(f.with_name(f"person{i // 2 + 100}_{i % 2}.png"))
    ds = assign_splits(read_folder(tmp_path), SplitConfig())
    official_val = {r.id for r in ds.records if r.id.startswith("val/")}
    assert "val by patient, test official" in next(n for n in ds.notes if n.startswith("splits:"))
    assert sum(r.split == "val" for r in ds.records) > 0 and len(ds.subset("test")) == 20
    assert any("the official val split holds 6 images, 3 of its rarest class" in n for n in ds.notes)
    kept = assign_splits(read_folder(tmp_path), SplitConfig(min_val_class=0))
    assert {r.id for r in kept.records if r.split == "val"} == official_val
    enough = assign_splits(read_folder(tmp_path), SplitConfig(min_val_class=3))
    assert {r.id for r in enough.records if r.split == "val"} == official_val


def test_dicom_patient_ids_come_from_the_patientid_tag(data_dir, tmp_path):
    """DICOM files named `img00000.dcm` carry their patient in (0010,0020); it was never read, and a split put one
    patient's scans on both sides (107 of 110 test files shared a PatientID with train in a new user's trial). An
    anonymiser's constant id is not a patient: then each file stays its own."""
    import pydicom

    from meddx.data.patients import DICOM_TAG

    template = pydicom.dcmread(need(data_dir, "dicom/CT_small.dcm"))
    for k in range(60):  # 20 patients, 3 files each, 10 per class
        template.PatientID = f"PT{k // 3:03d}"
        folder = tmp_path / "scans" / ("PD" if k // 3 % 2 else "HC")
        folder.mkdir(parents=True, exist_ok=True)
        template.save_as(folder / f"img{k:05d}.dcm")
    ds = read_folder(tmp_path / "scans")
    assert ds.patients_guessed == DICOM_TAG and len({r.patient_id for r in ds.records}) == 20
    assert all(r.patient_id == pydicom.dcmread(r.source).PatientID for r in ds.records)
    assert any("patient ids from the DICOM PatientID tag (0010,0020): 20 patients for 60 images" in n for n in ds.notes)
    for path in (tmp_path / "scans").rglob("*.dcm"):
        scan = pydicom.dcmread(path)
        scan.PatientID = "ANONYMOUS"
        scan.save_as(path)
    anonymous = read_folder(tmp_path / "scans")
    assert anonymous.patients_guessed is None and len({r.patient_id for r in anonymous.records}) == 60
    assert any("'ANONYMOUS' on 60 of 60 files, an anonymiser's constant, not used" in n for n in anonymous.notes)


def test_site_subfolders_are_not_patients_because_loose_images_pad_the_count(data_dir, tmp_path):
    """Four site folders of 11 images beside 12 loose ones passed as 16 'patients' (the loose images counted as
    groups); the subfolder groups are judged alone, so four sites are refused as they are without loose images."""
    _copy_scans(data_dir, {**{f"{'HC' if s < 2 else 'PD'}/site{s}": 11 for s in range(4)}, "HC": 6, "PD": 6},
                tmp_path / "sites")  # fmt: skip
    ds = read_folder(tmp_path / "sites")
    assert len({r.patient_id for r in ds.records}) == len(ds) and "each image is its own patient" in ds.notes[-2]


def test_the_leakage_line_says_when_patients_could_not_be_checked():
    """'leakage check: passed' read as a patient-level guarantee on a folder whose patients were unknown."""
    from meddx.evaluation.data_section import leakage_text

    rule = "perceptual hash"
    info = lambda known: {"leakage": {"ok": True, "near_duplicate_rule": rule, "patients_known": known}}  # noqa: E731
    known = leakage_text(None, "test", info(True))
    assert known == f"passed (patients, sample ids, identical files by SHA-1, near duplicates: {rule})"
    unknown = leakage_text(None, "test", info(False))
    assert unknown.startswith("passed (sample ids") and "patients NOT checked: no patient ids" in unknown
