"""Choices made on val: the paired comparison of candidates (ties go to the cheaper one), which alternatives the plan
offers, when the search runs, and a planned run that tries two candidates and keeps the winner's seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest

import meddx
import meddx.training.search as search_module
from meddx.config import as_config
from meddx.evaluation.evaluation import bootstrap_weights
from meddx.evaluation.selection import CI, RESAMPLES, SEED, compare_predictions, macro_auc
from meddx.training.plan import Plan
from meddx.training.search import should_search

from conftest import need


def _scores(y: np.ndarray, separation: float, rng: np.random.Generator) -> np.ndarray:
    return 1 / (1 + np.exp(-(separation * (y - 0.5) + rng.normal(size=len(y)))))


def test_a_clearly_better_candidate_wins_even_when_dearer():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    preds = {"cheap": _scores(y, 0.5, rng), "dear": _scores(y, 4.0, rng)}
    verdict = compare_predictions(y, np.arange(600), preds, {"cheap": 1.0, "dear": 5.0})
    assert verdict["chosen"] == "dear" and "is worse by more than the paired interval" in verdict["reason"]
    cheap = verdict["rows"][0]
    assert cheap["candidate"] == "cheap" and not cheap["as_good_as_best"] and cheap["diff_ci"][1] < 0
    assert cheap["ci"][0] < cheap["val_auc"] < cheap["ci"][1]


def test_a_tie_goes_to_the_cheaper_candidate():
    """On 40 val patients two candidates of nearly equal skill cannot be told apart: the cheaper one is chosen even
    though the dearer one has the higher point estimate."""
    rng = np.random.default_rng(1)
    y = np.tile([0, 1], 20)
    base = _scores(y, 2.0, rng)
    preds = {"dear": base + 0.05 * y * rng.random(40), "cheap": base}
    verdict = compare_predictions(y, np.arange(40), preds, {"cheap": 1.0, "dear": 3.0})
    assert verdict["rows"][0]["val_auc"] >= verdict["rows"][1]["val_auc"]  # the dearer is ahead on the point figure
    assert verdict["chosen"] == "cheap" and "a tie goes to the cheaper or simpler model" in verdict["reason"]
    costs = {"rule": 7.6, "other": 7.5}
    same_cost = compare_predictions(y, np.arange(40), {"rule": base, "other": preds["dear"]}, costs)
    assert same_cost["chosen"] == "rule" and "the rules' own choice" in same_cost["reason"]  # 7.5 s is not cheaper


def test_images_of_a_patient_are_resampled_together():
    """Multi-label, two images per patient: the bootstrap draws patients, so the interval is wider than per image."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, (100, 2))
    y, p = np.repeat(y, 2, axis=0), np.repeat(np.clip(y + rng.normal(0, 0.8, y.shape), 0, 1), 2, axis=0)
    by_patient = compare_predictions(y, np.repeat(np.arange(100), 2), {"a": p}, {"a": 1.0})["rows"][0]
    by_image = compare_predictions(y, np.arange(200), {"a": p}, {"a": 1.0})["rows"][0]
    assert by_patient["val_auc"] == by_image["val_auc"]
    assert by_patient["ci"][1] - by_patient["ci"][0] > by_image["ci"][1] - by_image["ci"][0]


def test_the_paired_intervals_are_those_of_the_whole_weight_matrix():
    """The fused pass draws the resamples in chunks; its AUCs, intervals and paired differences are those of
    `macro_auc` on the whole (1 + B, N) weight matrix of the same seed (unknown labels, ties, shared patients)."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (300, 2)).astype(float)
    y[rng.random(300) < 0.1, 1] = np.nan
    preds = {name: np.round(np.clip(s * np.nan_to_num(y) + rng.random((300, 2)), 0, 1), 1) for name, s in
             (("weak", 0.1), ("strong", 0.4), ("close", 0.35))}  # fmt: skip
    patients = rng.integers(0, 200, 300)
    verdict = compare_predictions(y, patients, preds, {"weak": 1.0, "strong": 2.0, "close": 1.5})
    w = np.vstack([np.ones(300), bootstrap_weights(patients, RESAMPLES, SEED)])
    aucs = {name: macro_auc(y, p, w) for name, p in preds.items()}
    q = [(1 - CI) / 2, (1 + CI) / 2]
    for row in verdict["rows"]:
        a, d = aucs[row["candidate"]], aucs[row["candidate"]] - aucs["strong"]
        assert row["val_auc"] == round(a[0], 4) and row["diff_from_best"] == round(d[0], 4)
        assert row["ci"] == [round(x, 4) for x in np.quantile(a[1:], q)]
        assert row["diff_ci"] == [round(x, 4) for x in np.quantile(d[1:], q)], row
    assert [r["as_good_as_best"] for r in verdict["rows"]] == [False, True, True] and verdict["chosen"] == "close"


def test_the_search_runs_only_where_the_plan_is_free_to_choose():
    plan = Plan({}, 10, "cpu", alternatives=[{"name": "resnet18 64 px", "set": {"model.name": "resnet18"}}])
    assert should_search(as_config({}), plan, distributed=False) == (True, "")
    assert not should_search(as_config({}), plan, distributed=True)[0]
    assert "fixed the epochs" in should_search(as_config({"train": {"max_epochs": 3}}), plan, False)[1]
    assert not should_search(as_config({"plan": {"select": False}}), plan, False)[0]
    assert not should_search(as_config({}), Plan({}, 10, "cpu"), False)[0]


@pytest.mark.slow
def test_a_planned_run_chooses_on_val_and_keeps_the_winners_seeds(data_dir, tmp_path, monkeypatch):
    """A few epochs per candidate (the budget arithmetic and the busy-machine skip are tested apart) and a budget that
    fits both BreastMNIST candidates however loaded the machine is, so both are trained."""
    npz = need(data_dir, "medmnist/breastmnist.npz")
    monkeypatch.setattr(search_module, "target_epochs", lambda steps: 3)
    monkeypatch.setattr(search_module, "MIN_EPOCHS", 3)
    monkeypatch.setattr(search_module, "_candidate_fits", lambda *args: True)
    run = meddx.train(
        {
            "data": {"path": str(npz)},
            "output_dir": str(tmp_path),
            "name": "chosen",
            "plan": {"budget_minutes": 10, "max_ensemble": 3},
            "train": {"progress_bar": False},
            "evaluate": {"bootstrap": 50},
        }
    )
    sel = run.plan["selection"]
    assert [r["candidate"] for r in sel["rows"]] == ["small_cnn 28 px", "small_cnn_wide 28 px"]
    assert sel["chosen"] in ("small_cnn 28 px", "small_cnn_wide 28 px") and sel["epochs"] == 3
    slug = sel["chosen"].replace(" ", "")
    members = json.loads((run.path / "ensemble.json").read_text())["members"]
    assert members[:2] == [f"members/{slug}-seed0", f"members/{slug}-seed1"] and len(members) <= 3
    assert len(list((run.path / "members").iterdir())) == 2 + len(members)  # the loser's two seeds stay, unused
    for folder in (run.path / "members").iterdir():  # each member's config names its own model (a shared data
        model_name = "small_cnn_wide" if "wide" in folder.name else "small_cnn"  # module once named the other's)
        assert meddx.load_run(folder).config.model.name == model_name, folder
    assert run.predict(run.records("test")[:4]).shape[0] == 4  # the ensemble's members load from their configs
    chosen_model = "small_cnn_wide" if "wide" in slug else "small_cnn"
    assert run.config.model.name == chosen_model and run.config.train.ensemble == len(members)
    model = next(c for c in run.plan["choices"] if c["field"] == "model.name")
    assert model["source"] == "validation" and model["value"] == chosen_model
    report = (run.path / "report.md").read_text()
    assert "Chosen on validation only" in report and "small_cnn_wide 28 px" in report
    tta = run.plan["tta"]  # test-time augmentation judged on val after training, recorded with its verdict
    assert [r["candidate"] for r in tta["rows"]] == ["off", "on"] and tta["rows"][1]["passes_per_image"] == 5
    choice = next(c for c in run.plan["choices"] if c["field"] == "model.tta")
    assert choice["source"] == "validation" and choice["value"] == (tta["chosen"] == "on") == run.config.model.tta
    assert "Test-time augmentation, judged on val" in report and "forward passes per image" in report


@pytest.mark.slow
def test_a_search_on_a_busy_machine_skips_candidates_that_would_pass_the_budget(data_dir, tmp_path, monkeypatch):
    """The search trained two seeds of every candidate however busy the machine had become since the pilot; now a
    candidate not yet begun is skipped when its seeds, slowed like the ones before, would end past the budget, and
    plan.json says so (a resumed search does not train it)."""
    import time

    npz = need(data_dir, "medmnist/breastmnist.npz")
    monkeypatch.setattr(search_module, "target_epochs", lambda steps: 2)
    monkeypatch.setattr(search_module, "MIN_EPOCHS", 2)
    lost, real_clock, real_fit = [0.0], time.monotonic, search_module.fit

    def busy_fit(*args, **kwargs):  # each member leaves the clock 15 minutes further on: others now share the cores
        run = real_fit(*args, **kwargs)
        lost[0] += 900.0
        return run

    monkeypatch.setattr(search_module, "fit", busy_fit)
    monkeypatch.setattr(time, "monotonic", lambda: real_clock() + lost[0])
    run = meddx.train(
        {
            "data": {"path": str(npz)},
            "output_dir": str(tmp_path),
            "name": "busy-search",
            "plan": {"budget_minutes": 30, "max_ensemble": 3},
            "train": {"progress_bar": False},
            "evaluate": {"bootstrap": 0},
        }
    )
    sel = run.plan["selection"]
    assert sel["chosen"] == "small_cnn 28 px" and "the others were skipped" in sel["reason"]
    assert list(sel["candidates"]) == ["small_cnn 28 px"]
    assert any(s.startswith("small_cnn_wide 28 px (the machine ran slower") for s in sel["skipped"])
    assert sorted(p.name for p in (run.path / "members").iterdir()) == ["small_cnn28px-seed0", "small_cnn28px-seed1"]
    assert json.loads((run.path / "plan.json").read_text())["selection"]["candidates"] == sel["candidates"]
