"""Terminal hygiene: library noise diverted to the run's log, progress bars only where a person watches."""

from __future__ import annotations

import subprocess
import sys

from meddx.logs import progress


def _stderr_of(code: str) -> str:
    """What a fresh process running `code` writes to stderr (pytest records warnings itself); it must succeed."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_noise_goes_to_the_run_log_and_other_warnings_still_show(tmp_path):
    """In a fresh process (pytest records warnings itself): a torchmetrics warning lands in meddx.log, meddx's own
    collapse warning still reaches stderr."""
    code = (
        "import warnings; from meddx.logs import quiet_third_party, run_log; quiet_third_party()\n"
        f"with run_log({str(tmp_path)!r}):\n"
        "    warnings.warn('No positive samples in targets, true positive value should be meaningless')\n"
        "    warnings.warn(\"'set_vital' is deprecated, please do not call\")\n"
        "    warnings.warn('model collapse: every output the same')\n"
        "    from meddx.errors import MeddxWarning; warnings.warn('epoch 1: model collapse (ours)', MeddxWarning)\n"
        "    warnings.warn('Experiment logs directory runs/x/logs/ exists and is not empty. Previous log files ...')\n"
        "    warnings.warn('The number of training batches (3) is smaller than the logging interval ...')\n"
    )
    stderr = _stderr_of(code)
    assert "model collapse" in stderr and "No positive samples" not in stderr and "set_vital" not in stderr
    assert "Experiment logs directory" not in stderr and "logging interval" not in stderr
    assert "\nWARNING: epoch 1: model collapse (ours)\n" in stderr and "MeddxWarning" not in stderr  # one line
    assert "No positive samples" in (tmp_path / "meddx.log").read_text()


def test_progress_only_on_a_terminal_and_for_long_work(monkeypatch):
    items = list(range(1000))
    assert progress(items, "x") is items  # pytest's stderr is not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress(items[:10], "x") == items[:10]  # too short to bother
    shown = progress(items, "decoding")
    assert shown is not items and list(shown) == items


def test_tables_piped_or_logged_are_not_cut_to_80_columns():
    """`meddx compare ... | tee` cut intervals to '(0.8266-0.94…': piped, the console is 160 columns wide."""
    code = "from meddx.logs import terminal; print(terminal().width)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "160", proc.stderr


def test_the_learning_rate_finder_keeps_library_noise_off_a_notebook():
    """`meddx.train` from Python showed torchdata's 'set_vital' and Lightning's 'no val_dataloader' warnings: the
    learning-rate finder ran before the first Trainer installed the filter."""
    code = (
        "import warnings\nfrom meddx.training.trainer import quiet_lightning\n"
        "with quiet_lightning():\n"
        "    warnings.warn(\"'set_vital' is deprecated, please do not call\")\n"
        "    warnings.warn('You defined a `validation_step` but have no `val_dataloader`. Skipping val loop.')\n"
        "    warnings.warn('model collapse: every output the same')\n"
    )
    stderr = _stderr_of(code)
    assert "model collapse" in stderr and "set_vital" not in stderr and "val_dataloader" not in stderr
