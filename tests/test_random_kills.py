"""`meddx export` and `meddx evaluate` killed with SIGKILL at random moments: a later load never accepts a half file.
The package is complete (it loads, its parity passed, it predicts) and every metrics, predictions and report file of
the run reads whole. CI kills each 3 times; `make reliability` 10 (MEDDX_KILL_TRIES)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow
TRIES = int(os.environ.get("MEDDX_KILL_TRIES", 3))
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "meddx", *args]


def _run_to_end(cmd: list[str]) -> None:
    """Run a command to its end; it must succeed."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _seconds_to_finish(cmd: list[str]) -> float:
    """Run a command to its end; its wall time sets the window the kills are drawn from (never asserted on)."""
    started = time.perf_counter()
    _run_to_end(cmd)
    return time.perf_counter() - started


def _kill_at_random(cmd: list[str], total: float, rng: random.Random) -> None:
    """Start `cmd` and SIGKILL it at a moment drawn from its second half to just past its end (importing meddx
    takes the first part; a kill after the end kills nothing)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    time.sleep(rng.uniform(0.4 * total, 1.05 * total))
    proc.kill()
    proc.wait()


def test_a_killed_export_leaves_a_complete_package(datscan_run, tmp_path):
    from meddx.serve.predictor import Predictor

    out = tmp_path / "pkg"
    cmd = _cli("export", str(datscan_run.path), "-o", str(out))
    total = _seconds_to_finish(cmd)
    files = sorted(p.name for p in out.iterdir())
    image = next(Path(datscan_run.config.data.path).rglob("*.png"))
    rng = random.Random(0)
    for _ in range(TRIES):
        _kill_at_random(cmd, total, rng)
        assert sorted(p.name for p in out.iterdir()) == files  # the old package or the new one, never a mix
        assert json.loads((out / "parity.json").read_text())["passed"]
        assert Predictor(out).predict(image.read_bytes())["probabilities"]
    _run_to_end(cmd)  # and the next export still succeeds over what the kills left


def test_a_killed_evaluate_never_leaves_a_half_file(datscan_run, tmp_path):
    import meddx

    run = Path(shutil.copytree(datscan_run.path, tmp_path / "run"))
    cmd = _cli("evaluate", str(run))
    total = _seconds_to_finish(cmd)
    rows = {p.name: len(pd.read_csv(p)) for p in (run / "predictions").glob("*.csv")}
    rng = random.Random(1)
    for _ in range(TRIES):
        _kill_at_random(cmd, total, rng)
        for path in run.rglob("*.json"):
            json.loads(path.read_text())  # every JSON file whole
        assert {p.name: len(pd.read_csv(p)) for p in (run / "predictions").glob("*.csv")} == rows
        assert (run / "report.html").read_text().rstrip().endswith("</html>")
        assert meddx.load_run(run).metrics()["model"]["per_label"]
    _run_to_end(cmd)  # and the next evaluation still succeeds
