"""What a pretrained encoder was trained as (architecture, input size, normalisation), read from the files beside it, so
the plan fine-tunes the same architecture on inputs prepared the same way instead of choosing its own."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meddx.config import load_config
from meddx.errors import ConfigError
from meddx.models.finetune import fitting_models
from meddx.models.state_files import read_state_dict, weights_folder
from meddx.run import CONFIG, PREPROCESS, SPLIT

PRETRAIN_INFO = "pretrain.json"


def encoder_recipe(source: str | Path) -> dict | None:
    """{model, image_size, normalize, origin} of `meddx pretrain`'s output (pretrain.json) or of a run folder
    (config.yaml + preprocess.json), for a folder or a weights file inside one; None when nothing says."""
    folder = weights_folder(source)
    info_path = folder / PRETRAIN_INFO
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
        except (ValueError, OSError) as e:
            raise ConfigError(f"{info_path}: not readable as JSON ({e}); run `meddx pretrain` again") from None
        if not info.get("model"):
            return None  # MLM or word2vec output: the sequence rules and model.kwargs handle it
        size = info.get("image_size")
        return {
            "model": info["model"],
            "image_size": int(size[0]) if isinstance(size, list) else size,
            "normalize": info.get("normalize"),
            "origin": str(info_path),
        }
    if (folder / CONFIG).is_file():
        cfg = load_config(folder / CONFIG)
        prep = json.loads((folder / PREPROCESS).read_text()) if (folder / PREPROCESS).is_file() else {}
        size = prep.get("image_size", cfg.data.image_size)
        return {
            "model": cfg.model.name,
            "image_size": int(size[0]) if isinstance(size, list) else size,
            "normalize": prep.get("normalize", cfg.data.normalize),
            "origin": str(folder / CONFIG),
        }
    return _recipe_from_tensors(Path(source))


def _recipe_from_tensors(path: Path) -> dict | None:
    """For a weights file nothing beside describes (a torchvision ResNet-18 saved by hand): the one registered model
    whose tensor names it bears, else None (the plan chooses, and loading names what does not fit)."""
    if not path.is_file():
        return None
    try:
        fits = fitting_models(read_state_dict(path))
    except ConfigError:
        return None  # not a state dict: loading it says why, in one line
    return (
        {"model": fits[0], "image_size": None, "normalize": None, "origin": f"{path}: its tensors' names"}
        if len(fits) == 1
        else None
    )


def pretrained_rules(choose: Callable[[str, Any, str], Any], recipe: dict | None) -> None:
    """With an encoder to fine-tune (`recipe`, from `encoder_recipe`): its architecture and normalisation, through the
    planner's `choose` (so the user's own settings still win)."""
    if recipe is None:
        return
    why = f"the pretrained encoder's ({recipe['origin']})"
    choose("model.name", recipe["model"], f"{why} architecture: its weights fit no other")
    if recipe["normalize"] in ("dataset", "sample", "none"):
        choose("data.normalize", recipe["normalize"], f"{why} normalisation: the inputs it learnt from")


def weights_overlap(init_from: str | None, ds) -> str:
    """A note when val or test scans of `ds` are copies (identical, near-identical, cropped and resized) of scans the
    initial weights' run trained or chose on: those figures then overstate. '' when none, or nothing says."""
    import pandas as pd

    from meddx.data.leakage import overlap_with_training

    folder = weights_folder(init_from) if init_from else None
    if folder is None or not (folder / SPLIT).is_file():
        return ""
    table = pd.read_csv(folder / SPLIT, dtype={"id": str, "patient_id": str, "sha1": str, "phash": str})
    counts = {}  # split -> (copies, scans): each split checked on its own, so each is named only when it holds any
    for split in ("val", "test"):
        if part := [r for r in ds.records if r.split == split]:
            _, check = overlap_with_training(part, table, drop=True, patients_known=False)
            found = check["identical_to_training"] + check["near_duplicates_of_training"]
            found += check.get("cropped_images", 0) + check.get("resampled_volumes", 0)
            counts[split] = (found, len(part))
    hit = [s for s, (n, _) in counts.items() if n]
    if not hit:
        return ""
    said = " and ".join(f"{counts[s][0]} of the {counts[s][1]} {s}" for s in hit)
    return (
        f"{said} scans are copies (identical, near-identical, or cropped and resized) of scans the initial weights "
        f"({folder.name}) trained or were chosen on: {' and '.join(hit)} figures overstate"
        + (", and val choices lean on them" if "val" in hit else "")
        + "; initialise from a run that never saw them"
    )
