"""Lightning callbacks for fine-tuning and diagnostics: gradual unfreezing, the collapse monitor, and TensorBoard
histograms/ROC figures."""

from __future__ import annotations

import random

import numpy as np
import torch
from pytorch_lightning import seed_everything
from pytorch_lightning.callbacks import BaseFinetuning, Callback
from pytorch_lightning.utilities import rank_zero_warn

from meddx.errors import MeddxWarning
from meddx.models.finetune import freeze_all_but
from meddx.training.collapse import SPREAD_TOLERANCE, collapse_message, detect_collapse, evident_causes

HIST_BINS = np.linspace(0.0, 1.0, 21)  # fixed 0-1 bins, so epochs compare


class GradualUnfreezing(BaseFinetuning):
    """Start with the last `depth` blocks (and the head) trainable; one more block every `every` epochs."""

    def __init__(self, depth: int, every: int):
        super().__init__()
        self.depth, self.every = depth, every

    def freeze_before_training(self, pl_module) -> None:
        freeze_all_but(pl_module.model, self.depth)

    def finetune_function(self, pl_module, epoch: int, optimizer) -> None:
        if epoch > 0 and epoch % self.every == 0:  # the optimizer already holds every parameter; grads decide
            freeze_all_but(pl_module.model, self.depth + epoch // self.every)


class ValDiagnostics(Callback):
    """Each validation epoch: per-label AUC scalars, histograms of predicted probabilities for true positives and
    true negatives separately (fixed 0-1 bins), and the ROC curve figure, in TensorBoard (DLwPT section 14.5.4)."""

    def __init__(self, label_names: list[str]):
        self.label_names = label_names
        self._p: list[torch.Tensor] = []
        self._y: list[torch.Tensor] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._p, self._y = [], []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if isinstance(outputs, torch.Tensor):
            self._p.append(outputs.detach().float().cpu())
            self._y.append(batch[1].detach().float().cpu())

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        from pytorch_lightning.loggers import TensorBoardLogger
        from sklearn.metrics import roc_auc_score, roc_curve

        if trainer.sanity_checking or not self._p:
            return
        p, y = gather_rows(trainer, torch.cat(self._p).numpy()), gather_rows(trainer, torch.cat(self._y).numpy())
        aucs, curves = {}, {}
        for j, name in enumerate(self.label_names):
            known = ~np.isnan(y[:, j])
            yj, pj = y[known, j] >= 0.5, p[known, j]  # soft labels: positive from 0.5
            if 0 < yj.sum() < len(yj):
                aucs[name] = float(roc_auc_score(yj, pj))
                curves[name] = roc_curve(yj, pj)[:2]
        for name, auc in aucs.items():
            pl_module.log(f"val_auc/{name}", auc, sync_dist=True)  # from every process's rows: the same in each
        tb = next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if tb is None or not trainer.is_global_zero:
            return
        step = trainer.current_epoch
        for j, name in enumerate(self.label_names):
            for kind, value in (("positives", 1.0), ("negatives", 0.0)):
                v = p[np.nan_to_num(y[:, j], nan=-1.0).round() == value, j]
                if len(v):
                    tb.add_histogram(f"val_prob/{name}/{kind}", v, step, bins=HIST_BINS)
        if curves:
            tb.add_figure("val_roc", _roc_figure(curves, aucs, step), step, close=True)


def _roc_figure(curves: dict, aucs: dict, epoch: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
    for name, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {aucs[name]:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"validation ROC, epoch {epoch + 1}")
    ax.legend(loc="lower right", fontsize=7)
    return fig


class CollapseMonitor(Callback):
    """Watches the spread of validation outputs per label each epoch; warns and records when they collapse."""

    def __init__(self, label_names: list[str], tolerance: float = SPREAD_TOLERANCE):
        self.label_names, self.tolerance = label_names, tolerance
        self._probs: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self.epochs: list[dict] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if outputs is not None:
            self._probs.append(outputs.detach().float().cpu())
            self._labels.append(batch[1].detach().float().cpu().reshape(len(outputs), -1))

    def on_validation_epoch_end(self, trainer, pl_module):
        probs, labels = self._probs, self._labels
        self._probs, self._labels = [], []
        if trainer.sanity_checking or not probs:
            return
        every = gather_rows(trainer, torch.cat(probs).numpy())  # the whole val split, not this process's share
        result = detect_collapse(every, self.label_names, self.tolerance, self._targets(trainer, labels))
        result["epoch"] = trainer.current_epoch + 1
        self.epochs.append(result)
        pl_module.log("val_pred_spread", min(result["spread"].values()), sync_dist=True)
        if result["collapsed"]:
            history = next((c.rows for c in trainer.callbacks if isinstance(c, EpochHistory)), [])
            result["likely_causes"] = evident_causes(history, pl_module.train_cfg.lr) + result["likely_causes"]
            rank_zero_warn(f"epoch {result['epoch']}: {collapse_message(result)}", category=MeddxWarning)

    def _targets(self, trainer, labels: list[torch.Tensor]) -> np.ndarray | None:
        """The val labels as one 0/1 column per label (class indices of a multi-class task one-hot), else None."""
        y = gather_rows(trainer, torch.cat(labels).numpy())
        if y.shape[1] == len(self.label_names):
            return y
        if y.shape[1] == 1 and len(self.label_names) > 1:
            return np.eye(len(self.label_names))[y[:, 0].astype(int)]
        return None

    def state_dict(self) -> dict:
        return {"epochs": self.epochs}  # kept in checkpoints: a resumed run reports every epoch

    def load_state_dict(self, state_dict: dict) -> None:
        self.epochs = list(state_dict.get("epochs", []))

    def summary(self) -> dict:
        """Collapse state of the last epoch and the epochs that collapsed."""
        last = self.epochs[-1] if self.epochs else {"collapsed": False}
        return {
            "collapsed_last_epoch": last["collapsed"],
            "collapsed_epochs": [e["epoch"] for e in self.epochs if e["collapsed"]],
            "last": last,
        }


def gather_rows(trainer, rows: np.ndarray) -> np.ndarray:
    """Every process's rows, rank by rank (unchanged in a one-process run); the sampler's padding repeats a few."""
    if trainer.world_size == 1 or not torch.distributed.is_initialized():
        return rows
    parts = [None] * trainer.world_size
    torch.distributed.all_gather_object(parts, rows)
    return np.concatenate(parts)


class RankSeeds(Callback):
    """Different random draws in each process of a distributed run (augmentation, mixup, dropout), all from the run's
    seed: as training starts (a resumed one too), each reseeds from the generator state they share plus its rank."""

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.world_size > 1:
            shared = int(torch.randint(0, 2**31 - 1 - trainer.world_size, (1,)))
            seed_everything(shared + trainer.global_rank, workers=True, verbose=False)


class EpochHistory(Callback):
    """One row per epoch (train and val loss, val AUC, spread of val outputs), kept in every checkpoint: a resumed
    run reports the epochs before the kill too (Lightning's CSV log starts afresh when a run resumes)."""

    KEYS = ("train_loss", "val_loss", "val_auc", "val_pred_spread")

    def __init__(self):
        self.rows: list[dict] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # before the checkpoints of this epoch are saved
        metrics = trainer.callback_metrics
        values = {k: round(float(metrics[k]), 6) for k in self.KEYS if k in metrics}
        self.rows.append({"epoch": trainer.current_epoch + 1, **values})

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict.get("rows", []))


class ResumeState(Callback):
    """What a checkpoint needs beyond Lightning's own for a resumed run to continue as if never stopped: the random
    number generators (the next epoch's shuffle and augmentation) and the untrained model's val loss; the training
    loader's place only inside an epoch (`train.checkpoint_minutes`)."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["meddx"] = {
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": [v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()],
            "python_rng": random.getstate(),
            "initial_val_loss": pl_module.initial_val_loss,
        }
        if trainer.fit_loop.epoch_loop.batch_progress.current.completed >= trainer.num_training_batches:
            # at an epoch's end the loader has no place to keep: the next epoch shuffles from the restored generators
            # as an uninterrupted run does (a finished loader's state would replay the old epoch's generator)
            checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).pop("combined_loader", None)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        state = checkpoint.get("meddx")
        if not state:
            return
        torch.set_rng_state(state["torch_rng"])
        name, keys, *rest = state["numpy_rng"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
        random.setstate(_as_tuples(state["python_rng"]))
        pl_module.initial_val_loss = state["initial_val_loss"]


def _as_tuples(value):
    """random.setstate wants tuples where a checkpoint may hand back lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
