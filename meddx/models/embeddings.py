"""Word vectors in a token model: which embedding holds the words, and loading vectors from `meddx pretrain
--objective word2vec` into it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from meddx.errors import ConfigError

EMBEDDINGS = "embeddings.pt"


def word_embedding(model: nn.Module) -> nn.Embedding:
    """The model's token embedding (its first nn.Embedding: `embed`, or BERT's word embeddings)."""
    found = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    if found is None:
        raise ConfigError(f"{type(model).__name__} has no nn.Embedding: word vectors and adversarial training need one")
    return found


def embeddings_file(source: str | Path) -> Path:
    """The vectors file of a word2vec folder, or the file itself."""
    path = Path(source)
    return path / EMBEDDINGS if path.is_dir() else path


def load_word_vectors(model: nn.Module, source: str | Path, freeze: bool = False) -> None:
    """Copy the vectors into the model's word embedding (frozen if asked); another size is one ConfigError line."""
    path = embeddings_file(source)
    if not path.is_file():
        raise ConfigError(f"model.embeddings: {path} not found (make it with `meddx pretrain --objective word2vec`)")
    try:
        weight = torch.load(path, map_location="cpu", weights_only=True).get("weight")
    except Exception as e:  # cut, empty, crafted or not a dict: the file is named, nothing of it runs
        raise ConfigError(f"model.embeddings: {path} is not a readable vectors file ({type(e).__name__})") from None
    emb = word_embedding(model)
    if not isinstance(weight, torch.Tensor) or weight.shape != emb.weight.shape:
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else "no 'weight' tensor"
        raise ConfigError(
            f"model.embeddings: {path} holds {got}, the model's embedding is {tuple(emb.weight.shape)} "
            "(vocabulary x dimensions); pretrain with the model's embedding size over the same vocabulary"
        )
    with torch.no_grad():
        emb.weight.copy_(weight)
    emb.weight.requires_grad_(not freeze)
