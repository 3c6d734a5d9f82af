"""Pseudo-labels are fold-safe: fold k's model trains on labels made only by source models that never saw fold k's
test reports; any other source is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_tricks import _synthetic, _tiny

from meddx.errors import ConfigError
from meddx.run import Run


@pytest.fixture(scope="module")
def source_cv(tmp_path_factory):
    """A 3-fold CV of a tiny GRU on 240 synthetic reports, and 60 unlabelled ones."""
    from meddx.training.cv import cross_validate

    root = tmp_path_factory.mktemp("pseudo")
    cfg = _tiny(root, "source")
    cfg["train"]["max_epochs"] = 4
    _synthetic(root / "unlabelled.csv", n=60, seed=1)
    lines = (root / "unlabelled.csv").read_text().splitlines()
    (root / "unlabelled.csv").write_text("\n".join(ln.rsplit("|,|", 1)[0] for ln in lines) + "\n")  # labels removed
    return root, cfg, cross_validate(cfg, 3)


@pytest.mark.slow
def test_each_fold_takes_its_labels_from_the_same_fold_of_the_source(source_cv):
    from meddx.data.reports import read_tianchi
    from meddx.training.cv import cross_validate

    root, cfg, source = source_cv
    cfg = {**cfg, "name": "student"}
    cfg["train"] = {**cfg["train"], "max_epochs": 1, "pseudo_labels": {
        "sources": [str(source)], "data": [str(root / "unlabelled.csv")], "confidence": 0.7}}  # fmt: skip
    student = cross_validate(cfg, 3)
    unlabelled = read_tianchi(root / "unlabelled.csv", require_labels=False).records
    for k in range(3):
        table = Run(student / f"fold{k}").split_table()
        pseudo = table[table["id"].str.startswith("pseudo:")]
        assert len(pseudo) and set(pseudo["split"]) == {"train"}
        expected = Run(source / f"fold{k}").predict_proba(unlabelled)  # this fold's source model alone
        by_id = {f"pseudo:unlabelled.csv:{r.id}": i for i, r in enumerate(unlabelled)}
        got = pseudo[Run(source / "fold0").label_names].to_numpy(np.float64)
        np.testing.assert_allclose(got, expected[[by_id[i] for i in pseudo["id"]]], atol=1e-6)
        assert ((got <= 0.3) | (got >= 0.7)).all()
        notes = json.loads((student / f"fold{k}" / "data.json").read_text())["notes"]
        assert any("pseudo-labels" in n and "1 source model" in n for n in notes)


@pytest.mark.slow
def test_a_source_that_saw_the_test_rows_is_refused(source_cv, tmp_path):
    import meddx

    root, cfg, source = source_cv
    cfg = {**cfg, "name": "leaky", "output_dir": str(tmp_path)}
    cfg["split"] = {"folds": 3, "fold": 0, "seed": 1}  # other folds: every source model trained on some test rows
    cfg["train"] = {**cfg["train"], "pseudo_labels": {"sources": [str(source)], "data": [str(root / "unlabelled.csv")]}}
    with pytest.raises(ConfigError, match="would leak"):
        meddx.train(cfg)


def test_pseudo_labels_need_sources_and_data():
    from meddx.config import PseudoLabelConfig

    with pytest.raises(ValueError, match="both sources"):
        PseudoLabelConfig(sources=["runs/x"])


def test_members_that_added_other_pseudo_labels_share_every_labelled_rows_split(tmp_path):
    """A pseudo-labelled fold and a plain one of the same fold refused to ensemble ('its split differs ... e.g.
    pseudo:track1_round1_testA...'): the unlabelled reports added to train are not the labelled split."""
    from meddx.evaluation.ensemble import labelled_split

    rows = "id,patient_id,split\na,a,train\nb,b,val\nc,c,test\n"
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "split.csv").write_text(rows)
    (tmp_path / "pseudo").mkdir()
    (tmp_path / "pseudo" / "split.csv").write_text(rows + "pseudo:testA.csv:7,pseudo:testA.csv:7,train\n")
    assert labelled_split(tmp_path / "pseudo").equals(labelled_split(tmp_path / "plain"))
    (tmp_path / "pseudo" / "split.csv").write_text(rows.replace("c,c,test", "c,c,val"))
    assert not labelled_split(tmp_path / "pseudo").equals(labelled_split(tmp_path / "plain"))
