"""The run folder: its file names, `Run` (config, preprocessing, model, predictions of one run) and `load_run`.

Everything that reads a run (evaluation, explain, export, serve, the API) reads it through this module, which sits
right above `data` and `models` and imports no Lightning.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn
from torch.utils.data import DataLoader, Dataset

from meddx.atomic import write_frame, write_text
from meddx.config import RunConfig, load_config
from meddx.data.readers import read_dataset
from meddx.data.records import Record, file_record
from meddx.data.reports import read_tianchi
from meddx.data.sequences import SequenceDataset, Vocab, trim_padding
from meddx.data.tensors import ImageDataset, Preprocess
from meddx.errors import ConfigError, DataError
from meddx.models.ensemble import ProbabilityAverage, adapted
from meddx.models.output import build_model, predict_proba
from meddx.models.tta import ShiftAverage

CONFIG = "config.yaml"
PREPROCESS = "preprocess.json"  # image runs
VOCAB = "vocab.json"  # token-sequence runs
SPLIT = "split.csv"
DATA = "data.json"
TRAINING = "training.json"
WEIGHTS = "model.pt"
ENSEMBLE = "ensemble.json"
PLAN = "plan.json"  # the plan that chose the recipe (meddx.training.plan)
MEMBERS = "members"  # a planned ensemble's member runs
STATUS = "status.json"  # running (with its process id), failed (with the reason), trained, complete
CHECKPOINTS = "checkpoints"
PREDICTIONS = "predictions"
LOGS = "logs"
TENSORBOARD = "tb"


def write_status(path: Path, state: str, reason: str = "", kind: str = "") -> None:
    """The run folder's status.json: what state it is in, since when, which process, why it failed, and for a folder
    of several models what kind (ensemble: seeds; search: candidates chosen on val)."""
    info = {"state": state, "since": datetime.now().isoformat(timespec="seconds"), "pid": os.getpid()}
    extra = {k: v for k, v in (("reason", reason), ("kind", kind)) if v}
    text = json.dumps({**info, **extra}, indent=2)
    try:
        write_text(Path(path) / STATUS, text)
    except OSError:
        if state != "failed" or not (Path(path) / STATUS).is_file():
            raise
        with open(Path(path) / STATUS, "r+") as f:  # a full disk: rewrite the small file in its own block
            f.write(text[:3000])
            f.truncate()


def record_actual_time(path: Path, seconds: float) -> None:
    """Write a planned run's actual time from reading to trained models (evaluation not included) beside its estimate
    in plan.json, for the report."""
    plan_path = Path(path) / PLAN
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        plan["actual"] = {"until_trained_s": round(seconds, 1)}
        write_text(plan_path, json.dumps(plan, indent=2))


def read_status(path: Path) -> dict:
    """status.json, with a run left 'running' by a process that no longer exists reported as interrupted."""
    p = Path(path) / STATUS
    if not p.is_file():  # an ensemble or an older run: its files say how far it got
        if not (Path(path) / "metrics.json").is_file():
            return {"state": "unknown"}
        done = (Path(path) / "report.html").is_file()
        return {"state": "complete"} if done else {"state": "failed", "reason": "evaluated, but no report written"}
    info = json.loads(p.read_text())
    if info.get("state") == "running" and not _alive(int(info.get("pid", 0))):
        info["state"] = "interrupted"
    return info


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def split_suffix(split: str) -> str:
    """'' for the test split (the run's headline report), '-<split>' otherwise: metrics-val.json, report-val.html."""
    return "" if split == "test" else f"-{split}"


def read_json(path: Path) -> dict:
    """A JSON file's content, or {} when it is absent."""
    return json.loads(path.read_text()) if path.is_file() else {}


class Run:
    """A run folder: its config, preprocessing, model and predictions."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / CONFIG).is_file():
            raise ConfigError(f"{self.path}: not a meddx run folder (no {CONFIG})")

    def __repr__(self) -> str:
        return f"Run('{self.path}')"

    @cached_property
    def config(self) -> RunConfig:
        return load_config(self.path / CONFIG)

    @cached_property
    def preprocess(self) -> Preprocess:
        return Preprocess.load(self.path / PREPROCESS)

    @property
    def is_sequence(self) -> bool:
        """True for token-sequence runs (vocab.json instead of preprocess.json)."""
        return (self.path / VOCAB).is_file()

    @property
    def is_ensemble(self) -> bool:
        """True for a folder written by `meddx ensemble` (members' probabilities averaged)."""
        return (self.path / ENSEMBLE).is_file()

    @property
    def prep_file(self) -> str:
        """What turns an input into the model's: preprocess.json for images, vocab.json for token sequences."""
        return VOCAB if self.is_sequence else PREPROCESS

    @cached_property
    def vocab(self) -> Vocab:
        return Vocab.load(self.path / VOCAB)

    @cached_property
    def data_info(self) -> dict:
        return json.loads((self.path / DATA).read_text())

    @property
    def plan(self) -> dict:
        """plan.json: the fingerprint and every planned choice ({} for a run trained without a plan)."""
        return read_json(self.path / PLAN)

    @property
    def training(self) -> dict:
        """training.json: epochs, losses, seconds, collapse, fine-tuning ({} for an ensemble)."""
        return read_json(self.path / TRAINING)

    def metrics(self, split: str = "test") -> dict:
        """The last evaluation of a split (metrics.json, metrics-<split>.json); {} when it was never evaluated."""
        return read_json(self.path / f"metrics{split_suffix(split)}.json")

    @property
    def label_names(self) -> list[str]:
        return self.data_info["label_names"]

    @property
    def task(self) -> str:
        return self.data_info["task"]

    @property
    def classes(self) -> list[str]:
        """The class names the labels came from (a binary run's both; recorded since 2026-12-07), or []."""
        return list(self.data_info.get("classes") or [])

    @property
    def negative_class(self) -> str:
        """What a scan positive for no label is called: a binary run's other class (`normal`), else `negative`."""
        others = [c for c in self.classes if c not in self.label_names]
        return others[0] if self.task == "binary" and len(others) == 1 else "negative"

    def split_table(self) -> pd.DataFrame:
        """split.csv: every record id with its patient, split and labels."""
        return pd.read_csv(self.path / SPLIT, dtype={"id": str, "patient_id": str, "sha1": str, "phash": str})

    def train_prior(self) -> np.ndarray:
        """Per-label prevalence in the training split (the prior baseline; unknown labels left out)."""
        table = self.split_table()
        return np.nanmean(table.loc[table["split"] == "train", self.label_names].to_numpy(np.float64), axis=0)

    @cached_property
    def model(self) -> nn.Module:
        """The best model, rebuilt from the config and loaded without pickle execution (an ensemble: its members),
        averaged over shifted copies of each input when the run's config says `model.tta`."""
        model = self._model()
        return ShiftAverage(model, self.task).eval() if self.config.model.tta and not self.is_sequence else model

    def members(self) -> list[Run]:
        """An ensemble's member runs (paths in ensemble.json, relative to it or absolute); [] for one model."""
        info = json.loads((self.path / ENSEMBLE).read_text()) if self.is_ensemble else {"members": []}
        return [Run(m if Path(m).is_absolute() else self.path / m) for m in info["members"]]

    def architecture(self) -> str:
        """The model's name; an ensemble's: its members' names (`small_cnn + resnet18`, each once, in order)."""
        names = [m.config.model.name for m in self.members()] or [self.config.model.name]
        return " + ".join(dict.fromkeys(names))

    def _model(self) -> nn.Module:
        if self.is_ensemble:
            weights = json.loads((self.path / ENSEMBLE).read_text()).get("weights")
            return ProbabilityAverage([self._member_model(m) for m in self.members()], self.task, weights).eval()
        if not (self.path / WEIGHTS).is_file():
            raise ConfigError(f"{self.path}: no {WEIGHTS}; the run did not finish training")
        if self.is_sequence:
            return build_model(
                self.config.model, 1, len(self.label_names), self.path / WEIGHTS, **self.vocab.model_kwargs()
            )
        return build_model(self.config.model, self.preprocess.channels, len(self.label_names), self.path / WEIGHTS)

    def _member_model(self, member: Run) -> nn.Module:
        """A member's model fed this ensemble's inputs: mapped to its own data-set statistics (a CV fold's) and size."""
        return member.model if self.is_sequence else adapted(member.model, member.preprocess, self.preprocess)

    def dataset(self, inputs: list[Record | str | Path], preload: bool | None = False) -> Dataset:
        """A dataset of records or file paths prepared as this run's inputs: for sequence runs a path is a `|,|` report
        file (every row, labels optional); images are decoded up front with `preload` (None: if they fit in memory)."""
        if self.is_sequence:
            rows = [[x] if isinstance(x, Record) else read_tianchi(x, require_labels=False).records for x in inputs]
            return SequenceDataset([r for group in rows for r in group], self.vocab)
        return ImageDataset([r if isinstance(r, Record) else file_record(r) for r in inputs], self.preprocess, preload)

    def predict_proba(self, inputs: list[Record | str | Path] | Dataset, batch_size: int = 256) -> np.ndarray:
        """(N, L) probabilities for records, file paths, or a dataset already prepared (`Run.dataset`)."""
        data = inputs if isinstance(inputs, Dataset) else self.dataset(list(inputs))
        model = self.model  # built outside inference mode, so its weights stay usable for gradients (Grad-CAM)
        loader = DataLoader(data, batch_size=batch_size, collate_fn=trim_padding if self.is_sequence else None)
        return predict_proba(model, loader, self.task, len(self.label_names))

    def predict(self, inputs: list[Record | str | Path] | Dataset) -> pd.DataFrame:
        """One row per input: id and a probability column per label."""
        data = inputs if isinstance(inputs, Dataset) else self.dataset(list(inputs))
        return prediction_frame(data.records, self.predict_proba(data), self.label_names)

    def write_predictions(self, split: str, records: list[Record], probs: np.ndarray) -> Path:
        """predictions/<split>.csv: id, patient_id, true labels, probabilities."""
        path = self.path / PREDICTIONS / f"{split}.csv"
        path.parent.mkdir(exist_ok=True)
        write_frame(prediction_frame(records, probs, self.label_names, with_truth=True), path, index=False,
                    float_format="%.9g")  # fmt: skip
        return path

    def records(self, split: str) -> list[Record]:
        """The image records of one split, in the split table's order (read again from the run's data section)."""
        table = self.split_table()
        ids = table.loc[table["split"] == split, "id"].tolist()
        by_id = {r.id: r for r in read_dataset(self.config.data, check_files=False).records}
        return [by_id[i] for i in ids if i in by_id]

    def predictions(self, split: str = "test") -> pd.DataFrame:
        p = self.path / PREDICTIONS / f"{split}.csv"
        if not p.is_file():
            raise DataError(f"{self.path}: no predictions for split '{split}'")
        try:
            frame = pd.read_csv(p, dtype={"id": str, "patient_id": str})
        except (ValueError, pd.errors.ParserError) as e:
            raise DataError(f"{p}: not a readable predictions file ({type(e).__name__}: {e})") from None
        missing = [c for c in [f"p_{n}" for n in self.label_names] if c not in frame.columns]
        if missing or frame[[f"p_{n}" for n in self.label_names]].isna().any().any():
            raise DataError(f"{p}: probabilities missing ({', '.join(missing) or 'blank cells'}); predict again")
        table = self.split_table() if (self.path / SPLIT).is_file() else pd.DataFrame({"split": [], "id": []})
        expected = set(table.loc[table["split"] == split, "id"])
        if expected and set(frame["id"]) != expected:
            raise DataError(
                f"{p}: {len(frame)} rows for the {len(expected)} samples of the {split} split "
                f"({len(expected - set(frame['id']))} missing); the file is incomplete: predict or train again"
            )
        return frame


def prediction_frame(
    records: list[Record], probs: np.ndarray, label_names: list[str], with_truth: bool = False
) -> pd.DataFrame:
    """id, (patient_id and the true labels,) and p_<label> columns, one row per record."""
    df = pd.DataFrame({"id": [r.id for r in records]})
    if with_truth:
        df["patient_id"] = [r.patient_id for r in records]
        truth = np.stack([r.labels for r in records]).astype(float) if records else np.zeros((0, len(label_names)))
        for j, name in enumerate(label_names):
            df[name] = truth[:, j]
    for j, name in enumerate(label_names):
        df[f"p_{name}"] = probs[:, j]
    return df


def load_run(path: str | Path) -> Run:
    """Open a run folder written by `meddx.train` (or `meddx ensemble`)."""
    return Run(path)
