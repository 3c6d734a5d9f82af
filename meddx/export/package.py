"""`export_run`: model file + preprocessing + labels + operating points + model card, checked for parity."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import yaml
from torch import nn

from meddx.atomic import staged_dir, write_text
from meddx.data.fingerprint import dicom_modality
from meddx.data.images import is_colour, read_pixels, to_channels
from meddx.data.records import Record, spread_evenly
from meddx.data.tensors import ImageDataset, volume_depth
from meddx.errors import MeddxError
from meddx.evaluation.folds import fold_ensemble, is_folds_only
from meddx.evaluation.operating import rates, run_operating_point
from meddx.export.card import held_out_caveats, model_card, public_origin
from meddx.export.domain import input_stats
from meddx.logs import LOG, run_log
from meddx.models.output import probabilities
from meddx.run import CONFIG, PREPROCESS, WEIGHTS, Run

Format = Literal["onnx", "torchscript"]
FILES = {"onnx": "model.onnx", "torchscript": "model.ts"}


class ExportError(MeddxError):
    """The exported model does not reproduce the PyTorch model."""


class WithProbabilities(nn.Module):
    """The model plus its task's output activation, so the exported file returns probabilities."""

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return probabilities(self.model(image), self.task)


def split_records(run: Run, split: str, limit: int) -> list[Record]:
    """Up to `limit` records of one split of the run, spread evenly over it."""
    records = run.records(split)
    return spread_evenly(records, limit)


def check_images(run: Run, split: str = "test", limit: int = 64) -> torch.Tensor:
    """Real, preprocessed images of one split of the run (the parity check's input)."""
    records = split_records(run, split, limit)
    if not records:
        raise ExportError(f"{run.path}: no {split} images to check the export against")
    return ImageDataset(records, run.preprocess).images


PICTURES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")  # files that say no modality


def training_input_stats(run: Run, limit: int = 300) -> dict:
    """The input-domain statistics of up to `limit` training scans (decoded, before resizing and normalisation)."""
    prep, images, colour, depths = run.preprocess, [], [], []
    records = split_records(run, "train", limit)
    for r in records:
        pixels, layout = read_pixels(r, prep.dicom_window)
        images.append(to_channels(pixels, layout, r, prep.views, prep.view_axis, prep.channels, prep.view_depth))
        colour.append(is_colour(pixels, layout))
        depths.append(volume_depth(pixels, layout, prep.view_axis))
    stats = input_stats(images, [prep.resize(im) for im in images], colour, per_sample=prep.normalize == "sample")
    stats["modalities"] = sorted({m for r in records if (m := dicom_modality(r.source))})  # [] when none is DICOM
    stats["picture_files"] = bool(records) and all(Path(r.source).suffix.lower() in PICTURES for r in records)
    known = [d for d in depths if d]  # a stack's slices along the view axis; none for 2-D scans
    stats["depth_range"] = [min(known), max(known)] if known else []
    return stats


def validation_rates(run: Run, points: int = 201) -> dict:
    """Sensitivity and specificity on val at evenly spaced thresholds, per label, and the sorted val scores of each
    class, from which the page computes the rates at exactly any threshold (the service's threshold control)."""
    val = run.predictions("val")
    grid = np.linspace(0.0, 1.0, points)
    out = {}
    for n in run.label_names:
        y, p = val[n].to_numpy() >= 0.5, val[f"p_{n}"].to_numpy()
        sens, spec = rates(y, p, grid)
        out[n] = {
            "threshold": grid.round(4).tolist(),
            "sensitivity": sens.round(4).tolist(),
            "specificity": spec.round(4).tolist(),
            "positives": np.sort(p[y]).tolist(),
            "negatives": np.sort(p[~y]).tolist(),
        }
    return {"split": "val", "samples": int(len(val)), "labels": out}


def _export_file(wrapped: nn.Module, example: torch.Tensor, fmt: Format, path: Path) -> None:
    if fmt == "torchscript":
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(wrapped, example.clone()), str(path))
        return
    batch = torch.export.Dim("batch", min=1, max=65536)
    steps = io.StringIO()
    with contextlib.redirect_stdout(steps), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapped,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_shapes={"image": {0: batch}},
            dynamo=True,
            external_data=False,
        )
    for line in steps.getvalue().splitlines():  # the exporter's step log: the run's meddx.log, not the terminal
        LOG.info(line)


def run_exported(path: Path, fmt: Format, images: np.ndarray) -> np.ndarray:
    """Probabilities from the exported file alone (onnxruntime, or torch.jit)."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["probabilities"], {"image": images.astype(np.float32)})[0]
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        return module(torch.from_numpy(images)).numpy()


def parity(run: Run, path: Path, fmt: Format, images: torch.Tensor, thresholds: list[float] | None = None) -> dict:
    """Largest absolute difference of probabilities, exported vs PyTorch, at two batch sizes, and the images whose
    decision differs (at `thresholds`, one per label; multi-class: the most probable class)."""
    wrapped = WithProbabilities(run.model, run.task).eval()
    with torch.inference_mode():
        reference = wrapped(images).numpy()
    full = run_exported(path, fmt, images.numpy())
    single = run_exported(path, fmt, images[:1].numpy())  # a different batch size: the batch axis is dynamic
    diff = float(max(np.abs(full - reference).max(), np.abs(single - reference[:1]).max()))
    if run.task == "multiclass" or thresholds is None:
        differ = full.argmax(1) != reference.argmax(1)
    else:
        differ = ((full >= np.asarray(thresholds)) != (reference >= np.asarray(thresholds))).any(axis=1)
    return {"max_abs_diff": diff, "images": int(len(images)), "batch_sizes": [int(len(images)), 1],
            "decisions_differ": int(differ.sum())}  # fmt: skip


def export_run(
    run: Run | str | Path,
    fmt: Format = "onnx",
    out_dir: str | Path | None = None,
    tolerance: float = 1e-4,
    split: str = "test",
) -> Path:
    """Write run/package/ (or out_dir): model file, preprocess.json, labels.json, thresholds.json, card.md, parity.json,
    plus config.yaml + model.pt (Grad-CAM), input_stats.json (input-domain check) and val_rates.json (threshold
    control).

    Raises ExportError when the exported model's probabilities differ from PyTorch's by more than `tolerance`
    on real images of `split`.
    """
    if not isinstance(run, Run) and is_folds_only(run):  # a `meddx cv` folder: its fold ensemble, checked on images
        run, split = fold_ensemble(run), "train"  # it trained on (some fold or other): parity only reads them
    run = run if isinstance(run, Run) else Run(run)
    if run.is_sequence:
        raise ExportError(
            f"{run.path}: a token-sequence run; packages and the service are for image models "
            "(sequence runs predict with `meddx submit` or Run.predict_proba)"
        )
    if fmt not in FILES:
        raise ExportError(f"unknown export format '{fmt}'; use onnx or torchscript")
    final = Path(out_dir) if out_dir else run.path / "package"
    with staged_dir(final) as out:  # built aside: a failed export leaves the old package as it was, never a mix
        _write_package(run, fmt, out, tolerance, split)
        _keep_other_format(final, out, fmt)
    return final


def _point_on_val(run: Run) -> dict:
    """The run's operating point chosen now on its val predictions (for a run never evaluated on a test split)."""
    thresholds, rule = run_operating_point(run)
    on = "out-of-fold predictions (each of one fold's model; this model averages the folds)" if (
        run.path.parent / "cv.json").is_file() else "val"  # fmt: skip
    return {"rule": rule, "thresholds": thresholds, "chosen_on": on}


def weights_digest(model: nn.Module) -> str:
    """SHA-1 of a model's parameters and buffers: which weights a package's model file was exported from."""
    digest = hashlib.sha1()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _keep_other_format(final: Path, out: Path, fmt: Format) -> None:
    """The old package's model file of the other format, when it was exported from the same weights (its parity
    file says so): exporting TorchScript after ONNX keeps both, while one from weights since retrained is left out."""
    now = json.loads((out / f"parity-{fmt}.json").read_text())["weights_sha1"]
    for other, name in FILES.items():
        old_parity = final / f"parity-{other}.json"
        if other == fmt or not (final / name).is_file() or not old_parity.is_file():
            continue
        if json.loads(old_parity.read_text()).get("weights_sha1") == now:
            shutil.copy(final / name, out / name)
            shutil.copy(old_parity, out / old_parity.name)


def _write_package(run: Run, fmt: Format, out: Path, tolerance: float, split: str) -> None:
    """Every file of the package into `out`; raises ExportError when the parity check fails."""
    images = check_images(run, split)
    wrapped = WithProbabilities(run.model, run.task).eval()
    model_path = out / FILES[fmt]
    with run_log(run.path):
        _export_file(wrapped, images[: min(8, len(images))], fmt, model_path)
    metrics = run.metrics("test")
    point = metrics.get("operating_point") or _point_on_val(run)  # a fold ensemble: chosen on the out-of-fold ones
    per_label = point.get("thresholds")  # None for a multi-class run: its decision is the most probable class
    result = parity(run, model_path, fmt, images, per_label and [per_label[n] for n in run.label_names])
    result.update(format=fmt, tolerance=tolerance, passed=result["max_abs_diff"] <= tolerance, split=split)
    result["weights_sha1"] = weights_digest(run.model)
    write_text(out / "parity.json", json.dumps(result, indent=2))  # the latest export's; parity-<format>.json: each's
    write_text(out / f"parity-{fmt}.json", json.dumps(result, indent=2))
    if not result["passed"]:
        raise ExportError(
            f"{run.path}: the exported {fmt} model's probabilities differ from PyTorch by {result['max_abs_diff']:.3g} "
            f"(tolerance {tolerance:g}) on {result['images']} {split} images; no package written"
        )
    for name in (PREPROCESS, WEIGHTS):  # model.pt: the weights for Grad-CAM (weights_only)
        if (run.path / name).is_file():  # an ensemble has no single model.pt: its package is served by ONNX alone
            shutil.copy(run.path / name, out / name)
    shipped = run.config.model_copy(deep=True)  # the training machine's paths stay behind
    shipped.data.path = public_origin(run.data_info["origin"])
    shipped.data.root = shipped.train.init_from = shipped.model.weights = None
    write_text(out / CONFIG, yaml.safe_dump(shipped.model_dump(mode="json"), sort_keys=False))
    write_text(out / "input_stats.json", json.dumps(training_input_stats(run)))
    write_text(out / "val_rates.json", json.dumps(validation_rates(run)))
    labels = {"labels": run.label_names, "task": run.task, "negative": run.negative_class, "run": run.path.name,
              "caveats": held_out_caveats(run)}  # fmt: skip
    write_text(out / "labels.json", json.dumps(labels, indent=2))
    write_text(out / "thresholds.json", json.dumps(point, indent=2))
    write_text(out / "card.md", model_card(run, metrics, result))
