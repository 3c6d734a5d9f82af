"""Config: YAML, dotted overrides, and overrides on top of a dict or RunConfig in the Python API."""

from __future__ import annotations

import pytest

import meddx.api
import meddx.training.autofit
from meddx.config import RunConfig, load_config
from meddx.errors import ConfigError


def test_overrides_apply_to_yaml_dict_and_runconfig(tmp_path, monkeypatch):
    (tmp_path / "run.yaml").write_text("train:\n  max_epochs: 7\n")
    assert load_config(tmp_path / "run.yaml", {"train.lr": 0.01}).train.max_epochs == 7
    seen = []
    monkeypatch.setattr(meddx.training.autofit, "train_members", lambda cfg, **kw: seen.append(cfg))
    meddx.api.train({"train": {"max_epochs": 3}}, train__lr=0.05, name="x")
    meddx.api.train(RunConfig(), train__max_epochs=2)
    assert (seen[0].train.max_epochs, seen[0].train.lr, seen[0].name) == (3, 0.05, "x")
    assert seen[1].train.max_epochs == 2
    with pytest.raises(ConfigError, match="train.max_epochs"):
        meddx.api.train({"train": {"max_epochs": 0}})


def test_a_run_config_object_leaves_the_fields_its_user_did_not_set_to_the_plan():
    """`meddx.train(RunConfig(data=DataConfig(path=...)))` from a notebook: every field was re-read as set by the user,
    so the plan chose nothing (and crashed on image_size None); only what the user set, and overrides, are theirs."""
    from meddx.config import DataConfig, as_config
    from meddx.training.plan import user_fields

    mine = RunConfig(data=DataConfig(path="scans.npz"), name="mine")
    assert user_fields(as_config(mine)) == {"name": "mine", "data.path": "scans.npz"}
    both = as_config(mine, {"train.max_epochs": 3, "data__image_size": 48})
    assert user_fields(both) == {"name": "mine", "data.path": "scans.npz", "train.max_epochs": 3, "data.image_size": 48}
    assert user_fields(as_config(both)) == user_fields(both) and mine.data.image_size is None  # the caller's unchanged
    later = RunConfig(data=DataConfig(path="scans.npz"))
    later.train.max_epochs = 3  # assigned after construction: still the user's
    assert user_fields(as_config(later)) == {"data.path": "scans.npz", "train.max_epochs": 3}
    whole = as_config(RunConfig(train={"lr": 0.1}), {"train": {"max_epochs": 2}})  # a section given whole replaces it
    assert user_fields(whole) == {"train.max_epochs": 2} and whole.train.lr == RunConfig().train.lr
