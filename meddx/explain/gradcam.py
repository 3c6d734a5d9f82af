"""Grad-CAM maps (the grad-cam package) for any registry image model, and overlays on the original scan."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from meddx.data.images import load_image
from meddx.data.records import Record, file_record
from meddx.data.tensors import Preprocess
from meddx.errors import ConfigError, MeddxWarning
from meddx.models.ensemble import core_of, without_shifts
from meddx.models.output import probabilities
from meddx.models.tta import without_tta
from meddx.run import Run

_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)


def token_reshape(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """For timm vision transformers: (B, tokens, C) activations back to a (B, C, h, w) grid; None for CNNs."""
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is None or not hasattr(model, "blocks"):
        return None
    prefix = int(getattr(model, "num_prefix_tokens", 1))

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, prefix:, :].reshape(tokens.shape[0], grid[0], grid[1], tokens.shape[2]).permute(0, 3, 1, 2)

    return reshape


def find_target_layer(
    model: nn.Module, in_chans: int, size: tuple[int, int], name: str | None = None
) -> tuple[str, nn.Module]:
    """The layer to explain: `name` if given, else the last module that outputs a spatial (B, C, h, w) map.

    Found by one forward pass with hooks, so it works for every CNN (timm's stages, our models): the last 4-D output
    in execution order that is not a pooling layer and keeps more than one position. Vision transformers use the
    last block's first norm, read through `token_reshape`.
    """
    if not name and token_reshape(model) is not None:
        name = f"blocks.{len(model.blocks) - 1}.norm1"
    if name:
        try:
            return name, model.get_submodule(name)
        except AttributeError:
            raise ConfigError(
                f"model has no layer '{name}'; layers: {', '.join(n for n, _ in model.named_modules() if n)[:2000]}"
            ) from None
    order: list[tuple[str, tuple[int, ...]]] = []
    names = {m: n for n, m in model.named_modules() if n}

    def record(module: nn.Module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            order.append((names[module], tuple(output.shape)))

    hooks = [
        m.register_forward_hook(record)
        for m in names
        if not isinstance(m, _POOLS) and "pool" not in type(m).__name__.lower()
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_chans, *size))
    finally:
        for h in hooks:
            h.remove()
    spatial = [n for n, s in order if len(s) == 4 and s[2] * s[3] > 1] or [n for n, s in order if len(s) == 4]
    if not spatial:
        raise ConfigError(
            "Grad-CAM needs a convolutional feature map and this model has none; name a layer with --layer"
        )
    return spatial[-1], model.get_submodule(spatial[-1])


class NegatedOutput:
    """A Grad-CAM target for a binary model's negative class: minus its one logit (what makes the scan negative)."""

    def __init__(self, category: int):
        self.category = category

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return -(model_output[self.category] if model_output.ndim == 1 else model_output[:, self.category])


class Explainer:
    """Grad-CAM for one model: its preprocessing, label names and the chosen target layer.

    grad-cam hooks the model for good (every forward records activations), so give it a model of its own.
    """

    grid: tuple[int, int] | None = None  # the target layer's cells in the last map made

    def __init__(self, model: nn.Module, prep: Preprocess, labels: list[str], task: str, layer: str | None = None,
                 negative: str | None = None):  # fmt: skip
        from pytorch_grad_cam import GradCAM

        self.model, self.prep, self.labels, self.task = model.eval(), prep, labels, task
        self.negative = negative if task == "binary" else None  # explained as minus the one output
        core, size = core_of(self.model)  # an ensemble member's layers lie under its resizing and renormalising
        self.layer_name, layer_module = find_target_layer(core, prep.channels, size or tuple(prep.image_size), layer)
        self.cam = GradCAM(model=self.model, target_layers=[layer_module], reshape_transform=token_reshape(core))

    @classmethod
    def for_model(
        cls, model: nn.Module, prep: Preprocess, labels: list[str], task: str, layer: str | None = None,
        negative: str | None = None,
    ) -> Explainer:  # fmt: skip
        return cls(model, prep, labels, task, layer, negative)

    @classmethod
    def from_run(cls, run: Run | str | Path, layer: str | None = None) -> Explainer:
        """The explainer of a run folder's best model."""
        run = run if isinstance(run, Run) else Run(run)
        if run.is_sequence:
            raise ConfigError(f"{run.path}: a token-sequence run; Grad-CAM explains image models")
        model = without_tta(run.model)  # Grad-CAM explains the model, not its average over shifted copies
        if run.is_ensemble:
            return EnsembleExplainer(model, run.preprocess, run.label_names, run.task, layer, run.negative_class)
        return cls(copy.deepcopy(model), run.preprocess, run.label_names, run.task, layer, run.negative_class)

    def label_index(self, label: str | None) -> int:
        """Index of one of the model's labels, case ignored; default: the first (a binary run's positive class)."""
        j, negative = self.target(label)
        if negative:
            raise ConfigError(f"'{label}' is the run's negative class: explain it scan by scan (`meddx explain RUN "
                              f"SCAN --label {label}`); galleries show {self.labels[0]}'s maps")  # fmt: skip
        return j

    def target(self, label: str | None) -> tuple[int, bool]:
        """(output index, whether it is a binary run's negative class) for a name: exact, else in any case."""
        if label is None:
            return 0, False
        names = self.labels + ([self.negative] if self.negative else [])
        found = [i for i, n in enumerate(names) if n == label] or [
            i for i, n in enumerate(names) if n.casefold() == label.casefold()
        ]  # fmt: skip
        if not found:
            raise ConfigError(f"unknown label '{label}'; this model's classes are {names}")
        return (0, True) if found[0] == len(self.labels) else (found[0], False)

    def class_name(self, label: str | None) -> str:
        """The model's own spelling of a class named in any case (the positive class when none is named)."""
        j, negative = self.target(label)
        return self.negative if negative else self.labels[j]

    def default_label(self, original: np.ndarray) -> str:
        """The label explained when none is named: a binary run's positive class, else the most probable label."""
        if self.task == "binary":
            return self.labels[0]
        with torch.no_grad():
            return self.labels[int(probabilities(self.model(self.prep.model_input(original)), self.task)[0].argmax())]

    def maps(self, images: torch.Tensor, label: int, negative: bool = False) -> np.ndarray:
        """(B, H, W) maps in [0, 1] for normalised model inputs (B, C, H, W) and one output index (`negative`: what
        lowers it, a binary run's negative class)."""
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        target = NegatedOutput(label) if negative else ClassifierOutputTarget(label)
        with torch.enable_grad():
            out = self.cam(input_tensor=images, targets=[target] * len(images))
        seen = self.cam.activations_and_grads.activations  # the target layer's map: its cells are the map's detail
        self.grid = tuple(seen[0].shape[-2:]) if seen else None
        return out

    def explain(
        self, source: Record | str | Path | np.ndarray, label: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """(overlay RGB uint8 at the scan's own size, map (H, W) in [0, 1] at model size, probability) for one scan."""
        j, negative = self.target(label)
        original = source if isinstance(source, np.ndarray) else self.original(source)
        x = self.prep.model_input(original)
        with torch.no_grad():
            prob = float(probabilities(self.model(x), self.task)[0, j])
        cam = self.maps(x, j, negative)[0]
        prob = 1 - prob if negative else prob
        return overlay(original, cam), cam, prob

    def original(self, source: Record | str | Path) -> np.ndarray:
        """The scan as (C, H, W) float at its own resolution, channels chosen as in training."""
        record = source if isinstance(source, Record) else file_record(source)
        p = self.prep
        return load_image(record, p.views, p.view_axis, p.channels, p.dicom_window, p.view_depth)


class EnsembleExplainer(Explainer):
    """Grad-CAM of an ensemble (a planned ensemble of seeds, or `meddx ensemble`): the mean of its members' maps, each
    in [0, 1] and weighted as in the ensemble, beside the ensemble's own probability."""

    def __init__(self, ensemble: nn.Module, prep: Preprocess, labels: list[str], task: str, layer: str | None = None,
                 negative: str | None = None):  # fmt: skip
        self.model, self.prep, self.labels, self.task = ensemble.eval(), prep, labels, task
        self.negative = negative if task == "binary" else None
        self.members = [
            Explainer(without_shifts(copy.deepcopy(m)), prep, labels, task, layer) for m in ensemble.members
        ]
        self.weights = ensemble.weights.double().numpy()
        self.layer_name = self.members[0].layer_name

    def maps(self, images: torch.Tensor, label: int, negative: bool = False) -> np.ndarray:
        maps = np.stack([m.maps(images, label, negative) for m in self.members])
        self.grid = self.members[0].grid
        return np.tensordot(self.weights, maps, axes=1)


def display_grey(image: np.ndarray) -> np.ndarray:
    """(H, W) grey levels in [0, 1] for display, linearly stretched from the scan's own darkest to brightest pixel: a
    SPECT slice whose counts fill a quarter of the 8-bit range was shown nearly black."""
    g = image.mean(0) if image.ndim == 3 else image
    lo, hi = float(g.min()), float(g.max())
    return ((g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)).astype(np.float32)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.4, max_side: int = 1024) -> np.ndarray:
    """The scan in grey with the map alpha-blended on top (jet colour map), as RGB uint8 at the scan's size."""
    import matplotlib

    grey = display_grey(image)
    h, w = grey.shape
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size != (h, w):
        grey = F.interpolate(torch.from_numpy(grey)[None, None], size=size, mode="bilinear", antialias=True)[
            0, 0
        ].numpy()
    heat = F.interpolate(torch.from_numpy(np.asarray(cam, np.float32))[None, None], size=size, mode="bilinear")[
        0, 0
    ].numpy()
    colour = matplotlib.colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    rgb = (1 - alpha) * np.repeat(grey[..., None], 3, axis=2) + alpha * colour
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def grey_png(image: np.ndarray, max_side: int = 1024) -> np.ndarray:
    """The scan alone as grey uint8, for showing beside its map."""
    return overlay(image, np.zeros(image.shape[-2:], np.float32), alpha=0.0, max_side=max_side)[..., 0]


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write an RGB or grey uint8 array as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def explain_file(
    run: Run | str | Path,
    scan: str | Path,
    label: str | None = None,
    out: str | Path | None = None,
    layer: str | None = None,
    legend: bool = True,
) -> tuple[Path, float, str]:
    """Grad-CAM overlay of one scan saved as PNG (default: RUN/explain/<scan>-<label>.png) for `label` (default: the
    positive class; multi-class: the most probable class); returns path, probability and the label explained.
    `legend`: enlarged, with the class, its probability and a colour bar below (False: the scan's own size)."""
    from meddx.export.card import model_caveats

    run = run if isinstance(run, Run) else Run(run)
    for caveat in model_caveats(run.path):  # a collapsed model's map explains the one output it gives every scan
        warnings.warn(f"{run.path}: {caveat}", MeddxWarning, stacklevel=2)
    done = explain_scan(run, Explainer.from_run(run, layer), scan, label, out, legend)
    return done["path"], done["probability"], done["label"]


def explain_scan(
    run: Run, explainer: Explainer, scan: str | Path, label: str | None, out: str | Path | None, legend: bool = True
) -> dict:
    """`explain_file` with an explainer built once for many scans: {path, probability, label, notes} (an empty map,
    a coarse one)."""
    from meddx.explain.legend import with_legend

    original = explainer.original(scan)
    name = explainer.class_name(label) if label else explainer.default_label(original)
    image, cam, prob = explainer.explain(original, name)
    if legend:
        image = with_legend(image, name, prob)
    path = save_png(image, Path(out) if out else run.path / "explain" / f"{Path(scan).stem}-{name}.png")
    notes = [f"the map is empty: nothing in this scan raises p({name}) (Grad-CAM keeps positive evidence only)"] * (
        float(cam.max()) <= 0
    )
    grid = getattr(explainer, "grid", None)
    if grid and min(grid) <= 4:
        notes.append(f"a coarse map: layer {explainer.layer_name} is {grid[0]}x{grid[1]} cells at this input size (a "
                     "larger data.image_size or an earlier --layer gives a finer one)")  # fmt: skip
    return {"path": path, "probability": prob, "label": name, "notes": notes}
