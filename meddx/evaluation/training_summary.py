"""A run's training in one line for its report: epochs, seconds, val loss; an ensemble's members and weights."""

from __future__ import annotations

from pathlib import Path


def training_summary(training: dict) -> str:
    """Best epoch, epochs, seconds and val loss before and after (for an ensemble: each member's, with its weight when
    the weights were chosen on val)."""
    if "members" in training:
        return _members(training)
    tricks = training.get("tricks") or {}
    return (
        f"best epoch {training.get('best_epoch')} of {training.get('epochs_run')}; {training.get('seconds')} s; "
        f"{_loss_name(training)} {training.get('initial_val_loss') or float('nan'):.4f} untrained -> "
        f"{training.get('best_val_loss', float('nan')):.4f}"
        + (" (no lower than untrained: nothing learnt that val loss shows)" if _no_gain(training) else "")
        + (
            f"; stopped at its time limit ({limit:.2g} min: train.max_minutes, which a plan sets from its budget) "
            "before early stopping"
            if (limit := training.get("stopped_by_time_limit"))
            else ""
        )
        + ("; options: " + ", ".join(f"{k} {v}" for k, v in tricks.items()) if tricks else "")
        + (f"; saved weights: {training['model_pt']}" if training.get("model_pt") else "")
    )


def _loss_name(training: dict) -> str:
    """'val loss', said to be the class-weighted training loss when it was (weights summing to 1 make it read far
    lower than the plain log loss beside it in the report)."""
    values = [v for w in (training.get("loss_weights") or {}).values() for v in (w if isinstance(w, list) else [w])]
    weighted = any(isinstance(v, (int, float)) and abs(v - 1) > 1e-9 for v in values)
    return "val loss (class-weighted, as trained: not the log loss below)" if weighted else "val loss"


def _members(training: dict) -> str:
    weighted = any("weight" in m for m in training["members"])
    parts = [
        f"{m['run']}"
        + (f" (weight {m['weight']:.2f})" if weighted else "")
        + ": "
        + (
            "an ensemble itself"
            if m.get("best_val_loss") is None
            else f"best epoch {m['best_epoch']} of {m['epochs_run']}, val loss {m['best_val_loss']:.4f}"
        )
        + (" (stopped at its time limit)" if m.get("stopped_by_time_limit") else "")
        for m in training["members"]
    ]
    how = "weighted mean, weights chosen on val (a member at 0 takes no part)," if weighted else "mean"
    return f"{how} of {len(parts)} models ({'; '.join(parts)}); {training['seconds']} s in all"


def _no_gain(training: dict) -> bool:
    first, best = training.get("initial_val_loss"), training.get("best_val_loss")
    return first is not None and best is not None and best >= first


def recipe_line(run) -> str:
    """'resnet18 64 px x3, from kermany_src, last 1 block(s) trained' for a run: what tells runs apart in a list
    (an ensemble of runs: its members' architectures and count; '' for an object without a config)."""
    from meddx.models.state_files import weights_folder

    cfg = getattr(run, "config", None)
    if cfg is None:
        return ""
    k = len(run.members()) if getattr(run, "is_ensemble", False) else cfg.train.ensemble
    if " + " in (arch := run.architecture() if k > 1 else ""):  # runs of several architectures averaged
        return f"{arch}, {k} models averaged"
    size = f" {cfg.data.image_size} px" if cfg.data.image_size else ""
    line = f"{cfg.model.name}{size}" + (f" x{k}" if k > 1 else "")
    if cfg.train.init_from:  # a file is named with its folder (a run's checkpoint by its run)
        init = Path(cfg.train.init_from)
        folder = weights_folder(init).name if init.suffix else ""
        line += f", from {folder + '/' if folder else ''}{init.name}"
        depth = cfg.train.finetune_depth
        line += "" if depth == "all" else ", head only" if depth == 0 else f", last {depth} block(s) trained"
        line += (
            f", one more every {cfg.train.unfreeze_every} epoch(s)"
            if depth != "all" and cfg.train.unfreeze_every
            else ""
        )
    return line


def collapse_record(run, evaluation: dict) -> dict:
    """The collapse check of an evaluation, the causes the run's own record points to first, and training's."""
    from meddx.training.collapse import evident_causes

    if evaluation["likely_causes"]:
        first = evident_causes(run.training.get("history") or [], run.config.train.lr)
        evaluation = {**evaluation, "likely_causes": first + evaluation["likely_causes"]}
    return {"evaluation": evaluation, "training": run.training.get("collapse")}
