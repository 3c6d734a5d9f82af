"""New labelled data read for a trained run (`meddx evaluate RUN --data OTHER`): its labels matched to the run's
whatever their case, order or name, and never silently the wrong column or the wrong class as 1."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from meddx.config import DataConfig, RunConfig
from meddx.errors import ConfigError, DataError
from meddx.evaluation.external import read_external


def test_class_names_in_another_case_are_aligned_whatever_their_order():
    """External class folders `a/ B/ c/` for a run's `A C b` (sorted by case, a different order): each label vector
    follows its class name, not its column."""
    from meddx.data.records import DataSet, Record

    names = ["B", "a", "c"]  # sorted as written
    records = [
        Record(f"{n}/{i}.png", f"p{n}{i}", "", np.eye(3, dtype=np.float32)[k])
        for k, n in enumerate(names)
        for i in range(2)
    ]
    ds = DataSet(records, names, "multiclass")
    assert ds.align_labels(["A", "C", "b"])
    assert ds.label_names == ["A", "C", "b"]
    assert [ds.label_names[int(r.labels.argmax())].casefold() for r in ds.records] == [
        r.id[0].casefold() for r in records
    ]
    assert ds.label_mismatch(["A", "C", "b"], "multiclass") is None
    other = DataSet(list(records), ["x", "y", "z"], "multiclass")
    assert not other.align_labels(["A", "C", "b"]) and other.label_names == ["x", "y", "z"]


def test_new_data_takes_a_binary_runs_positive_class_in_any_case(tmp_path):
    """A run on `covid/` beside `Viral/` (no negative-like name: the last in sorted order, 'covid', is positive);
    new folders `COVID/` and `viral/` sort the other way and made 'viral' positive: a label mismatch. Now the run's
    positive is taken whatever its case; other class names still stop with the mismatch line."""

    from meddx.evaluation.external import read_external

    for folder, cls in (("new", "COVID"), ("new", "viral"), ("others", "a"), ("others", "b")):
        (tmp_path / folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / folder / cls / f"{cls}{i}.png")
    run = SimpleNamespace(
        path=tmp_path, config=RunConfig(data=DataConfig(path="train")), task="binary", label_names=["covid"]
    )
    ds = read_external(run, {"path": str(tmp_path / "new")})
    assert ds.label_names == ["covid"]
    assert {r.id.split("/")[0]: float(r.labels[0]) for r in ds.records} == {"COVID": 1.0, "viral": 0.0}
    with pytest.raises(DataError, match="differ from the run's 1 binary labels"):
        read_external(run, {"path": str(tmp_path / "others")})


def test_a_binary_runs_label_is_found_under_a_name_that_names_no_class(tmp_path):
    """A run on a 0/1 column `label` could be evaluated only on data whose column was named `label`: folders `0/ 1/`
    and a 0/1 column `target` stopped as a mismatch, whatever option was given."""

    from meddx.evaluation.external import read_external

    rows = []
    for cls in ("0", "1"):
        (tmp_path / "digits" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i + int(cls), np.uint8)).save(tmp_path / "digits" / cls / f"{i}.png")
            rows.append(f"{cls}/{i}.png,{cls}")
    (tmp_path / "digits" / "t.csv").write_text("path,target\n" + "\n".join(rows) + "\n")
    (tmp_path / "digits" / "p.csv").write_text("path,Parkinson\n" + "\n".join(rows) + "\n")

    def run_on(label):
        return SimpleNamespace(
            path=tmp_path, config=RunConfig(data=DataConfig(path="train")), task="binary", label_names=[label]
        )

    for label, data in [
        ("label", "digits"),
        ("label", "digits/t.csv"),
        ("PNEUMONIA", "digits"),
        ("PD", "digits/t.csv"),
    ]:
        ds = read_external(run_on(label), {"path": str(tmp_path / data)})
        assert ds.label_names == [label] and any(f"read as the run's '{label}'" in n for n in ds.notes)
        assert {r.id: float(r.labels[0]) for r in ds.records} == {r.split(",")[0]: float(r[-1]) for r in rows}
    with pytest.raises(DataError, match="'Parkinson' where the run has 'PD'"):  # two names of classes: not guessed
        read_external(run_on("PD"), {"path": str(tmp_path / "digits/p.csv")})
    named = read_external(run_on("PD"), {"path": str(tmp_path / "digits/p.csv"), "label_columns": ["Parkinson"]})
    assert named.label_names == ["PD"]


def test_new_data_whose_class_column_is_named_otherwise_is_read_by_the_runs_classes(tmp_path):
    """`path,group,sex` holding HC/PD under `group` asked for --label-column, though the run knows its classes."""

    for i in range(4):
        Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(tmp_path / f"s{i}.png")
    rows = [f"s{i}.png,{'PD' if i % 2 else 'hc'},{'MF'[i % 2]}" for i in range(4)]
    (tmp_path / "ext.csv").write_text("path,group,sex\n" + "\n".join(rows) + "\n")
    run = SimpleNamespace(path=tmp_path, config=RunConfig(data=DataConfig(path="t.csv", label_column="diagnosis")),
                          task="binary",
                          label_names=["PD"])  # fmt: skip
    ds = read_external(run, {"path": str(tmp_path / "ext.csv")})
    assert ds.label_names == ["PD"] and [float(r.labels[0]) for r in ds.records] == [0, 1, 0, 1]


def _images(folder, n: int = 6) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(folder / f"s{i}.png")
    return [f"s{i}.png" for i in range(n)]


def test_the_runs_own_label_column_wins_over_a_column_holding_its_class_names(tmp_path):
    """The run's 0/1 `Pneumonia` column was replaced by `prior_dx` (Normal/Pneumonia, another reading) without a
    note, inverting half the labels; a class-name column is looked for only when the run's own does not read."""
    names = _images(tmp_path)
    truth, prior = [0, 1, 0, 1, 0, 1], ["Pneumonia", "Normal", "Normal", "Normal", "Pneumonia", "Normal"]
    rows = [f"{n},{t},{p}" for n, t, p in zip(names, truth, prior)]
    (tmp_path / "ext.csv").write_text("path,Pneumonia,prior_dx\n" + "\n".join(rows) + "\n")
    run = SimpleNamespace(path=tmp_path, config=RunConfig(data=DataConfig(path="t.csv", label_columns=["Pneumonia"])),
                          task="binary", label_names=["Pneumonia"])  # fmt: skip
    ds = read_external(run, {"path": str(tmp_path / "ext.csv")})
    assert [float(r.labels[0]) for r in ds.records] == truth
    assert not any("holding the run's class names" in n for n in ds.notes)


def test_class_folders_are_not_mapped_by_sort_order_onto_a_generic_label(tmp_path):
    """A run on ISIC's 0/1 `target` (1 = melanoma) evaluated on `melanoma/ nevus/` took `nevus`, last in sorted
    order, as 1: an inverted AUC behind a note. Now it stops and asks which class is 1, and maps once told."""
    for cls in ("melanoma", "nevus"):
        _images(tmp_path / "ext" / cls, 3)
    run = SimpleNamespace(
        path=tmp_path, config=RunConfig(data=DataConfig(path="t.csv")), task="binary", label_names=["target"]
    )
    with pytest.raises(DataError, match=r"'nevus' where the run has 'target'; .*--positive-class CLASS"):
        read_external(run, {"path": str(tmp_path / "ext")})
    ds = read_external(run, {"path": str(tmp_path / "ext"), "positive_class": "melanoma"})
    assert ds.label_names == ["target"]
    assert {r.id.split("/")[0]: float(r.labels[0]) for r in ds.records} == {"melanoma": 1.0, "nevus": 0.0}


def test_a_positive_class_beside_a_negative_name_maps_onto_a_generic_label(tmp_path):
    """`0_normal/ 1_abnormal/` for a run on a 0/1 `label` asked for an option `evaluate` did not have (`--set`); the
    positive is not chosen by sort order there (its partner names the negative), so it maps, and the hint names
    `--positive-class`, which `evaluate` now has."""
    from conftest import run_cli

    for cls in ("0_normal", "1_abnormal"):
        _images(tmp_path / "ext" / cls, 3)
    run = SimpleNamespace(
        path=tmp_path, config=RunConfig(data=DataConfig(path="t.csv")), task="binary", label_names=["label"]
    )
    ds = read_external(run, {"path": str(tmp_path / "ext")})
    assert {r.id.split("/")[0]: float(r.labels[0]) for r in ds.records} == {"0_normal": 0.0, "1_abnormal": 1.0}
    assert "--positive-class" in run_cli("evaluate", "--help").stdout


def test_another_disease_beside_a_normal_class_is_not_the_runs(tmp_path):
    """The partner rule read `TUBERCULOSIS/` beside `NORMAL/` as a PNEUMONIA run's positive: one disease scored as
    another. It holds only for a run's generic label (`label`, `target`)."""
    for cls in ("NORMAL", "TUBERCULOSIS"):
        _images(tmp_path / "ext" / cls, 3)
    run = SimpleNamespace(
        path=tmp_path, config=RunConfig(data=DataConfig(path="t")), task="binary", label_names=["PNEUMONIA"]
    )
    with pytest.raises(DataError, match="'TUBERCULOSIS' where the run has 'PNEUMONIA'"):
        read_external(run, {"path": str(tmp_path / "ext")})


def test_a_folder_read_by_its_csv_gets_the_class_column_retry(tmp_path):
    """A folder holding `images/` and `ext.csv` (path,group) was not a manifest to the retry, so `group` holding the
    run's HC/PD was never found."""
    names = _images(tmp_path / "ext" / "images", 4)
    rows = [f"images/{n},{'PD' if i % 2 else 'HC'}" for i, n in enumerate(names)]
    (tmp_path / "ext" / "ext.csv").write_text("path,group\n" + "\n".join(rows) + "\n")
    run = SimpleNamespace(path=tmp_path, config=RunConfig(data=DataConfig(path="t.csv", label_column="diagnosis")),
                          task="binary",
                          label_names=["PD"])  # fmt: skip
    ds = read_external(run, {"path": str(tmp_path / "ext")})
    assert [float(r.labels[0]) for r in ds.records] == [0, 1, 0, 1]


def test_made_up_patient_ids_of_new_data_are_not_counted_as_training_patients(tmp_path):
    """Two MedMNIST files both name their images `train_0`, `train_1`...: evaluating one on a run trained on the other
    warned that 2,691 of its 'patients' were training patients. Ids meddx made up (each image its own patient) are
    not patients and are not counted; real ids that coincide still are."""
    import pandas as pd

    from meddx.data.leakage import overlap_with_training
    from meddx.data.records import DataSet, Record

    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((8, 8), 40 * i + 10, np.uint8)).save(files[-1])
    seen = pd.DataFrame({"id": ["train_0", "train_1"], "patient_id": ["train_0", "p7"], "split": "train",
                         "sha1": ["x", "y"], "source": ["a.npz", "a.npz"]})  # fmt: skip
    made_up = DataSet(
        [Record(f"train_{i}", f"train_{i}", str(f), np.ones(1)) for i, f in enumerate(files)], ["y"], "binary"
    )
    assert not made_up.patients_known
    check = overlap_with_training(made_up.records, seen, True, patients_known=made_up.patients_known)[1]
    assert check["shared_patient_ids"] == 0
    import json

    from meddx.evaluation.data_section import leakage_text

    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "ext.leakage.json").write_text(json.dumps(check))
    assert "patients NOT checked" in leakage_text(SimpleNamespace(path=tmp_path), "ext", {})  # as training's line
    named = DataSet([Record(f"s{i}.png", "p7", str(f), np.ones(1)) for i, f in enumerate(files)], ["y"], "binary")
    assert (
        overlap_with_training(named.records, seen, True, patients_known=named.patients_known)[1]["shared_patient_ids"]
        == 1
    )


def test_a_multilabel_runs_columns_are_read_beside_an_age_or_sex_column(tmp_path):
    """A multi-label run evaluated on a CSV holding its label columns and `age` stopped, asking for --label-column,
    so `--by sex` could not work on multi-label runs; the run's own label columns are read and the rest left."""
    names = _images(tmp_path)
    rows = [f"{n},{i % 2},{1 - i % 2},{60 + i},{'MF'[i % 2]}" for i, n in enumerate(names)]
    (tmp_path / "ext.csv").write_text("path,normal,abnormal,age,sex\n" + "\n".join(rows) + "\n")
    run = SimpleNamespace(path=tmp_path, config=RunConfig(data=DataConfig(path="t.csv")), task="multilabel",
                          label_names=["abnormal", "normal"])  # fmt: skip
    ds = read_external(run, {"path": str(tmp_path / "ext.csv")})
    assert ds.label_names == ["abnormal", "normal"] and ds.labels.tolist() == [[1 - i % 2, i % 2] for i in range(6)]
    rows = [f"{n},{1 - i % 2},{60 + i}" for i, n in enumerate(names)]  # no `normal` column: was an error
    (tmp_path / "lacks.csv").write_text("path,abnormal,age\n" + "\n".join(rows) + "\n")
    ds = read_external(run, {"path": str(tmp_path / "lacks.csv")})
    assert ds.label_names == ["abnormal", "normal"] and np.isnan(ds.labels[:, 1]).all()
    assert (
        ds.labels[:, 0].tolist() == [1 - i % 2 for i in range(6)]
        and "no column for label(s) ['normal']" in ds.notes[-1]
    )


def test_two_data_sets_of_one_name_keep_two_reports(tmp_path):
    """siteA/data then siteB/data were both `external-data`: site B's report replaced site A's without a word. A name
    holding another data set's predictions is numbered; the same data evaluated again keeps its name."""
    import json

    from meddx.evaluation.external import external_name

    run = SimpleNamespace(path=tmp_path / "run")
    (run.path / "predictions").mkdir(parents=True)
    assert external_name(run, tmp_path / "siteA" / "data") == "external-data"
    (run.path / "predictions" / "external-data.data.json").write_text(
        json.dumps({"path": str(tmp_path / "siteA/data")})
    )
    assert external_name(run, tmp_path / "siteA" / "data") == "external-data"
    assert external_name(run, tmp_path / "siteB" / "data") == "external-data-2"
    assert external_name(run, tmp_path / "external_set.csv") == "external_set"
    assert external_name(run, tmp_path / "siteA" / "data", "site") == "site"
    with pytest.raises(ConfigError, match="--split external-data: .* already holds the evaluation of .*siteA/data"):
        external_name(run, tmp_path / "siteB" / "data", "external-data")


def test_new_data_of_one_class_reads_against_the_runs_classes(tmp_path):
    """A folder holding only `normal/` (or a CSV whose diagnosis is all NORMAL) stopped with 'only one class found',
    though its specificity is what a site of normals wants; the run's recorded classes make it read. A run whose
    classes are not recorded still stops, and the one class is never mapped onto a generic label."""
    import json

    _images(tmp_path / "new" / "normal")
    rows = [f"s{i}.png,NORMAL" for i in range(6)]
    (tmp_path / "new" / "normal" / "m.csv").write_text("path,diagnosis\n" + "\n".join(rows) + "\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "data.json").write_text(json.dumps({"classes": ["NORMAL", "PNEUMONIA"]}))
    run = SimpleNamespace(path=tmp_path / "run", config=RunConfig(data=DataConfig(path="train")), task="binary",
                          label_names=["PNEUMONIA"])  # fmt: skip
    for data in ("new", "new/normal/m.csv"):
        ds = read_external(run, {"path": str(tmp_path / data)})
        assert ds.label_names == ["PNEUMONIA"] and ds.labels[:, 0].tolist() == [0] * 6
    old = SimpleNamespace(path=tmp_path, config=run.config, task="binary", label_names=["PNEUMONIA"])
    with pytest.raises(DataError, match="only one class found"):
        read_external(old, {"path": str(tmp_path / "new")})


def test_a_class_the_run_never_learnt_is_named_with_its_rows(tmp_path):
    """`COVID` rows beside NORMAL and PNEUMONIA gave '3 multiclass labels differ... COVID where the run has
    PNEUMONIA' with no row; now the message names the class, how many samples and the first rows."""
    import json

    names = _images(tmp_path)
    classes = ["NORMAL", "PNEUMONIA", "COVID", "NORMAL", "PNEUMONIA", "NORMAL"]
    (tmp_path / "ext.csv").write_text("path,diagnosis\n" + "\n".join(f"{n},{c}" for n, c in zip(names, classes)))
    (tmp_path / "data.json").write_text(json.dumps({"classes": ["NORMAL", "PNEUMONIA"]}))
    run = SimpleNamespace(path=tmp_path, config=RunConfig(data=DataConfig(path="t.csv")), task="binary",
                          label_names=["PNEUMONIA"])  # fmt: skip
    with pytest.raises(DataError, match=r"\['COVID'\] are not the run's \(NORMAL, PNEUMONIA\): 1 sample\(s\), e\.g\. "
                                        r".*ext.csv row 4; leave them out") as caught:  # fmt: skip
        read_external(run, {"path": str(tmp_path / "ext.csv")})
    assert "where the run has" not in str(caught.value)  # 3 classes against 1 label: no pairwise detail
    two = ["normal", "covid", "covid", "normal", "normal", "normal"]  # two classes for a three-class run
    (tmp_path / "two.csv").write_text("path,diagnosis\n" + "\n".join(f"{n},{c}" for n, c in zip(names, two)))
    (tmp_path / "data.json").write_text(json.dumps({"classes": ["bacteria", "normal", "virus"]}))
    three = SimpleNamespace(path=tmp_path, config=RunConfig(data=DataConfig(path="t.csv")), task="multiclass",
                            label_names=["bacteria", "normal", "virus"])  # fmt: skip
    with pytest.raises(DataError, match=r"\['covid'\] are not the run's \(bacteria, normal, virus\): 2 sample\(s\), "
                                        r"e\.g\. .*two.csv row 3; .*two.csv row 4; leave them") as caught:  # fmt: skip
        read_external(three, {"path": str(tmp_path / "two.csv")})
    assert "where the run has" not in str(caught.value)


def test_recorded_classes_do_not_change_data_of_other_names(tmp_path):
    """With the run's classes recorded, folders `0/ 1/` for a NORMAL/PNEUMONIA run must still read as before (a 0/1
    pair whose 1 is the run's positive), not as four classes."""
    import json

    for cls in ("0", "1"):
        _images(tmp_path / "new" / cls)
    (tmp_path / "data.json").write_text(json.dumps({"classes": ["NORMAL", "PNEUMONIA"]}))
    run = SimpleNamespace(path=tmp_path, config=RunConfig(data=DataConfig(path="train")), task="binary",
                          label_names=["PNEUMONIA"])  # fmt: skip
    ds = read_external(run, {"path": str(tmp_path / "new"), "positive_class": "1"})
    assert ds.task == "binary" and ds.labels[:, 0].sum() == 6


def test_near_copies_whose_training_file_is_not_readable_are_kept_and_said(tmp_path):
    """Run from another folder (split.csv's relative sources unreadable), 193 of 312 genuine external images were
    dropped as 'copies' on a perceptual-hash match alone ('1223 of 312 files'). A match is a copy only when the
    training file confirms it; otherwise the file is kept and counted; each file counts once."""
    import pandas as pd

    from meddx.data.leakage import overlap_with_training
    from meddx.data.near_duplicates import hash_records
    from meddx.data.records import Record

    rng = np.random.default_rng(0)
    base = (rng.random((64, 64)) * 255).astype(np.uint8)
    Image.fromarray(base).save(tmp_path / "train.png")
    Image.fromarray(np.clip(base.astype(int) + 3, 0, 255).astype(np.uint8)).save(tmp_path / "new.png")
    train = Record("t", "pt", str(tmp_path / "train.png"), np.ones(1))
    hash_records([train])
    sources = [str(tmp_path / "train.png"), "gone/a.png"]
    table = pd.DataFrame({"id": ["t", "t2"], "patient_id": ["pt", "pt2"], "split": "train", "sha1": ["x", "y"],
                          "phash": [train.phash, train.phash], "source": sources})  # fmt: skip
    new = [Record("n", "pn", str(tmp_path / "new.png"), np.ones(1))]
    kept, check = overlap_with_training(new, table, drop=True)
    assert not kept and check["near_duplicates_of_training"] == 1 and check["dropped"] == 1  # one file, not 2 pairs
    kept, check = overlap_with_training(new, table.iloc[1:], drop=True)  # only the unreadable training file
    assert len(kept) == 1 and check["dropped"] == 0 and check["near_unconfirmed"] == 1
    from meddx.data.images import content_hash

    test_row = pd.DataFrame({"id": ["x"], "patient_id": ["px"], "split": "test", "source": ["s"],
                             "sha1": [content_hash(new[0])], "phash": [""]})  # fmt: skip
    tested = pd.concat([table.iloc[1:], test_row])
    assert overlap_with_training(new, tested, drop=True)[1]["same_as_test"] == 1  # the run's own test image again
    assert overlap_with_training(new, pd.concat([table, tested]), drop=True)[1]["same_as_test"] == 0  # left out
    resaved = {
        **test_row.iloc[0].to_dict(),
        "sha1": "other",
        "phash": train.phash,
        "source": str(tmp_path / "train.png"),
    }
    own = overlap_with_training(new, pd.concat([table.iloc[1:], pd.DataFrame([resaved])]), drop=True)[1]
    assert own["same_as_test"] == 1  # the run's test image saved again (other bytes): counted, not passed as new
    twice = [*new, Record("n2", "pn2", str(tmp_path / "new.png"), np.ones(1))]  # two files, one test image
    check = overlap_with_training(twice, tested, drop=True)[1]
    assert (check["same_as_test"], check["same_as_test_distinct"]) == (2, 1)


def test_split_csv_keeps_absolute_sources(tmp_path, monkeypatch):
    """Relative sources in split.csv could not be read from another working folder (the copy check then had nothing
    to confirm with); they are written absolute, array-file slices too."""
    from pathlib import Path

    from meddx.data.records import DataSet, Record

    monkeypatch.chdir(tmp_path)
    ds = DataSet([Record("a", "p", "imgs/a.png", np.ones(1)), Record("b", "q", "x.npz", np.ones(1), 3, "train_images")],
                 ["y"], "binary")  # fmt: skip
    assert ds.to_frame()["source"].tolist() == [str(tmp_path / "imgs/a.png"), f"{tmp_path / 'x.npz'}::train_images[3]"]
    assert all(Path(s.split("::")[0]).is_absolute() for s in ds.to_frame()["source"])


def test_a_positive_class_that_would_invert_the_runs_labels_is_refused(tmp_path):
    """`--positive-class NORMAL` on data holding NORMAL and PNEUMONIA for a run whose positive is PNEUMONIA read
    NORMAL as the run's PNEUMONIA (AUC 0.076) and replaced the right report; it is an error now."""
    for cls in ("NORMAL", "PNEUMONIA"):
        _images(tmp_path / "new" / cls)
    run = SimpleNamespace(path=tmp_path, config=RunConfig(data=DataConfig(path="train")), task="binary",
                          label_names=["PNEUMONIA"])  # fmt: skip
    with pytest.raises(DataError, match="holds the run's positive class 'PNEUMONIA' itself.*would invert"):
        read_external(run, {"path": str(tmp_path / "new"), "positive_class": "NORMAL"})
    assert read_external(run, {"path": str(tmp_path / "new")}).labels[:, 0].sum() == 6


def test_review_cases_of_names_sources_and_small_classes(tmp_path, monkeypatch, data_dir):
    """A review's cases: a renamed BreastMNIST file keeps malignant (index 0) as the run's positive; one site's
    `data` folder typed from its own folder never takes another site's report name; `test=file.npz` is no CSV
    manifest; 2 positives among 100 normals read in new data; class spellings are not listed twice."""
    import json
    import shutil

    from meddx.data.readers import manifest_path
    from meddx.data.records import class_labels, merge_classes
    from meddx.evaluation.external import data_source, external_name

    from conftest import need

    renamed = tmp_path / "site2_breast.npz"
    shutil.copy(need(data_dir, "medmnist/breastmnist.npz"), renamed)
    (tmp_path / "data.json").write_text(json.dumps({"classes": ["malignant", "normal_or_benign"]}))
    run = SimpleNamespace(path=tmp_path, config=RunConfig(data=DataConfig(path="b.npz")), task="binary",
                          label_names=["malignant"])  # fmt: skip
    y = np.load(renamed)["train_labels"].ravel()
    ds = read_external(run, {"path": str(renamed)})
    assert ds.subset("train").labels[:, 0].tolist() == (y == 0).astype(float).tolist()

    (tmp_path / "predictions").mkdir()
    for site in ("siteA", "siteB"):
        (tmp_path / site / "data").mkdir(parents=True)
        monkeypatch.chdir(tmp_path / site)
        name = external_name(run, "data")
        source = data_source(SimpleNamespace(origin="data", notes=[], patients_guessed=None), {"path": "data"})
        (tmp_path / "predictions" / f"{name}.data.json").write_text(json.dumps(source))
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == ["external-data-2.data.json",
                                                                            "external-data.data.json"]  # fmt: skip
    assert manifest_path({"test": str(renamed)}) is None
    names = ["NORMAL"] * 100 + ["PNEUMONIA"] * 2
    assert class_labels(names, None, "x", known=["NORMAL", "PNEUMONIA"])[0] == ["PNEUMONIA"]
    with pytest.raises(DataError, match="a typo"):
        class_labels(names, None, "x")
    assert merge_classes(["normal", "normal", "pneumonia"], None) == ["normal", "pneumonia"]


def test_a_new_csv_reads_its_paths_beside_itself_and_the_runs_root_only_as_a_fallback(tmp_path):
    """A run trained with --root SHARED: `evaluate --data new/ok.csv` looked for `img/x.png` under SHARED, against
    the README's rule (paths relative to the CSV's folder), and suggested a wrong --root. Now the CSV's folder comes
    first; a test.csv whose paths are relative to the run's root (beside its training CSV) still reads, with a note.
    Absolute paths are refused with advice `evaluate` can follow (--allow-outside-root)."""
    for folder in ("new/img", "shared/img"):
        (tmp_path / folder).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(tmp_path / folder / f"x{i}.png")
    rows = "path,label\n" + "".join(f"img/x{i}.png,{'pneumonia' if i % 2 else 'normal'}\n" for i in range(6))
    (tmp_path / "new" / "ok.csv").write_text(rows)
    (tmp_path / "test.csv").write_text(rows)
    cfg = RunConfig(data=DataConfig(path=str(tmp_path / "train.csv"), root=str(tmp_path / "shared")))
    run = SimpleNamespace(path=tmp_path, config=cfg, task="binary", label_names=["pneumonia"])
    beside = read_external(run, {"path": str(tmp_path / "new" / "ok.csv")})
    assert {r.source for r in beside.records} == {str(tmp_path / "new" / "img" / f"x{i}.png") for i in range(6)}
    assert not any("run's root" in n for n in beside.notes)
    (tmp_path / "new" / "img" / "x0.png").unlink()
    fallback = read_external(run, {"path": str(tmp_path / "test.csv")})
    assert {r.source for r in fallback.records} == {str(tmp_path / "shared" / "img" / f"x{i}.png") for i in range(6)}
    assert any("under the run's root" in n for n in fallback.notes)
    with pytest.raises(DataError, match=r"(?s)image file\(s\) named in the manifest do not exist.*new/img/x0.png"):
        read_external(run, {"path": str(tmp_path / "new" / "ok.csv")})  # missing beside it and under the root
    absolute = rows.replace("img/", f"{tmp_path}/shared/img/")
    (tmp_path / "new" / "abs.csv").write_text(absolute)
    with pytest.raises(DataError, match="pass --allow-outside-root"):
        read_external(run, {"path": str(tmp_path / "new" / "abs.csv")})
    assert len(read_external(run, {"path": str(tmp_path / "new" / "abs.csv"), "allow_outside_root": True}).records) == 6


def test_classes_named_0_and_1_follow_the_runs_medmnist_numbering(tmp_path):
    """BreastMNIST's test exported as folders `0/ 1/` (or a 0/1 column) for a run trained on the .npz: `1` was read as
    the run's positive 'malignant', which is MedMNIST's 0, so the AUC came out 0.106; MedMNIST's numbering now holds."""
    import json

    for k in ("0", "1"):
        (tmp_path / "new" / k).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i + int(k), np.uint8)).save(tmp_path / "new" / k / f"x{i}.png")
    rows = "".join(f"{k}/x{i}.png,{k}\n" for k in "01" for i in range(3))
    (tmp_path / "new.csv").write_text("image,label\n" + "".join(f"new/{r}" for r in rows.splitlines(True)))
    for classes, positive, zero_is_positive in ((["malignant", "normal_or_benign"], "malignant", True),
                                                (["normal", "pneumonia"], "pneumonia", False)):  # fmt: skip
        (tmp_path / "data.json").write_text(json.dumps({"classes": classes, "origin": "/data/b.npz"}))
        run = SimpleNamespace(path=tmp_path, config=RunConfig(data=DataConfig(path="b.npz")), task="binary",
                              label_names=[positive])  # fmt: skip
        for data in ({"path": str(tmp_path / "new")}, {"path": str(tmp_path / "new.csv")}):
            ds = read_external(run, data)
            truth = {r.id.replace("new/", ""): r.labels[0] for r in ds.records}
            assert ds.label_names == [positive]
            assert all(v == float((k.startswith("0/")) == zero_is_positive) for k, v in truth.items()), truth
            assert any("the run's MedMNIST numbering: 0 " + classes[0] in n for n in ds.notes)
    from meddx.evaluation.report import _optimism_warnings

    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "site.data.json").write_text(json.dumps({"notes": ds.notes}))
    warned = _optimism_warnings(SimpleNamespace(path=tmp_path), "site", 100)["warning_label_numbering"]
    assert "--positive-class 1" in warned and "AUC 1 - AUC" in warned  # a site whose 1 means pneumonia can say so


@pytest.mark.parametrize(("own", "distinct", "dropped", "warned", "said"), [
    (8, 8, 2, "all 8 samples evaluated here", "repeat all of its test split)"),
    (8, 1, 2, "all 8 samples evaluated here", "repeat 1 of its 8 test images)"),
    (3, 3, 0, "3 of 10 samples evaluated here", "repeat 3 of its 8 test images)"),
    (0, 0, 0, None, None),
])  # fmt: skip
def test_an_external_set_made_of_the_runs_own_test_images_is_not_called_external(
    tmp_path, own, distinct, dropped, warned, said
):
    """New data that is mostly the run's own test images again gets a warning above the figures; the leakage line
    says how much of the run's test split (8 images here) the figures repeat, counting each test image once (one
    re-saved 8 times is 1 of 8); a few chance copies (under a tenth) get only the line."""
    from meddx.evaluation.data_section import leakage_text
    from meddx.evaluation.report import overlap_warnings

    check = {"checked": True, "files": 10, "dropped": dropped, "shared_patient_ids": 0, "same_as_test": own,
             "same_as_test_distinct": distinct}  # fmt: skip
    warning = overlap_warnings(check).get("warning_own_test")
    assert (warning is None) if warned is None else (warned in warning and f"({distinct} distinct)" in warning)
    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "external-x.leakage.json").write_text(json.dumps(check))
    text = leakage_text(SimpleNamespace(path=tmp_path), "external-x", {"sizes": {"test": {"samples": 8}}})
    assert (said is None and "own test" not in text) or (said is not None and said in text)
    unknown = leakage_text(SimpleNamespace(path=tmp_path), "external-x", {})  # a run that recorded no sizes
    assert said is None or "repeat part of its test)" in unknown
    assert "warning_own_test" not in overlap_warnings({**check, "files": 100, "same_as_test": min(own, 5)})


def _run_of(tmp_path, **data) -> SimpleNamespace:
    return SimpleNamespace(
        path=tmp_path, config=RunConfig(data=DataConfig(**data)), task="binary", label_names=["PNEUMONIA"]
    )


def test_a_patient_regex_the_new_files_do_not_all_follow_is_dropped_first_in_the_notes(tmp_path):
    """A run trained with --patient-regex for Kermany's `person12_virus_3.jpeg` refused another hospital's `s0.png`
    outright; such a regex is now dropped, said before the notes it causes (also when some names follow it: the
    rest would stop the reading), and a regex the user gives for the new data is kept."""
    for cls in ("NORMAL", "PNEUMONIA"):
        _images(tmp_path / "new" / cls)
    run = _run_of(tmp_path, path="train", patient_regex=r"(person\d+)")
    ds = read_external(run, {"path": str(tmp_path / "new")})
    assert len(ds.records) == 12 and {r.patient_id for r in ds.records} == {r.id for r in ds.records}
    assert ds.notes[0].startswith(r"the run's patient_regex '(person\d+)' matches none of the 12 file names (not e.g. ")
    assert ds.notes[0].endswith("read without it (--patient-regex sets this data's)")
    with pytest.raises(DataError, match=r"patient_regex 'x\(\\d\+\)' does not match 12 file name"):
        read_external(run, {"path": str(tmp_path / "new"), "patient_regex": r"x(\d+)"})  # the user's own: kept
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "new" / "NORMAL" / "person7_1.png")
    some = read_external(run, {"path": str(tmp_path / "new")})
    assert len(some.records) == 13 and "matches 1 of the 13 file names" in some.notes[0]


def test_dicom_files_take_their_patientid_tags_before_the_runs_patient_regex(data_dir, tmp_path):
    import pydicom

    from conftest import need

    template = pydicom.dcmread(need(data_dir, "dicom/CT_small.dcm"))
    for k in range(24):  # 12 patients by tag; the run's regex would make 24 of the names
        template.PatientID = f"PT{k // 2:03d}"
        folder = tmp_path / "new" / ("PNEUMONIA" if k // 2 % 2 else "NORMAL")
        folder.mkdir(parents=True, exist_ok=True)
        template.save_as(folder / f"IM-{k:04d}-0001.dcm")
    ds = read_external(_run_of(tmp_path, path="train", patient_regex=r"(IM-\d+)"), {"path": str(tmp_path / "new")})
    assert len({r.patient_id for r in ds.records}) == 12 and "PatientID tags first" in ds.notes[0]


def test_a_class_the_binary_run_never_learnt_is_not_scored_as_its_negative(tmp_path):
    """`Bronchiolitis/` beside `PNEUMONIA/` for a NORMAL/PNEUMONIA run was scored as NORMAL without a word."""
    for cls in ("Bronchiolitis", "PNEUMONIA", "Not pneumonia", "benign"):
        _images(tmp_path / cls.replace(" ", "_") / cls)
    (tmp_path / "PNEUMONIA" / "PNEUMONIA").rename(tmp_path / "Bronchiolitis" / "PNEUMONIA")
    run = _run_of(tmp_path, path="train")
    run.path = tmp_path / "run"
    (run.path).mkdir()
    (run.path / "data.json").write_text(json.dumps({"classes": ["NORMAL", "PNEUMONIA"]}))
    with pytest.raises(DataError, match=r"class 'Bronchiolitis' is not the run's \(NORMAL, PNEUMONIA\): 6 sample"):
        read_external(run, {"path": str(tmp_path / "Bronchiolitis")})
    asked = read_external(run, {"path": str(tmp_path / "Bronchiolitis"), "positive_class": "PNEUMONIA"})
    assert any(
        "'Bronchiolitis' (6 sample(s)) scored as the run's negative 'NORMAL', as asked" in n for n in asked.notes
    )
    for negative in ("Not pneumonia", "benign"):  # names that read as the negative
        (tmp_path / "Bronchiolitis" / "PNEUMONIA").rename(tmp_path / negative.replace(" ", "_") / "PNEUMONIA")
        assert len(read_external(run, {"path": str(tmp_path / negative.replace(" ", "_"))}).records) == 12
        (tmp_path / negative.replace(" ", "_") / "PNEUMONIA").rename(tmp_path / "Bronchiolitis" / "PNEUMONIA")
    (run.path / "data.json").write_text("{}")  # a run from before its classes were recorded: a note, no stop
    old = read_external(run, {"path": str(tmp_path / "Bronchiolitis")})
    assert any("records no class names to check 'Bronchiolitis' against: scored as its negative unchecked" in n
               for n in old.notes)  # fmt: skip
    (tmp_path / "Bronchiolitis" / "PNEUMONIA").rename(tmp_path / "benign" / "PNEUMONIA")  # reads as the negative
    assert not any("records no class names" in n for n in read_external(run, {"path": str(tmp_path / "benign")}).notes)


def test_a_csv_without_the_runs_patient_column_is_read_without_it_but_not_without_its_image_column(tmp_path):
    for cls in ("NORMAL", "PNEUMONIA"):
        _images(tmp_path / "new" / cls)
    rows = "".join(f"new/{c}/s{i}.png,{c},p{i}\n" for i in range(6) for c in ("NORMAL", "PNEUMONIA"))
    (tmp_path / "new.csv").write_text("file,label,pid\n" + rows)
    run = _run_of(tmp_path, path="train.csv", patient_column="patient_id", label_column="label", image_column="file")
    ds = read_external(run, {"path": str(tmp_path / "new.csv")})
    assert len(ds.records) == 12 and ds.notes[0].startswith("the run's patient_column 'patient_id' is not a column of")
    mine = read_external(run, {"path": str(tmp_path / "new.csv"), "patient_column": "pid"})
    assert {r.patient_id for r in mine.records} == {f"p{i}" for i in range(6)}  # the user's, on every record
    regexed = _run_of(tmp_path, path="train.csv", patient_regex=r"(s\d)", label_column="label", image_column="file")
    assert len(read_external(regexed, {"path": str(tmp_path / "new.csv"), "patient_column": "pid"}).records) == 12
    run.config.data.image_column = "path"  # which column holds the images is never guessed for a run's
    with pytest.raises(DataError, match=r"no image column 'path'; columns are .* \(--image-column names this data's\)"):
        read_external(run, {"path": str(tmp_path / "new.csv")})


def test_the_domain_check_sample_spreads_over_the_whole_set():
    """400 new scans: the check took the first 300 in sorted order, and 100 odd ones at the end were never seen."""
    from meddx.data.records import spread_evenly

    picked = spread_evenly(list(range(400)), 300)
    assert len(picked) == len(set(picked)) == 300 and picked[0] == 0 and picked[-1] == 399
    assert sum(i >= 300 for i in picked) == 75 and spread_evenly([1, 2], 300) == [1, 2]


def test_the_leakage_line_says_which_side_has_no_patient_ids(tmp_path):
    """A DaTscan run (no patient ids) on DICOMs with PatientID tags said 'this data has no patient ids'."""
    from meddx.data.patients import DICOM_TAG
    from meddx.data.records import DataSet, Record
    from meddx.evaluation.data_section import leakage_text

    (tmp_path / "predictions").mkdir()
    check = {"checked": True, "files": 3, "dropped": 0, "shared_patient_ids": 0, "patients_known": False}
    run = SimpleNamespace(path=tmp_path, is_sequence=False)
    for run_known, says in (
        (False, "the run's training data had no patient ids: each image its own"),
        (True, "this data has no patient"),
    ):
        (tmp_path / "predictions" / "ext.leakage.json").write_text(
            json.dumps({**check, "run_patients_known": run_known})
        )
        assert says in leakage_text(run, "ext", {})
    tagged = [Record(f"HC/case{i}.dcm", f"case{i}", f"case{i}.dcm", np.zeros(1)) for i in range(3)]
    assert DataSet(tagged, ["PD"], "binary", patients_guessed=DICOM_TAG).patients_known  # tags equal to the names
    assert not DataSet(tagged, ["PD"], "binary").patients_known


def test_csv_rows_are_named_by_their_file_line_past_blank_and_empty_lines(tmp_path):
    """Two blank lines above a missing label shifted the row the error named; Excel's trailing `,` rows stopped it."""
    from meddx.data.tables import line_numbers, read_table

    (tmp_path / "m.csv").write_text("image,label\n\na.png,NORMAL\n\nb.png,\n,\n")
    frame = read_table(tmp_path / "m.csv")
    assert list(frame["image"]) == ["a.png", "b.png"] and line_numbers(frame) == [3, 5]
    (tmp_path / "l1.csv").write_bytes(b"image,label\na.png,caf\xe9\n")
    with pytest.raises(DataError, match=r"byte b'\\xe9' on line 2 is not UTF-8; save the file as UTF-8"):
        read_table(tmp_path / "l1.csv")
    from meddx.data.manifest import read_csv_manifest

    with pytest.raises(DataError, match=r"blank 'label' on row\(s\) \[5\]"):
        read_csv_manifest(tmp_path / "m.csv", label_column="label")


def test_files_of_new_data_repeated_under_another_label_are_counted_in_the_leakage_line(tmp_path):
    from meddx.data.leakage import overlap_with_training
    from meddx.data.records import Record

    for cls in ("NORMAL", "PNEUMONIA"):
        _images(tmp_path / cls, 3)  # s0..s2 in both folders: the same bytes under both labels
    records = [Record(f"{c}/s{i}.png", f"{c}{i}", str(tmp_path / c / f"s{i}.png"), np.array([float(c == "PNEUMONIA")]))
               for c in ("NORMAL", "PNEUMONIA") for i in range(3)]  # fmt: skip
    records.append(Record("again.png", "x", str(tmp_path / "NORMAL" / "s0.png"), np.array([0.0])))
    empty = __import__("pandas").DataFrame({"split": [], "sha1": [], "id": [], "patient_id": []})
    _, check = overlap_with_training(records, empty, drop=True)
    assert (check["repeated_files"], check["repeated_other_label"]) == (4, 3)
    from meddx.evaluation.data_section import leakage_text

    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "ext.leakage.json").write_text(json.dumps({**check, "checked": True}))
    line = leakage_text(SimpleNamespace(path=tmp_path, is_sequence=False), "ext", {})
    assert "4 image(s) repeat another of this data exactly (all scored), 3 of them under another label" in line


def test_new_class_folders_without_the_runs_numbers_read_as_its_classes(tmp_path):
    """NIH's run learnt `0_normal/ 1_abnormal/`; a hospital's `normal/ abnormal/` stopped with a label mismatch."""
    for cls in ("normal", "abnormal"):
        _images(tmp_path / "new" / cls, 4)
    run = _run_of(tmp_path, path="train")
    run.label_names, run.path = ["1_abnormal"], tmp_path / "run"
    run.path.mkdir()
    (run.path / "data.json").write_text(json.dumps({"classes": ["0_normal", "1_abnormal"]}))
    ds = read_external(run, {"path": str(tmp_path / "new")})
    assert ds.label_names == ["1_abnormal"] and "this data's 'abnormal' read as the run's '1_abnormal'" in ds.notes[-1]
    assert {r.id.split("/")[0]: float(r.labels[0]) for r in ds.records} == {"abnormal": 1.0, "normal": 0.0}


def test_one_split_of_the_bundled_set_is_named_by_its_name():
    """`--data test=pneumoniamnist` said 'CSV manifest not found: pneumoniamnist'."""
    from meddx.data.readers import read_dataset

    ds = read_dataset(DataConfig(path={"test": "pneumoniamnist"}))
    assert len(ds.records) == 624 and {r.split for r in ds.records} == {"test"}


def test_the_unlearnt_class_check_lets_complements_and_numbered_names_through_and_its_hint_reads(tmp_path):
    """Review cases: a yes/no column, `bacteria/ virus/` for a 0_bacteria/1_virus run, and the suggested flag read;
    `Non-specific interstitial pneumonia/` denies nothing and is stopped."""
    _images(tmp_path / "img", 8)
    rows = "".join(f"img/s{i}.png,{'yes' if i % 2 else 'no'}\n" for i in range(6))
    (tmp_path / "yn.csv").write_text("image,PNEUMONIA\n" + rows)
    run = _run_of(tmp_path, path="train")
    run.path = tmp_path / "run"
    run.path.mkdir()
    (run.path / "data.json").write_text(json.dumps({"classes": ["NORMAL", "PNEUMONIA"]}))
    assert len(read_external(run, {"path": str(tmp_path / "yn.csv")}).records) == 6
    for cls in ("bacteria", "virus", "Non-specific interstitial pneumonia", "abnormal"):
        _images(tmp_path / "f" / cls, 3)
    (run.path / "data.json").write_text(json.dumps({"classes": ["0_bacteria", "1_virus"]}))
    run.label_names = ["1_virus"]
    only = tmp_path / "bv"
    for cls in ("bacteria", "virus"):
        (tmp_path / "f" / cls).rename(only / cls) if only.exists() else (
            only.mkdir(),
            (tmp_path / "f" / cls).rename(only / cls),
        )
    assert len(read_external(run, {"path": str(only)}).records) == 6
    (run.path / "data.json").write_text(json.dumps({"classes": ["0_normal", "1_abnormal"]}))
    run.label_names = ["1_abnormal"]
    with pytest.raises(
        DataError, match=r"class 'Non-specific interstitial pneumonia' is not the run's .*--positive-class abnormal\)"
    ):
        read_external(run, {"path": str(tmp_path / "f")})
    asked = read_external(run, {"path": str(tmp_path / "f"), "positive_class": "abnormal"})  # the hint's flag reads
    assert len(asked.records) == 6 and "scored as the run's negative '0_normal', as asked" in asked.notes[-1]


def test_split_folders_of_images_without_patients_share_no_patient_by_name(tmp_path):
    """`train=A/ test=B/` holding the same file names: each image its own patient, so no false shared patient."""
    from meddx.data.readers import read_dataset

    for split in ("A", "B"):
        for cls in ("NORMAL", "PNEUMONIA"):
            _images(tmp_path / split / cls, 3)
    ds = read_dataset(DataConfig(path={"train": str(tmp_path / "A"), "test": str(tmp_path / "B")}))
    assert not ds.patients_known and len({r.patient_id for r in ds.records}) == 12
