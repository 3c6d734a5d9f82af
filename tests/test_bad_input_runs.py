"""Bad input against a trained run: evaluation options, unreadable scans to predict, a torn predictions file, a
broken model file; each one line naming what is wrong, never a traceback."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_bad_input import _assert_clean_error

from conftest import run_cli


def test_bad_evaluation_options_are_one_line(datscan_run):
    """These printed pydantic tracebacks: an operating point out of range or misspelt, a negative bootstrap."""
    run = str(datscan_run.path)
    _assert_clean_error(run_cli("evaluate", run, "-t", "sensitivity=95"), "evaluate.operating_point", "[0, 1]")
    _assert_clean_error(run_cli("evaluate", run, "-t", "sens=0.9"), "evaluate.operating_point", "sensitivity=S")
    _assert_clean_error(run_cli("evaluate", run, "--bootstrap", "-5"), "evaluate.bootstrap", "-5")
    out = ["-o", str(datscan_run.path.parent / "ens")]
    _assert_clean_error(run_cli("ensemble", run, run, *out, "-t", "sensitivity=95"), "evaluate.operating_point")


@pytest.mark.slow
def test_predict_names_unreadable_scans_and_fails(datscan_run, tmp_path):
    """`meddx predict` printed p=NaN with exit 0 for a scan holding NaN; now its row names why and the exit is 1."""
    bad = np.zeros((48, 48), dtype=np.float32)
    bad[0, 0] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    proc = run_cli("predict", str(datscan_run.path), str(tmp_path / "inf.npy"), "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    row = json.loads(proc.stdout)[0]
    assert "NaN or infinite" in row["error"] and row["error"].startswith(str(tmp_path / "inf.npy"))


@pytest.mark.slow
def test_a_torn_predictions_file_is_refused(datscan_run, tmp_path):
    """29 of 110 rows of a predictions CSV were evaluated silently as a 29-sample test split."""
    run_dir = tmp_path / "run"
    shutil.copytree(datscan_run.path, run_dir)
    path = run_dir / "predictions" / "test.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:30]) + "\n")
    _assert_clean_error(run_cli("evaluate", str(run_dir)), "test.csv", "29 rows", "incomplete")
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2] + "\n")  # the last row cut
    _assert_clean_error(run_cli("evaluate", str(run_dir)), "test.csv")


@pytest.mark.slow
def test_a_broken_model_file_is_one_line_on_every_path(datscan_run, tmp_path):
    """A zero-byte model.pt said only 'Aborted.'; a cut one or a crafted pickle must be named too, and the crafted
    pickle's command must never run (predict, export, serve)."""
    import os

    import torch

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    scan = str(datscan_run.records("test")[0].source)
    good = (datscan_run.path / "model.pt").read_bytes()
    for name, write, needle in (
        ("empty", lambda p: p.write_bytes(b""), "empty (0 bytes)"),
        ("cut", lambda p: p.write_bytes(good[: len(good) // 3]), "cut or corrupted"),
        ("crafted", lambda p: torch.save({"w": Planted()}, p), "refused, holds more than tensors"),
        ("another model", lambda p: torch.save({"fc.weight": torch.zeros(1, 4)}, p), "do not fit model 'small_cnn'"),
    ):
        run_dir = tmp_path / name
        shutil.copytree(datscan_run.path, run_dir)
        write(run_dir / "model.pt")
        _assert_clean_error(run_cli("predict", str(run_dir), scan), "model.pt", needle)
        _assert_clean_error(run_cli("export", str(run_dir)), "model.pt", needle)
    assert not (tmp_path / "ran").exists()
    unfinished = tmp_path / "unfinished"  # killed before training ended: no model.pt, no val predictions yet
    shutil.copytree(datscan_run.path, unfinished)
    (unfinished / "model.pt").unlink()
    (unfinished / "predictions" / "val.csv").unlink()
    _assert_clean_error(run_cli("predict", str(unfinished), scan), "no model.pt; the run did not finish training")
