"""Shared fixtures: the real data folder (../shared/data or $MEDDX_DATA_DIR; skipped with a reason when absent, a
failure in CI), and the command line called in-process or, where a test needs its own interpreter, as a subprocess."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# pytest-xdist: each worker, and every process it starts, gets its share of the cores
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    from meddx.machine import usable_cores  # light: no torch, so the thread count below still takes effect

    os.environ.setdefault(
        "OMP_NUM_THREADS", str(max(1, usable_cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    )
# the decoded-image cache of this test session (shared by its tests and the processes they start), never ~/.cache
os.environ["MEDDX_CACHE_DIR"] = tempfile.mkdtemp(prefix="meddx-test-cache-")
atexit.register(shutil.rmtree, os.environ["MEDDX_CACHE_DIR"], ignore_errors=True)  # each process removes its own
REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MEDDX_DATA_DIR", REPO.parent / "shared" / "data"))
ARTIFACTS = REPO / "test-artifacts"


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip a test whose real data is absent; in CI (CI=true) fail instead, so a lost data folder cannot pass."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: real data is required)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        missing(f"real data not found at {DATA_DIR}; set MEDDX_DATA_DIR to the shared data folder")
    return DATA_DIR


def need(data_dir: Path, rel: str) -> Path:
    """A path inside the data folder, or skip naming what is missing."""
    p = data_dir / rel
    if not p.exists():
        missing(f"{p} not present in the shared data folder")
    return p


def run_cli(*args: str, timeout: int = 600, own_process: bool = False) -> subprocess.CompletedProcess:
    """Run the meddx command line as a user would (exit code, stdout, stderr): in-process through typer's CliRunner,
    with errors reported as `meddx.cli.main` reports them; `own_process` starts a new interpreter (DDP re-launches
    its command line, so it needs one)."""
    if own_process:
        return _subprocess_cli(*args, timeout=timeout)
    from typer.testing import CliRunner

    from meddx.cli import app, error_line
    from meddx.errors import MeddxError

    result = CliRunner().invoke(app, [str(a) for a in args])
    code, stderr, error = result.exit_code, result.stderr, result.exception
    if isinstance(error, MeddxError):
        code, stderr = 2, stderr + error_line(error) + "\n"
    elif error is not None and not isinstance(error, SystemExit):  # what a user would see: a traceback
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(error))
    return subprocess.CompletedProcess(["meddx", *args], code, result.stdout, stderr)


def _subprocess_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meddx", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )


@pytest.fixture(scope="session")
def datscan_run(data_dir, tmp_path_factory):
    """A small model trained on the real DaTscan slices (about 30 s on 2 cores), shared by explain/serve/export
    tests."""
    import meddx

    return meddx.train(
        {
            "name": "datscan",
            "output_dir": str(tmp_path_factory.mktemp("datscan")),
            "data": {"path": str(need(data_dir, "datscan_spect_ppmi_2d")), "image_size": 48, "normalize": "sample"},
            "train": {"max_epochs": 4, "lr": 3e-3, "batch_size": 64, "progress_bar": False},
            "evaluate": {"bootstrap": 200},
            "plan": {"enabled": False},  # a fixed recipe: the tests that use it are not about planning
        }
    )


def datscan_variant(data_dir, out, name: str, train: dict, bootstrap: int, **sections):
    """A small DaTscan run of the given training settings (the report and compare tests' variants)."""
    import meddx

    return meddx.train(
        {
            "name": name,
            "output_dir": str(out),
            "data": {"path": str(need(data_dir, "datscan_spect_ppmi_2d")), "image_size": 48, "normalize": "sample"},
            "train": {"batch_size": 64, "progress_bar": False, **train},
            "evaluate": {"bootstrap": bootstrap},
            "plan": {"enabled": False},
            **sections,
        }
    )


@pytest.fixture(scope="session")
def healthy_run(data_dir, tmp_path_factory):
    return datscan_variant(
        data_dir, tmp_path_factory.mktemp("healthy"), "healthy", {"max_epochs": 4, "lr": 3e-3}, bootstrap=500
    )


@pytest.fixture(scope="session")
def package(datscan_run, tmp_path_factory):
    """The DaTscan run exported as an ONNX package (the service tests')."""
    from meddx.export import export_run

    return export_run(datscan_run, "onnx", tmp_path_factory.mktemp("pkg") / "package")


@pytest.fixture(scope="session")
def scans(data_dir) -> list[Path]:
    """Three PD and three HC DaTscan slices (the service tests' uploads; test_bad_input has its own `scans`)."""
    root = need(data_dir, "datscan_spect_ppmi_2d") / "train"
    return sorted((root / "PD").iterdir())[:3] + sorted((root / "HC").iterdir())[:3]


# `meddx train` options of a test that trains a fixed recipe quietly (the recipe is the test's, not a plan's)
FIXED_RECIPE = ("--set", "train.progress_bar=false", "--set", "plan.enabled=false", "--set", "train.batch_size=64")

TRAINED_FIXTURES = {"datscan_run", "small_run", "package", "client", "swa_run", "collapsed_run", "healthy_run"}


def pytest_collection_modifyitems(config, items):
    """Every test that needs a trained run is `slow` (the fast tier, `make test-fast`, leaves them out); tests that
    train by themselves carry the marker explicitly."""
    for item in items:
        if TRAINED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def wait_for_health(port: int, server: subprocess.Popen) -> None:
    """Wait up to two minutes for a `meddx serve` process to answer /health; fail with its last output if it exits."""
    import httpx

    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
        if server.poll() is not None:
            break
    stream = server.stdout or server.stderr
    output = stream.read().decode()[-2000:] if server.poll() is not None and stream else ""
    pytest.fail(f"meddx serve did not start: {output}")
