"""The sequence track on the Tianchi report data: reader, vocabulary, folds, training, MLM, submission."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from meddx.config import DataConfig, SplitConfig
from meddx.data.leakage import check_leakage
from meddx.data.readers import read_dataset
from meddx.data.reports import read_tianchi
from meddx.data.sequences import UNK, Vocab, build_vocab, length_grouped_sampler, sequence_summary, trim_padding
from meddx.data.split import assign_splits
from meddx.errors import ConfigError, DataError
from meddx.evaluation.metrics import mlogloss
from meddx.tianchi import blend_weights, check_submission, tianchi_scores, write_submission

from conftest import need, run_cli

R1 = "tianchi_round1/track1_round1_train_20210222.csv"
R1A = "tianchi_round1/track1_round1_testA_20210222.csv"
R1B = "tianchi_round1/track1_round1_testB.csv"
R2 = "tianchi_round2/train.csv"


def test_reader_on_the_real_files(data_dir):
    train = read_dataset(DataConfig(path=str(need(data_dir, R1))))  # format detected from the |,| separator
    assert len(train) == 10_000 and train.task == "multilabel" and len(train.label_names) == 17
    assert int((train.labels.sum(1) == 0).sum()) == 2622
    np.testing.assert_array_equal(
        train.labels.sum(0),
        [1107, 1150, 930, 445, 1231, 386, 209, 1080, 1077, 845, 377, 1033, 417, 269, 549, 1846, 777],
    )
    assert max(len(r.tokens) for r in train.records) == 104
    assert len(read_tianchi(need(data_dir, R1A), require_labels=False)) == 3000
    assert len(read_tianchi(need(data_dir, R1B), require_labels=False)) == 3000
    with pytest.raises(DataError, match="no label field"):
        read_tianchi(need(data_dir, R1A))


def test_round2_label_sets(data_dir):
    path = str(need(data_dir, R2))
    both = read_dataset(DataConfig(path=path))
    assert len(both) == 16_000 and both.label_names[16] == "region_16" and both.label_names[-1] == "type_11"
    assert len(both.label_names) == 29
    regions = read_dataset(DataConfig(path=path, label_set="regions"))
    types = read_dataset(DataConfig(path=path, label_set="types"))
    np.testing.assert_array_equal(both.labels, np.hstack([regions.labels, types.labels]))
    assert 0.40 < (both.labels.sum(1) == 0).mean() < 0.42  # "about 41% normal"
    # duplicate descriptions share a patient id, so no split puts copies on two sides
    assert both.patients_known and "duplicate description" in both.notes[0]


@pytest.mark.parametrize(
    "line, message",
    [
        ("1|,|5 6 7 ", "2 fields where the file's first line has 3"),
        ("1|,|5 x 7 |,|2 ", "token 'x' is not a non-negative integer"),
        ("1|,|5 -6 7 |,|2 ", "token '-6' is not a non-negative integer"),
        ("1|,|5 6 7 |,|17 ", "region id 17 is out of range"),
        ("1|,|5 6 7 |,|a ", "region id 'a'"),
        ("1|,|5 6 7 |,|2 ,1 ", "not in the file's format"),
        ("1|,| |,|2 ", "empty description"),
        ("0|,|5 6 |,|2 ", "report_ID 0 appears twice"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    f = tmp_path / "bad.csv"
    f.write_text(f"0|,|1 2 3 |,|4 \n{line}\n")
    with pytest.raises(DataError, match=message) as e:
        read_tianchi(f)
    assert f"{f} line 2" in str(e.value)


def test_round2_bad_type_id(tmp_path):
    f = tmp_path / "r2.csv"
    f.write_text("0|,|1 2 3 |,|,\n1|,|4 5 |,|15 ,12 \n")
    with pytest.raises(DataError, match=r"line 2: type id 12 is out of range \(0-11\)"):
        read_tianchi(f)


def test_vocab_pads_truncates_and_maps_unknown_tokens():
    vocab = build_vocab([np.array([10, 20, 30]), np.array([20, 40])], max_len=4)
    assert vocab.max_len == 4 and vocab.size == 3 + 4
    np.testing.assert_array_equal(vocab.encode(np.array([10, 40])), [3, 6, 0, 0])  # right-padded with 0
    np.testing.assert_array_equal(vocab.encode(np.array([30, 20, 10, 40, 30, 20])), [5, 4, 3, 6])  # truncated
    np.testing.assert_array_equal(vocab.encode(np.array([999, 15, 10])), [UNK, UNK, 3, 0])  # unseen tokens -> unk
    assert build_vocab([np.array([1, 2]), np.array([1, 2, 3, 4, 5])]).max_len == 5  # measured from the data


def test_a_huge_token_id_costs_no_memory():
    """The vocabulary was a dense table sized by the largest id: one token 3 x 10^8 cost 2.24 GiB, 10^12 a
    MemoryError traceback. Now it holds the tokens seen, and unseen huge ids are unknown."""
    import tracemalloc

    tracemalloc.start()
    vocab = build_vocab([np.array([5, 10**12, 300_000_000]), np.array([7])], max_len=8)
    x = vocab.encode(np.array([10**12, 7, 8, 2**62, 300_000_000]))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000, peak
    assert (
        vocab.size == 3 + 4 and x[2] == UNK and x[3] == UNK and len(set(x[[0, 1, 4]])) == 3 and UNK not in x[[0, 1, 4]]
    )


@pytest.mark.parametrize(
    "name, kwargs",
    [("bilstm", {}), ("bigru", {}), ("transformer", {}), ("textcnn", {}), ("bert_small", {"size": "tiny"})],
)
def test_trimmed_batches_give_the_same_outputs(name, kwargs):
    """Cutting the padding columns a batch shares (trim_padding) must not change any model's outputs."""
    from meddx.models import create_model

    torch.manual_seed(0)
    lengths = [3, 9, 5, 1]
    x = torch.zeros(4, 20, dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randint(3, 50, (n,))
    trimmed, y = trim_padding([(row, torch.tensor([float(i)])) for i, row in enumerate(x)])
    assert trimmed.shape == (4, 9) and y.flatten().tolist() == [0, 1, 2, 3]
    model = create_model(name, 1, 3, vocab_size=50, max_len=20, **kwargs).eval()
    with torch.inference_mode():
        torch.testing.assert_close(model(trimmed), model(x), atol=1e-5, rtol=1e-4)


def test_length_grouped_batches_cover_every_row_once():
    x = torch.zeros(1000, 30, dtype=torch.long)
    lengths = torch.randint(1, 31, (1000,), generator=torch.Generator().manual_seed(0))
    for i, n in enumerate(lengths):
        x[i, :n] = 5
    order = list(length_grouped_sampler(x, 10))
    assert sorted(order) == list(range(1000))
    spread = [int(lengths[order[i : i + 10]].max() - lengths[order[i : i + 10]].min()) for i in range(0, 1000, 10)]
    assert np.mean(spread) < 5  # sorted within mega-batches; random batches of 10 would spread about 24


def test_vocab_round_trips(tmp_path):
    v = build_vocab([np.array([3, 9, 4])], max_len=7)
    v.save(tmp_path / "vocab.json")
    w = Vocab.load(tmp_path / "vocab.json")
    assert w.tokens == v.tokens and w.max_len == 7


def test_kfold_folds_partition_the_reports(data_dir):
    ds = read_dataset(DataConfig(path=str(need(data_dir, R1))))
    tests = []
    for k in range(5):
        assign_splits(ds, SplitConfig(folds=5, fold=k))
        assert check_leakage(ds).ok
        tests.append({r.id for r in ds.records if r.split == "test"})
        if k == 0:
            test = ds.subset("test").labels.mean(0)
            assert np.abs(test - ds.labels.mean(0)).max() < 0.01  # iterative stratification keeps label shares
            assert 850 < len(ds.subset("val")) < 950
    assert sum(len(t) for t in tests) == 10_000 and len(set().union(*tests)) == 10_000


def test_sequence_summary(data_dir):
    ds = read_dataset(DataConfig(path=str(need(data_dir, R1))))
    test_a = [r.tokens for r in read_tianchi(need(data_dir, R1A), require_labels=False).records]
    s = sequence_summary(ds, {"testA": test_a})
    assert s["length"]["max"] == 104 and s["length"]["min"] == 4 and s["empty_label_rows"] == 2622
    assert s["label_cardinality"] == pytest.approx(ds.labels.sum() / 10_000, abs=1e-4)
    assert s["other_sets"]["testA"]["rows"] == 3000 and sum(s["length_histogram"].values()) == 10_000


def test_scores_follow_the_competition_formulas():
    rng = np.random.default_rng(0)
    names = [f"region_{i}" for i in range(17)] + [f"type_{i}" for i in range(12)]
    y = (rng.random((50, 29)) < 0.2).astype(float)
    p = rng.random((50, 29))
    out = tianchi_scores(y, p, names)
    r, t = mlogloss(y[:, :17], p[:, :17]), mlogloss(y[:, 17:], p[:, 17:])
    assert out["model"]["score"] == pytest.approx(0.6 * (1 - r) + 0.4 * (1 - t))
    q = np.clip(p, 1e-15, 1 - 1e-15)
    manual = np.mean(np.mean(-(y * np.log(q) + (1 - y) * np.log(1 - q)), axis=1))
    assert out["model"]["mlogloss"] == pytest.approx(manual)
    assert out["baselines"]["all_zero"]["mlogloss"] > 5  # log(1e15) on every positive


def _write(path, rows):
    path.write_text("".join(f"{i}|,|{t} \n" for i, t in rows))
    return path


def test_submission_round_trip_and_every_defect(tmp_path):
    test = _write(tmp_path / "test.csv", [(i, f"{i + 3} 7 8") for i in range(5)])
    probs = np.random.default_rng(1).random((5, 17))
    sub = write_submission([str(i) for i in range(5)], probs, tmp_path / "sub.csv")
    assert check_submission(sub, test) == []
    lines = sub.read_text().splitlines()
    assert lines[0].startswith("0|,|") and len(lines[0].split("|,|")[1].split()) == 17
    read_back = np.array([[float(v) for v in ln.split("|,|")[1].split()] for ln in lines])
    np.testing.assert_allclose(read_back, probs, atol=1e-8)
    defects = {
        "rows but the test file has 5": lines[:4],
        "expected '1'": [lines[1], lines[0], *lines[2:]],
        "16 probabilities": [lines[0].rsplit(" ", 1)[0], *lines[1:]],
        "must lie in": [lines[0].replace("|,|", "|,|1.5 ", 1).rsplit(" ", 1)[0], *lines[1:]],
        "separator": [lines[0].replace("|,|", ","), *lines[1:]],
        "not a number": [lines[0].replace("|,|", "|,|abc ", 1).rsplit(" ", 1)[0], *lines[1:]],
    }
    for message, bad in defects.items():
        sub.write_text("\n".join(bad) + "\n")
        problems = check_submission(sub, test)
        assert problems and any(message in p for p in problems), (message, problems)
    res = run_cli("check-submission", str(sub), "--data", str(test))
    assert res.returncode == 1 and "not a number" in res.stderr


def test_round2_submissions_check_without_a_flag(tmp_path):
    test = _write(tmp_path / "test.csv", [(i, f"{i + 3} 7 8") for i in range(4)])
    sub = write_submission([str(i) for i in range(4)], np.random.default_rng(2).random((4, 29)), tmp_path / "r2.csv")
    assert check_submission(sub, test) == []
    assert "29 probabilities, expected 17" in check_submission(sub, test, n_labels=17)[0]
    lines = sub.read_text().splitlines()
    r1_line = lines[2].split("|,|")[0] + "|,|" + " ".join(["0.5"] * 17)
    sub.write_text("\n".join([*lines[:2], r1_line, lines[3]]) + "\n")  # one line of the other round
    assert check_submission(sub, test) == ["line 3: 17 probabilities, expected 29"]
    sub.write_text("\n".join(ln.rsplit(" ", 9)[0] for ln in lines) + "\n")  # 20: neither round
    assert check_submission(sub, test) == ["line 1: 20 probabilities; a submission has 17 (round 1) or 29 (round 2)"]


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
    sub = meddx.submit(cv_dir, tmp_path / "r2_test.csv", tmp_path / "sub.csv")
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
    assert proc.returncode == 0 and "noisy 0.00" in proc.stdout, proc.stderr
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
