"""`train.checkpoint_minutes`: checkpoints within an epoch, and a run resumed from one trains the rest of that epoch
(the same batches in the same order as an uninterrupted run, none twice) to the same weights."""

from __future__ import annotations

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
    def __init__(self, at_batch: int):
        self.at_batch = at_batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == self.at_batch:
            raise RuntimeError("killed here")


ORIGINAL = trainer_module.make_callbacks


def _with(monkeypatch, *extra: pl.Callback) -> None:
    monkeypatch.setattr(trainer_module, "make_callbacks", lambda *a, **k: [*ORIGINAL(*a, **k), *extra])


@pytest.mark.parametrize("minutes, at_batch", [(1e-6, 3), (None, 0)])
def test_a_mid_epoch_checkpoint_resumes_the_same_batches(tmp_path, monkeypatch, minutes, at_batch):
    """Killed in epoch 1 after `at_batch` batches: from a mid-epoch checkpoint, or (no checkpoint_minutes) from the
    end of epoch 0."""
    cfg = _tiny(tmp_path, "straight")
    cfg["model"]["dropout"] = 0.0
    cfg["train"].update(max_epochs=3, batch_size=16, checkpoint_minutes=minutes, patience=5)
    straight = Recorder()
    _with(monkeypatch, straight)
    a = fit({**cfg})
    epoch1 = [c for e, c in straight.seen if e == 1]

    killed, resumed = Recorder(), Recorder()
    _with(monkeypatch, killed, Crash(at_batch))
    with pytest.raises(RuntimeError, match="killed here"):
        fit({**cfg, "name": "killed"})
    folder = tmp_path / "runs" / "killed"
    state = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = len([e for e, _ in straight.seen if e == 0])
    assert state["global_step"] == steps_per_epoch + at_batch  # written inside epoch 1, or at the end of epoch 0
    _with(monkeypatch, resumed)
    b = fit({**cfg, "name": "killed"}, resume=folder)
    done_before = [c for e, c in killed.seen if e == 1][:at_batch]
    assert done_before + [c for e, c in resumed.seen if e == 1] == epoch1  # the rest of the epoch, none twice
    assert [c for e, c in resumed.seen if e == 2] == [c for e, c in straight.seen if e == 2]
    wa, wb = (torch.load(r.path / "model.pt", weights_only=True) for r in (a, b))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k])
