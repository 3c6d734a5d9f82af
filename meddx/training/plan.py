"""The plan: every recipe field the user did not set, chosen by written rules from the data's fingerprint, then fitted
to the time budget with the seconds per epoch a pilot measured here. Each choice carries its reason and its source
(rule, budget, or the user's own setting, which always wins)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meddx.atomic import write_text
from meddx.config import RunConfig, apply_overrides, validate_config
from meddx.data.fingerprint import fingerprint
from meddx.data.records import DataSet
from meddx.models import min_input_size
from meddx.training.hardware import hardware_rules
from meddx.training.losses import IMBALANCE_BAND, is_imbalanced
from meddx.training.pretrained import encoder_recipe, pretrained_rules

SCHEMA = "meddx.plan/1"
CPU_MAX_SIZE, GPU_MAX_SIZE = 64, 224  # input sides the rules allow: 2 CPU cores fit ~20 epochs at 64 px in minutes
TARGET_STEPS = 2000  # optimiser steps a model gets when the budget allows; 15-50 epochs
SPECT_MODALITIES = ("NM", "PT")


@dataclass
class Choice:
    """One planned field: its value, why, and who decided (rule, budget, user)."""

    field: str
    value: Any
    reason: str
    source: str = "rule"


@dataclass
class Plan:
    """The fingerprint and every choice; `config` is the run config with the plan applied under the user's fields."""

    fingerprint: dict
    budget_minutes: float
    accelerator: str
    choices: list[Choice] = field(default_factory=list)
    pilot: dict = field(default_factory=dict)
    estimate: dict = field(default_factory=dict)
    alternatives: list[dict] = field(default_factory=list)
    lr_finder: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)
    tta: dict = field(default_factory=dict)
    actual: dict = field(default_factory=dict)  # written after training (meddx.run.record_actual_time)
    schema: str = SCHEMA

    def value(self, name: str) -> Any:
        return next((c.value for c in reversed(self.choices) if c.field == name), None)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        write_text(path, json.dumps(self.to_dict(), indent=2, default=str))
        return Path(path)

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(**{**d, "choices": [Choice(**c) for c in d.get("choices", [])]})

    def apply(self, cfg: RunConfig) -> RunConfig:
        """The config with every planned value set (the user's own values are among the choices, unchanged)."""
        raw = cfg.model_dump(mode="json")
        return validate_config(apply_overrides(raw, {c.field: c.value for c in self.choices if c.source != "user"}))


def user_fields(cfg: RunConfig) -> dict[str, Any]:
    """Dotted names and values of every field the user set explicitly (YAML, dict, CLI option or --set)."""
    out: dict[str, Any] = {}

    def walk(model, prefix: str) -> None:
        for name in type(model).model_fields:  # every section, set or not: a field assigned inside one counts
            value = getattr(model, name)
            if hasattr(value, "model_fields_set"):
                walk(value, f"{prefix}{name}.")
            elif name in model.model_fields_set:
                out[f"{prefix}{name}"] = value

    walk(cfg, "")
    return out


class Planner:
    """Collects choices; a field the user set is recorded as theirs and keeps their value."""

    def __init__(self, cfg: RunConfig, plan: Plan):
        self.cfg, self.plan, self.user = cfg, plan, user_fields(cfg)

    def choose(self, name: str, value: Any, reason: str, source: str = "rule") -> Any:
        """Record a choice (replacing an earlier one of the same field); the user's value wins."""
        if name in self.user:
            value, reason, source = self.user[name], f"set by the user (the plan's: {value!r}: {reason})", "user"
        self.plan.choices = [c for c in self.plan.choices if c.field != name] + [Choice(name, value, reason, source)]
        return value


def spect_like(im: dict) -> tuple[bool, str]:
    """Whether images are SPECT/PET-like (per-image z-score) and why: the DICOM modality, or low counts whose scale
    varies from image to image (DaTscan: brightest pixel about a quarter of the 8-bit range)."""
    m, cv = im["max_intensity"], im["max_intensity_cv"]
    if im["modality"] in SPECT_MODALITIES:
        return True, f"DICOM modality {im['modality']}: each image z-scored"
    if m["median"] < 0.5 and cv > 0.2:
        return True, (
            f"low counts varying per image (median brightest pixel {m['median']:.2f} of full scale, "
            f"spread {cv:.2f}): each image z-scored, as SPECT needs"
        )
    scale = "fill the range alike" if m["median"] >= 0.5 else "use the same part of the range in every image"
    return False, f"intensities {scale} (median brightest pixel {m['median']:.2f}, spread {cv:.2f}): train mean and std"


def _image_rules(p: Planner, fp: dict, gpu: bool, train_labels: np.ndarray) -> None:
    im, n_train = fp["images"], fp["splits"].get("train", fp["samples"])
    if im["layout"] == "dhw" and im["depth"]["median"] > 4:
        d = int(im["depth"]["median"])
        views = [d // 2 + k * max(1, round(d * 0.2)) for k in (-1, 0, 1)]  # 28 slices: 8, 14, 20; 5: 1, 2, 3
        p.choose("data.views", views, f"3-D volumes of {d} slices: three slices through the middle as channels")
    if im["layout"] == "hwc" and im["colour_share"] < 0.05:
        p.choose("data.channels", 1, "grey images stored as RGB (channels equal in every sampled image): one channel")
    side = int(min(im["height"]["median"], im["width"]["median"]))
    cap = GPU_MAX_SIZE if gpu else CPU_MAX_SIZE
    encoder = encoder_recipe(p.user["train.init_from"]) if p.user.get("train.init_from") else None
    fixed = p.user.get("model.name") or (encoder or {}).get("model")  # the user's or the encoder's may need more
    need = min_input_size(fixed) if fixed else 1
    size = p.choose(
        "data.image_size",
        max(min(side, cap), need),
        f"median image {im['height']['median']:.0f} px high x {im['width']['median']:.0f} wide; "
        + ("native size" if side <= cap else f"at most {cap} px on the {'GPU' if gpu else 'CPU'}")
        + (f"; at least {need} px for {fixed}" if need > min(side, cap) else "")
        + (
            "; every image resized to a square (not cropped)" if im["height"]["median"] != im["width"]["median"] else ""
        ),
    )
    spect, why = spect_like(im)
    p.choose("data.normalize", "sample" if spect else "dataset", why)
    big = size > CPU_MAX_SIZE
    p.choose(
        "model.name",
        "resnet18" if big else ("small_cnn_wide" if n_train >= 20000 else "small_cnn"),
        f"{size} px: "
        + (
            "ResNet-18 from scratch (timm)"
            if big
            else "the 6-conv small CNN, which reached test AUC 0.98 on the 28 px PneumoniaMNIST"
        ),
    )
    pretrained_rules(p.choose, encoder)  # an encoder to fine-tune brings its architecture and normalisation
    model = p.plan.value("model.name")
    batch = int(min(128, max(16, 2 ** int(math.log2(max(n_train // 16, 1))))))
    p.choose("train.batch_size", batch, f"{n_train} training images: at least 16 steps per epoch, at most 128")
    _learning_rate(p, model, {"small_cnn": 2e-3, "small_cnn_wide": 2e-3, "resnet18": 1e-3})
    _alternatives(p, model, side, size, gpu, fixed_model=encoder is not None)
    imbalanced = is_imbalanced(train_labels, fp["task"])
    p.choose("train.class_weights", "on" if imbalanced else "off", _balance_reason(fp, imbalanced))
    p.choose("train.augment.enabled", True, _augment_reason(p.cfg.train.augment))
    p.choose(
        "model.tta", False, "off unless averaging over shifted copies beats the model alone on val (after training)"
    )


def _balance_reason(fp: dict, imbalanced: bool) -> str:
    """The train split's shares and which of them make the loss weighted."""
    shares = fp["positive_share"]
    listed = ", ".join(f"{n} {v:.2f}" for n, v in shares.items())
    if fp["task"] == "multiclass":
        rule = "the largest over 1.5x the smallest"
        return f"train class shares {listed}: " + (f"{rule}, balanced weights" if imbalanced else "balanced enough")
    outside = [n for n, v in shares.items() if not IMBALANCE_BAND[0] <= v <= IMBALANCE_BAND[1]]
    why = f"{', '.join(outside)} outside 40-60%, balanced weights" if imbalanced else "balanced enough, plain loss"
    return f"train positive shares {listed}: {why}"


def _alternatives(p: Planner, model: str, side: int, size: int, gpu: bool, fixed_model: bool = False) -> None:
    """Candidates the rules cannot tell apart without data, tried on val when the budget allows (after the rule's own,
    which is the model and size chosen above): a wider or deeper model (not when the user or a pretrained encoder
    fixed it), and one size step up where the images allow."""
    alts = []
    if "model.name" not in p.user and not fixed_model and model == "small_cnn":
        if size < CPU_MAX_SIZE:
            alts.append(("small_cnn_wide", {"model.name": "small_cnn_wide"}, "the small CNN with twice the filters"))
        else:
            alts.append(("resnet18", {"model.name": "resnet18", "train.lr": 1e-3}, "ResNet-18 from scratch (timm)"))
    up = min(side, 2 * size, GPU_MAX_SIZE * 2 if gpu else 2 * CPU_MAX_SIZE)
    if "data.image_size" not in p.user and up >= 1.4 * size:
        why = f"{up} px: finer detail at about {(up / size) ** 2:.0f}x the cost"
        alts.append((model, {"data.image_size": up}, why))
    p.plan.alternatives = [
        {"name": f"{name} {s.get('data.image_size', size)} px", "set": {k: v for k, v in s.items() if k not in p.user},
         "reason": why}
        for name, s, why in alts
    ]  # fmt: skip


def _augment_reason(a) -> str:
    """The augmentation's strength in words; fixed, not fitted to the data (the ablations measured it against none,
    half and twice as strong)."""
    return (
        f"rotations up to {a.rotate_degrees:g} degrees, shifts up to {a.translate:.0%} of the side, zoom up to "
        f"{a.scale:.0%}, brightness {a.brightness:.0%} and contrast {a.contrast:.0%}; "
        + ("left-right flips (train.augment.hflip)" if a.hflip else "never flips (anatomy)")
        + "; a fixed strength (train.augment.*): none, half or twice as strong did no better on val on three sets"
    )


def reserve_seconds(budget_s: float) -> float:
    """Seconds of the budget kept for predictions, the bootstrap and reports."""
    return max(30.0, 0.1 * budget_s)


def target_epochs(steps_per_epoch: int) -> int:
    """Epochs for about TARGET_STEPS optimiser steps, 15-50."""
    return int(np.clip(math.ceil(TARGET_STEPS / max(steps_per_epoch, 1)), 15, 50))


def _learning_rate(p: Planner, model: str, ruled: dict[str, float]) -> None:
    """The benchmarked rate of a model the rules know; for any other, Lightning's learning-rate finder decides after
    the data are decoded (`plan.lr_finder`), starting from 1e-3."""
    if model in ruled:
        recipe = "the benchmarked BiLSTM recipe (2e-3 under-trained)" if model == "bilstm" else ""
        p.choose("train.lr", ruled[model], recipe or "AdamW with a cosine schedule")
    else:
        p.plan.lr_finder = {} if "train.lr" in p.user else {"wanted": True}
        p.choose("train.lr", 1e-3, f"no rule for {model}: Lightning's learning-rate finder decides")


def _sequence_rules(p: Planner) -> None:
    p.choose("model.name", "bilstm", "token reports: the BiLSTM, 5-fold OOF mlogloss 0.0418 on Tianchi round 1")
    p.choose("model.dropout", 0.3, "the benchmarked BiLSTM recipe (docs/benchmarks.md)")
    _learning_rate(p, p.plan.value("model.name"), {"bilstm": 4e-3})
    p.choose("train.batch_size", 64, "the benchmarked BiLSTM recipe")
    p.choose("train.class_weights", "off", "multi-label mlogloss scores raw probabilities: no re-weighting")


def make_plan(cfg: RunConfig, ds: DataSet) -> Plan:
    """The rule part of the plan for a read and split data set (no training yet)."""
    import torch

    gpu = cfg.train.accelerator in ("gpu", "cuda") or (cfg.train.accelerator == "auto" and torch.cuda.is_available())
    plan = Plan(fingerprint(ds), cfg.plan.budget_minutes, "gpu" if gpu else "cpu")
    planner = Planner(cfg, plan)
    if plan.fingerprint["kind"] == "sequence":
        _sequence_rules(planner)
    else:
        _image_rules(planner, plan.fingerprint, gpu, ds.subset("train").labels)
    hardware_rules(planner, gpu, plan.fingerprint)
    return plan


def fit_budget(plan: Plan, cfg: RunConfig, steps_per_epoch: int, elapsed_s: float, distributed: bool) -> None:
    """Epochs, patience and ensemble size that fit the budget, from the pilot's seconds per epoch (or, without a
    pilot, the fixed defaults); `elapsed_s` is what reading, decoding and the pilot already used."""
    p = Planner(cfg, plan)
    epoch_s = plan.pilot.get("seconds_per_epoch")
    if not epoch_s:
        p.choose("train.max_epochs", cfg.train.max_epochs, "no pilot: the default", "budget")
        p.choose("train.ensemble", 1, "no pilot: one model", "budget")
        return
    budget_s, reserve = plan.budget_minutes * 60, reserve_seconds(plan.budget_minutes * 60)
    left = max(budget_s - elapsed_s - reserve, epoch_s)
    target = target_epochs(steps_per_epoch)
    k_fit = int(np.clip(left // (target * epoch_s), 1, cfg.plan.max_ensemble))
    if distributed:
        k, why = 1, "a distributed run trains one model"
    elif "train.max_epochs" in p.user:
        k, why = 1, "the user fixed the epochs of one model: one model (set train.ensemble for more)"
    else:
        fits = f"{k_fit} model(s) of {target} epochs fit" if left >= target * epoch_s else f"{target} epochs do not fit"
        k, why = k_fit, f"{fits} {left / 60:.1f} min at {epoch_s:.1f} s per epoch"
    k = p.choose("train.ensemble", k, why, "budget")
    fill, why = int(left // (k * epoch_s)), f"{left / 60:.1f} min for {k} model(s) at {epoch_s:.1f} s per epoch"
    why += f", capped at the {target} wanted (twice gained nothing in bench/plan_rules.py)" if fill > target else ""
    why += ": 3 at least, over the budget (give more with --budget)" if fill < 3 else ""
    epochs = p.choose("train.max_epochs", int(np.clip(fill, 3, target)), why, "budget")
    p.choose("train.patience", int(np.clip(epochs // 4, 3, 10)), "a quarter of the epochs, 3-10", "budget")
    plan.estimate = {
        "elapsed_before_training_s": round(elapsed_s, 1),
        "training_s": round(k * epochs * epoch_s, 1),
        "reserve_s": round(reserve, 1),
        "total_s": round(elapsed_s + k * epochs * epoch_s + reserve, 1),
    }
