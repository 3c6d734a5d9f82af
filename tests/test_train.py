"""Training on real data: loss goes down, the run folder reloads to identical predictions, every task kind, DDP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import meddx
from meddx.errors import ConfigError
from meddx.training.losses import bce_weights, weighted_bce_with_logits

from conftest import FIXED_RECIPE, need, run_cli

FAST = {"train": {"max_epochs": 3, "batch_size": 64, "progress_bar": False}}


def test_weights_match_the_formula():
    y = np.array([[1, 0], [0, 0], [1, 1], [1, 0]], dtype=np.float32)
    w_pos, w_neg = bce_weights(y)
    np.testing.assert_allclose(w_pos, [1 / 4, 3 / 4])  # w+ = negatives / total
    np.testing.assert_allclose(w_neg, [3 / 4, 1 / 4])  # w- = positives / total
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5], [-0.7, 1.5], [0.1, -2.0]])
    p = torch.sigmoid(logits).double().numpy()
    manual = -(w_pos * y * np.log(p) + w_neg * (1 - y) * np.log(1 - p)).mean()
    got = weighted_bce_with_logits(logits, torch.from_numpy(y), torch.from_numpy(w_pos), torch.from_numpy(w_neg))
    assert got.item() == pytest.approx(manual, rel=1e-6)
    # both classes contribute equally to the loss in total (the point of the weighting)
    assert np.allclose(w_pos * y.sum(0), w_neg * (1 - y).sum(0))


def test_training_lowers_val_loss_and_writes_the_run_folder(datscan_run):
    path = datscan_run.path
    for f in (
        "config.yaml",
        "preprocess.json",
        "split.csv",
        "data.json",
        "training.json",
        "model.pt",
        "metrics.json",
        "report.md",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "predictions/test.csv",
        "predictions/val.csv",
    ):
        assert (path / f).is_file(), f
    assert list((path / "tb").glob("events.out.tfevents.*"))
    assert torch.load(path / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 3  # the last of 4 epochs
    training = json.loads((path / "training.json").read_text())
    assert training["best_val_loss"] < training["initial_val_loss"] * 0.9
    assert training["loss_weights"]["pos_weight"][0] == pytest.approx(352 / 1097, abs=0.02)  # HC share, w+ = neg/total
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert metrics["model"]["per_label"]["PD"]["roc_auc"]["value"] > 0.75
    assert metrics["baselines"]["prior"]["per_label"]["PD"]["roc_auc"]["value"] == 0.5
    split = pd.read_csv(path / "split.csv")
    assert len(split) == 1097 and set(split["split"]) == {"train", "val", "test"}


def test_reload_gives_identical_predictions(datscan_run, data_dir):
    run = meddx.load_run(datscan_run.path)
    saved = run.predictions("test")
    files = [str(data_dir / "datscan_spect_ppmi_2d" / i) for i in saved["id"]]
    again = run.predict(files)
    np.testing.assert_allclose(again["p_PD"].to_numpy(), saved["p_PD"].to_numpy(), atol=1e-6)
    assert again["id"].tolist() == files  # named as given: HC/x.png and PD/x.png would be two rows, not one id twice
    cfg = meddx.load_config(datscan_run.path / "config.yaml")
    assert cfg.data.image_size == 48 and cfg.train.max_epochs == 4
    proc = run_cli("predict", str(datscan_run.path), files[0], files[1], "-o", str(datscan_run.path / "cli.csv"))
    assert proc.returncode == 0, proc.stderr
    cli = pd.read_csv(datscan_run.path / "cli.csv")
    np.testing.assert_allclose(cli["p_PD"].to_numpy(), saved["p_PD"].to_numpy()[:2], atol=1e-6)


def test_predict_takes_folders_and_csvs_and_gives_decisions(datscan_run, data_dir, tmp_path):
    """predict gave probabilities only: now the decision at the run's operating point, the input-domain check, folder
    and CSV inputs (ids as `meddx evaluate --data` names them), JSON, and an unreadable file named in its own row.
    A scan positive for nothing is called by the run's other class (HC), not `negative`."""
    import json
    import shutil

    saved = meddx.load_run(datscan_run.path).predictions("test").head(4)
    metrics = json.loads((datscan_run.path / "metrics.json").read_text())
    threshold = metrics["operating_point"]["thresholds"]["PD"]
    for i in saved["id"]:
        (tmp_path / "scans" / Path(i).parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / "datscan_spect_ppmi_2d" / i, tmp_path / "scans" / Path(i).parent.name / Path(i).name)
    (tmp_path / "scans" / "HC" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (tmp_path / "scans" / "HC" / "empty.png").write_bytes(b"")
    proc = run_cli("predict", str(datscan_run.path), str(tmp_path / "scans"), "--json")
    assert proc.returncode == 1 and "2 of 6 file(s) could not be read" in proc.stderr
    rows = {r["id"]: r for r in json.loads(proc.stdout)}
    assert rows["HC/empty.png"]["error"].endswith("empty.png: the file is empty (0 bytes)")  # not 'empty upload'
    assert '"HC/broken.png"' in proc.stdout  # slashes as written, not pandas' \/
    assert "broken.png" in rows["HC/broken.png"]["error"] and "upload" not in rows["HC/broken.png"]["error"]  # a file
    assert list(meddx.predict(datscan_run.path, [tmp_path / "scans"]).columns)[-1] == "error"  # a failure came first
    gone = meddx.predict(datscan_run.path, [tmp_path / "gone.png"])["error"][0]
    assert gone == f"{tmp_path / 'gone.png'}: file not found (looked at {tmp_path / 'gone.png'})"
    for _, s in saved.iterrows():
        row = rows[str(Path(s["id"]).relative_to("train"))]
        assert row["p_PD"] == pytest.approx(s["p_PD"], abs=1e-5) and row["operating_point"] == "Youden's J"
        assert row["decision"] == ("PD" if s["p_PD"] >= threshold else "HC") and row["in_domain"] is True
    pd.DataFrame({"path": [f"scans/{Path(i).parent.name}/{Path(i).name}" for i in saved["id"]]}).to_csv(
        tmp_path / "m.csv", index=False
    )
    from_csv = meddx.predict(datscan_run.path, [tmp_path / "m.csv"])
    assert len(from_csv) == 4 and from_csv["error"].isna().all()  # missing where read: df[df.error.notna()] fails
    (tmp_path / "lists").mkdir()  # a list kept apart from its scans: --root says where its paths start
    (tmp_path / "lists" / "m.csv").write_text((tmp_path / "m.csv").read_text())
    assert meddx.predict(datscan_run.path, [tmp_path / "lists" / "m.csv"])["error"].notna().all()
    proc = run_cli("predict", str(datscan_run.path), str(tmp_path / "lists" / "m.csv"), "--root", str(tmp_path),
                   "-o", str(tmp_path / "p.json"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "p.json").read_text())  # a .json name writes JSON records, not a CSV
    assert [r["p_PD"] for r in rows] == pytest.approx(from_csv["p_PD"].tolist(), abs=1e-6)


def _kermany_manifest(data_dir, tmp_path, n_per_class=120) -> str:
    folder = need(data_dir, "chest_xray_pneumonia_224/train")
    rows = []
    for cls in ("NORMAL", "PNEUMONIA"):
        for f in sorted((folder / cls).iterdir())[: n_per_class * (2 if cls == "PNEUMONIA" else 1)]:
            kind = "virus" if "virus" in f.name else "bacteria" if "bacteria" in f.name else "normal"
            patient = f.name.split("_")[0] if cls == "PNEUMONIA" else "-".join(f.name.split("-")[:-1])
            rows.append(
                {
                    "path": f"{cls}/{f.name}",
                    "patient": patient,
                    "kind": kind,
                    "pneumonia": int(kind != "normal"),
                    "bacteria": int(kind == "bacteria"),
                    "virus": int(kind == "virus"),
                }
            )
    csv = tmp_path / "kermany.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return str(csv)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multilabel", "multiclass"])
def test_multilabel_and_multiclass_heads_on_real_xrays(data_dir, tmp_path, task):
    csv = _kermany_manifest(data_dir, tmp_path)
    data = {
        "path": csv,
        "root": str(data_dir / "chest_xray_pneumonia_224/train"),
        "image_column": "path",
        "patient_column": "patient",
        "image_size": 32,
        "channels": 1,
    }
    data.update(
        {"label_columns": ["pneumonia", "bacteria", "virus"]} if task == "multilabel" else {"label_column": "kind"}
    )
    run = meddx.train(
        {
            "output_dir": str(tmp_path),
            "data": data,
            "train": {**FAST["train"], "max_epochs": 2, "class_weights": "on"},
            "plan": {"enabled": False},
        }
    )
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["task"] == task
    expected = ["pneumonia", "bacteria", "virus"] if task == "multilabel" else ["bacteria", "normal", "virus"]
    assert metrics["labels"] == expected
    probs = run.predictions("test")[[f"p_{n}" for n in expected]].to_numpy()
    if task == "multiclass":
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        with pytest.raises(ConfigError, match="a multi-class run decides by argmax"):  # was silently ignored
            meddx.evaluate(run, operating_point="sensitivity=0.95")
        scan = run.records("test")[0]  # Grad-CAM explains the most probable class, not the first, unless told
        _, prob, name = meddx.explain_file(run, scan.source, out=tmp_path / "cam.png")
        row = run.predictions("test").set_index("id").loc[scan.id]
        assert name == max(expected, key=lambda n: row[f"p_{n}"]) and prob == pytest.approx(row[f"p_{name}"], abs=1e-4)
        page = meddx.gallery(run, "test", k=1, out_dir=tmp_path / "gallery")  # every class, not the first only
        assert all(f"{n}/index.html" in page.read_text() for n in expected)
        assert all("the most probable class" in (tmp_path / "gallery" / n / "index.html").read_text() for n in expected)
    training = json.loads((run.path / "training.json").read_text())
    key = "class_weight" if task == "multiclass" else "pos_weight"
    assert len(training["loss_weights"][key]) == 3


@pytest.mark.slow
def test_ddp_two_processes_gloo(data_dir, tmp_path):
    npz = need(data_dir, "medmnist/breastmnist.npz")
    proc = run_cli(
        "train",
        "--data",
        str(npz),
        "--devices",
        "2",
        "--accelerator",
        "cpu",
        "--epochs",
        "2",
        "--output-dir",
        str(tmp_path),
        "--name",
        "ddp",
        *FIXED_RECIPE,
        "--set",
        "split.on_duplicate_images=drop_from_train",
        timeout=900,
        own_process=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # only rank 0 made a run folder
    run = meddx.load_run(tmp_path / "ddp")
    training = json.loads((run.path / "training.json").read_text())
    assert training["epochs_run"] == 2 and len(training["history"]) == 2
    assert "GLOBAL_RANK: 1" in proc.stderr + proc.stdout or "MEMBER: 2/2" in proc.stderr + proc.stdout
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["n_samples"] == 156


@pytest.mark.slow
def test_library_noise_goes_to_the_run_log_not_the_terminal(tmp_path):
    """Lightning's litlogger tip and _pytree deprecation reached the user's terminal; now they land in meddx.log."""
    proc = run_cli(
        "train", "--data", "pneumoniamnist", "--epochs", "1", *FIXED_RECIPE, "--name", "quiet",
        "--output-dir", str(tmp_path), own_process=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    terminal = proc.stdout + proc.stderr
    assert "litlogger" not in terminal and "LeafSpec" not in terminal and "run folder:" in terminal
    log = (tmp_path / "quiet" / "meddx.log").read_text()
    assert "litlogger" in log and "LeafSpec" in log


@pytest.mark.slow
def test_subgroups_by_a_manifest_column(data_dir, tmp_path):
    """`meddx evaluate --by site`: every figure per value of a manifest column with its interval (checked against
    scikit-learn on the subgroup), the largest gap in words, and an unknown column named in one line."""
    from sklearn.metrics import roc_auc_score

    csv = _kermany_manifest(data_dir, tmp_path, n_per_class=250)
    table = pd.read_csv(csv)
    table["site"] = ["north" if sum(map(ord, p)) % 2 else "south" for p in table["patient"]]
    table.to_csv(csv, index=False)
    data = {"path": csv, "root": str(data_dir / "chest_xray_pneumonia_224/train"), "image_column": "path",
            "patient_column": "patient", "label_columns": ["pneumonia"], "image_size": 32, "channels": 1}  # fmt: skip
    run = meddx.train(
        {"output_dir": str(tmp_path), "data": data, "train": {**FAST["train"], "max_epochs": 2},
         "plan": {"enabled": False}, "evaluate": {"bootstrap": 200}}
    )  # fmt: skip
    proc = run_cli("evaluate", str(run.path), "--by", "site")
    assert proc.returncode == 0, proc.stderr
    sub = json.loads((run.path / "metrics-test-by-site.json").read_text())["subgroups"]
    test = run.predictions("test").merge(table.rename(columns={"path": "id"})[["id", "site"]], on="id")
    assert all("figures" in g for g in sub["groups"].values()) and "largest_gap" in sub
    for site, rows in test.groupby("site"):
        group = sub["groups"][site]
        assert group["samples"] == len(rows)
        if "figures" in group:
            auc = group["figures"]["roc_auc"]
            assert auc["value"] == pytest.approx(roc_auc_score(rows["pneumonia"], rows["p_pneumonia"]), abs=1e-9)
            assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]
    report = (run.path / "report-test-by-site.md").read_text()
    assert "## Subgroups by site" in report and ("Largest gap in ROC AUC" in report or "Fewer than two" in report)
    bad = run_cli("evaluate", str(run.path), "--by", "scanner")
    assert bad.returncode == 2 and "no column 'scanner' for subgroups" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_samples_per_second_counts_the_samples_seen(tmp_path):
    """training.json divided the whole train split by the time even under limit_train_batches."""
    run = meddx.train(
        {"data": {"path": "pneumoniamnist"}, "output_dir": str(tmp_path), "plan": {"enabled": False},
         "train": {"max_epochs": 1, "batch_size": 64, "limit_train_batches": 2, "progress_bar": False},
         "evaluate": {"bootstrap": 0}}
    )  # fmt: skip
    training = json.loads((run.path / "training.json").read_text())
    assert training["train_samples_seen"] == 128  # 2 batches of 64; per second divides this count by the time


@pytest.mark.slow
def test_unknown_uncertain_and_soft_labels(data_dir, tmp_path):
    """Blank (unknown) labels are left out of the loss and every metric, CheXpert's -1 follows data.uncertain_labels,
    values in (0, 1) train as soft targets; the reader says so; anything else is named in one line."""
    from sklearn.metrics import roc_auc_score

    csv = _kermany_manifest(data_dir, tmp_path, n_per_class=150)
    table = pd.read_csv(csv, dtype=str)
    rng = np.random.default_rng(0)
    table.loc[rng.random(len(table)) < 0.15, "virus"] = ""
    table.loc[rng.random(len(table)) < 0.10, "bacteria"] = "-1"
    soft = (table["pneumonia"] == "1") & (rng.random(len(table)) < 0.2)
    table.loc[soft, "pneumonia"] = "0.7"
    table.to_csv(csv, index=False)
    data = {"path": csv, "root": str(data_dir / "chest_xray_pneumonia_224/train"), "image_column": "path",
            "patient_column": "patient", "label_columns": ["pneumonia", "bacteria", "virus"], "image_size": 32,
            "channels": 1}  # fmt: skip
    run = meddx.train(
        {"output_dir": str(tmp_path), "data": data, "train": {**FAST["train"], "max_epochs": 2},
         "plan": {"enabled": False}, "evaluate": {"bootstrap": 100}}
    )  # fmt: skip
    notes = json.loads((run.path / "data.json").read_text())["notes"]
    assert any("uncertain (-1) label(s): ignore" in n for n in notes) and any("soft label(s)" in n for n in notes)
    test = run.predictions("test")
    metrics = json.loads((run.path / "metrics.json").read_text())
    for name in ("pneumonia", "bacteria", "virus"):
        known = test[name].notna()
        expected = roc_auc_score(test.loc[known, name] >= 0.5, test.loc[known, f"p_{name}"])
        assert metrics["model"]["per_label"][name]["roc_auc"]["value"] == pytest.approx(expected, abs=1e-9)
    assert test["virus"].isna().any() and np.isfinite(metrics["model"]["overall"]["mlogloss"]["value"])
    table.loc[0, "virus"] = "2"
    table.to_csv(csv, index=False)
    with pytest.raises(meddx.errors.DataError, match="row 2, column 'virus': label value '2'"):
        meddx.read_dataset(meddx.config.DataConfig(**data))
