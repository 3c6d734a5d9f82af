"""What every layer shares about a model's outputs: the model a config describes, the task's output activation, and
the one prediction loop."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from meddx.config import ModelConfig
from meddx.models.registry import create_model


def build_model(
    cfg: ModelConfig, in_chans: int, num_labels: int, state_dict_file: str | Path | None = None, **extra
) -> nn.Module:
    """The model `cfg` describes; with `state_dict_file` (a run's model.pt) its trained weights, loaded strictly without
    pickle, in eval mode; else `cfg.weights` (a local pretrained file) if any. `extra`: builder arguments such as a
    vocabulary's size (cfg.kwargs win)."""
    kwargs = {**extra, **cfg.kwargs}
    weights = None if state_dict_file else cfg.weights
    model = create_model(cfg.name, in_chans, num_labels, weights=weights, dropout=cfg.dropout, **kwargs)
    if state_dict_file:
        model.load_state_dict(torch.load(state_dict_file, map_location="cpu", weights_only=True))
        model.eval()
    return model


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """The task's output activation: softmax over classes for multi-class, a sigmoid per label otherwise."""
    return torch.softmax(logits, dim=1) if task == "multiclass" else torch.sigmoid(logits)


def logits_of(probs: torch.Tensor, task: str) -> torch.Tensor:
    """The inverse of `probabilities` (log for multi-class, logit otherwise): logits whose activation gives `probs`."""
    return torch.log(probs) if task == "multiclass" else torch.logit(probs)


def predict_proba(model: nn.Module, batches: Iterable, task: str, num_labels: int) -> np.ndarray:
    """(N, L) float64 probabilities of `model` over (inputs, ...) batches, in inference mode."""
    out = []
    with torch.inference_mode():
        for batch in batches:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            out.append(probabilities(model(x), task).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, num_labels))
