"""A corpus of bad (and awkward but valid) input made from real DaTscan slices: each bad kind is one line naming the
file, row or field and a non-zero exit; each valid kind trains. `tests/test_bad_input.py` holds the rest."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from test_bad_input import _assert_clean_error

from conftest import need, run_cli

QUIET = ["--epochs", "1", "--set", "plan.enabled=false", "--set", "train.progress_bar=false", "--set",
         "data.image_size=32", "--set", "evaluate.bootstrap=0"]  # fmt: skip


@pytest.fixture()
def folder(data_dir, tmp_path):
    """Four real slices per class in class folders, and a CSV naming them."""
    src = need(data_dir, "datscan_spect_ppmi_2d/train")
    rows = ["path,patient,label"]
    for cls in ("HC", "PD"):
        (tmp_path / "scans" / cls).mkdir(parents=True)
        for i, f in enumerate(sorted((src / cls).iterdir())[:4]):
            shutil.copy(f, tmp_path / "scans" / cls / f.name)
            rows.append(f"{cls}/{f.name},p{cls}{i},{int(cls == 'PD')}")
    (tmp_path / "scans" / "ok.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "scans"


def _train(data, *extra):
    return run_cli("train", "--data", str(data), "--output-dir", str(data.parent / "runs"), *QUIET, *extra)


BAD_FILES = {  # file written into HC/ -> what the one line must say
    "zero.png": (b"", "not a readable image"),
    "zero.jpg": (b"", "not a readable image"),
    "zero.dcm": (b"", "not a readable DICOM file"),
    "text.png": (b"hello, this is not a scan\n", "not a readable image"),
    "preamble_only.dcm": (b"\0" * 128 + b"DICM", "DICOM file has no pixel data"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_in_a_folder(folder, name):
    data, needle = BAD_FILES[name]
    (folder / "HC" / name).write_bytes(data)
    _assert_clean_error(_train(folder), name, needle)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (0, 64)], ids=["rank4", "empty"])
def test_npy_of_the_wrong_shape(folder, shape):
    """A 4-D array, and an empty one (a traceback from a reduction over no values)."""
    np.save(folder / "HC" / "bad.npy", np.zeros(shape, np.float32))
    _assert_clean_error(_train(folder), "bad.npy", "expected (H, W) or (C|D, H, W)")


@pytest.mark.slow
def test_awkward_but_valid_images_train(folder):
    """16-bit grey, RGBA and a colour image of another size beside 8-bit grey slices: all read, one run."""
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((64, 64)) * 65535).astype(np.uint16)).save(folder / "HC" / "deep.png")
    Image.fromarray((rng.random((64, 64, 4)) * 255).astype(np.uint8), "RGBA").save(folder / "HC" / "alpha.png")
    Image.fromarray((rng.random((100, 80, 3)) * 255).astype(np.uint8)).save(folder / "PD" / "colour.png")
    proc = _train(folder)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_one_class_only(folder):
    shutil.rmtree(folder / "PD")
    (folder / "ok.csv").unlink()
    _assert_clean_error(_train(folder), "only one class found")


CSV_CASES = {  # name -> (text of the manifest from the good rows, what the one line must say)
    "header_only": (lambda rows: rows[0] + "\n", "has a header but no rows"),
    "empty": (lambda rows: "", "not a readable CSV"),
    "label_yes": (lambda rows: "\n".join([*rows[:-1], rows[-1].rsplit(",", 1)[0] + ",yes"]) + "\n", "'yes'"),
    "label_2": (lambda rows: "\n".join([*rows[:-1], rows[-1].rsplit(",", 1)[0] + ",2"]) + "\n", "row 9"),
    "blank_patient": (
        lambda rows: "\n".join([rows[0], rows[1].replace(",pHC0,", ",,"), *rows[2:]]) + "\n",
        "row(s) [2]",
    ),
    "missing_column": (lambda rows: "\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n", "label"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_a_bad_manifest(folder, case):
    make, needle = CSV_CASES[case]
    rows = (folder / "ok.csv").read_text().splitlines()
    (folder / "bad.csv").write_text(make(rows))
    proc = run_cli("check-leakage", "--data", str(folder / "bad.csv"), "--patient-column", "patient",
                   "--label-columns", "label")  # fmt: skip
    _assert_clean_error(proc, "bad.csv", needle)


def test_utf16_and_bom_manifests_are_read(folder):
    """Excel's 'Unicode text' (UTF-16) failed with a UnicodeDecodeError line; a UTF-8 byte-order mark is read too."""
    from meddx.data.manifest import read_csv_manifest

    text = (folder / "ok.csv").read_text()
    (folder / "utf16.csv").write_text(text, encoding="utf-16")
    (folder / "bom.csv").write_text("\ufeff" + text, encoding="utf-8")
    for name in ("utf16.csv", "bom.csv"):
        ds = read_csv_manifest(folder / name, patient_column="patient", label_columns=["label"])
        assert len(ds) == 8 and ds.labels[:, 0].sum() == 4


@pytest.mark.parametrize(
    "setting, needle",
    [("train.lr=-0.1", "train.lr"), ("train.devices=0", "train.devices"), ("train.max_epochs=many", "max_epochs"),
     ("train.max_epochz=3", "did you mean 'max_epochs'")],
)  # fmt: skip
def test_bad_config_values_are_one_line(folder, setting, needle):
    proc = run_cli("plan", "--data", str(folder), "--set", setting, "--output", str(folder.parent / "plan"))
    _assert_clean_error(proc, needle)
