"""The budget's time limit on planned models: never below the minutes planned for one model, and said in the report
when it ended a model before early stopping."""

from __future__ import annotations

import pytest

import meddx
from meddx.training.plan import Plan

from conftest import need


def test_the_budgets_time_limit_never_cuts_a_model_below_its_planned_minutes():
    """A seed begun after the budget had run out (setup or the first seed overran) was capped at 6 s and averaged in
    untrained; its limit is now the budget left, or the minutes the plan gave one model if that is more."""
    import time

    from meddx.config import as_config
    from meddx.training.autofit import _until

    plan = Plan({}, 4, "cpu", estimate={"training_s": 240.0})
    member = as_config({"train": {"ensemble": 2}})  # 2 models planned in 4 minutes: 2 minutes each
    assert _until(member, time.monotonic() - 100, plan).train.max_minutes == pytest.approx(2.0)
    assert _until(member, time.monotonic() + 600, plan).train.max_minutes == pytest.approx(10.0, abs=0.01)


def test_a_model_stopped_by_its_time_limit_says_so(tmp_path, data_dir):
    """The plan's time limit may end a model before early stopping would (a machine busier than at the pilot); the
    report said only 'best epoch 3 of 3', as if it had converged."""
    from meddx.evaluation.sections import _training_summary

    cfg = {"data": {"path": str(need(data_dir, "medmnist/breastmnist.npz"))}, "output_dir": str(tmp_path),
           "plan": {"enabled": False}, "evaluate": {"bootstrap": 0},
           "train": {"max_epochs": 200, "patience": 200, "max_minutes": 0.05, "progress_bar": False}}  # fmt: skip
    run = meddx.train(cfg)
    assert run.training["stopped_by_time_limit"] == 0.05 and run.training["epochs_run"] < 200
    assert "stopped at its time limit (0.05 min: train.max_minutes" in _training_summary(run.training)


def test_a_time_limit_that_cuts_the_last_epoch_short_is_reported():
    """Lightning counts an epoch cut short by its Timer as run (current_epoch == max_epochs), so a model stopped part
    way through its last epoch read as not stopped by the time limit; the epoch's batches now tell."""
    import time

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import Timer
    from torch.utils.data import DataLoader, TensorDataset

    from meddx.training.writer import _out_of_time

    class Slow(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            time.sleep(0.03)
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), 0.1)

    loader = DataLoader(TensorDataset(torch.randn(40, 2)), batch_size=2)  # 20 batches, 0.6 s an epoch at least
    trainer = pl.Trainer(max_epochs=2, callbacks=[Timer(duration={"seconds": 0.9}, interval="step")], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(Slow(), loader)
    assert trainer.global_step < 40  # the Timer stopped it (a busy machine may cut the first epoch instead)
    assert trainer.current_epoch == 2 or trainer.global_step < 20  # Lightning: 2 epochs "run", the second cut short
    assert _out_of_time(trainer, 0.015) == 0.015


def test_the_time_limit_check_reads_the_last_epochs_batches():
    """The same check on a trainer stated outright (the test above depends on wall time): the Timer ran out part way
    through the last epoch, which Lightning counts as run; ran out after a whole last epoch, or never: no cut."""
    from types import SimpleNamespace

    from pytorch_lightning.callbacks import Timer

    from meddx.training.writer import _out_of_time

    def trainer(completed: int, remaining: float) -> SimpleNamespace:
        timer = Timer(duration={"seconds": 1})
        timer.time_remaining = lambda *a: remaining
        progress = SimpleNamespace(current=SimpleNamespace(completed=completed))
        loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
        return SimpleNamespace(callbacks=[timer], current_epoch=2, max_epochs=2, num_training_batches=20, fit_loop=loop)

    assert _out_of_time(trainer(8, 0.0), 0.5) == 0.5
    assert _out_of_time(trainer(20, 0.0), 0.5) is None
    assert _out_of_time(trainer(8, 3.0), 0.5) is None
