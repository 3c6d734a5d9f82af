"""`train.checkpoint_minutes`: checkpoints within an epoch, and a run resumed from one trains the rest of that epoch
(the same batches in the same order as an uninterrupted run, none twice) to the same weights."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from test_tricks import _tiny

import meddx.training.trainer as trainer_module
from meddx.training.fit import fit

pytestmark = pytest.mark.slow


class Recorder(pl.Callback):
    """Every training batch as (epoch, a checksum of its token rows)."""

    def __init__(self):
        self.seen: list[tuple[int, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append((trainer.current_epoch, int((batch[0] * torch.arange(1, batch[0].shape[1] + 1)).sum())))


class Crash(pl.Callback):
    """Raises in epoch 1 before batch `at_batch`, or (at_batch None) as its validation starts."""

    def __init__(self, at_batch: int | None):
        self.at_batch = at_batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == self.at_batch:
            raise RuntimeError("killed here")

    def on_validation_start(self, trainer, pl_module):
        if trainer.current_epoch == 1 and self.at_batch is None and not trainer.sanity_checking:
            raise RuntimeError("killed here")


ORIGINAL = trainer_module.make_callbacks


def _with(monkeypatch, *extra: pl.Callback) -> None:
    monkeypatch.setattr(trainer_module, "make_callbacks", lambda *a, **k: [*ORIGINAL(*a, **k), *extra])


@pytest.mark.parametrize(
    "minutes, at_batch, ema, grouped",
    [(1e-6, 3, None, False), (1e-6, None, None, False), (None, 0, None, False), (1e-6, 3, 0.9, False),
     (1e-6, 3, None, True)],
    ids=["mid-epoch", "in-validation", "epoch-end", "mid-epoch-ema", "mid-epoch-grouped-by-length"],
)  # fmt: skip
def test_a_mid_epoch_checkpoint_resumes_the_same_batches(tmp_path, monkeypatch, minutes, at_batch, ema, grouped):
    """Killed in epoch 1 after `at_batch` batches (None: in its validation, after all of them): from a mid-epoch
    checkpoint, or (no checkpoint_minutes) from the end of epoch 0; with EMA the average is resumed too; batches
    grouped by length are drawn from (seed, epoch) like the plain shuffle."""
    cfg = _tiny(tmp_path, "straight", **({"ema_decay": ema} if ema else {}))
    cfg["model"]["dropout"] = 0.0
    cfg["train"].update(max_epochs=3, batch_size=16, checkpoint_minutes=minutes, patience=5, group_by_length=grouped)
    straight = Recorder()
    _with(monkeypatch, straight)
    a = fit({**cfg})
    epoch1 = [c for e, c in straight.seen if e == 1]
    steps_per_epoch = len(epoch1)
    # one last.ckpt, the epoch's own at the end (the in-epoch one used to go beside it as last-v1.ckpt)
    assert sorted(p.name for p in (a.path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(a.path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3 * steps_per_epoch

    killed, resumed = Recorder(), Recorder()
    _with(monkeypatch, killed, Crash(at_batch))
    with pytest.raises(RuntimeError, match="killed here"):
        fit({**cfg, "name": "killed"})
    folder = tmp_path / "runs" / "killed"
    state = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    # written inside epoch 1, or at the end of epoch 0; never after an epoch's last batch but before its validation
    at_batch = steps_per_epoch - 1 if at_batch is None else at_batch
    assert state["global_step"] == steps_per_epoch + at_batch
    _with(monkeypatch, resumed)
    b = fit({**cfg, "name": "killed"}, resume=folder)
    done_before = [c for e, c in killed.seen if e == 1][:at_batch]
    assert done_before + [c for e, c in resumed.seen if e == 1] == epoch1  # the rest of the epoch, none twice
    assert [c for e, c in resumed.seen if e == 2] == [c for e, c in straight.seen if e == 2]
    ha, hb = (json.loads((r.path / "training.json").read_text())["history"] for r in (a, b))
    assert [h["val_loss"] for h in hb] == pytest.approx([h["val_loss"] for h in ha])  # every epoch validated once
    wa, wb = (torch.load(r.path / "model.pt", weights_only=True) for r in (a, b))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k])


def test_max_minutes_stops_training_and_keeps_the_best_epoch(tmp_path):
    """`train.max_minutes` (Lightning's max_time): a run of 200 epochs given 3 seconds stops early with its weights."""
    cfg = _tiny(tmp_path, "timed")
    cfg["train"].update(max_epochs=200, patience=200, max_minutes=0.05)
    run = fit(cfg)
    epochs = run.training["epochs_run"]
    assert 1 <= epochs < 200 and (run.path / "model.pt").is_file(), epochs
