"""The sequence track on the Tianchi report data, training: fine-tuning, MLM, round-2 folds, seed ensembles."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_tianchi import R1, R1A, R2

from meddx.data.readers import read_dataset
from meddx.data.reports import read_tianchi
from meddx.data.sequences import Vocab
from meddx.errors import ConfigError
from meddx.evaluation.metrics import mlogloss
from meddx.tianchi import blend_weights, check_submission

from conftest import need, run_cli


@pytest.fixture(scope="module")
def small_files(data_dir, tmp_path_factory):
    """400 labelled and 200 unlabelled real rows copied into a temporary folder (never into the repo)."""
    out = tmp_path_factory.mktemp("tianchi")
    lines = need(data_dir, R1).read_text().splitlines()
    (out / "train.csv").write_text("\n".join(lines[:400]) + "\n")
    (out / "test.csv").write_text("\n".join(need(data_dir, R1A).read_text().splitlines()[:200]) + "\n")
    return out


def _seq_config(small_files, out, model: dict, **train) -> dict:
    """A run config over the small files (vocabulary from train + test) with plain BCE and no progress bar."""
    return {
        "output_dir": str(out),
        "data": {"path": str(small_files / "train.csv"), "vocab_files": [str(small_files / "test.csv")]},
        "model": model,
        "train": {"batch_size": 32, "class_weights": "off", "progress_bar": False, **train},
        "plan": {"enabled": False},
    }


@pytest.mark.slow
def test_short_finetune_lowers_val_loss_and_reloads(small_files, tmp_path):
    import meddx

    model = {"name": "bigru", "kwargs": {"embed_dim": 32, "hidden": 32}}
    # 10 epochs: after 6 the model's test mlogloss was within 0.3% of the prior's, so the shuffle order decided the test
    cfg = {
        **_seq_config(small_files, tmp_path, model, max_epochs=10, lr=5e-3, token_dropout=0.05),
        "name": "gru",
        "evaluate": {"bootstrap": 20},
    }
    run = meddx.train(cfg)
    training = json.loads((run.path / "training.json").read_text())
    assert training["best_val_loss"] < training["initial_val_loss"] * 0.8
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert "mlogloss" in metrics["model"]["overall"] and (run.path / "report.md").is_file()
    report = (run.path / "report.md").read_text()
    assert "## Competition score" in report and f"{metrics['tianchi']['model']['mlogloss']:.4f}" in report
    assert "Competition score" in (run.path / "report.html").read_text()
    t = metrics["tianchi"]  # the competition's figures beside its baselines, on the test split
    assert t["model"]["mlogloss"] == pytest.approx(metrics["model"]["overall"]["mlogloss"]["value"])
    assert t["model"]["mlogloss"] < t["baselines"]["prior"]["mlogloss"] < t["baselines"]["all_zero"]["mlogloss"]
    reloaded = meddx.load_run(run.path)
    test = read_dataset(reloaded.config.data)
    test.records = [r for r in test.records if r.id in set(reloaded.predictions("test")["id"])]
    pred = reloaded.predictions("test")
    np.testing.assert_allclose(
        reloaded.predict_proba(test.records), pred[[f"p_{n}" for n in reloaded.label_names]].to_numpy(), atol=1e-6
    )
    sub = tmp_path / "sub.csv"
    res = run_cli("submit", str(run.path), "--data", str(small_files / "test.csv"), "-o", str(sub))
    assert res.returncode == 0, res.stderr
    assert check_submission(sub, small_files / "test.csv") == [] and len(sub.read_text().splitlines()) == 200
    predicted = run_cli("predict", str(run.path), str(small_files / "test.csv"), "-o", str(tmp_path / "p.csv"))
    assert predicted.returncode == 0, predicted.stderr  # was a TypeError traceback
    rows = pd.read_csv(tmp_path / "p.csv")
    assert len(rows) == 200 and list(rows.columns)[: 1 + len(run.label_names)] == ["id"] + [
        f"p_{n}" for n in run.label_names
    ]
    assert {"decision", "operating_point"} <= set(rows.columns)


def test_image_model_on_sequences_is_a_config_error(small_files, tmp_path):
    import meddx

    with pytest.raises(ConfigError, match="is an image model"):
        meddx.train(
            {
                "output_dir": str(tmp_path),
                "data": {"path": str(small_files / "train.csv")},
                "model": {"name": "small_cnn"},
            }
        )
    with pytest.raises(ConfigError, match=r"model 'bilstn' is no model meddx knows \(did you mean 'bilstm'\?\)"):
        meddx.train({"output_dir": str(tmp_path), "data": {"path": str(small_files / "train.csv")},
                     "model": {"name": "bilstn"}})  # fmt: skip


@pytest.mark.slow
def test_mlm_lowers_loss_and_its_encoder_loads_into_bert(small_files, tmp_path):
    import meddx
    from meddx.models import create_model

    cfg = {
        **_seq_config(small_files, tmp_path, {"name": "bert_small"}, max_epochs=1),
        "name": "bert",
        "evaluate": {"bootstrap": 0},
        "pretrain": {
            "dir": str(tmp_path / "mlm"),
            "max_epochs": 4,
            "batch_size": 32,
            "lr": 2e-3,
            "size": "tiny",
            "val_fraction": 0.15,
        },
    }
    out = meddx.pretrain(cfg)
    info = json.loads((out / "pretrain.json").read_text())
    assert info["final_val_mlm_loss"] < info["initial_val_mlm_loss"] - 0.5
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "vocab.json").is_file()
    cfg["pretrain"]["max_epochs"] = 5  # rerunning resumes from last.ckpt and trains only the missing epoch
    meddx.pretrain(cfg)
    resumed = json.loads((out / "pretrain.json").read_text())
    assert resumed["epochs"] == 5 and resumed["initial_val_mlm_loss"] == info["initial_val_mlm_loss"]
    logged = pd.read_csv(out / "logs" / "metrics.csv")["epoch"].dropna().astype(int)
    assert {0, 1, 2, 3, 4} <= set(logged)  # Lightning empties logs/ on a resume: the first 4 epochs kept
    encoder = torch.load(out / "encoder.pt", weights_only=True)
    vocab = Vocab.load(out / "vocab.json")
    model = create_model("bert_small", 1, 17, weights=str(out / "encoder.pt"), size="tiny", **vocab.model_kwargs())
    key = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(model.state_dict()[key], encoder[key])
    with pytest.raises(ConfigError, match="do not fit the model outside its head"):
        create_model("bert_small", 1, 17, weights=str(out / "encoder.pt"), size="cpu", **vocab.model_kwargs())
    # fine-tuning through the same path: vocab and size come from the pretraining folder
    run = meddx.train({**cfg, "model": {"name": "bert_small", "weights": str(out / "encoder.pt")}})
    assert run.config.model.kwargs["size"] == "tiny" and run.vocab.tokens == vocab.tokens
    # ... and the image path's fine-tune flags: init_from with the last transformer layer + head trainable
    tuned = meddx.train(
        {
            **cfg,
            "model": {"name": "bert_small"},
            "train": {**cfg["train"], "init_from": str(out / "encoder.pt"), "finetune_depth": 1},
        }
    )
    weights = torch.load(tuned.path / "model.pt", weights_only=True)
    assert torch.equal(weights[key], encoder[key])  # embeddings frozen: still the pretrained ones
    last = "bert.encoder.layer.1.output.dense.weight"  # the tiny size has 2 layers: layer 1 trained
    assert not torch.equal(weights[last], encoder[last])
    training = json.loads((tuned.path / "training.json").read_text())
    assert training["init_from"]["skipped_head"] == [] and training["init_from"]["loaded"] == len(encoder)


@pytest.mark.slow
def test_round2_cv_reports_regions_and_types_and_submits_the_fold_ensemble(data_dir, tmp_path):
    import meddx
    from meddx.tianchi import predict_file

    lines = need(data_dir, R2).read_text().splitlines()
    (tmp_path / "r2.csv").write_text("\n".join(lines[:360]) + "\n")
    (tmp_path / "r2_test.csv").write_text("".join(ln.rsplit("|,|", 1)[0] + "\n" for ln in lines[360:400]))
    cfg = {
        "output_dir": str(tmp_path / "runs"),
        "name": "cv",
        "data": {"path": str(tmp_path / "r2.csv"), "vocab_files": [str(tmp_path / "r2_test.csv")]},
        "model": {"name": "textcnn", "kwargs": {"embed_dim": 32, "filters": 16}},
        "train": {"max_epochs": 3, "batch_size": 32, "class_weights": "off", "progress_bar": False},
    }
    cv_dir = meddx.cross_validate(cfg, folds=2)
    result = json.loads((cv_dir / "cv.json").read_text())
    m = result["model"]
    assert result["labels"] == 29 and result["n_samples"] == 360 and result["runs"] == ["fold0", "fold1"]
    assert m["score"] == pytest.approx(0.6 * (1 - m["regions_mlogloss"]) + 0.4 * (1 - m["types_mlogloss"]))
    assert m["mlogloss"] < result["baselines"]["all_zero"]["mlogloss"]
    ids, probs = predict_file(cv_dir, tmp_path / "r2_test.csv")
    single = [
        meddx.load_run(cv_dir / f).predict_proba(read_tianchi(tmp_path / "r2_test.csv", require_labels=False).records)
        for f in ("fold0", "fold1")
    ]
    np.testing.assert_allclose(probs, np.mean(single, axis=0), atol=1e-9)  # the fold ensemble is the mean
    assert ids == [str(i) for i in range(360, 400)] and probs.shape == (40, 29)
    sub = meddx.submit(cv_dir, tmp_path / "r2_test.csv", tmp_path / "sub.csv")  # the fold mean itself
    scaled = meddx.submit(cv_dir, tmp_path / "r2_test.csv", tmp_path / "scaled.csv", calibrate=True)
    as_given = np.array([[float(v) for v in ln.split("|,|")[1].split()] for ln in sub.read_text().splitlines()])
    np.testing.assert_allclose(as_given, np.clip(probs, 0, 1), atol=1e-8)
    assert scaled.read_text() != sub.read_text()  # --calibrate: Platt slopes fitted out of fold
    checked = run_cli("check-submission", str(sub), "--data", str(tmp_path / "r2_test.csv"))  # no --labels
    assert checked.returncode == 0 and "valid, round 2" in checked.stdout, checked.stderr
    (tmp_path / "r2_holdout.csv").write_text("\n".join(lines[400:440]) + "\n")  # labelled reports kept out
    evaluated = run_cli("evaluate", str(cv_dir / "fold0"), "--data", str(tmp_path / "r2_holdout.csv"))
    assert evaluated.returncode == 0 and "tianchi: score" in evaluated.stdout, evaluated.stderr
    held_out = (cv_dir / "fold0" / "report-external-r2_holdout.md").read_text()
    assert "## Competition score" in held_out and "types_mlogloss" in held_out and "40 samples" in held_out

    # a blend of CV folders with weights chosen out of fold: a folder whose OOF predictions are noise gets weight 0
    import shutil

    noisy = tmp_path / "runs" / "noisy"
    shutil.copytree(cv_dir, noisy)
    oof = pd.read_csv(noisy / "oof.csv", dtype={"id": str})
    cols = [c for c in oof.columns if c.startswith("p_")]
    oof[cols] = np.random.default_rng(0).random((len(oof), len(cols)))
    oof.sample(frac=1, random_state=0).to_csv(noisy / "oof.csv", index=False)  # another row order: aligned by id
    assert blend_weights([cv_dir, noisy]) == [1.0, 0.0]
    proc = run_cli(
        "submit",
        str(cv_dir),
        str(noisy),
        "--data",
        str(tmp_path / "r2_test.csv"),
        "-o",
        str(tmp_path / "blend.csv"),
        "--weights",
        "oof",
    )
    assert proc.returncode == 0 and "noisy 0.00" in proc.stdout and "Platt-scaled" not in proc.stdout, proc.stderr
    assert (tmp_path / "blend.csv").read_text() == sub.read_text()
    with pytest.raises(ConfigError, match="no oof.csv"):
        blend_weights([cv_dir, cv_dir / "fold0"])


def test_cli_names_the_bad_line_in_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("0|,|1 2 3 |,|4 \n1|,|5 6 |,|99 \n")
    res = run_cli("explore", "--data", str(bad), "--no-images")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"meddx: error: {bad} line 2: region id 99 is out of range (0-16)"]


@pytest.mark.slow
def test_seed_ensemble_of_sequence_runs(small_files, tmp_path):
    """`meddx ensemble` takes token-sequence runs too: vocabularies must match, the average gets the competition
    score."""
    import meddx

    cfg = {
        "output_dir": str(tmp_path),
        "data": {"path": str(small_files / "train.csv"), "vocab_files": [str(small_files / "test.csv")]},
        "model": {"name": "textcnn", "kwargs": {"embed_dim": 16, "filters": 16}},
        "train": {
            "max_epochs": 2,
            "batch_size": 32,
            "class_weights": "off",
            "progress_bar": False,
            "diagnostics": False,
        },
        "evaluate": {"bootstrap": 20},
        "plan": {"enabled": False},
    }
    runs = [meddx.train({**cfg, "name": f"s{seed}", "train": {**cfg["train"], "seed": seed}}) for seed in (0, 1)]
    ens = meddx.ensemble([r.path for r in runs], tmp_path / "ens", bootstrap=20)
    cols = [f"p_{n}" for n in runs[0].label_names]
    mean = (runs[0].predictions("test")[cols].to_numpy() + runs[1].predictions("test")[cols].to_numpy()) / 2
    np.testing.assert_allclose(ens.predictions("test")[cols].to_numpy(), mean, atol=1e-8)
    metrics = json.loads((ens.path / "metrics.json").read_text())
    assert metrics["tianchi"]["model"]["mlogloss"] < metrics["tianchi"]["baselines"]["all_zero"]["mlogloss"]
    records = [r for r in meddx.read_dataset(runs[0].config.data).records][:5]
    np.testing.assert_allclose(
        ens.predict_proba(records), (runs[0].predict_proba(records) + runs[1].predict_proba(records)) / 2, atol=1e-6
    )
    chosen = meddx.ensemble([r.path for r in runs], tmp_path / "ens_val", weights="val", bootstrap=20)
    w = json.loads((chosen.path / "ensemble.json").read_text())["weights"]
    assert len(w) == 2 and abs(sum(w) - 1) < 1e-9
    np.testing.assert_allclose(
        chosen.predictions("test")[cols].to_numpy(),
        w[0] * runs[0].predictions("test")[cols].to_numpy() + w[1] * runs[1].predictions("test")[cols].to_numpy(),
        atol=1e-8,
    )
    np.testing.assert_allclose(
        chosen.predict_proba(records),
        w[0] * runs[0].predict_proba(records) + w[1] * runs[1].predict_proba(records),
        atol=1e-6,
    )  # Run.model applies the same weights
    val = [r.predictions("val") for r in runs]
    yv = val[0][runs[0].label_names].to_numpy()
    weighted = mlogloss(yv, chosen.predictions("val")[cols].to_numpy())
    assert (
        weighted <= min(mlogloss(yv, v[cols].to_numpy()) for v in val) + 1e-9
    )  # never worse than the best member on val


def test_greedy_weights_drop_a_useless_member():
    from meddx.evaluation.ensemble import greedy_weights

    rng = np.random.default_rng(0)
    y = (rng.random((400, 5)) < 0.3).astype(float)
    good = np.clip(y * 0.8 + 0.1 + rng.normal(0, 0.05, y.shape), 0.01, 0.99)
    fair = np.clip(y * 0.6 + 0.2 + rng.normal(0, 0.1, y.shape), 0.01, 0.99)
    noise = rng.random(y.shape)
    w = greedy_weights([good, noise, fair], y, "multilabel")
    assert w[1] == 0 and w[0] > w[2] and abs(w.sum() - 1) < 1e-12
    assert mlogloss(y, sum(wi * p for wi, p in zip(w, [good, noise, fair]))) <= mlogloss(y, good)
    onehot = np.eye(3)[rng.integers(0, 3, 300)]
    assert greedy_weights([np.full((300, 3), 1 / 3), np.clip(onehot, 0.05, 0.9)], onehot, "multiclass")[1] == 1


def test_mlm_takes_the_size_the_fine_tuning_names():
    """`meddx pretrain --set model.kwargs.size=tiny` (the README's key for bert_small) pretrained the cpu size: the size
    the model names is the encoder's, unless pretrain.size says it; two different sizes are refused."""
    from meddx.config import as_config
    from meddx.training.pretrain import _asked_size

    assert _asked_size(as_config({"model": {"kwargs": {"size": "tiny"}}})) == "tiny"
    assert _asked_size(as_config({"pretrain": {"size": "gpu"}})) == "gpu"
    assert _asked_size(as_config({})) == "auto"
    with pytest.raises(ConfigError, match="pretrain.size 'gpu' and model.kwargs.size 'tiny' differ"):
        _asked_size(as_config({"pretrain": {"size": "gpu"}, "model": {"kwargs": {"size": "tiny"}}}))
