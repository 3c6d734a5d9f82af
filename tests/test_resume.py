"""Nothing lost when a run is killed: `meddx train --resume RUN` continues from the last checkpoint (optimiser,
scheduler, early stopping, random generators) and ends where an uninterrupted run of the same seed ends; status.json
and `meddx runs` say which runs are complete, interrupted or failed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import need, run_cli

pytestmark = pytest.mark.slow


def _command(data, out, name):
    return [
        sys.executable, "-m", "meddx", "train", "--data", str(data), "--output-dir", str(out), "--name", name,
        "--epochs", "7", "--set", "plan.enabled=false", "--set", "train.progress_bar=false", "--set",
        "train.patience=20", "--set", "data.image_size=40", "--set", "train.batch_size=64", "--set",
        "evaluate.bootstrap=100",
    ]  # fmt: skip


def _killed_mid_run(data, out, name, seed: int):
    """Start a training, SIGKILL it at a random moment after its second epoch's checkpoint; its folder."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(_command(data, out, name), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / name / "logs" / "metrics.csv"
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and metrics.read_text().count("\n") >= 3:  # at least two epochs logged
            break
        time.sleep(0.2)
    time.sleep(random.Random(seed).uniform(0.0, 2.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return out / name


def test_a_killed_run_resumes_to_the_same_result(data_dir, tmp_path):
    data = need(data_dir, "datscan_spect_ppmi_2d")
    straight = subprocess.run(_command(data, tmp_path, "straight"), capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = _killed_mid_run(data, tmp_path, "killed", seed=int(time.time()))
    assert not (killed / "model.pt").exists(), "the run finished before it could be killed"
    listing = run_cli("runs", str(tmp_path))
    assert listing.returncode == 0 and "interrupted" in listing.stdout and "complete" in listing.stdout
    _refused = run_cli("evaluate", str(killed))
    assert _refused.returncode == 2 and "Traceback" not in _refused.stderr
    resumed = run_cli("train", "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = (json.loads((tmp_path / n / "training.json").read_text()) for n in ("straight", "killed"))
    assert a["best_epoch"] == b["best_epoch"] and a["epochs_run"] == b["epochs_run"] == 7
    assert b["best_val_loss"] == pytest.approx(a["best_val_loss"], abs=1e-4)
    assert b["initial_val_loss"] == pytest.approx(a["initial_val_loss"], abs=1e-9)
    assert [r["epoch"] for r in b["history"]] == [r["epoch"] for r in a["history"]] == list(range(1, 8))  # none lost
    assert b["train_samples_seen"] == a["train_samples_seen"]  # counted over the whole training, not since the resume
    assert a["seconds_before_resume"] == 0 and 0 < b["seconds_before_resume"] < b["seconds"]
    assert [r["val_loss"] for r in b["history"]] == pytest.approx([r["val_loss"] for r in a["history"]], abs=1e-4)
    auc = [json.loads((tmp_path / n / "metrics.json").read_text())["model"]["per_label"]["PD"]["roc_auc"]["value"]
           for n in ("straight", "killed")]  # fmt: skip
    assert auc[1] == pytest.approx(auc[0], abs=1e-3)
    assert json.loads((killed / "status.json").read_text())["state"] == "complete"
    logged = [pd.read_csv(tmp_path / n / "logs" / "metrics.csv") for n in ("straight", "killed")]
    assert sorted(set(logged[1]["epoch"].dropna())) == sorted(set(logged[0]["epoch"].dropna()))  # was emptied
    again = run_cli("train", "--resume", str(killed))
    assert again.returncode == 2 and "already finished" in again.stderr


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    from meddx.training.plan import Plan

    assert run_cli("train", "--resume", str(tmp_path)).stderr.count("not a run folder") == 1
    (tmp_path / "config.yaml").write_text("name: x\n")
    proc = run_cli("train", "--resume", str(tmp_path), "--epochs", "3")
    assert proc.returncode == 2 and "give no other option" in proc.stderr
    (tmp_path / "members").mkdir()  # a search's folder that lost what it needs: one line naming what is missing
    (tmp_path / "status.json").write_text(json.dumps({"state": "failed", "kind": "search"}))
    older = json.dumps(Plan({}, 15, "cpu", selection={"epochs": 3}).to_dict())  # a search's record lacking candidates
    for plan, missing in ((None, "no plan.json"), (older, "no candidates"), ("{", "plan.json: not a plan")):
        if plan is not None:
            (tmp_path / "plan.json").write_text(plan)
        proc = run_cli("train", "--resume", str(tmp_path))
        assert proc.returncode == 2 and missing in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


class _Planted:
    """A pickle whose loading would run a command (it writes a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_checkpoint_never_runs(data_dir, tmp_path, monkeypatch):
    """A crafted last.ckpt ran its command on resume with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 set; now it is refused
    with one line, the variable or not."""
    import torch

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    data = need(data_dir, "datscan_spect_ppmi_2d")
    killed = _killed_mid_run(data, tmp_path, "victim", seed=0)
    marker = tmp_path / "ran"
    torch.save({"state_dict": {}, "payload": _Planted(marker)}, killed / "checkpoints" / "last.ckpt")
    proc = run_cli("train", "--resume", str(killed))
    assert proc.returncode == 2 and "refused, not a plain checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()
    assert json.loads((killed / "status.json").read_text())["state"] == "failed"


def test_a_killed_planned_ensemble_keeps_its_finished_members(data_dir, tmp_path):
    """`meddx train --data X` often trains a planned ensemble of seeds: killed during its second member, the resume
    keeps the first member as it was, finishes the second and trains the third, then averages and evaluates."""
    data = need(data_dir, "datscan_spect_ppmi_2d")
    command = [
        sys.executable, "-m", "meddx", "train", "--data", str(data), "--output-dir", str(tmp_path), "--name", "ens",
        "--epochs", "3", "--set", "train.ensemble=3", "--set", "data.image_size=40", "--set", "plan.select=false",
        "--set", "train.progress_bar=false", "--set", "evaluate.bootstrap=100",
    ]  # fmt: skip
    proc = subprocess.Popen(command, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    base, deadline = tmp_path / "ens", time.time() + 900
    while time.time() < deadline and proc.poll() is None and not (base / "members" / "seed1" / "logs").is_dir():
        time.sleep(0.2)
    time.sleep(random.Random().uniform(0.5, 2.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (base / "members" / "seed0" / "model.pt").is_file() and not (base / "ensemble.json").exists()
    kept = (base / "members" / "seed0" / "training.json").read_text()
    assert "interrupted" in run_cli("runs", str(tmp_path)).stdout
    resumed = run_cli("train", "--resume", str(base))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    members = json.loads((base / "ensemble.json").read_text())["members"]
    assert members == ["members/seed0", "members/seed1", "members/seed2"]
    assert (base / "members" / "seed0" / "training.json").read_text() == kept  # kept, not trained again
    assert json.loads((base / "status.json").read_text())["state"] == "complete" and (base / "metrics.json").is_file()


def test_cross_validation_goes_on_after_a_fold_that_did_not_finish(data_dir, tmp_path):
    """`meddx cv` refused to go on after a killed fold until its folder was removed by hand; now it resumes it."""
    import meddx
    from meddx.training.cv import cross_validate

    cfg = {"name": "cv", "output_dir": str(tmp_path), "plan": {"enabled": False}, "evaluate": {"bootstrap": 0},
           "data": {"path": str(need(data_dir, "datscan_spect_ppmi_2d")), "image_size": 32},
           "train": {"max_epochs": 2, "progress_bar": False, "diagnostics": False}}  # fmt: skip
    cv_dir = cross_validate(cfg, folds=2, only_folds=[0])
    fold = cv_dir / "fold0"
    (fold / "model.pt").unlink()  # as if killed after its last checkpoint, before model.pt
    (fold / "status.json").write_text(json.dumps({"state": "failed", "reason": "killed", "pid": 0}))
    cross_validate(cfg, folds=2, only_folds=[0])
    assert (fold / "model.pt").is_file() and meddx.load_run(fold).predictions("test").shape[0] > 0
    assert json.loads((fold / "status.json").read_text())["state"] == "trained"


_SEARCH = """
import sys
import meddx
import meddx.training.search as search
search.target_epochs = lambda steps: 3  # a few epochs per candidate (the budget arithmetic is tested apart)
search.MIN_EPOCHS = 3
meddx.train({"data": {"path": sys.argv[1], "image_size": 16}, "output_dir": sys.argv[2], "name": "search",
             "plan": {"budget_minutes": 2, "max_ensemble": 2}, "train": {"progress_bar": False, "batch_size": 64},
             "evaluate": {"bootstrap": 50}})
"""


def _killed_during_the_search(npz, out):
    """Start a planned BreastMNIST run that tries two candidates on val; SIGKILL it once a member has finished and a
    later one has written a checkpoint. Its folder, and the finished members' (model.pt, training.json)."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen([sys.executable, "-c", _SEARCH, str(npz), str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    members, deadline = out / "search" / "members", time.time() + 900
    while time.time() < deadline and proc.poll() is None:  # members train one after another
        folders = list(members.iterdir()) if members.is_dir() else []
        cut = [f for f in folders if (f / "checkpoints" / "last.ckpt").is_file() and not (f / "model.pt").exists()]
        if cut and any(_state(f) == "trained" for f in folders):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [f for f in members.iterdir() if _state(f) == "trained"]
    return out / "search", {f.name: ((f / "model.pt").read_bytes(), (f / "training.json").read_text()) for f in done}


def _state(folder):
    status = folder / "status.json"
    return json.loads(status.read_text())["state"] if status.is_file() else ""


def test_a_search_killed_between_candidates_resumes(data_dir, tmp_path):
    """`meddx train --data X` tries the plan's alternatives on val when the budget allows: killed while a later
    candidate trains, the resume keeps the finished members byte for byte, resumes the one cut short from its last
    checkpoint and trains the rest with the epochs the search recorded (not planned again), then chooses on val,
    averages the winner's seeds and evaluates (it was refused: "train it again")."""
    npz = need(data_dir, "medmnist/breastmnist.npz")
    base, kept = _killed_during_the_search(npz, tmp_path)
    members = base / "members"
    cut = [f for f in members.iterdir() if f.name not in kept]
    assert kept and cut and not any((f / "model.pt").exists() for f in cut), "not killed between two members"
    assert json.loads((base / "status.json").read_text())["kind"] == "search" and not (base / "ensemble.json").exists()
    resumed = run_cli("train", "--resume", str(base))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name, (weights, training) in kept.items():  # kept, not trained again
        assert (members / name / "model.pt").read_bytes() == weights
        assert (members / name / "training.json").read_text() == training
    sel = json.loads((base / "plan.json").read_text())["selection"]
    names = ["small_cnn 16 px", "small_cnn_wide 16 px"]
    assert list(sel["candidates"]) == [r["candidate"] for r in sel["rows"]] == names and sel["chosen"] in names
    assert sel["epochs"] == 3  # the search's recorded epochs: a new plan would have chosen 15 or more
    slugs = [n.replace(" ", "") for n in names]
    assert sorted(f.name for f in members.iterdir()) == [f"{s}-seed{k}" for s in slugs for k in (0, 1)]
    for folder in members.iterdir():
        assert json.loads((folder / "status.json").read_text())["state"] == "trained"
        assert "max_epochs: 3" in (folder / "config.yaml").read_text()
    history = json.loads((cut[0] / "training.json").read_text())["history"]
    assert [r["epoch"] for r in history] == list(range(1, len(history) + 1))  # the epochs before the kill kept
    winner = sel["chosen"].replace(" ", "")
    assert json.loads((base / "ensemble.json").read_text())["members"] == [f"members/{winner}-seed{k}" for k in (0, 1)]
    assert json.loads((base / "status.json").read_text())["state"] == "complete" and (base / "metrics.json").is_file()


def test_a_search_killed_after_its_choice_does_not_choose_again(tmp_path):
    """The verdict saved in plan.json is kept (no second choice), and the winner's seeds the top-up had begun are
    finished before any more are weighed against the budget."""
    from meddx.config import as_config
    from meddx.training.plan import Plan
    from meddx.training.search import Candidate, settle

    class Finished:
        training = {"seconds": 1.0}

    wide, name = {"model.name": "small_cnn_wide"}, "small_cnn_wide 64 px"
    tried = [Candidate("small_cnn 64 px", {}, as_config({}), None, 1.0),
             Candidate(name, wide, as_config({"model": {"name": "small_cnn_wide"}}), None, 2.0)]  # fmt: skip
    verdict = {"epochs": 3, "repeats": 2, "chosen": name, "reason": "planted"}
    plan = Plan({}, 1, "cpu", alternatives=[{"name": name, "set": wide}], selection=verdict)
    (tmp_path / "members" / "small_cnn_wide64px-seed2").mkdir(parents=True)  # begun by the top-up, then killed
    asked = []

    def choose(*_):
        raise AssertionError("chose again")

    members, _, cfg = settle(as_config({}), tried, plan, choose, tmp_path, lambda c, i: asked.append((c.name, i))
                             or Finished(), 0.0, 0.0)  # fmt: skip
    assert asked[-1] == (name, 2) and len(asked) == 5 and len(members) == 3
    assert cfg.model.name == "small_cnn_wide" and cfg.train.ensemble == 3 and cfg.train.max_epochs == 3


def test_a_search_whose_alternatives_were_skipped_says_no_choice_was_made_on_val(tmp_path, monkeypatch):
    """Every alternative skipped (a machine slower than at the pilot): the rules' candidate won unopposed, yet its
    choices said "validation"; they are the rules' own now, and say why."""
    from meddx.config import as_config
    from meddx.training import search
    from meddx.training.plan import Plan

    class Finished:
        training = {"seconds": 1.0}

    wide, name = {"model.name": "small_cnn_wide"}, "small_cnn_wide 64 px"
    tried = [search.Candidate("small_cnn 64 px", {}, as_config({}), None, 1.0),
             search.Candidate(name, wide, as_config({"model": {"name": "small_cnn_wide"}}), None, 2.0)]  # fmt: skip
    plan = Plan({}, 1, "cpu", alternatives=[{"name": name, "set": wide}], selection={"epochs": 3, "repeats": 2})
    search.Planner(as_config({}), plan).choose("model.name", "small_cnn", "the rules' small CNN")
    monkeypatch.setattr(search, "_candidate_fits", lambda *_: False)

    def choose(*_):
        raise AssertionError("nothing to choose between")

    search.settle(as_config({}), tried, plan, choose, tmp_path, lambda c, i: Finished(), 0.0, 0.0)
    assert plan.selection["chosen"] == "small_cnn 64 px" and plan.selection["skipped"][0].startswith(name)
    (model,) = [c for c in plan.choices if c.field == "model.name"]
    assert model.source == "rule" and "the others were skipped" in model.reason and "on val" not in model.reason


def test_the_log_of_a_run_resumed_twice_keeps_every_epoch(tmp_path):
    """Lightning empties logs/metrics.csv on a resume; the earlier rows were held in memory only, so a second kill, a
    resume killed before it logged, or a torn file lost them. They are kept beside logs/ until put back."""
    from meddx.training.fit import log_kept

    log = tmp_path / "logs" / "metrics.csv"
    log.parent.mkdir()

    def lightning_writes(epochs):  # what the CSVLogger does on a resume: empty the folder, log from the resumed epoch
        log.unlink(missing_ok=True)
        pd.DataFrame({"epoch": epochs, "val_loss": [0.1] * len(epochs)}).to_csv(log, index=False)

    lightning_writes([0, 1, 2, 3, 4])
    with pytest.raises(KeyboardInterrupt), log_kept(tmp_path):  # killed after logging epochs 4-6 again
        lightning_writes([4, 5, 6])
        raise KeyboardInterrupt
    assert pd.read_csv(log)["epoch"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    (tmp_path / "metrics-before-resume.csv").write_text(log.read_text())  # a SIGKILL: the copy stays aside
    lightning_writes([6, 7])  # ... and the killed resume had logged on
    with log_kept(tmp_path):
        lightning_writes([7, 8, 9])
    assert pd.read_csv(log)["epoch"].tolist() == list(range(10))
    assert not (tmp_path / "metrics-before-resume.csv").exists()
    log.write_text("")  # torn: the resume goes on, and what it logs is kept
    with log_kept(tmp_path):
        lightning_writes([9])
    assert pd.read_csv(log)["epoch"].tolist() == [9]


def test_a_run_stopped_by_ctrl_c_or_sigterm_is_interrupted_not_failed(tmp_path):
    """SIGTERM (what schedulers and timeouts send) left 'failed' with the reason 'SIGTERMException: '; the README
    calls such a run interrupted, and --resume continues it."""
    from meddx.run import read_status
    from meddx.training.fit import _failure_recorded

    class SIGTERMException(SystemExit):  # Lightning's, by name
        pass

    def lightnings_ctrl_c():  # Lightning ends Ctrl-C with SystemExit(1) raised while handling the KeyboardInterrupt
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemExit(1) from None

    def raise_(stop):
        raise stop()

    cases = ((KeyboardInterrupt, lambda: raise_(KeyboardInterrupt), "interrupted"),
             (SIGTERMException, lambda: raise_(SIGTERMException), "interrupted"),
             (SystemExit, lightnings_ctrl_c, "interrupted"),
             (SystemExit, lambda: raise_(SystemExit), "failed"),  # a sys.exit() in a callback is no interruption
             (ValueError, lambda: raise_(ValueError), "failed"))  # fmt: skip
    for stop, act, state in cases:
        with pytest.raises(stop), _failure_recorded(tmp_path):
            act()
        info = read_status(tmp_path)
        assert info["state"] == state and (state == "failed" or "--resume continues it" in info["reason"])


def test_a_folder_evaluated_without_its_report_is_not_called_complete(tmp_path):
    """An ensemble whose report failed to render kept metrics.json and no status.json: `meddx runs` said complete."""
    from meddx.run import read_status

    assert read_status(tmp_path)["state"] == "unknown"
    (tmp_path / "metrics.json").write_text("{}")
    assert read_status(tmp_path) == {"state": "failed", "reason": "evaluated, but no report written"}
    (tmp_path / "report.html").write_text("<html></html>")
    assert read_status(tmp_path)["state"] == "complete"
