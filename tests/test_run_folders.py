"""A planned run's folders: a single model moved into an ensemble in its place (and a kill during the move),
run names an unfinished move still holds, and plan folders of data sets that share a name."""

from __future__ import annotations

import json

import pytest

import meddx
from meddx.errors import ConfigError
from meddx.training.plan import Plan, fit_budget

from conftest import need


@pytest.mark.slow
@pytest.mark.parametrize("killed", [False, True])
def test_a_single_planned_model_that_stops_early_is_joined_by_a_second_seed(data_dir, tmp_path, monkeypatch, killed):
    """The plan fits one model when two do not fit at full epochs; early stopping then often left half the budget
    unused (Kermany, 15 minutes: 8 used). Now the model becomes the first member of an ensemble in its own folder and
    another seed trains when one as slow still fits; averaging is the one rule every ablation confirmed. A kill
    between the move's two renames left the run hidden in a `.moving` folder; now `--resume` puts it in place."""
    from meddx.training import autofit
    from meddx.training.plan import Planner

    real_finish = autofit.finish_first_member

    def killed_between_renames(path):  # the process dies: its status says running, by a process now gone
        monkeypatch.setattr(autofit, "finish_first_member", real_finish)
        status = json.loads((path.with_name(".single.ensemble") / "status.json").read_text())
        (path.with_name(".single.ensemble") / "status.json").write_text(json.dumps({**status, "pid": 0}))
        raise KeyboardInterrupt

    if killed:
        monkeypatch.setattr(autofit, "finish_first_member", killed_between_renames)

    def one_short_model(plan, cfg, *args):  # the budget's verdict on a slow machine: one model of 3 epochs
        fit_budget(plan, cfg, *args)
        Planner(cfg, plan).choose("train.ensemble", 1, "one model fits", "budget")
        Planner(cfg, plan).choose("train.max_epochs", 3, "3 epochs fit", "budget")

    monkeypatch.setattr(autofit, "fit_budget", one_short_model)
    npz = need(data_dir, "medmnist/breastmnist.npz")
    cfg = {
        "data": {"path": str(npz)},
        "output_dir": str(tmp_path),
        "name": "single",
        "plan": {"budget_minutes": 4, "select": False, "max_ensemble": 2},
        "train": {"progress_bar": False},
        "evaluate": {"bootstrap": 0},
    }
    if killed:
        with pytest.raises(KeyboardInterrupt):
            meddx.train(cfg)
        assert not (tmp_path / "single").exists() and (tmp_path / ".single.ensemble" / "members" / "seed0").is_dir()
        run = meddx.resume(tmp_path / "single")
    else:
        run = meddx.train(cfg)
    assert run.path == tmp_path / "single" and run.config.train.ensemble == 2
    assert json.loads((run.path / "ensemble.json").read_text())["members"] == ["members/seed0", "members/seed1"]
    first = meddx.load_run(run.path / "members" / "seed0")
    assert first.config.name == "seed0" and first.config.output_dir == str(run.path / "members")
    assert first.training["epochs_run"] <= 3 and (first.path / "model.pt").is_file()
    choice = next(c for c in run.plan["choices"] if c["field"] == "train.ensemble")
    assert choice["value"] == 2 and "1 planned at full epochs; early stopping left time for " in choice["reason"]
    assert not list(tmp_path.glob(".*ensemble"))
    second = meddx.load_run(run.path / "members" / "seed1")  # added in the time left: it stops by the deadline
    assert first.config.train.max_minutes is None and (second.config.train.max_minutes is None) == killed
    assert killed or 0 < second.config.train.max_minutes < 4  # resumed, the budget is spent: no deadline to keep


def test_two_data_sets_of_one_name_get_their_own_plan_folders(tmp_path):
    """`meddx plan --data a/labels.csv` then `--data b/labels.csv` wrote both to plans/labels, the second over the
    first; the same data planned again still replaces its own plan."""
    from meddx.training.autofit import plan_folder

    def planned(origin: str) -> Plan:
        return Plan(fingerprint={"origin": origin}, budget_minutes=1.0, accelerator="cpu")

    base = tmp_path / "plans" / "labels"
    assert plan_folder(base, planned("a/labels.csv")) == base
    base.mkdir(parents=True)
    planned("a/labels.csv").save(base / "plan.json")
    assert plan_folder(base, planned("a/labels.csv")) == base
    assert plan_folder(base, planned("b/labels.csv")) == base.with_name("labels-2")


def test_a_name_whose_move_a_kill_cut_is_not_claimed_again(tmp_path, monkeypatch):
    """After a kill between the move's renames `runs/single` is gone and its model waits in `.single.ensemble`; a new
    run named `single` took the name, and its own move deleted the waiting model. `--resume .` was a traceback."""
    from meddx.config import as_config
    from meddx.training.writer import new_run_dir

    (tmp_path / ".single.ensemble" / "members" / "seed0").mkdir(parents=True)
    cfg = as_config({"data": {"path": "x.csv"}, "output_dir": str(tmp_path), "name": "single"})
    assert new_run_dir(cfg) == tmp_path / "single-1"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="not a run folder"):
        meddx.resume(".")


def test_the_domain_check_of_new_data_is_skipped_not_fatal_without_the_training_scans(tmp_path):
    """The check reads training scans; a run moved without its data stopped `evaluate --data` after predicting."""
    from types import SimpleNamespace

    from meddx.errors import DataError
    from meddx.export.new_data import new_data_domain

    def gone(split):
        raise DataError("train.csv: CSV manifest not found")

    run = SimpleNamespace(is_sequence=False, path=tmp_path, records=gone, preprocess=None)
    check = new_data_domain(run, [object()])
    assert check["checked"] == 0
    assert "training scans not readable (train.csv: CSV manifest not found)" in check["skipped"]


def test_the_domain_check_judges_intensity_as_the_model_sees_it():
    """A model normalised per sample sees a scan and its x4095 copy alike: the check compares standardised scans
    there (DICOM copies stretched min-max were all flagged), and still calls the raw copy unscaled otherwise."""
    import numpy as np

    from meddx.export.domain import check_input, input_stats

    rng = np.random.default_rng(0)
    scans = [rng.random((1, 32, 32)).astype(np.float32) ** 2 for _ in range(40)]
    raw = scans[0] * 4095.0
    for per_sample, flagged in ((False, True), (True, False)):
        stats = input_stats(scans, scans, per_sample=per_sample)
        warnings = check_input(raw, raw, stats)["warnings"]
        assert any("unscaled" in w for w in warnings) == flagged, warnings
    stats = input_stats(scans, scans, per_sample=True)
    assert not check_input(np.sqrt(scans[0]), scans[0], stats)["in_distribution"]  # another histogram still shows


def test_a_scan_of_far_lower_resolution_than_the_training_scans_is_flagged():
    """28 px PneumoniaMNIST scans evaluated with a model trained on 224 px Kermany images (read at 64) scored AUC 0.92
    but specificity 0.01 at the val threshold, and the domain check said nothing: the resolution is now a warning
    when the scan is upsampled and under half the smallest training side."""
    import numpy as np
    import torch.nn.functional as F
    from torch import from_numpy

    from meddx.export.domain import check_input, input_stats

    rng = np.random.default_rng(0)
    scans = [rng.random((1, 224, 224)).astype(np.float32) for _ in range(20)]
    at_64 = [F.interpolate(from_numpy(s)[None], size=(64, 64), mode="bilinear")[0].numpy() for s in scans]
    stats = input_stats(scans, at_64)
    small = scans[0][:, ::8, ::8]
    up = F.interpolate(from_numpy(np.ascontiguousarray(small))[None], size=(64, 64), mode="bilinear")[0].numpy()
    assert any(
        "a 28x28 px scan, upsampled to the model's 64 px" in w for w in check_input(small, up, stats)["warnings"]
    )
    assert not any("upsampled" in w for w in check_input(scans[1], at_64[1], stats)["warnings"])


def test_scans_enlarged_from_a_smaller_image_are_flagged_by_their_detail(data_dir):
    """PneumoniaMNIST's 28 px X-rays enlarged to 224 px files passed the domain check of a model trained on Kermany's
    224 px X-rays (read at 64 px): their size was the training scans'. They hold far less fine detail at the model's
    size; sharp scans of the same kind (other Kermany children) are not flagged."""
    import numpy as np
    from PIL import Image

    from meddx.data.tensors import Preprocess
    from meddx.export.domain import check_input, input_stats

    prep = Preprocess(channels=1, image_size=(64, 64), normalize="dataset")
    files = sorted(need(data_dir, "chest_xray_pneumonia_224/train").glob("*/*.jpeg"))[::25]
    kermany = [np.asarray(Image.open(f).convert("L"), np.float32)[None] / 255 for f in files]
    stats = input_stats(kermany[::2], [prep.resize(k) for k in kermany[::2]])
    mnist = np.load(need(data_dir, "medmnist/pneumoniamnist.npz"))["test_images"][:40]
    enlarged = [np.asarray(Image.fromarray(m).resize((224, 224), Image.BICUBIC), np.float32)[None] / 255 for m in mnist]
    flagged = [
        any("less fine detail" in w for w in check_input(e, prep.resize(e), stats)["warnings"]) for e in enlarged
    ]
    assert np.mean(flagged) > 0.3, np.mean(flagged)
    blank = [np.zeros_like(kermany[0])]  # one blank training scan: no detail to count, the limit unmoved
    assert (
        input_stats(kermany[::2] + blank, [prep.resize(k) for k in kermany[::2] + blank])["detail"] == stats["detail"]
    )
    assert not any(
        "less fine detail" in w for k in kermany[1::2] for w in check_input(k, prep.resize(k), stats)["warnings"]
    )


def test_a_dicom_of_another_modality_than_the_dicom_training_scans_is_flagged(data_dir):
    """A CT slice sent to a model trained on DICOM NM scans passed the check on its layout alone; the Modality tag now
    decides. Training scans read from PNG or JPEG say no modality: a projection X-ray passes then, and a CT, MR,
    ultrasound or nuclear-medicine scan is flagged (a chest X-ray model called a CT slice pneumonia, in domain), except
    NM or PET for SPECT-like training scans; .npz training arrays and packages older than the record judge nothing."""
    import numpy as np

    from meddx.data.fingerprint import dicom_modality
    from meddx.export.domain import check_input, input_stats

    assert dicom_modality(need(data_dir, "dicom/CT_small.dcm")) == "CT" and dicom_modality("scan.png") is None
    scans = [np.random.default_rng(i).random((1, 32, 32)).astype(np.float32) for i in range(20)]
    stats = {**input_stats(scans, scans), "modalities": ["NM"]}
    assert (
        "a DICOM CT scan: the model was trained on NM scans"
        in check_input(scans[0], scans[0], stats, False, "CT")["warnings"]
    )
    assert check_input(scans[0], scans[0], stats, False, "NM")["in_distribution"]
    unknown = {**stats, "modalities": [], "picture_files": True}  # training scans from PNG or JPEG: kind unknown
    assert check_input(scans[0], scans[0], unknown, False, "CR")["in_distribution"]  # an X-ray: nothing to say
    ct = check_input(scans[0], scans[0], unknown, False, "CT")  # a chest X-ray model gave a CT slice a diagnosis
    assert not ct["in_distribution"] and "unless the model was trained on CT images" in ct["warnings"][0]
    spect = {**unknown, "per_sample": True}  # DaTscan PNGs, normalised per image: an NM DICOM is of their kind
    assert not any("DICOM" in w for w in check_input(scans[0], scans[0], spect, False, "NM")["warnings"])
    for other in ({**unknown, "picture_files": False}, {k: v for k, v in unknown.items() if k != "modalities"}):
        assert not any("DICOM" in w for w in check_input(scans[0], scans[0], other, False, "CT")["warnings"])


def test_a_scan_smaller_than_large_training_scans_but_near_the_model_size_is_not_flagged():
    """Training scans of 1024 px read at 224: a 200 px scan loses little of what the model saw, so no warning."""
    import numpy as np

    from meddx.export.domain import check_input, input_stats

    rng = np.random.default_rng(1)
    scans = [rng.random((1, 1024, 1024)).astype(np.float32) for _ in range(4)]
    at_224 = [s[:, ::4, ::4][:, :224, :224] for s in scans]
    stats = input_stats(scans, at_224)
    new = rng.random((1, 200, 200)).astype(np.float32)
    assert not any("upsampled" in w for w in check_input(new, at_224[0], stats)["warnings"])


@pytest.mark.slow
def test_planned_seeds_that_would_end_past_the_budget_on_a_busy_machine_are_not_begun(data_dir, tmp_path, monkeypatch):
    """The plan fits its members from a pilot timed before the machine got busy; then every planned member trained
    anyway (BreastMNIST: 18.7 min for a 15-minute budget). Now a member from the third on is begun only while one as
    slow as the slowest so far still ends in the budget; the plan, the folder's config and ensemble.json say so."""
    import time

    from meddx.training import autofit
    from meddx.training.plan import Planner

    def four_short_models(plan, cfg, *args):
        fit_budget(plan, cfg, *args)
        Planner(cfg, plan).choose("train.ensemble", 4, "four models fit", "budget")
        Planner(cfg, plan).choose("train.max_epochs", 2, "2 epochs fit", "budget")

    lost, real_clock, real_fit = [0.0], time.monotonic, autofit.fit

    def busy_fit(*args, **kwargs):  # each member leaves the clock 120 s further on: a machine others now share
        run = real_fit(*args, **kwargs)
        lost[0] += 120.0
        return run

    monkeypatch.setattr(autofit, "fit_budget", four_short_models)
    monkeypatch.setattr(autofit, "fit", busy_fit)
    monkeypatch.setattr(time, "monotonic", lambda: real_clock() + lost[0])
    cfg = {
        "data": {"path": str(need(data_dir, "medmnist/breastmnist.npz"))},
        "output_dir": str(tmp_path),
        "name": "busy",
        "plan": {"budget_minutes": 4, "select": False, "max_ensemble": 4},
        "train": {"progress_bar": False},
        "evaluate": {"bootstrap": 0},
    }
    run = meddx.train(cfg)
    assert run.config.train.ensemble == 2 and meddx.load_run(run.path).config.train.ensemble == 2
    assert json.loads((run.path / "ensemble.json").read_text())["members"] == ["members/seed0", "members/seed1"]
    choice = next(c for c in run.plan["choices"] if c["field"] == "train.ensemble")
    assert choice["value"] == 2 and "4 planned at " in choice["reason"]
    assert "min each; the slowest took " in choice["reason"]
    assert not (run.path / "members" / "seed2").exists()
    limits = [meddx.load_run(run.path / "members" / f"seed{i}").config.train.max_minutes for i in (0, 1)]
    assert all(0 < m <= 4 for m in limits)  # planned seeds, too, stop at the budget on a machine slower than the pilot


def test_meddx_runs_lists_cv_folders_and_a_time_for_every_run(tmp_path):
    """`meddx runs` left out `meddx cv` folders and showed no time for an ensemble folder (no status.json)."""
    import json

    from conftest import run_cli

    for k in (0, 1):  # a 5-fold cv killed during its second fold: no cv.json yet
        (tmp_path / "cv" / f"fold{k}").mkdir(parents=True)
        (tmp_path / "cv" / f"fold{k}" / "config.yaml").write_text(f"name: fold{k}\nsplit:\n  folds: 5\n  fold: {k}\n")
    (tmp_path / "cv" / "fold0" / "status.json").write_text(json.dumps({"state": "trained", "since": "2026-12-07"}))
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "config.yaml").write_text("name: ens\n")
    out = run_cli("runs", str(tmp_path)).stdout
    assert "cv, unfinished" in out and f"{tmp_path / 'cv'} (1 of 5 folds trained; `meddx cv` again resumes)" in out
    (tmp_path / "cv" / "cv.json").write_text(json.dumps({"folds": 5, "runs": ["fold0"]}))
    assert "(1 of 5 folds trained" in run_cli("runs", str(tmp_path)).stdout
    (tmp_path / "cv" / "cv.json").write_text(json.dumps({"folds": 2, "runs": ["fold0", "fold1"]}))
    (tmp_path / "cv" / "fold1" / "status.json").write_text(json.dumps({"state": "trained", "since": "2026-12-07"}))
    assert f"{tmp_path / 'cv'} (2 of 2 folds trained)\n" in run_cli("runs", str(tmp_path)).stdout  # none to resume
    ens = next(line for line in out.splitlines() if str(tmp_path / "ens") in line)
    assert ens.split()[1].startswith("20")  # a date, from the folder's config when it has no status.json
    (tmp_path / "ens" / "config.yaml").write_text("name: ens\nmodel: {name: resnet18}\ntrain: {init_from: src}\n")
    collapsed = {"model": {"macro": {"roc_auc": {"value": 0.5}}}, "collapse": {"evaluation": {"collapsed": True}}}
    (tmp_path / "ens" / "metrics.json").write_text(json.dumps(collapsed))
    line = next(x for x in run_cli("runs", str(tmp_path)).stdout.splitlines() if x.endswith("COLLAPSED"))
    assert line.endswith("  resnet18, from src; test ROC AUC 0.500; COLLAPSED") and str(tmp_path / "ens") in line


def test_an_ensemble_names_every_members_architecture(tmp_path):
    """`meddx ensemble` of a small CNN and a ResNet-18 was carded and reported as `small_cnn` alone."""
    import json

    from meddx.run import Run

    for name, model in (("a", "small_cnn"), ("b", "resnet18"), ("c", "small_cnn")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(f"model:\n  name: {model}\n")
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "config.yaml").write_text("model:\n  name: small_cnn\n")
    members = [str(tmp_path / "a"), "../b", str(tmp_path / "c")]
    (tmp_path / "ens" / "ensemble.json").write_text(json.dumps({"members": members, "weights": [0.4, 0.3, 0.3]}))
    assert Run(tmp_path / "ens").architecture() == "small_cnn + resnet18"
    assert Run(tmp_path / "a").architecture() == "small_cnn"


def test_a_stack_at_another_depth_is_outside_the_training_domain(data_dir):
    """AdrenalMNIST3D's 64-slice volumes sent to a model trained on its 28-slice ones changed predictions with no
    domain warning (the views taken from either look alike); the training stacks' depths now bound the check."""
    import numpy as np

    from meddx.data.images import read_pixels
    from meddx.data.medmnist import read_medmnist
    from meddx.data.tensors import volume_depth
    from meddx.export.domain import check_input, input_stats

    small = read_medmnist(need(data_dir, "medmnist/adrenalmnist3d.npz")).records[0]
    large = read_medmnist(need(data_dir, "medmnist/adrenalmnist3d_64.npz")).records[0]
    depths = [volume_depth(*read_pixels(r)) for r in (small, large)]
    assert depths == [28, 64] and volume_depth(np.zeros((28, 28)), "hw") is None
    scans = [np.random.default_rng(i).random((3, 28, 28)).astype(np.float32) for i in range(20)]
    stats = {**input_stats(scans, scans), "depth_range": [28, 28]}
    found = check_input(scans[0], scans[0], stats, depth=64)["warnings"]
    assert found == ["stack depth unlike training stacks (64 slices; trained on 28): other volume?"]
    assert check_input(scans[0], scans[0], stats, depth=30)["in_distribution"]  # within a quarter: the same kind
    assert check_input(scans[0], scans[0], {**stats, "depth_range": []}, depth=64)["in_distribution"]  # 2-D training


def test_a_scan_turned_by_90_degrees_is_flagged_and_a_square_set_never_is():
    """DaTscan slices are 109 x 91; one turned by 90 degrees (91 x 109) passed, its aspect within the 1.5 factor. A
    non-square training set now flags swapped width and height; square training scans never do (Kermany)."""
    import numpy as np

    from meddx.export.domain import check_input, input_stats

    rng = np.random.default_rng(0)
    scans = [rng.random((1, 109, 91)).astype(np.float32) for _ in range(20)]
    stats = input_stats(scans, [s[:, :64, :64] for s in scans])
    turned = np.ascontiguousarray(np.rot90(scans[0], axes=(1, 2)))
    assert any("turned by 90 degrees" in w for w in check_input(turned, turned[:, :64, :64], stats)["warnings"])
    assert not any("90 degrees" in w for w in check_input(scans[1], scans[1][:, :64, :64], stats)["warnings"])
    square = input_stats([s[:, :91, :] for s in scans], [s[:, :64, :64] for s in scans])
    flat = rng.random((1, 91, 91)).astype(np.float32)  # square scans against square training scans: never turned
    assert not any("90 degrees" in w for w in check_input(flat, flat[:, :64, :64], square)["warnings"])
    both = input_stats(scans[:11] + [np.ascontiguousarray(np.rot90(s, axes=(1, 2))) for s in scans[11:]],
                       [s[:, :64, :64] for s in scans])  # fmt: skip
    assert not any("90 degrees" in w for w in check_input(turned, turned[:, :64, :64], both)["warnings"])
