"""Writes that are complete or absent: a failed write leaves the old file or folder as it was, never half of one."""

from __future__ import annotations

import json
import shutil

import pytest

from meddx.atomic import UnwritableTarget, staged_dir, write_text


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_text(path, '{"auc": 0.9}')

    class Full(OSError):
        pass

    def broken_write(self, text):  # a full disk after half the text
        with open(self, "w") as f:
            f.write(text[: len(text) // 2])
        raise Full("No space left on device")

    monkeypatch.setattr("pathlib.Path.write_text", broken_write)
    with pytest.raises(Full):
        write_text(path, json.dumps({"auc": 0.95, "pad": "x" * 1000}))
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"auc": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind


def test_an_output_path_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    """A missing folder, a file as the folder, a folder as the file, no permission: one line naming the target (they
    were tracebacks naming the temporary file); still an OSError to code that falls back on a failed write."""
    (tmp_path / "a_file").write_text("x")
    cases = {"nowhere/out.csv": "nowhere does not exist", "a_file/out.csv": "a_file is not a folder", ".": "a folder"}
    for target, needle in cases.items():
        with pytest.raises(UnwritableTarget, match=needle) as e:
            write_text(tmp_path / target, "text")
        assert isinstance(e.value, OSError) and ".partial" not in str(e.value)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".out.csv.abc.partial"))

    monkeypatch.setattr("tempfile.mkstemp", denied)
    with pytest.raises(UnwritableTarget, match=r"out.csv: cannot write it \(Permission denied\)"):
        write_text(tmp_path / "out.csv", "text")


def test_a_failed_folder_build_leaves_the_old_folder(tmp_path):
    final = tmp_path / "package"
    with staged_dir(final) as out:
        (out / "model.onnx").write_text("A")
        (out / "thresholds.json").write_text("A")
    with pytest.raises(RuntimeError), staged_dir(final) as out:
        (out / "model.onnx").write_text("B")
        raise RuntimeError("killed half way")
    assert {p.name: p.read_text() for p in final.iterdir()} == {"model.onnx": "A", "thresholds.json": "A"}
    assert [p.name for p in tmp_path.iterdir()] == ["package"]


@pytest.mark.slow
def test_a_failed_export_keeps_the_old_package_and_serve_refuses_a_failed_parity(datscan_run, tmp_path, monkeypatch):
    """A failed export into an existing package left the new model.onnx beside the old thresholds, and `meddx serve`
    accepted it (parity.json "passed": false ignored)."""
    from meddx.export import package
    from meddx.serve.predictor import Predictor

    out = package.export_run(datscan_run, "onnx", tmp_path / "pkg")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = package.parity
    monkeypatch.setattr(package, "parity", lambda *a: {**real(*a), "max_abs_diff": 0.5})
    with pytest.raises(package.ExportError, match="no package written"):
        package.export_run(datscan_run, "onnx", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"]
    Predictor(out)  # the old, complete package still serves
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "parity.json").write_text(json.dumps({"passed": False, "max_abs_diff": 0.5}))
    with pytest.raises(Exception, match="parity check failed"):
        Predictor(broken)


def test_runs_started_at_once_with_one_name_get_their_own_folders(tmp_path):
    """4 of 20 runs started at once with one --name raised FileExistsError."""
    from concurrent.futures import ThreadPoolExecutor

    from meddx.config import as_config
    from meddx.training.writer import new_run_dir

    cfg = as_config(None, {"name": "same", "output_dir": str(tmp_path / "runs")})
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: new_run_dir(cfg), range(20)))
    assert len(set(folders)) == 20 and all(f.is_dir() for f in folders)


@pytest.mark.slow
def test_a_run_folder_works_from_any_working_directory(data_dir, tmp_path):
    """Trained with a relative data path, a run could not be exported or served from another working directory."""
    import os
    import subprocess
    import sys

    from conftest import need

    source = need(data_dir, "datscan_spect_ppmi_2d")
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(source, work / "scans")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    meddx = [sys.executable, "-m", "meddx"]
    settings = ["plan.enabled=false", "data.image_size=32", "evaluate.bootstrap=0", "train.progress_bar=false"]
    train = [*meddx, "train", "--data", "scans", "--epochs", "1", "--name", "rel"]
    train += [arg for s in settings for arg in ("--set", s)]
    done = subprocess.run(train, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    export = subprocess.run([*meddx, "export", str(work / "runs" / "rel")], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert export.returncode == 0, export.stderr[-2000:]
    assert (work / "runs" / "rel" / "package" / "model.onnx").is_file()


def test_written_files_and_folders_get_the_usual_modes_not_the_temporary_ones(tmp_path):
    """Files were renamed from mkstemp's 0600 and packages from mkdtemp's 0700: a package copied for a service account
    could not be read. They now get what open() and mkdir() would give under the umask."""
    import os
    import stat

    from meddx.atomic import UMASK

    assert stat.S_IMODE(os.stat(write_text(tmp_path / "config.yaml", "a: 1\n")).st_mode) == 0o666 & ~UMASK
    with staged_dir(tmp_path / "package") as folder:
        write_text(folder / "card.md", "card")
    assert stat.S_IMODE(os.stat(tmp_path / "package").st_mode) == 0o777 & ~UMASK
    assert stat.S_IMODE(os.stat(tmp_path / "package" / "card.md").st_mode) == 0o666 & ~UMASK
