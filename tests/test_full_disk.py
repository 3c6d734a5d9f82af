"""A full disk: training into a 600 KB tmpfs (mounted in a private user and mount namespace, no root needed) stops
with one line, status.json says failed, and nothing looks complete (no model.pt, no report); an output folder that
cannot be made is one line."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest
from test_bad_input import _assert_clean_error
from test_tricks import _synthetic

from conftest import run_cli

pytestmark = pytest.mark.slow


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _namespaces_work(), reason="no user/mount namespaces here to mount a small tmpfs")
def test_training_onto_a_full_disk_is_one_line_and_a_failed_run(tmp_path):
    _synthetic(tmp_path / "train.csv", n=240)
    disk = tmp_path / "disk"
    disk.mkdir()
    train = [sys.executable, "-m", "meddx", "train", "--data", str(tmp_path / "train.csv"), "--output-dir", str(disk),
             "--name", "full", "--model", "bigru", "--epochs", "2", "--set", "plan.enabled=false", "--set",
             "train.progress_bar=false", "--set", "evaluate.bootstrap=0"]  # fmt: skip
    run = disk / "full"
    script = (
        f"mount -t tmpfs -o size=600k tmpfs {disk} && {shlex.join(train)}; echo EXIT=$?; "
        f"echo STATUS; cat {run}/status.json; echo FILES; ls {run}"
    )
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert "EXIT=2" in out.stdout, (out.stdout[-2000:], out.stderr[-3000:])
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("meddx: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in out.stderr
    status = out.stdout.split("STATUS", 1)[1].split("FILES", 1)[0]
    files = out.stdout.split("FILES", 1)[1].split()
    assert '"failed"' in status and "No space left" in status
    assert "model.pt" not in files and "report.html" not in files and "metrics.json" not in files


@pytest.mark.parametrize("where", ["a_file", "a_file/below"])
def test_an_output_dir_that_cannot_be_made_is_one_line(tmp_path, where):
    """A file where the output folder (or a folder above it) goes: FileExistsError or NotADirectoryError tracebacks."""
    _synthetic(tmp_path / "train.csv", n=40)
    (tmp_path / "a_file").write_text("not a folder")
    args = ["--name", "x", "--model", "bigru", "--set", "plan.enabled=false", "--set", "train.progress_bar=false"]
    proc = run_cli("train", "--data", str(tmp_path / "train.csv"), "--output-dir", str(tmp_path / where), *args)
    _assert_clean_error(proc, "a_file", "cannot make the run folder there")
