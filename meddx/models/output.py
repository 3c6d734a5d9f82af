"""What every layer shares about a model's outputs: the model a config describes, the task's output activation, and
the one prediction loop."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from meddx.config import ModelConfig
from meddx.errors import ConfigError
from meddx.models.registry import MODEL_INFO, create_model


def build_model(
    cfg: ModelConfig, in_chans: int, num_labels: int, state_dict_file: str | Path | None = None, **extra
) -> nn.Module:
    """The model `cfg` describes; with `state_dict_file` (a run's model.pt) its trained weights, loaded strictly without
    pickle, in eval mode; else `cfg.weights` (a local pretrained file) if any. `extra`: builder arguments such as a
    vocabulary's size (cfg.kwargs win)."""
    kwargs = {**extra, **cfg.kwargs}
    if cfg.dropout_samples > 1:
        if MODEL_INFO.get(cfg.name) is None or MODEL_INFO[cfg.name].kind != "sequence":
            raise ConfigError(f"model.dropout_samples is for token-sequence models; '{cfg.name}' is not one")
        kwargs["dropout_samples"] = cfg.dropout_samples
    weights = None if state_dict_file else cfg.weights
    model = create_model(cfg.name, in_chans, num_labels, weights=weights, dropout=cfg.dropout, **kwargs)
    if cfg.embeddings and not state_dict_file:  # a trained run's model.pt already holds its embedding
        from meddx.models.embeddings import load_word_vectors

        load_word_vectors(model, cfg.embeddings, cfg.freeze_embeddings)
    if state_dict_file:
        try:
            model.load_state_dict(load_state_dict_file(state_dict_file))
        except RuntimeError as e:  # weights of another model or size than the config says
            first = str(e).strip().splitlines()[0]
            raise ConfigError(f"{state_dict_file}: its weights do not fit model '{cfg.name}' ({first})") from None
        model.eval()
    return model


def load_state_dict_file(path: str | Path) -> dict:
    """A state dict saved by meddx, loaded with weights_only=True; an empty, cut or crafted file is one clear line."""
    size = Path(path).stat().st_size if Path(path).is_file() else -1
    if size <= 0:
        raise ConfigError(f"{path}: {'missing' if size < 0 else 'empty (0 bytes)'}; train the run again or restore it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ConfigError(f"{path}: refused, holds more than tensors ({str(e).strip().splitlines()[0]})") from None
    except (EOFError, RuntimeError, ValueError, OSError) as e:
        raise ConfigError(f"{path}: not a readable weights file, cut or corrupted ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


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
