"""Bad input: a clear error naming the file/row and what is wrong, a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import need, run_cli


@pytest.fixture()
def scans(tmp_path, data_dir):
    """Six real DaTscan PNGs (3 HC, 3 PD) copied into a temporary folder, and a CSV naming them."""
    src = need(data_dir, "datscan_spect_ppmi_2d/train")
    rows = ["path,patient,label"]
    for cls in ("HC", "PD"):
        for i, f in enumerate(sorted((src / cls).iterdir())[:3]):
            shutil.copy(f, tmp_path / f"{cls}_{f.name}")
            rows.append(f"{cls}_{f.name},p{cls}{i},{int(cls == 'PD')}")
    (tmp_path / "ok.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def _train(csv, *extra):
    return run_cli(
        "train",
        "--data",
        str(csv),
        "--epochs",
        "1",
        "--output-dir",
        str(csv.parent / "runs"),
        "--set",
        "train.progress_bar=false",
        *extra,
        timeout=300,
    )


def _train_labelled(scans, *extra):
    """Training on the good manifest with its patient and label columns named, plus `extra` options."""
    return _train(scans / "ok.csv", "--patient-column", "patient", "--label-columns", "label", *extra)


def _assert_clean_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "meddx: error:" in proc.stderr, proc.stderr[-2000:]
    message = proc.stderr[proc.stderr.index("meddx: error:") :]
    for n in needles:
        assert n in message, (n, message)


def _csv(scans, text):
    p = scans / "bad.csv"
    p.write_text(text)
    return p


def test_missing_image_file(scans):
    text = (scans / "ok.csv").read_text().replace("PD_case", "PD_nope", 1)
    _assert_clean_error(
        _train(_csv(scans, text), "--patient-column", "patient", "--label-columns", "label"),
        "bad.csv row 5",
        "do not exist",
        "PD_nope",
    )


def test_unreadable_image(scans):
    victim = sorted(scans.glob("HC_*.png"))[0]
    victim.write_bytes(b"this is not a PNG at all")
    proc = run_cli(
        "explore", "--data", str(scans / "ok.csv"), "--patient-column", "patient", "--label-columns", "label"
    )
    assert proc.returncode == 0 and "unreadable: 1" in proc.stdout
    _assert_clean_error(
        _train(scans / "ok.csv", "--patient-column", "patient", "--label-columns", "label"),
        victim.name,
        "not a readable image",
    )
    proc = _train(scans / "ok.csv", "--patient-column", "patient", "--label-columns", "label", "--skip-unreadable")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = (scans / "runs").iterdir()
    notes = json.loads((run / "data.json").read_text())["notes"]
    assert any(n.startswith("left out 1 unreadable image(s)") and victim.name in n for n in notes)


def test_unreadable_images_are_left_out_on_request_and_named(scans, datscan_run, data_dir, tmp_path):
    """A folder with one broken file stopped training and evaluation, with no way on but deleting it;
    `--skip-unreadable` leaves such files out, and the notes name each one."""
    from meddx.config import DataConfig
    from meddx.data.readable import drop_unreadable
    from meddx.data.readers import read_dataset

    victim = sorted(scans.glob("HC_*.png"))[0]
    victim.write_bytes(b"this is not a PNG at all")
    ds = read_dataset(DataConfig(path=str(scans / "ok.csv"), patient_column="patient", label_columns=["label"]))
    reasons = drop_unreadable(ds)
    assert len(ds) == 5 and len(reasons) == 1 and victim.name in reasons[0]
    assert (
        ds.notes[-1].startswith("left out 1 unreadable image(s) (--skip-unreadable): ") and victim.name in ds.notes[-1]
    )
    assert ds.notes[-1].endswith("; 5 images of 5 patients remain")  # one patient per image in `scans`
    folder, tested = tmp_path / "new", datscan_run.predictions("test")["id"]  # scans the run never trained on
    for i in [*tested[tested.str.contains("/HC/")][:3], *tested[tested.str.contains("/PD/")][:3]]:
        (folder / i.split("/")[-2]).mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / "datscan_spect_ppmi_2d" / i, folder / i.split("/")[-2])
    shutil.copy(victim, folder / "HC")
    args = ("evaluate", str(datscan_run.path), "--data", str(folder), "--split", "broken", "--bootstrap", "0")
    _assert_clean_error(run_cli(*args), victim.name, "--skip-unreadable")
    proc = run_cli(*args, "--skip-unreadable")
    assert proc.returncode == 0, proc.stderr[-2000:]
    alone = run_cli("evaluate", str(datscan_run.path), "--skip-unreadable")  # no new data to skip in: a TypeError
    _assert_clean_error(alone, "data.skip_unreadable: options of new data, given without --data")
    check = json.loads((datscan_run.path / "predictions" / "broken.leakage.json").read_text())
    assert check["files"] == 6  # the 6 evaluated, not the unreadable one too (the report said 623 for 620)
    notes = json.loads((datscan_run.path / "predictions" / "broken.data.json").read_text())["notes"]
    assert any("left out 1 unreadable image(s)" in n and victim.name in n for n in notes)


def test_truncated_image(scans):
    victim = sorted(scans.glob("PD_*.png"))[-1]
    victim.write_bytes(victim.read_bytes()[:200])
    _assert_clean_error(
        _train(scans / "ok.csv", "--patient-column", "patient", "--label-columns", "label"), victim.name
    )


def test_csv_without_named_columns(scans):
    _assert_clean_error(
        _train(scans / "ok.csv", "--patient-column", "PatientId", "--label-columns", "label"),
        "ok.csv",
        "no patient id column 'PatientId'",
        "columns are ['path', 'patient', 'label']",
    )
    _assert_clean_error(
        _train(scans / "ok.csv", "--patient-column", "patient", "--label-columns", "label,Effusion"),
        "missing column(s) ['Effusion']",
    )


def test_label_values_other_than_0_1(scans):
    text = (scans / "ok.csv").read_text().splitlines()
    text[3] = text[3].rsplit(",", 1)[0] + ",2"
    _assert_clean_error(
        _train(_csv(scans, "\n".join(text) + "\n"), "--patient-column", "patient", "--label-columns", "label"),
        "bad.csv: row 4, column 'label'",
        "'2' is not 0, 1, blank (unknown), -1 (uncertain)",
    )


def test_patient_column_with_blanks(scans):
    text = (scans / "ok.csv").read_text().splitlines()
    parts = text[2].split(",")
    text[2] = f"{parts[0]},,{parts[2]}"
    _assert_clean_error(
        _train(_csv(scans, "\n".join(text) + "\n"), "--patient-column", "patient", "--label-columns", "label"),
        "blank patient id in column 'patient' on row(s) [3]",
    )


def test_empty_split(scans):
    _assert_clean_error(_train_labelled(scans, "--set", "split.ratios=[1.0, 0.0, 0.0]"), "the val split is empty")


def test_views_out_of_range(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "stacks" / cls).mkdir(parents=True)
        for i in range(6):
            np.save(tmp_path / "stacks" / cls / f"{cls}{i}.npy", rng.random((12, 16, 16), dtype=np.float32))
    _assert_clean_error(
        _train(tmp_path / "stacks", "--views", "0,60"), ".npy", "views [60] out of range for a stack of 12"
    )
    _assert_clean_error(
        _train(tmp_path / "stacks", "--set", "plan.enabled=false"), "choose the slices to use as channels"
    )
    planned = _train(tmp_path / "stacks", "--name", "planned")  # the plan takes three slices through the middle
    assert planned.returncode == 0, planned.stderr
    plan = json.loads((tmp_path / "runs" / "planned" / "plan.json").read_text())
    assert {c["field"]: c["value"] for c in plan["choices"]}["data.views"] == [4, 6, 8]


def test_bad_config_values(scans, tmp_path):
    _assert_clean_error(_train(scans / "ok.csv", "--set", "train.lr=-1"), "train.lr")
    _assert_clean_error(_train(scans / "ok.csv", "--set", "split.ratios=[0.5, 0.5, 0.5]"), "split.ratios")
    (tmp_path / "c.yaml").write_text("data: [unclosed\n")
    _assert_clean_error(run_cli("train", "--config", str(tmp_path / "c.yaml")), "c.yaml", "not valid YAML")
    _assert_clean_error(_train_labelled(scans, "--model", "no_such_net"), "unknown model 'no_such_net'")


def test_model_too_small_for_images(scans):
    _assert_clean_error(
        _train_labelled(scans, "--model", "densenet121", "--set", "data.image_size=28"), "densenet121", "at least 32 px"
    )


def test_missing_data_path(tmp_path):
    _assert_clean_error(run_cli("explore", "--data", str(tmp_path / "nowhere.csv")), "nowhere.csv")
    _assert_clean_error(run_cli("predict", str(tmp_path), str(tmp_path / "x.png")), "not a meddx run folder")


def test_config_typos_get_a_did_you_mean(scans):
    _assert_clean_error(_train(scans / "ok.csv", "--set", "train.max_epoch=3"), "train.max_epoch", "'max_epochs'")
    _assert_clean_error(_train(scans / "ok.csv", "--set", "trian.lr=0.1"), "trian: unknown key", "'train'")


def test_a_huge_image_is_refused_before_it_is_decoded(scans):
    """A 140 KB PNG claiming 12000 x 12000 pixels set the size of every image and was OOM-killed at 21.8 GB."""
    from PIL import Image

    victim = sorted(scans.glob("PD_*.png"))[0]
    Image.new("L", (12000, 12000)).save(victim, optimize=True)
    assert victim.stat().st_size < 500_000
    _assert_clean_error(_train_labelled(scans), victim.name, "12000 x 12000", "over the limit", "MEDDX_MAX_PIXELS")


def test_nan_or_infinite_pixels_are_refused(scans):
    """One NaN pixel made every normalised image NaN, trained an all-NaN model.pt and crashed the evaluation."""
    rows = ["path,patient,label"]
    for i in range(6):
        image = np.random.default_rng(i).random((32, 32), dtype=np.float32)
        if i == 4:
            image[3, 5] = np.nan
        np.save(scans / f"scan{i}.npy", image)
        rows.append(f"scan{i}.npy,p{i},{i % 2}")
    _assert_clean_error(
        _train(_csv(scans, "\n".join(rows) + "\n"), "--patient-column", "patient", "--label-columns", "label"),
        "scan4.npy",
        "1 NaN or infinite pixel value(s) of 1,024",
    )


def test_class_names_differing_in_spaces_or_case_are_one_class(scans):
    """'PD ' and 'hc' beside 'PD' and 'HC' made a binary task of four classes; now they are read as two, and said."""
    from meddx.data.manifest import read_csv_manifest

    rows = (scans / "ok.csv").read_text().splitlines()
    names = ["HC", "hc", "HC ", "PD", "PD ", "PD"]
    text = "path,patient,cls\n" + "\n".join(f"{r.split(',')[0]},{r.split(',')[1]},{n}" for r, n in zip(rows[1:], names))
    ds = read_csv_manifest(_csv(scans, text + "\n"), patient_column="patient", label_column="cls")
    assert ds.task == "binary" and ds.label_names == ["PD"] and ds.labels[:, 0].tolist() == [0, 0, 0, 1, 1, 1]
    assert any("'HC' 2" in n and "'hc' 1" in n for n in ds.notes) and any(
        "2 class name(s) with spaces" in n for n in ds.notes
    )


def test_repeated_rows_are_dropped_and_conflicting_ones_refused(scans):
    """Duplicate rows, and the same image with labels 0 and 1, were kept; check-leakage said 'no leakage'."""
    from meddx.data.manifest import read_csv_manifest

    rows = (scans / "ok.csv").read_text().splitlines()
    ds = read_csv_manifest(_csv(scans, "\n".join([*rows, rows[1], rows[2]]) + "\n"), patient_column="patient",
                           label_columns=["label"])  # fmt: skip
    assert len(ds) == 6 and any("2 repeated row(s)" in n and "bad.csv row 8" in n for n in ds.notes)
    path, patient, label = rows[1].split(",")
    conflict = _csv(scans, "\n".join([*rows, f"{path},{patient},{1 - int(label)}"]) + "\n")
    _assert_clean_error(
        _train(conflict, "--patient-column", "patient", "--label-columns", "label"),
        "bad.csv row 8", "also on row 2 with other labels", "(label=0 there, label=1 here)",
    )  # fmt: skip


def test_manifest_paths_that_leave_the_root_are_refused(scans, monkeypatch):
    """`../` and absolute paths in a manifest were read silently (a manifest could point anywhere on the machine)."""
    from meddx.data.manifest import read_csv_manifest

    rows = (scans / "ok.csv").read_text().splitlines()
    outside = scans.parent / f"{scans.name}-elsewhere"
    outside.mkdir()
    name = rows[1].split(",")[0]
    shutil.copy(scans / name, outside / name)
    climbing = _csv(scans, "\n".join([rows[0], f"../{outside.name}/{name},pX,0", *rows[2:]]) + "\n")
    _assert_clean_error(
        _train(climbing, "--patient-column", "patient", "--label-columns", "label"),
        "leave its folder", "bad.csv row 2", "data.allow_outside_root=true",
    )  # fmt: skip
    absolute = _csv(scans, "\n".join([rows[0], f"{outside / name},pX,0", *rows[2:]]) + "\n")
    with pytest.raises(Exception, match="leave its folder"):
        read_csv_manifest(absolute, patient_column="patient")
    assert len(read_csv_manifest(absolute, patient_column="patient", allow_outside_root=True)) == 6
    (scans / "sub").mkdir()
    inside = [rows[0], f"sub/../{name},pX,0", *rows[2:]]  # '..' that stays inside is fine
    assert len(read_csv_manifest(_csv(scans, "\n".join(inside) + "\n"), patient_column="patient")) == 6

    monkeypatch.chdir(scans)  # `--data ok.csv` from the manifest's own folder: its base is '.', every row was refused
    assert len(read_csv_manifest("ok.csv", patient_column="patient")) == len(rows) - 1
    climbing.write_text("\n".join([rows[0], f"../{outside.name}/{name},pX,0", *rows[2:]]) + "\n")
    with pytest.raises(Exception, match="leave its folder"):  # and a climbing row from there is still refused
        read_csv_manifest(climbing.name, patient_column="patient")


def test_on_and_off_survive_yaml(scans):
    """`--set train.class_weights=off` failed: YAML 1.1 reads `off` as false."""
    from meddx.config import as_config

    assert as_config(None, {"train.class_weights": False}).train.class_weights == "off"
    proc = _train_labelled(scans, "--set", "train.class_weights=off", "--set", "plan.enabled=false")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_gpu_accelerator_without_a_gpu_is_one_line(scans):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    _assert_clean_error(_train_labelled(scans, "--accelerator", "gpu"), "train.accelerator=gpu", "no CUDA GPU")


def test_folder_reader_names_broken_links_and_empty_classes(scans, tmp_path):
    """The folder reader skipped broken links, link loops and empty class folders silently."""
    import os

    folder = tmp_path / "folder"
    for cls in ("HC", "PD"):
        (folder / cls).mkdir(parents=True)
        for f in scans.glob(f"{cls}_*.png"):
            shutil.copy(f, folder / cls / f.name)
    run = ["explore", "--data", str(folder)]
    assert run_cli(*run).returncode == 0
    (folder / "SWEDD").mkdir()
    _assert_clean_error(run_cli(*run), "SWEDD", "a class folder with no images")
    (folder / "SWEDD").rmdir()
    os.symlink(folder / "HC" / "gone.png", folder / "HC" / "link.png")
    _assert_clean_error(run_cli(*run), "1 broken link(s)", "link.png")
    (folder / "HC" / "link.png").unlink()
    os.symlink(folder / "PD" / "loop.png", folder / "PD" / "loop.png")
    _assert_clean_error(run_cli(*run), "broken link(s)", "loop.png")
