"""The report on real runs: collapse reported on a run that collapsed, a healthy run not flagged, HTML in Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import meddx

from conftest import ARTIFACTS, datscan_variant, need, run_cli


@pytest.fixture(scope="module")
def collapsed_run(data_dir, tmp_path_factory):
    """The DaTscan resident's failure: a learning rate far too high, every output the same."""
    return datscan_variant(
        data_dir,
        tmp_path_factory.mktemp("collapse"),
        "collapsed",
        {"max_epochs": 2, "lr": 10.0, "augment": {"enabled": False}},
        bootstrap=200,
    )


def test_collapse_is_reported(collapsed_run):
    training = json.loads((collapsed_run.path / "training.json").read_text())
    assert training["collapse"]["collapsed_epochs"], training["history"]
    metrics = json.loads((collapsed_run.path / "metrics.json").read_text())
    assert metrics["collapse"]["evaluation"]["collapsed"]
    assert metrics["beats_prior"] == {"PD": False}
    html = (collapsed_run.path / "report.html").read_text()
    assert "model collapse" in html and "learning rate too high" in html and "does not beat the prior" in html
    first = metrics["collapse"]["evaluation"]["likely_causes"][0]  # the run's own record, before the checklist
    assert first.startswith("learning rate 10 ") and ("AdamW" in first or "training loss reached" in first)
    proc = run_cli("evaluate", str(collapsed_run.path), "--bootstrap", "100")
    assert proc.returncode == 0, proc.stderr
    assert "model collapse" in proc.stdout and "NO" in proc.stdout


def test_healthy_run_is_not_flagged(healthy_run):
    training = json.loads((healthy_run.path / "training.json").read_text())
    assert training["collapse"]["collapsed_epochs"] == []
    metrics = json.loads((healthy_run.path / "metrics.json").read_text())
    assert not metrics["collapse"]["evaluation"]["collapsed"] and metrics["beats_prior"] == {"PD": True}
    auc = metrics["model"]["per_label"]["PD"]["roc_auc"]
    assert 0.5 < auc["ci_low"] <= auc["value"] <= auc["ci_high"]
    assert "model collapse" not in (healthy_run.path / "report.html").read_text()


def test_threshold_flag_moves_sensitivity(healthy_run):
    out = {}
    for rule in ("sensitivity=0.99", "sensitivity=0.8", "specificity=0.9"):
        m = meddx.evaluate(healthy_run, operating_point=rule, bootstrap=0)
        assert m["operating_point"]["rule"] == rule.replace("=", " ")
        out[rule] = (
            m["operating_point"]["thresholds"]["PD"],
            m["model"]["per_label"]["PD"]["sensitivity"]["value"],
            m["model"]["per_label"]["PD"]["specificity"]["value"],
        )
    (t_hi_sens, sens_hi, spec_hi), (t_lo_sens, sens_lo, spec_lo) = out["sensitivity=0.99"], out["sensitivity=0.8"]
    assert t_hi_sens <= t_lo_sens and sens_hi >= sens_lo and spec_hi <= spec_lo
    row = next(r for r in m["tradeoff"]["PD"] if r["rule"] == "sensitivity 0.99")
    assert row["val_sensitivity"] >= 0.99 and row["threshold"] == t_hi_sens


def test_report_files_and_figures(healthy_run):
    meddx.evaluate(healthy_run)
    path = healthy_run.path
    for name in ("roc", "pr", "calibration", "histograms", "confusion", "decision"):
        assert (path / "figures" / f"{name}.png").stat().st_size > 5000
    md = (path / "report.md").read_text()
    assert "baseline: prior" in md and "Operating points" in md and "leakage check: passed" in md
    unknown = "no patient ids: each sample counted as its own patient"  # DaTscan slices: '274 patients' said before
    assert (unknown in md) != healthy_run.data_info["patients_known"]
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["schema"] == "meddx.metrics/2" and metrics["thresholds_from"] == "val"
    assert set(metrics["baselines"]) == {"prior", "all_negative", "random", "majority"}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`meddx demo` as the README runs it (plan, train, evaluate on the bundled PneumoniaMNIST), budget 1 minute."""
    out = tmp_path_factory.mktemp("demo")
    result = run_cli("demo", "--budget", "1m", "--epochs", "2", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    return meddx.load_run(out / "demo-pneumoniamnist")


@pytest.mark.slow
def test_demo_report_renders_in_chromium(demo_run):
    """The demo's report at 1280 px: six figures side by side in a grid, AUC with its interval in the ROC figure's
    caption and the tables; the screenshot is kept under tests/artifacts."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make test installs it with apt)")
    from playwright.sync_api import sync_playwright

    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=[*flags, "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((demo_run.path / "report.html").as_uri())
        assert "meddx report" in page.title()
        assert page.locator("img").count() == 6  # ROC, PR, calibration, histograms, confusion, decision curve
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
        assert all(w > 100 for w in widths), widths
        assert page.locator("table").count() >= 3
        boxes = page.eval_on_selector_all(".figures figure", "els => els.map(e => e.getBoundingClientRect().toJSON())")
        assert abs(boxes[0]["y"] - boxes[1]["y"]) < 5 and boxes[1]["x"] > boxes[0]["x"] + 300  # side by side
        assert all(b["right"] <= 1280 for b in boxes)  # nothing runs off the page
        captions = page.locator("figcaption").all_inner_texts()
        auc = demo_run.metrics()["model"]["per_label"]["pneumonia"]["roc_auc"]
        assert captions[0] == f"ROC curve: ROC AUC {auc['value']:.3f} ({auc['ci_low']:.3f}-{auc['ci_high']:.3f})"
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "report.png").stat().st_size > 20000


def test_external_data_is_checked_against_the_training_images(healthy_run, data_dir, tmp_path):
    """A folder holding training images was evaluated as 'leakage check: passed'; now identical files (SHA-1) and
    re-encoded or resized copies (perceptual hash) are left out and said in the warnings (one copy stopped the
    outsider's `evaluate RUN --data OTHER` with no figures at all), or, asked to, stop it with one line."""
    from PIL import Image

    split = healthy_run.split_table()
    split["cls"] = [Path(s).parent.name for s in split["source"]]
    flat = tmp_path / "flat"  # class folders: 3 train images of each class and 5 test images of each
    for split_name, n in (("train", 3), ("test", 5)):
        for cls, rows in split[split["split"] == split_name].groupby("cls"):
            (flat / cls).mkdir(parents=True, exist_ok=True)
            for source in rows["source"].head(n):
                shutil.copy(source, flat / cls / f"{split_name}-{Path(source).name}")
    for cls, rows in split[split["split"] == "train"].groupby("cls"):  # one re-encoded copy per class
        source = rows["source"].iloc[10]
        image = Image.open(source)
        image.resize((image.width * 3 // 2, image.height * 3 // 2)).convert("RGB").save(
            flat / cls / f"copy-{Path(source).stem}.jpg", quality=70
        )
    proc = run_cli(
        "evaluate", str(healthy_run.path), "--data", str(flat), "--bootstrap", "0", "--stop-on-training-overlap"
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--drop-training-overlap" in proc.stderr
    assert "8 of 18 image(s) are identical (6) or near-identical (2) to the run's training/val images" in proc.stderr
    kept = run_cli("evaluate", str(healthy_run.path), "-d", str(flat), "--bootstrap", "0")  # the default: left out
    assert kept.returncode == 0, kept.stderr
    assert "8 of 18 file(s) of this data are copies (identical or near-identical)" in " ".join(kept.stdout.split())
    report = (healthy_run.path / "report-external-flat-bootstrap0.md").read_text()
    assert "18 files of this data checked against the run's train and val images (SHA-1; near duplicates" in report
    assert "8 identical or near-identical ones left out" in report
    data = report.split("## Data")[1].split("## Model")[0]  # the evaluated folder, not the training data
    assert f"- source: `{flat}`" in data and f"the model was trained on `{healthy_run.data_info['origin']}`" in data
    sizes = healthy_run.data_info["sizes"]
    assert "| external-flat | 10 | 10 |" in data and f"| train | {sizes['train']['samples']} |" in data
    assert "| test |" not in data  # the run's own test split is not what was evaluated
    assert "applied to external-flat" in report and "external-flat sens" in report and "(test" not in report
    assert json.loads((healthy_run.path / "metrics-external-flat-bootstrap0.json").read_text())["n_samples"] == 10
    for cls in ("HC", "PD"):  # class folders named in another case are the run's classes, not a mismatch
        (flat / cls).rename(flat / cls.lower())
    lower = run_cli("evaluate", str(healthy_run.path), "-d", str(flat), "--bootstrap", "0", "--drop-training-overlap")
    assert lower.returncode == 0, lower.stderr
    assert json.loads((healthy_run.path / "metrics-external-flat-bootstrap0.json").read_text())["n_samples"] == 10
    flat.rename(tmp_path / "external")  # a folder named `external` is not evaluated as `external-external`
    named = run_cli(
        "evaluate",
        str(healthy_run.path),
        "-d",
        str(tmp_path / "external"),
        "--bootstrap",
        "0",
        "--drop-training-overlap",
    )
    assert named.returncode == 0 and (healthy_run.path / "metrics-external-bootstrap0.json").is_file(), named.stderr


def test_a_what_if_evaluation_keeps_the_headline(healthy_run):
    """`evaluate -t sensitivity=0.95` overwrote metrics.json, whose operating point the package and the server use;
    now it is kept under its own name and the headline stays."""
    headline = (healthy_run.path / "metrics.json").read_text()
    proc = run_cli("evaluate", str(healthy_run.path), "-t", "sensitivity=0.95", "--bootstrap", "0")
    assert proc.returncode == 0, proc.stderr
    assert (healthy_run.path / "metrics.json").read_text() == headline
    name = "test-bootstrap0-sensitivity0.95"
    what_if = json.loads((healthy_run.path / f"metrics-{name}.json").read_text())
    assert what_if["operating_point"]["rule"] == "sensitivity 0.95" and what_if["name"] == name
    assert f"report-{name}.html" in proc.stdout and "keep the headline operating point" in proc.stdout


def test_new_data_never_takes_the_name_of_the_runs_own_split(healthy_run, data_dir):
    """`evaluate --data X --split val` wrote X's predictions over predictions/val.csv, where every later threshold
    and temperature come from; now it stops with one line."""
    before = (healthy_run.path / "predictions" / "val.csv").read_bytes()
    proc = run_cli(
        "evaluate", str(healthy_run.path), "--data", str(data_dir / "datscan_spect_ppmi_2d/train"), "--split", "val"
    )
    assert proc.returncode == 2 and "--split val: the run's own split" in proc.stderr and "Traceback" not in proc.stderr
    assert (healthy_run.path / "predictions" / "val.csv").read_bytes() == before


def test_a_label_of_one_class_is_undefined_not_a_failure():
    """New data where every sample is positive for a label: its AUC is undefined, and the report said the model
    'does not beat the prior baseline' there, a failure it cannot have."""
    from meddx.evaluation.sections import warnings_of

    result = {
        "collapse": {"evaluation": {"collapsed": False, "flat_labels": []}},
        "beats_prior": {"Pneumonia": False, "Viral": False, "Bacterial": True},
        "model": {
            "per_label": {
                n: {"roc_auc": {"value": v}} for n, v in (("Pneumonia", None), ("Viral", 0.52), ("Bacterial", 0.9))
            }
        },
    }
    undefined, losers = warnings_of(result)
    assert undefined.startswith("ROC AUC undefined for Pneumonia: this data holds one class only")
    assert losers.startswith("does not beat the prior baseline") and losers.endswith(": Viral")


def test_new_data_naming_training_patients_is_warned_on_the_terminal(healthy_run, tmp_path):
    """Patient ids of new data that also name training patients were one clause deep in the report's leakage line;
    now they are a warning at the top of the report and on the terminal."""
    split = healthy_run.split_table()
    test = split[split["split"] == "test"].groupby(split["source"].map(lambda s: Path(s).parent.name)).head(5)
    train = split[split["split"] == "train"].head(10)
    rows = []
    for src, pid in zip(test["source"], train["patient_id"]):
        shutil.copy(src, tmp_path / Path(src).name)
        rows.append(f"{Path(src).name},{pid},{Path(src).parent.name}")
    (tmp_path / "new.csv").write_text("path,patient,label\n" + "\n".join(rows) + "\n")
    proc = run_cli("evaluate", str(healthy_run.path), "--data", str(tmp_path / "new.csv"), "--bootstrap", "0",
                   "--patient-column", "patient", "--label-column", "label")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: 10 patient id(s) of this data also name patients the model trained or was tuned on" in proc.stdout
    report = (healthy_run.path / "report-external-new-bootstrap0.md").read_text()
    assert "> **WARNING**: 10 patient id(s) of this data" in report


def test_new_data_unlike_the_training_scans_is_warned_before_its_figures(healthy_run, data_dir, tmp_path):
    """Chest X-rays evaluated on the DaTscan model gave AUC 0.54 and not a word that they are not SPECT slices; the
    input-domain check `meddx serve` makes on each upload now runs over new data, and its own kind of scan passes,
    even scaled otherwise (DICOM copies stretched min-max were all flagged, for a model that standardises each scan)."""
    import numpy as np
    from PIL import Image

    xrays = sorted((need(data_dir, "nih_chestxray14_64px_binary") / "valid").rglob("*.png"))[:20]
    for i, src in enumerate(xrays):
        (tmp_path / "xrays" / ("HC" if i % 2 else "PD")).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, tmp_path / "xrays" / ("HC" if i % 2 else "PD") / src.name)
    proc = run_cli("evaluate", str(healthy_run.path), "--data", str(tmp_path / "xrays"), "--bootstrap", "0")
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: 20 of 20 scans checked fall outside the training scans' input domain" in proc.stdout
    metrics = json.loads((healthy_run.path / "metrics-external-xrays-bootstrap0.json").read_text())
    warning = metrics["warning_domain"]
    assert "the layout is unlike the training scans (20); e.g. " in warning  # the scans named
    assert ".png (the layout is unlike the training scans)" in warning
    split = healthy_run.split_table()
    for src in split.loc[split["split"] == "test", "source"]:
        (tmp_path / "own" / Path(src).parent.name).mkdir(parents=True, exist_ok=True)
        darker = (np.asarray(Image.open(src), np.float32) * 0.5).astype(np.uint8)  # the same scan, half as bright
        Image.fromarray(darker).save(tmp_path / "own" / Path(src).parent.name / Path(src).name)
    assert (
        run_cli("evaluate", str(healthy_run.path), "--data", str(tmp_path / "own"), "--bootstrap", "0").returncode == 0
    )
    own = json.loads((healthy_run.path / "predictions" / "external-own.data.json").read_text())["domain"]
    assert own["checked"] == (split["split"] == "test").sum() and own["outside"] <= 0.1 * own["checked"]


def test_a_split_of_few_patients_is_warned_about(tmp_path):
    """NIH 64 px's test split of 16 patients scored AUC 0.51 against val 0.71 with nothing saying it is tiny."""
    from types import SimpleNamespace

    from meddx.evaluation.report import _optimism_warnings

    few = _optimism_warnings(SimpleNamespace(path=tmp_path), "test", 16)
    assert few["warning_small_split"].startswith("only 16 patients in this split: its intervals are wide")
    assert "warning_small_split" not in _optimism_warnings(SimpleNamespace(path=tmp_path), "test", 110)
    (tmp_path / "data.json").write_text(json.dumps({"sizes": {"val": {"samples": 6, "patients": 6}}}))
    small_val = _optimism_warnings(SimpleNamespace(path=tmp_path), "test", 110)["warning_small_val"]
    assert small_val.startswith("only 6 patients in val, where the operating point was chosen")  # its own doubt
    (tmp_path / "data.json").write_text(json.dumps({"sizes": {"val": {"samples": 90, "patients": 90}}}))
    assert "warning_small_val" not in _optimism_warnings(SimpleNamespace(path=tmp_path), "test", 110)


def test_the_headline_counts_samples_whose_label_is_unknown():
    """A blank 0/1 label is left out of every figure, as documented, but the terminal said '468 samples' for 467
    scored; the headline says how many were left out."""
    from rich.console import Console

    from meddx.evaluation.summary import headline

    figure = {"value": 0.9}
    per = {"roc_auc": figure, "pr_auc": figure, "sensitivity": figure, "specificity": figure}
    metrics = {"split": "external-x", "n_samples": 468, "n_patients": 468, "labels": ["y"], "unknown_labels": {"y": 1},
               "bootstrap": {"ci": 0.95, "resamples": 0}, "operating_point": {"rule": "Youden's J"},
               "model": {"per_label": {"y": per}}, "baselines": {"prior": {"per_label": {"y": per}}},
               "beats_prior": {"y": True}}  # fmt: skip
    console = Console(width=200, record=True)
    console.print(headline(metrics))
    assert "468 samples (y: 1 unknown, left out)" in console.export_text()


def test_a_val_loss_no_lower_than_untrained_is_said():
    """'val loss 0.3325 untrained -> 0.3356' read as training having worked; the summary now says nothing was learnt
    that val loss shows."""
    from meddx.evaluation.sections import _training_summary

    flat = {"best_epoch": 4, "epochs_run": 7, "seconds": 9, "initial_val_loss": 0.3325, "best_val_loss": 0.3356}
    assert "no lower than untrained" in _training_summary(flat)
    assert "no lower than untrained" not in _training_summary({**flat, "best_val_loss": 0.2})
    weighted = {**flat, "loss_weights": {"pos_weight": [0.259], "neg_weight": [0.741]}}  # 0.033 beside log loss 0.084
    assert "val loss (class-weighted, as trained: not the log loss below) 0.3325" in _training_summary(weighted)
    assert "class-weighted" not in _training_summary({**flat, "loss_weights": {}})


def test_a_threshold_that_does_not_transfer_is_warned():
    """28 px scans for a Kermany model: AUC 0.92 but specificity 0.08 at the val threshold (0.96 on val), and no
    word; a sensitivity or specificity 0.15 or more from val's, outside both intervals, is a warning now."""
    from meddx.evaluation.report import threshold_shift

    row = {"rule": "Youden's J", "val_sensitivity": 0.96, "val_specificity": 0.96, "test_sensitivity": 0.99,
           "test_specificity": 0.08}  # fmt: skip
    result = {"operating_point": {"rule": "Youden's J"}, "tradeoff": {"PNEUMONIA": [row]}, "n_patients": 500}
    warning = threshold_shift(result)["warning_threshold_shift"]
    assert (
        "PNEUMONIA: specificity 0.08 here against 0.96 on val" in warning
        and "sensitivity" not in warning.split(";")[0][:40]
    )
    assert threshold_shift({**result, "tradeoff": {"PNEUMONIA": [{**row, "test_specificity": 0.9}]}}) == {}
    noisy = {**row, "test_specificity_ci": [0.0, 0.97]}  # a tiny split: val's figure inside its interval
    assert threshold_shift({**result, "tradeoff": {"PNEUMONIA": [noisy]}}) == {}
    assert threshold_shift({**result, "n_patients": 40}) == {}  # no intervals (--bootstrap 0) and few patients
    few = {**row, "val_positives": 6, "val_negatives": 5}  # val's own 0.96 of 5 negatives: 0.57-1.0 (Wilson)
    assert threshold_shift({**result, "tradeoff": {"PNEUMONIA": [{**few, "test_specificity": 0.6}]}}) == {}
    assert threshold_shift({**result, "tradeoff": {"PNEUMONIA": [few]}})  # 0.08 is outside it still
    own = threshold_shift({**result, "tradeoff": {"PNEUMONIA": [few]}}, "test")["warning_threshold_shift"]
    assert "val is small enough to be the cause" in own and "another population" not in own  # its own test split
    many = {**row, "val_positives": 600, "val_negatives": 500}  # a large val places it well: not the cause
    own = threshold_shift({**result, "tradeoff": {"PNEUMONIA": [many]}}, "test")["warning_threshold_shift"]
    assert "the test split's scores sit elsewhere than val's" in own and "val is small" not in own
    # 600 val scans of 6 patients are 6 draws, not 600: val's interval is wide again, so val is blamed
    counts = {"PNEUMONIA": (6, 5)}
    own = threshold_shift({**result, "tradeoff": {"PNEUMONIA": [many]}}, "test", counts)["warning_threshold_shift"]
    assert "val is small enough to be the cause" in own
    audit = {
        **row,
        "test_sensitivity": 0.97,
        "test_specificity": 0.684,
        "test_specificity_ci": [0.623, 0.741],
        "val_specificity": 0.978,
        "val_negatives": 135,
    }  # fmt: skip (PneumoniaMNIST: a gap of 0.29 went unsaid)
    assert "specificity 0.68 here against 0.98" in threshold_shift({**result, "tradeoff": {"P": [audit]}})[
        "warning_threshold_shift"]  # fmt: skip
    small = {
        **row,
        "test_sensitivity": 0.595,
        "test_sensitivity_ci": [0.44, 0.74],
        "val_sensitivity": 0.95,
        "val_positives": 20,
        "test_specificity": 0.93,
    }  # fmt: skip (val's 0.76-0.99 and test's do not meet)
    own = threshold_shift({**result, "tradeoff": {"B": [small]}}, "test")["warning_threshold_shift"]
    assert "val is small enough" not in own and "sit elsewhere" in own


def test_val_patients_count_each_patient_once_per_side():
    from meddx.evaluation.report import val_patients

    y = np.array([[1.0, 0.0], [1.0, np.nan], [0.0, 1.0], [0.0, 0.0]])
    counts = val_patients(y, np.array(["a", "a", "b", "c"]), ["x", "z"])
    assert counts == {"x": (1, 2), "z": (1, 2)}  # 'a' twice positive is one patient; an unknown label is neither


def test_a_custom_operating_point_has_its_tradeoff_row_and_its_threshold_shift_warning():
    """`--operating-point sensitivity=0.85` is none of the trade-off table's rules, so the table lacked the headline's
    row and the threshold-shift warning, which reads it, stayed silent; now the run's own rule is a row of its own."""
    from meddx.config import EvaluateConfig
    from meddx.evaluation.evaluation import evaluate_arrays
    from meddx.evaluation.report import threshold_shift

    rng = np.random.default_rng(0)
    y_val, y_test = (rng.random((300, 1)) < 0.5).astype(float), (rng.random((300, 1)) < 0.5).astype(float)
    p_val = np.clip(0.3 * y_val + 0.5 * rng.random((300, 1)), 0, 1)
    p_test = np.clip(0.3 * y_test + 0.5 * rng.random((300, 1)) + 0.3, 0, 1)  # another site's scores sit higher
    cfg = EvaluateConfig(bootstrap=100, operating_point="sensitivity=0.85")
    result = evaluate_arrays(y_val, p_val, y_test, p_test, np.arange(300), np.array([0.5]), "binary", ["x"], cfg)
    rules = [r["rule"] for r in result["tradeoff"]["x"]]
    assert result["operating_point"]["rule"] in rules and len(rules) == len(set(rules)) == 10
    row = next(r for r in result["tradeoff"]["x"] if r["rule"] == result["operating_point"]["rule"])
    assert row["threshold"] == pytest.approx(result["operating_point"]["thresholds"]["x"])
    assert "x: specificity" in threshold_shift(result)["warning_threshold_shift"]
    usual = evaluate_arrays(y_val, p_val, y_test, p_test, np.arange(300), np.array([0.5]), "binary", ["x"],
                            EvaluateConfig(bootstrap=100, operating_point="sensitivity=0.9"))  # fmt: skip
    assert len(usual["tradeoff"]["x"]) == 9  # a rule of the table is not repeated
    from meddx.evaluation.evaluation import tradeoff_points

    assert len(tradeoff_points("sensitivity=0.9000001")) == 9  # nor one that reads the same ('sensitivity 0.9')


def test_a_class_argmax_seldom_calls_is_warned_about():
    """NORMAL/BACTERIA/VIRUS: VIRUS 'beats prior: yes' while argmax called 22 of 148 viral cases viral; nothing said."""
    from meddx.config import EvaluateConfig
    from meddx.evaluation.evaluation import evaluate_arrays
    from meddx.evaluation.report import argmax_misses

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 300)
    p = np.eye(3)[truth] * 0.4 + rng.random((300, 3)) * 0.3
    p[truth == 2, 1] += 0.5  # viral cases look bacterial to argmax, though their viral score still ranks
    p /= p.sum(1, keepdims=True)
    y = np.eye(3)[truth]
    result = evaluate_arrays(y, p, y, p, np.arange(300), np.full(3, 1 / 3), "multiclass", ["N", "B", "V"],
                             EvaluateConfig(bootstrap=0))  # fmt: skip
    warned = argmax_misses(result)["warning_argmax_misses"]
    assert warned.startswith("argmax calls fewer than half of the cases of V 0.") and "B " not in warned
    assert argmax_misses({**result, "task": "multilabel"}) == {}


def test_flat_predictions_on_new_data_point_at_the_scans_not_at_training():
    """Stretched intensities fed to a dataset-normalised model: 'model collapse ... learning rate too high' blamed
    training for an input shift; on new data the warning points at the scans first."""
    from meddx.evaluation.sections import warnings_of

    collapsed = {"collapsed": True, "judged": True, "flat_labels": ["PD"], "tolerance": 0.01, "likely_causes": ["lr"]}
    result = {"collapse": {"evaluation": collapsed}, "model": {"per_label": {"PD": {"roc_auc": {"value": 0.5}}}},
              "beats_prior": {"PD": False}, "split": "external-held"}  # fmt: skip
    first = warnings_of(result)[0]
    assert first.startswith("predictions are (nearly) the same for every scan of this data on PD: check its scans")
    assert warnings_of({**result, "split": "test"})[0].startswith("model collapse:")


def test_a_notebook_user_prints_what_the_command_line_prints(datscan_run):
    """`meddx.train(...)` in a script printed nothing, not even the WARNING lines the CLI shows; `meddx.print_summary`
    is the one call that does, and it is the function the CLI uses."""
    import io

    from rich.console import Console

    import meddx

    out = io.StringIO()
    meddx.print_summary(datscan_run, console=Console(file=out, force_terminal=True, width=200))
    text = out.getvalue()
    assert "test split" in text and "PD" in text and "beats prior" in text


def test_the_trade_off_header_names_each_column_once_on_any_split():
    """Evaluated on val, the header read 'val sens | val spec | val sens | val spec' (audit)."""
    from meddx.evaluation.sections import tradeoff_header

    on_val = tradeoff_header("val")
    assert len(set(on_val)) == len(on_val) and "val sens (chosen on)" in on_val and "val PPV" in on_val
    assert tradeoff_header("test")[2:5] == ["val sens", "val spec", "test sens"]
    assert "external-kermany sens" in tradeoff_header("external-kermany")


def test_a_decision_curve_gain_of_a_model_at_chance_is_called_likely_chance():
    """A model at AUC 0.485 'adds net benefit ... at 9 of 99 points between 36% and 45%' and nothing more (audit)."""
    from meddx.evaluation.sections import _decision_text

    curve = {"useful_range": [0.36, 0.45], "useful_contiguous": False, "useful_points": 9, "thresholds": [0] * 99,
             "prevalence": 0.438}  # fmt: skip
    assert "likely chance" in _decision_text(curve, "test", beats_prior=False)
    assert "likely chance" not in _decision_text(curve, "test") and "at 9 of 99 points" in _decision_text(curve, "test")
    assert "likely chance" not in _decision_text({**curve, "useful_range": None}, "test", beats_prior=False)
