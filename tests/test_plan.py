"""Self-configuring training: the fingerprint of each shared set, the rules' choices, the budget arithmetic, the
user's options winning, and a planned run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import meddx
from meddx.config import DataConfig, as_config, save_config
from meddx.data.fingerprint import fingerprint
from meddx.data.readers import read_dataset
from meddx.data.split import assign_splits
from meddx.errors import ConfigError
from meddx.training.plan import Plan, fit_budget, make_plan, user_fields

from conftest import need, run_cli

# data set -> (median height, width, layout, positive share of the first label in the train split, planned choices):
# the plan reads the train split only (PneumoniaMNIST: 3,477 pneumonia of 4,690 train images, as its README says)
SETS = {
    "pneumoniamnist": (28, 28, "hw", 0.741, {"data.image_size": 28, "data.normalize": "dataset"}),
    "medmnist/breastmnist.npz": (28, 28, "hw", 0.269, {"data.image_size": 28, "train.batch_size": 32}),
    "datscan_spect_ppmi_2d": (109, 91, "hw", 0.679, {"data.image_size": 64, "data.normalize": "sample"}),
    "chest_xray_pneumonia_224": (224, 224, "hwc", 0.743, {"data.channels": 1, "data.image_size": 64}),
    "nih_chestxray14_64px_binary": (64, 64, "hwc", 0.540, {"data.channels": 1, "train.class_weights": "off"}),
    "medmnist/adrenalmnist3d.npz": (28, 28, "dhw", 0.221, {"data.views": [8, 14, 20], "train.class_weights": "on"}),
}
# data set -> the alternatives to the rules' model and size that the plan tries on val when the budget allows
ALTERNATIVES = {
    "pneumoniamnist": ["small_cnn_wide 28 px"],
    "medmnist/breastmnist.npz": ["small_cnn_wide 28 px"],
    "datscan_spect_ppmi_2d": ["resnet18 64 px", "small_cnn 91 px"],
    "chest_xray_pneumonia_224": ["resnet18 64 px", "small_cnn 128 px"],
    "nih_chestxray14_64px_binary": ["resnet18 64 px"],
    "medmnist/adrenalmnist3d.npz": ["small_cnn_wide 28 px"],
}


def _read(data_dir, name: str, **data):
    path = name if name == "pneumoniamnist" else str(need(data_dir, name))
    cfg = as_config({"data": {"path": path, **data}, "train": {"accelerator": "cpu"}})
    ds = read_dataset(cfg.data)
    assign_splits(ds, cfg.split)
    return cfg, ds


@pytest.mark.parametrize("name", SETS)
def test_fingerprint_and_rules_on_each_shared_set(data_dir, name):
    height, width, layout, share, planned = SETS[name]
    cfg, ds = _read(data_dir, name)
    fp = fingerprint(ds)
    assert bool(fp["patients_guessed"]) == (name in ("chest_xray_pneumonia_224", "nih_chestxray14_64px_binary"))
    im = fp["images"]
    assert (im["height"]["median"], im["width"]["median"], im["layout"]) == (height, width, layout)
    assert list(fp["positive_share"].values())[0] == pytest.approx(share, abs=0.01)
    assert im["colour_share"] == 0 and im["bits"] == 8
    assert fp["samples"] == len(ds) and sum(fp["splits"].values()) == len(ds)
    plan = make_plan(cfg, ds)
    assert {f: plan.value(f) for f in planned} == planned
    assert all(c.source == "rule" and c.reason for c in plan.choices)
    assert [a["name"] for a in plan.alternatives] == ALTERNATIVES[name]


def _budget(minutes: float, user: dict | None = None, epoch_s: float = 2.0, steps: int = 10, elapsed: float = 5.0):
    cfg = as_config({"data": {"path": "x.csv"}, "plan": {"budget_minutes": minutes}, **(user or {})})
    plan = Plan({}, minutes, "cpu", pilot={"seconds_per_epoch": epoch_s})
    fit_budget(plan, cfg, steps, elapsed, distributed=False)
    return plan


def test_budget_fits_epochs_and_ensemble_into_the_time():
    tiny = _budget(1.0)
    assert tiny.value("train.ensemble") == 1
    assert tiny.estimate["total_s"] <= 60.0  # 5 s spent + 12 epochs of 2 s + 30 s reserve
    assert tiny.value("train.max_epochs") == 12 and tiny.value("train.patience") == 3
    assert "50 epochs do not fit" in next(c.reason for c in tiny.choices if c.field == "train.ensemble")
    slow = _budget(1.0, epoch_s=70.0)  # not even 3 epochs fit: 3 all the same, and the plan says it is over
    reason = next(c.reason for c in slow.choices if c.field == "train.max_epochs")
    assert slow.value("train.max_epochs") == 3 and "over the budget" in reason
    roomy = _budget(60.0)
    assert roomy.value("train.ensemble") == 5  # capped at plan.max_ensemble
    assert roomy.value("train.max_epochs") == 50  # the target (2000 steps at 10 per epoch, at most 50), not 100+
    assert roomy.estimate["total_s"] <= 3600.0
    user_epochs = _budget(60.0, {"train": {"max_epochs": 4}})
    assert user_epochs.value("train.ensemble") == 1 and user_epochs.value("train.max_epochs") == 4
    user_k = _budget(10.0, {"train": {"ensemble": 3}})
    k_epochs = user_k.value("train.max_epochs")
    assert user_k.value("train.ensemble") == 3 and 3 * k_epochs * 2.0 <= 10 * 60
    no_pilot = Plan({}, 5.0, "cpu")
    fit_budget(no_pilot, as_config({}), 10, 0.0, distributed=False)
    assert no_pilot.value("train.ensemble") == 1 and no_pilot.value("train.max_epochs") == 20


def test_user_options_override_their_part_of_the_plan(data_dir):
    cfg, ds = _read(data_dir, "datscan_spect_ppmi_2d")
    mine = as_config({"data": {"path": cfg.data.path, "image_size": 48}, "model": {"name": "resnet18"}})
    assert user_fields(mine) == {"data.path": cfg.data.path, "data.image_size": 48, "model.name": "resnet18"}
    plan = make_plan(mine, ds)
    by_field = {c.field: c for c in plan.choices}
    assert by_field["data.image_size"].source == "user" and by_field["data.image_size"].value == 48
    assert by_field["model.name"].value == "resnet18" and "small_cnn" in by_field["model.name"].reason
    applied = plan.apply(mine)
    assert (applied.data.image_size, applied.model.name, applied.data.normalize) == (48, "resnet18", "sample")
    assert mine.data.normalize == "dataset"  # the caller's config is never changed


def test_plan_command_writes_the_plan(data_dir, tmp_path):
    npz = need(data_dir, "medmnist/breastmnist.npz")
    proc = run_cli("plan", "--data", str(npz), "--budget", "90s", "-o", str(tmp_path / "p"))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert plan["budget_minutes"] == 1.5 and {"seconds_per_epoch", "steps_per_epoch"} <= set(plan["pilot"])
    est = plan["estimate"]  # the budget's arithmetic is tested apart; here: the pilot's result reached the plan
    assert est["total_s"] == pytest.approx(
        est["elapsed_before_training_s"] + est["training_s"] + est["reserve_s"], abs=0.2
    )
    assert "| train.max_epochs |" in proc.stdout
    bad = run_cli("plan", "--data", str(npz), "--budget", "soon")
    assert bad.returncode == 2 and "--budget 'soon'" in bad.stderr


@pytest.mark.slow
def test_planned_run_trains_the_planned_ensemble(data_dir, tmp_path):
    """Through the CLI, as a user runs it: the option given (`--model`) is the user's, named so in the report."""
    npz = need(data_dir, "medmnist/breastmnist.npz")
    settings = ["plan.budget_minutes=1.5", "train.progress_bar=false", "evaluate.bootstrap=50"]
    args = ["--data", str(npz), "--model", "small_cnn", "--output-dir", str(tmp_path), "--name", "auto"]
    proc = run_cli("train", *args, *(a for s in settings for a in ("--set", s)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = meddx.load_run(tmp_path / "auto")
    plan = run.plan
    assert [c["field"] for c in plan["choices"] if c["source"] == "user"] == ["model.name"]
    k = next(c["value"] for c in plan["choices"] if c["field"] == "train.ensemble")
    assert plan["actual"]["until_trained_s"] > 0 and run.config.train.ensemble == k
    report = (run.path / "report.md").read_text()
    assert "## Plan" in report and "upper bound" in report and "the user set: model.name." in report
    if k > 1:
        members = json.loads((run.path / "ensemble.json").read_text())["members"]
        assert members == [f"members/seed{i}" for i in range(k)]  # relative: the folder can move
    moved = run.path.rename(tmp_path / "moved")
    again = meddx.load_run(moved).predict_proba(
        meddx.load_run(moved).dataset(read_dataset(DataConfig(path=str(npz))).records[:5])
    )
    assert again.shape == (5, 1) and np.isfinite(again).all()
    assert meddx.load_run(moved).metrics()["model"]["per_label"]["malignant"]["roc_auc"]["value"] > 0.75


def test_the_users_model_gets_the_input_size_it_needs(data_dir):
    """DenseNet fails below 32 px: on 28 px images the plan upsamples for it rather than letting training fail."""
    cfg, ds = _read(data_dir, "medmnist/breastmnist.npz")
    plan = make_plan(as_config({"data": {"path": cfg.data.path}, "model": {"name": "densenet121"}}), ds)
    size = next(c for c in plan.choices if c.field == "data.image_size")
    assert size.value == 32 and "at least 32 px for densenet121" in size.reason


def test_an_encoder_to_fine_tune_brings_its_architecture_and_normalisation(data_dir, tmp_path):
    """`--init-from` a `meddx pretrain` folder (pretrain.json) or a run folder (config.yaml + preprocess.json): the plan
    keeps the encoder's architecture (no other fits its weights, so no other is tried on val) and its normalisation,
    raises the input size to what the architecture needs, and the user's own options still win."""
    cfg, ds = _read(data_dir, "medmnist/breastmnist.npz")
    ssl = tmp_path / "ssl"
    ssl.mkdir()
    info = {"objective": "simclr", "model": "densenet121", "in_chans": 1, "image_size": [64, 64], "normalize": "sample"}
    (ssl / "pretrain.json").write_text(json.dumps(info))
    plan = make_plan(as_config({"data": {"path": cfg.data.path}, "train": {"init_from": str(ssl / "encoder.pt")}}), ds)
    by_field = {c.field: c for c in plan.choices}
    assert by_field["model.name"].value == "densenet121" and "pretrained encoder" in by_field["model.name"].reason
    assert by_field["data.normalize"].value == "sample" and by_field["data.image_size"].value == 32
    assert not any(a["set"].get("model.name") for a in plan.alternatives)
    data = {"path": cfg.data.path}
    mine = as_config({"data": data, "model": {"name": "small_cnn"}, "train": {"init_from": str(ssl)}})
    assert make_plan(mine, ds).value("model.name") == "small_cnn"  # the user's model wins
    run = tmp_path / "run"
    run.mkdir()
    save_config(as_config({"data": {"path": cfg.data.path}, "model": {"name": "resnet18"}}), run / "config.yaml")
    (run / "preprocess.json").write_text(json.dumps({"image_size": [48, 48], "normalize": "dataset", "channels": 1}))
    plan = make_plan(as_config({"data": {"path": cfg.data.path}, "train": {"init_from": str(run)}}), ds)
    assert (plan.value("model.name"), plan.value("data.normalize")) == ("resnet18", "dataset")
    no_info = make_plan(as_config({"data": data, "train": {"init_from": str(tmp_path / "w.pt")}}), ds)
    assert no_info.value("model.name") == "small_cnn"  # a file that is not there: the rules as usual
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "tv.pt")  # saved by hand, nothing beside it
    by_names = make_plan(as_config({"data": data, "train": {"init_from": str(tmp_path / "tv.pt")}}), ds)
    why = next(c.reason for c in by_names.choices if c.field == "model.name")
    assert by_names.value("model.name") == "resnet18" and "tensors' names" in why
    (run / "checkpoints").mkdir()
    torch.save({}, run / "checkpoints" / "best.ckpt")  # a run's own checkpoint: the run above it says what it is
    in_run = make_plan(as_config({"data": data, "train": {"init_from": str(run / "checkpoints" / "best.ckpt")}}), ds)
    assert in_run.value("model.name") == "resnet18"
    assert make_plan(as_config({"data": data, "train": {"init_from": None}}), ds).value("model.name") == "small_cnn"
    (ssl / "pretrain.json").write_text('{"model": "small_')
    with pytest.raises(ConfigError, match="pretrain.json: not readable as JSON"):
        make_plan(as_config({"data": data, "train": {"init_from": str(ssl)}}), ds)


def test_a_model_without_a_rule_gets_its_rate_from_the_finder(data_dir, tmp_path):
    """The rules know rates for their own models only; for another (here EfficientNet-B0) Lightning's range test sets
    it, clipped into a safe range, and a rate the user gives is never replaced."""
    npz = need(data_dir, "medmnist/breastmnist.npz")
    common = {"data": {"path": str(npz)}, "plan": {"budget_minutes": 1, "pilot": False}}
    out = meddx.plan({**common, "model": {"name": "efficientnet_b0"}}, tmp_path / "found")
    plan = json.loads((out / "plan.json").read_text())
    lr = next(c for c in plan["choices"] if c["field"] == "train.lr")
    assert lr["source"] == "lr finder" and 1e-4 <= lr["value"] <= 1e-2 and plan["lr_finder"]["steps"] > 10
    assert "learning-rate finder" in (out / "plan.md").read_text()
    mine = meddx.plan({**common, "model": {"name": "efficientnet_b0"}, "train": {"lr": 0.0042}}, tmp_path / "mine")
    plan = json.loads((mine / "plan.json").read_text())
    assert plan["lr_finder"] == {} and next(c for c in plan["choices"] if c["field"] == "train.lr")["value"] == 0.0042
    from types import SimpleNamespace

    from meddx.training.autofit import _found_lr
    from meddx.training.plan import make_plan

    cfg = as_config({**common, "model": {"name": "densenet121"}, "plan": {"budget_minutes": 3}})
    ds = read_dataset(cfg.data)
    assign_splits(ds, cfg.split)
    slow = make_plan(cfg, ds)  # DenseNet on 2 cores: 60 finder batches would take a third of a 3-minute budget
    slow.pilot = {"seconds_per_train_batch": 1.0}
    kept = _found_lr(cfg, SimpleNamespace(cfg=slow.apply(cfg)), slow)
    assert kept.train.lr == 1e-3 and "would take 1.0 of the 3-minute budget (over 15%)" in slow.lr_finder["skipped"]


def test_hardware_rules_for_a_gpu_and_for_the_cpu(data_dir, monkeypatch):
    """On CUDA: bf16 mixed precision, channels_last and pinned memory; on the CPU none of them. Loader workers only
    when the decoded images would not fit in memory (here: a limit made small)."""
    import meddx.training.hardware as hardware

    cfg, ds = _read(data_dir, "medmnist/breastmnist.npz")
    cpu = make_plan(cfg, ds)
    assert cpu.value("train.precision") is None and cpu.value("train.channels_last") is None
    assert cpu.value("train.num_workers") == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = make_plan(as_config({"data": {"path": cfg.data.path}, "train": {"accelerator": "gpu"}}), ds)
    assert gpu.accelerator == "gpu"
    assert (gpu.value("train.precision"), gpu.value("train.channels_last"), gpu.value("train.pin_memory")) == (
        "bf16-mixed", True, True
    )  # fmt: skip
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert make_plan(as_config({"data": {"path": cfg.data.path}}), ds).value("train.precision") == "16-mixed"
    monkeypatch.setattr(hardware, "PRELOAD_LIMIT_BYTES", 1000)
    monkeypatch.setattr(hardware, "usable_cores", lambda: 4)
    lazy = make_plan(cfg, ds)
    assert lazy.value("train.num_workers") == 3 and "over the in-memory limit" in next(
        c.reason for c in lazy.choices if c.field == "train.num_workers"
    )


@pytest.mark.parametrize("depth, views", [(5, [1, 2, 3]), (7, [2, 3, 4]), (28, [8, 14, 20]), (64, [19, 32, 45])])
def test_three_slices_are_spread_evenly_around_the_middle(tmp_path, depth, views):
    """Round half to even took slices 2, 2 and 4 of a 5-slice stack: the middle one twice, off centre."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 20), ("test", 20)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, depth, 12, 12), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2)[:, None]
    np.savez(tmp_path / "stacks.npz", **arrays)
    cfg = as_config({"data": {"path": str(tmp_path / "stacks.npz")}, "train": {"accelerator": "cpu"}})
    ds = read_dataset(cfg.data)
    assign_splits(ds, cfg.split)
    assert make_plan(cfg, ds).value("data.views") == views


def test_the_pilot_times_the_batches_before_the_finder_is_weighed(data_dir, monkeypatch):
    """The finder's cost is read from the pilot's seconds per batch, so the pilot must run first: plan_run's order,
    not `_found_lr` alone (the finder itself is replaced here: only the order is under test)."""
    import meddx.training.autofit as autofit
    import meddx.training.pilot as pilots

    calls = []

    def pilot(cfg, data):
        calls.append("pilot")
        return {"seconds_per_epoch": 1.0, "steps_per_epoch": 10, "seconds_per_train_batch": 0.01}

    def finder(cfg, data, steps):
        calls.append(("finder", steps))
        return {"lr": 3e-3, "steps": steps, "suggested": 3e-3}

    monkeypatch.setattr(autofit, "time_epoch", pilot)
    monkeypatch.setattr(pilots, "time_layouts", lambda cfg, data, rounds: {"nchw": 0.01, "nhwc": 0.01})  # as fast: NCHW
    monkeypatch.setattr(autofit, "find_lr", finder)
    npz = need(data_dir, "medmnist/breastmnist.npz")
    cfg = as_config({"data": {"path": str(npz)}, "model": {"name": "efficientnet_b0"}, "plan": {"budget_minutes": 2}})
    planned, _, plan = autofit.plan_run(cfg)
    assert calls == ["pilot", ("finder", autofit.LR_FINDER_STEPS)] and planned.train.lr == 3e-3
    assert planned.train.channels_last is False
    assert plan.pilot["seconds_per_train_batch"] == 0.01 and plan.lr_finder["lr"] == 3e-3


def test_the_layout_is_not_timed_when_timing_it_would_eat_the_budget(data_dir, monkeypatch):
    """Timing both layouts costs 12-28 training steps: on a slow model and a tight budget (over 3% of it) NCHW is kept
    untimed, and the plan says why."""
    import meddx.training.autofit as autofit
    import meddx.training.pilot as pilots

    slow = {"seconds_per_epoch": 30.0, "steps_per_epoch": 10, "seconds_per_train_batch": 2.5}
    monkeypatch.setattr(autofit, "time_epoch", lambda cfg, data: dict(slow))
    monkeypatch.setattr(pilots, "time_layouts", lambda *a: pytest.fail("timed"))
    npz = need(data_dir, "medmnist/breastmnist.npz")
    _, _, plan = autofit.plan_run(as_config({"data": {"path": str(npz)}, "plan": {"budget_minutes": 5}}))
    choice = next(c for c in plan.choices if c.field == "train.channels_last")
    assert choice.value is False and choice.reason.startswith("not timed: 3 rounds of steps at 2.50 s exceed 3% of")


@pytest.mark.parametrize(
    ("nhwc_s", "user", "chosen", "timed"),
    [(0.05, {}, True, 1), (0.095, {}, False, 1), (0.05, {"channels_last": False}, False, 0)],
)
def test_the_pilot_chooses_the_memory_layout_by_timing_both(data_dir, monkeypatch, nhwc_s, user, chosen, timed):
    """On the CPU both layouts are timed in turns: NHWC kept when 10% faster per step than NCHW, else NCHW; a layout
    the user set is theirs and not timed. The budget is fitted with the pilot's batches scaled to the chosen layout."""
    import meddx.training.autofit as autofit
    import meddx.training.pilot as pilots

    timings = []

    def layouts(cfg, data, rounds):
        timings.append(cfg.train.channels_last)
        return {"nchw": 0.1, "nhwc": nhwc_s}

    pilot = {"seconds_per_epoch": 1.5, "steps_per_epoch": 10, "seconds_per_train_batch": 0.1}
    monkeypatch.setattr(autofit, "time_epoch", lambda cfg, data: dict(pilot))
    monkeypatch.setattr(pilots, "time_layouts", layouts)
    npz = need(data_dir, "medmnist/breastmnist.npz")
    cfg = {"data": {"path": str(npz)}, "train": {"accelerator": "cpu", **user}, "plan": {"budget_minutes": 1}}
    planned, _, plan = autofit.plan_run(as_config(cfg))
    choice = next(c for c in plan.choices if c.field == "train.channels_last")
    assert planned.train.channels_last is chosen and timings == [False] * timed
    assert choice.source == ("user" if user else "pilot")
    if chosen:  # twice as fast a batch: the epoch's 10 batches take 0.5 s less, its validation as long as before
        assert plan.pilot["seconds_per_train_batch"] == 0.05 and plan.pilot["seconds_per_epoch"] == 1.0
    else:
        assert plan.pilot["seconds_per_train_batch"] == 0.1 and plan.pilot["seconds_per_epoch"] == 1.5
    if not user:
        assert f"{nhwc_s:.3f} s in NHWC against 0.100 s in NCHW" in choice.reason
    else:
        assert choice.reason == "set by the user; the layout was not timed"


def test_a_layout_the_user_set_keeps_the_cuda_rules_record():
    """On CUDA the hardware rule chose NHWC; a user who set the layout saw the rule's record replaced by an invented
    'the plan's: False: not timed'. The rule's record (as the user's, with the rule's reason) stays."""
    from types import SimpleNamespace

    from meddx.training.pilot import choose_layout
    from meddx.training.plan import Planner

    user = as_config({"train": {"channels_last": True}})
    plan = Plan({}, 5.0, "gpu")
    Planner(user, plan).choose("train.channels_last", True, "CUDA: convolutions run fastest in NHWC", "rule")
    pilot = {"seconds_per_train_batch": 0.1}
    assert choose_layout(user, SimpleNamespace(cfg=user), plan, pilot) == pilot
    (choice,) = [c for c in plan.choices if c.field == "train.channels_last"]
    assert choice.source == "user" and "CUDA: convolutions run fastest in NHWC" in choice.reason


def test_both_layouts_are_timed_on_a_real_batch(data_dir):
    """The layout pilot times a training step in each layout on a real batch (here: runs, and returns both)."""
    from meddx.training.datamodule import RunDataModule
    from meddx.training.pilot import time_layouts

    npz = need(data_dir, "medmnist/breastmnist.npz")
    data = RunDataModule(as_config({"data": {"path": str(npz)}, "plan": {"enabled": False}}))
    data.setup()
    timed = time_layouts(data.cfg, data, rounds=3, steps=1)
    assert set(timed) == {"nchw", "nhwc"} and all(v > 0 for v in timed.values())


def test_plan_md_shows_the_spread_images_per_patient_and_the_alternatives_val_will_judge(data_dir, tmp_path):
    npz = need(data_dir, "medmnist/breastmnist.npz")
    out = meddx.plan({"data": {"path": str(npz)}, "plan": {"budget_minutes": 5, "pilot": False}}, tmp_path / "p")
    text = (out / "plan.md").read_text()
    assert "28 px high (10th-90th percentile 28-28)" in text and "zoom up to 8%" in text
    assert "images per patient" not in text  # MedMNIST has no patient ids: no per-patient figure to show
    assert "modality unknown, colour share" in text  # ultrasound in PNG-like arrays: no tag, not SPECT-like counts
    from meddx.training.plan_markdown import _modality

    counts = {"modality": None, "max_intensity": {"median": 0.2}, "max_intensity_cv": 0.3}  # DaTscan's kind
    assert (
        _modality(counts).startswith("unknown (no DICOM tag; SPECT/PET-like") and _modality({"modality": "NM"}) == "NM"
    )
    alternatives = json.loads((out / "plan.json").read_text())["alternatives"]
    assert alternatives and all(f"- {a['name']}: {a['reason']}" in text for a in alternatives)
