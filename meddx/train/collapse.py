"""Collapse detection: every output (nearly) the same, the DaTscan resident's failure; a callback and a check."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

SPREAD_TOLERANCE = 0.01
LIKELY_CAUSES = [
    "learning rate too high (try 10x lower) or too low to move at all",
    "inputs not normalised (raw 0-255 or HU values; DaTscan counts need per-image normalisation)",
    "class imbalance without class weights: the model predicts the majority class for everyone",
    "loss/activation mismatch (sigmoid before BCEWithLogits, softmax into BCE, labels not 0/1)",
    "dead ReLUs after a bad update: all activations zero, output equals the bias",
]


def detect_collapse(probs: np.ndarray, label_names: list[str], tolerance: float = SPREAD_TOLERANCE) -> dict:
    """Per-label spread (max - min) of predicted probabilities; collapsed when every label's spread is below tolerance."""
    probs = np.asarray(probs, dtype=np.float64).reshape(len(probs), -1)
    spread = (probs.max(0) - probs.min(0)) if len(probs) else np.zeros(probs.shape[1])
    flat = [n for n, s in zip(label_names, spread) if s < tolerance]
    return {
        "collapsed": bool(len(flat) == len(label_names) and len(label_names) > 0),
        "flat_labels": flat,
        "spread": {n: float(s) for n, s in zip(label_names, spread)},
        "tolerance": tolerance,
        "likely_causes": LIKELY_CAUSES if flat else [],
    }


def collapse_message(result: dict) -> str:
    """Plain words for a collapsed model."""
    return (
        f"model collapse: predictions are (nearly) the same for every sample on {', '.join(result['flat_labels'])} "
        f"(spread < {result['tolerance']}). Check: " + "; ".join(result["likely_causes"])
    )


class CollapseMonitor(pl.Callback):
    """Watches the spread of validation outputs per label each epoch; warns and records when they collapse."""

    def __init__(self, label_names: list[str], tolerance: float = SPREAD_TOLERANCE):
        self.label_names, self.tolerance = label_names, tolerance
        self._probs: list[torch.Tensor] = []
        self.epochs: list[dict] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if outputs is not None:
            self._probs.append(outputs.detach().float().cpu())

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or not self._probs:
            self._probs = []
            return
        result = detect_collapse(torch.cat(self._probs).numpy(), self.label_names, self.tolerance)
        self._probs = []
        result["epoch"] = trainer.current_epoch + 1
        self.epochs.append(result)
        pl_module.log("val_pred_spread", min(result["spread"].values()), sync_dist=True)
        if result["collapsed"]:
            rank_zero_warn(f"epoch {result['epoch']}: {collapse_message(result)}")

    def summary(self) -> dict:
        """Collapse state of the last epoch and the epochs that collapsed."""
        last = self.epochs[-1] if self.epochs else {"collapsed": False}
        return {"collapsed_last_epoch": last["collapsed"], "collapsed_epochs": [e["epoch"] for e in self.epochs if e["collapsed"]],
                "last": last}
