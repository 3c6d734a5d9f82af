"""Weights files a model starts from: a state dict read safely (tensors only) from a file, a run folder or a
Lightning/timm checkpoint, and what a folder meddx made holds instead when it has no model.pt."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
import yaml

from meddx.errors import ConfigError


def read_state_dict(source: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a meddx run folder (its model.pt), a state-dict file, or a Lightning/timm checkpoint."""
    p = Path(source)
    if p.is_dir():
        if not (p / "model.pt").is_file():
            raise ConfigError(f"{p}: {_folder_kind(p)}")
        p = p / "model.pt"
    if not p.is_file():
        raise ConfigError(
            f"weights file not found: {p} (neither a meddx run folder nor a file; meddx never downloads weights)"
        )
    with open(p, "rb") as f:  # torch.save writes a zip archive (or, before torch 1.6, a pickle: protocol byte 0x80)
        head = f.read(4)
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise ConfigError(f"{p}: not a file torch.save wrote (it starts {head!r}; a state dict is a zip archive)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch's own advice (weights_only=False) runs code: never given here
        if isinstance(e, pickle.UnpicklingError):
            why = "not tensors saved by torch.save, or objects beyond tensors, which meddx never unpickles"
        else:
            why = f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
        raise ConfigError(f"{p}: not a loadable state dict ({why})") from None
    lightning = isinstance(state, dict) and "pytorch-lightning_version" in state
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{p}: expected a dict of tensors (a state dict)")
    if lightning or (
        state and all(k.startswith("model.") for k in state)
    ):  # our Classifier: the model, not its loss buffers
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    return state


def source_model(source: str | Path) -> str | None:
    """The model a weights source was made for, where meddx wrote it down: a run folder's (or a model.pt's)
    config.yaml, an encoder.pt's pretrain.json; else None."""
    folder = weights_folder(source)
    try:
        if (folder / "pretrain.json").is_file():
            return json.loads((folder / "pretrain.json").read_text()).get("model")
        if (folder / "config.yaml").is_file():
            return (yaml.safe_load((folder / "config.yaml").read_text()) or {}).get("model", {}).get("name")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    return None


def weights_folder(source: str | Path) -> Path:
    """The folder that says what a weights source was made as: the folder given, a file's own, or the run above a
    Lightning checkpoint (RUN/checkpoints/best.ckpt)."""
    p = Path(source)
    if p.is_dir():
        return p
    if p.parent.name == "checkpoints" and (p.parent.parent / "config.yaml").is_file():
        return p.parent.parent
    return p.parent


def _folder_kind(p: Path) -> str:
    """Why a folder given to initialise from has no model.pt, and what to give instead."""
    if (p / "encoder.pt").is_file():
        return f"a `meddx pretrain` folder: give its encoder, --init-from {p / 'encoder.pt'}"
    if (p / "embeddings.pt").is_file():
        return f"word vectors for token models, not image weights: --set model.embeddings={p}"
    if folds := sorted(p.glob("fold*/model.pt")):
        return f"a cross-validation of {len(folds)} folds: give one fold's model, e.g. --init-from {folds[0].parent}"
    if members := sorted((p / "members").glob("*/model.pt")):
        return f"an ensemble of {len(members)} models: give one of them, e.g. --init-from {members[0].parent}"
    return "a run folder to initialise from needs model.pt (did the run finish?)"
