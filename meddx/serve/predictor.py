"""A loaded model for serving: a package folder (ONNX Runtime) or a run folder (PyTorch), plus uploads made safe."""

from __future__ import annotations

import base64
import copy
import io
import json
import tempfile
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from meddx.config import load_config
from meddx.data.fingerprint import dicom_modality
from meddx.data.images import ImageTooLarge, is_colour, read_pixels, to_channels
from meddx.data.records import Record
from meddx.data.tensors import Preprocess, volume_depth
from meddx.errors import ConfigError, DataError
from meddx.evaluation.folds import fold_ensemble, is_folds_only
from meddx.evaluation.operating import resolve_operating_point, run_operating_point
from meddx.export.card import model_caveats
from meddx.export.domain import check_input
from meddx.export.package import training_input_stats, validation_rates
from meddx.models.output import build_model, probabilities
from meddx.models.tta import ShiftAverage, without_tta
from meddx.run import CONFIG, ENSEMBLE, PREPROCESS, WEIGHTS, Run
from meddx.serve.microbatch import session_threads

MAGIC = {
    "png": (0, b"\x89PNG\r\n\x1a\n"),
    "jpeg": (0, b"\xff\xd8\xff"),
    "dicom": (128, b"DICM"),
    "npy": (0, b"\x93NUMPY"),
}
SUFFIX = {"png": ".png", "jpeg": ".jpg", "dicom": ".dcm", "npy": ".npy"}


class UploadError(DataError):
    """An upload the service refuses, with the HTTP status that says why."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def sniff(data: bytes) -> str:
    """The upload's format from its first bytes (never from the name the client gave)."""
    if not data:
        raise UploadError("empty upload: the file has no bytes", 400)
    for kind, (offset, magic) in MAGIC.items():
        if data[offset : offset + len(magic)] == magic:
            return kind
    raise UploadError(f"unsupported file content: expected PNG, JPEG, DICOM (with the DICM preamble) or NPY; the "
                      f"first bytes are {data[:8]!r}", 422)  # fmt: skip


def _check_parity(path: Path, fmt: str | None = None) -> None:
    """A package is served only if its parity check against PyTorch passed (`meddx export` writes parity.json, the
    latest export's, and parity-<format>.json); `fmt`: the check of the model file served (ONNX)."""
    own = path / f"parity-{fmt}.json"
    try:
        parity = json.loads((own if fmt and own.is_file() else path / "parity.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: no readable parity.json ({type(e).__name__}); export the run again") from None
    if fmt and parity.get("format", fmt) != fmt:  # an older package: parity.json describes another format only
        raise ConfigError(f"{path}: no parity check of its {fmt} model (parity-{fmt}.json); export the run again")
    if parity.get("passed") is not True:
        raise ConfigError(
            f"{path}: its parity check failed (max difference {parity.get('max_abs_diff')}); export the run again"
        )


class Prepared(NamedTuple):
    """One upload ready for the model: the decoded scan, the model input (1, C, H, W), its domain check, start time."""

    scan: np.ndarray
    x: torch.Tensor
    domain: dict
    start: float


def _png_base64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


class Predictor:
    """Everything the service needs: model backend, preprocessing, labels, thresholds, domain statistics, Grad-CAM."""

    def __init__(self, path: str | Path, backend: str = "auto", workers: int = 1):
        """`workers`: the request threads that may call the model at once (ONNX Runtime's threads share the cores)."""
        self.path = fold_ensemble(path).path if is_folds_only(path) else Path(path)  # a cv folder: its fold ensemble
        self._cam_lock = threading.Lock()
        self._load()
        onnx = self.path / "model.onnx"
        if backend == "auto":
            backend = "onnx" if onnx.is_file() else "pytorch"
        if backend == "onnx" and not onnx.is_file():
            raise ConfigError(f"{self.path}: no model.onnx for the onnx backend; run `meddx export` first")
        # a run folder (an ensemble's too) has its PyTorch model; a package has it when it carries model.pt
        self.has_weights = self.kind == "run" or (
            (self.path / WEIGHTS).is_file() and not (self.path / ENSEMBLE).is_file()
        )
        if backend == "pytorch" and not self.has_weights:
            raise ConfigError(f"{self.path}: no single model.pt (an ensemble?); serve its ONNX package instead")
        if backend not in ("onnx", "pytorch"):
            raise ConfigError(f"unknown backend '{backend}': use auto, onnx or pytorch")
        self.backend, self.threads = backend, session_threads(workers)
        if self.kind == "package" and backend == "onnx":
            _check_parity(self.path, "onnx")  # the file served, whichever format was exported last
        if backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()  # no busy-waiting: request threads and other processes share the cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.intra_op_num_threads = self.threads["intra_op"]  # unset, each worker's call took every core
            options.inter_op_num_threads = self.threads["inter_op"]
            self._session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
        else:
            _ = self.torch_model  # load now: a broken model file fails at start, not at the first request

    def _load(self) -> None:
        """Labels, preprocessing, config, domain statistics, val rates, operating point and card: from a package
        (`meddx export`) or from a run folder (PyTorch, domain statistics computed now)."""
        if (self.path / "labels.json").is_file():  # a package written by `meddx export`
            self.kind = "package"
            _check_parity(self.path)
            labels = json.loads((self.path / "labels.json").read_text())
            self.labels, self.task, self.negative = labels["labels"], labels["task"], labels.get("negative", "negative")
            self.name = labels.get("run", self.path.name)  # the run it came from, not `package`
            self.prep = Preprocess.load(self.path / PREPROCESS)
            self.config = load_config(self.path / CONFIG)
            self.stats = json.loads((self.path / "input_stats.json").read_text())
            self.val_rates = json.loads((self.path / "val_rates.json").read_text())
            self.thresholds, self.rule = resolve_operating_point(
                self.task,
                self.labels,
                json.loads((self.path / "thresholds.json").read_text()),
                self.config.evaluate.operating_point,
            )
            self.card = (self.path / "card.md").read_text()
        elif (self.path / CONFIG).is_file():  # a run folder: PyTorch, domain statistics computed now
            self.kind = "run"
            run = self._run = Run(self.path)
            if run.is_sequence:
                raise ConfigError(f"{self.path}: a token-sequence run; the service takes image models")
            _ = run.model  # a run stopped before it finished training says so, not what it lacks for the page
            self.labels, self.task, self.prep, self.config = run.label_names, run.task, run.preprocess, run.config
            self.negative, self.name = run.negative_class, self.path.name
            self.stats, self.val_rates = training_input_stats(run), validation_rates(run)
            self.thresholds, self.rule = run_operating_point(run)
            self.card = (
                f"# {run.path.name}\n\nRun folder served directly (PyTorch); `meddx export` writes a full model card.\n"
            )
        else:
            raise ConfigError(f"{self.path}: neither a model package (labels.json) nor a run folder (config.yaml)")
        self.caveats = model_caveats(self.path)  # as `meddx predict` warns of them (older packages: unchecked)

    @property
    def shown_thresholds(self) -> dict | None:
        """The thresholds decisions use; none for a multi-class model, which decides by argmax (0.5 was listed)."""
        return None if self.task == "multiclass" else self.thresholds

    @cached_property
    def torch_model(self) -> torch.nn.Module:
        """The PyTorch model rebuilt from the config, weights loaded with weights_only=True (no pickle execution); a
        run folder's own model (an ensemble: its members averaged)."""
        if self.kind == "run":
            return self._run.model
        model = build_model(self.config.model, self.prep.channels, len(self.labels), self.path / WEIGHTS)
        return ShiftAverage(model, self.task).eval() if self.config.model.tta else model  # as model.onnx does

    @cached_property
    def explainer(self):
        """Grad-CAM on the PyTorch weights (also for an ONNX package, which carries model.pt for this)."""
        from meddx.explain.gradcam import EnsembleExplainer, Explainer
        from meddx.models.ensemble import ProbabilityAverage

        model = without_tta(self.torch_model)  # Grad-CAM explains the model, not its average over shifted copies
        if isinstance(model, ProbabilityAverage):  # copies its members itself
            return EnsembleExplainer(model, self.prep, self.labels, self.task, negative=self.negative)
        # a copy: grad-cam's hooks record every forward, so plain predictions in other threads must not share it
        return Explainer.for_model(copy.deepcopy(model), self.prep, self.labels, self.task, negative=self.negative)

    def info(self) -> dict:
        """What GET /model returns: labels, thresholds, the validation table for the threshold control, the card."""
        return {
            "name": self.name,
            "kind": self.kind,
            "backend": self.backend,
            "task": self.task,
            "labels": self.labels,
            "thresholds": self.shown_thresholds,
            "operating_point": self.rule,
            "grad_cam": self.has_weights,
            "input": {
                "channels": self.prep.channels,
                "size": list(self.prep.image_size),
                "normalize": self.prep.normalize,
            },
            "val_rates": self.val_rates,
            "caveats": self.caveats,
            "card": self.card,
        }

    def decode(self, data: bytes) -> tuple[np.ndarray, bool, str | None, int | None]:
        """Upload bytes to a (C, H, W) scan (channels chosen as in training), whether it is in colour, a DICOM's
        Modality tag and a stack's depth; format checked by content."""
        kind = sniff(data)
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / f"upload{SUFFIX[kind]}")
            Path(path).write_bytes(data)
            record = Record(id="upload", patient_id="upload", source=path, labels=np.zeros(0, np.float32))
            try:  # read_pixels refuses oversized headers before decoding and NaN or infinite values after
                raw, layout = read_pixels(record, self.prep.dicom_window)
                image = to_channels(
                    raw, layout, record, self.prep.views, self.prep.view_axis, self.prep.channels, self.prep.view_depth
                )
            except ImageTooLarge as e:
                raise UploadError(f"image too large: {str(e).replace(path + ': ', '')}", 413) from None
            except DataError as e:  # "PNG upload: ...", never the server's temporary path
                raise UploadError(f"{kind.upper()} {str(e).replace(path, 'upload')}") from None
            except Exception as e:  # a decoder failing in an unforeseen way is still the upload's fault
                raise UploadError(f"the {kind.upper()} upload cannot be decoded ({type(e).__name__})") from None
            modality = dicom_modality(path) if kind == "dicom" else None
        return image, is_colour(raw, layout), modality, volume_depth(raw, layout, self.prep.view_axis)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(B, L) probabilities for normalised inputs (B, C, H, W) through the chosen backend."""
        if self.backend == "onnx":
            return self._session.run(["probabilities"], {"image": batch.astype(np.float32)})[0]
        with torch.inference_mode():
            return probabilities(self.torch_model(torch.from_numpy(batch)), self.task).numpy()

    def prepare(self, data: bytes) -> Prepared:
        """Everything per upload before the model call: decode, resize, normalise, the input-domain check."""
        start = time.perf_counter()
        scan, colour, modality, depth = self.decode(data)
        resized = self.prep.resize(scan)  # once: the model input and the domain check's layout view both use it
        x = self.prep.model_input(resized)  # already at model size: no second resize
        return Prepared(scan, x, check_input(scan, resized, self.stats, colour, modality, depth), start)

    def predict(self, data: bytes, cam: bool = False, label: str | None = None, image: bool = False) -> dict:
        """The whole answer for one upload: probabilities, decisions, domain check, optional scan and Grad-CAM PNGs."""
        prepared = self.prepare(data)
        return self.answer(prepared, self.probabilities(prepared.x.numpy()), cam, label, image)

    def answer(self, prepared: Prepared, p: np.ndarray, cam: bool = False, label: str | None = None,
               image: bool = False) -> dict:  # fmt: skip
        """The answer from an upload's prepared input and its (1, L) probabilities (the scan and map when asked)."""
        probs = {n: float(p[0, j]) for j, n in enumerate(self.labels)}
        if self.task == "multiclass":
            top = self.labels[int(np.argmax(p[0]))]
            decisions = {n: n == top for n in self.labels}
        else:
            decisions = {n: probs[n] >= self.thresholds[n] for n in self.labels}
        out = {
            "probabilities": probs,
            "decisions": decisions,
            "thresholds": self.shown_thresholds,
            "operating_point": self.rule,
            "domain": prepared.domain,
            "model_caveats": self.caveats,
            "backend": self.backend,
        }
        if image or cam:
            out.update(self.pictures(prepared, cam, label, image))
        out["elapsed_ms"] = round((time.perf_counter() - prepared.start) * 1000, 2)
        return out

    def pictures(self, prepared: Prepared, cam: bool, label: str | None, image: bool) -> dict:
        """The decoded scan and the Grad-CAM overlay as base64 PNGs, as asked."""
        from meddx.explain.gradcam import grey_png, overlay

        out = {}
        if image:
            out["image_png"] = _png_base64(grey_png(prepared.scan, max_side=512))
        if cam and not self.has_weights:  # the prediction is still the answer; the map is what it lacks
            out["cam_error"] = "no Grad-CAM: this package has no PyTorch weights (an ensemble's); serve the run folder"
        elif cam:
            try:  # a label in any case, or a binary model's negative class
                j, negative = self.explainer.target(label)
            except ConfigError as e:
                raise UploadError(str(e), 400) from None
            with self._cam_lock:  # Grad-CAM's hooks hold state: one map at a time
                heat = self.explainer.maps(prepared.x, j, negative)[0]
            name = self.negative if negative else self.labels[j]
            out["cam_png"], out["cam_label"] = _png_base64(overlay(prepared.scan, heat, max_side=512)), name
        return out
