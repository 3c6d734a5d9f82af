"""The sequence track on the Tianchi report data: reader, vocabulary, folds, scores, submission (not training)."""

from __future__ import annotations

import numpy as np
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
from meddx.tianchi import check_submission, tianchi_scores, write_submission

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


def test_a_header_line_is_named_and_an_empty_round2_label_is_normal(tmp_path):
    """A header gave "token 'description' is not a non-negative integer"; a round-2 label left empty (no comma) was
    refused though an empty label means normal."""
    f = tmp_path / "header.csv"
    f.write_text("report_ID|,|description|,|label\n0|,|1 2 |,|4 \n")
    with pytest.raises(DataError, match=r"line 1: 'report_ID\|,\|description\|,\|label' looks like a header"):
        read_tianchi(f)
    f.write_text("0|,|1 2 3 |,|4 ,1 \n1|,|4 5 |,|\n2|,|6 |,|,\n")
    ds = read_tianchi(f)
    assert len(ds.label_names) == 29 and ds.records[1].labels.sum() == 0 and ds.records[2].labels.sum() == 0


def test_vocab_pads_truncates_and_maps_unknown_tokens():
    vocab = build_vocab([np.array([10, 20, 30]), np.array([20, 40])], max_len=4)
    assert vocab.max_len == 4 and vocab.size == 3 + 4
    np.testing.assert_array_equal(vocab.encode(np.array([10, 40])), [3, 6, 0, 0])  # right-padded with 0
    np.testing.assert_array_equal(vocab.encode(np.array([30, 20, 10, 40, 30, 20])), [5, 4, 3, 6])  # truncated
    np.testing.assert_array_equal(vocab.encode(np.array([999, 15, 10])), [UNK, UNK, 3, 0])  # unseen tokens -> unk
    assert build_vocab([np.array([1, 2]), np.array([1, 2, 3, 4, 5])]).max_len == 5  # measured from the data
    seen = vocab.coverage([np.array([10, 99999, 99999, 15]), np.array([20, 30, 40, 10, 20])])  # said on new data
    assert seen == {"unknown": 3, "tokens": 9, "distinct_unknown": 2, "cut": 1, "reports": 2}


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


def test_platt_scaling_softens_an_overconfident_blend_per_label_group_and_never_sees_its_own_fold():
    """mlogloss punishes a model sure of itself too often; slopes fitted out of fold (round 2: regions and types
    apart) soften it. Fold k's scaled probabilities depend on the other folds' labels only."""
    from meddx.evaluation.calibration import apply_platt, fit_platt
    from meddx.tianchi import calibrate_oof, label_groups

    rng = np.random.default_rng(0)
    names = [f"region_{i}" for i in range(3)] + [f"type_{i}" for i in range(2)]
    groups = label_groups(names)
    assert [g.tolist() for g in groups] == [[1, 1, 1, 0, 0], [0, 0, 0, 1, 1]]
    assert len(label_groups([f"label_{i}" for i in range(17)])) == 1  # round 1: one group
    logit = rng.normal(-2, 2, (4000, 5))
    y = (rng.random((4000, 5)) < 1 / (1 + np.exp(-logit))).astype(float)
    sure = 1 / (1 + np.exp(-logit * np.array([3, 3, 3, 1, 1])))  # regions three times too sure, types calibrated
    params = fit_platt(y, sure, groups)
    assert params[0][0] == pytest.approx(1 / 3, abs=0.05) and params[1][0] == pytest.approx(1, abs=0.1)
    assert mlogloss(y, apply_platt(sure, groups, params)) < mlogloss(y, sure) - 0.02
    folds = np.arange(4000) % 4
    scaled = calibrate_oof(y, sure, folds, groups)
    assert mlogloss(y, scaled) < mlogloss(y, sure) - 0.02
    flipped = y.copy()
    flipped[folds == 0] = 1 - flipped[folds == 0]  # fold 0's own labels must not move fold 0's probabilities
    np.testing.assert_allclose(calibrate_oof(flipped, sure, folds, groups)[folds == 0], scaled[folds == 0])
    with pytest.raises(ConfigError, match="needs out-of-fold rows of 2 or more folds"):  # one fold: nothing to fit on
        calibrate_oof(y, sure, np.zeros(4000, int), groups)


def test_blending_folders_of_another_task_or_other_labels_is_refused(tmp_path):
    """`tianchi blend r1 r2` scored round 2's region probabilities against round 1's labels (report ids 0..N-1 match
    in both) and printed a wrong mlogloss; folders of other labels, or of other truth for the same ids, are refused."""
    from meddx.tianchi import blend_oof

    rng = np.random.default_rng(0)

    def folder(name: str, labels: list[str], truth: np.ndarray) -> str:
        import pandas as pd

        frame = pd.DataFrame({"id": [str(i) for i in range(len(truth))], "fold": np.arange(len(truth)) % 2})
        for j, n in enumerate(labels):
            frame[n], frame[f"p_{n}"], frame[f"prior_{n}"] = truth[:, j], rng.uniform(0.05, 0.95, len(truth)), 0.3
        (tmp_path / name).mkdir()
        frame.to_csv(tmp_path / name / "oof.csv", index=False)
        return str(tmp_path / name)

    truth = rng.integers(0, 2, (40, 17))
    regions = [f"region_{j}" for j in range(17)]
    r1, again = folder("r1", regions, truth), folder("r1b", regions, truth)
    assert len(blend_oof([r1, again])["weights"]) == 2  # one task, the same reports: blended
    r2 = folder("r2", [*regions, *(f"type_{j}" for j in range(12))], rng.integers(0, 2, (40, 29)))
    with pytest.raises(ConfigError, match=r"r2: its labels \(29\) are not .*r1's \(17\); blend CV runs of one task"):
        blend_oof([r1, r2])
    other = folder("other", regions, rng.integers(0, 2, (40, 17)))
    with pytest.raises(ConfigError, match="its out-of-fold reports or their labels differ"):
        blend_oof([r1, other])
