"""Shared fixtures: the real data folder (../shared/data or $MEDDX_DATA_DIR), skipped with a reason when absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MEDDX_DATA_DIR", REPO.parent / "shared" / "data"))
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"real data not found at {DATA_DIR}; set MEDDX_DATA_DIR to the shared data folder")
    return DATA_DIR


def need(data_dir: Path, rel: str) -> Path:
    """A path inside the data folder, or skip naming what is missing."""
    p = data_dir / rel
    if not p.exists():
        pytest.skip(f"{p} not present in the shared data folder")
    return p


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the meddx command line as a user would; returns the completed process (text output)."""
    return subprocess.run([sys.executable, "-m", "meddx", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})


@pytest.fixture(scope="session")
def datscan_run(data_dir, tmp_path_factory):
    """A small model trained on the real DaTscan slices (about 30 s on 2 cores), shared by explain/serve/export tests."""
    import meddx

    return meddx.train({
        "name": "datscan", "output_dir": str(tmp_path_factory.mktemp("datscan")),
        "data": {"path": str(need(data_dir, "datscan_spect_ppmi_2d")), "image_size": 48, "normalize": "sample"},
        "train": {"max_epochs": 4, "lr": 3e-3, "batch_size": 64, "progress_bar": False}, "evaluate": {"bootstrap": 200},
    })
