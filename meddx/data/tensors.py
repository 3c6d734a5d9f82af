"""From records to tensors: the resolved preprocessing (saved with the run) and a torch Dataset."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from meddx.atomic import write_text
from meddx.config import DataConfig
from meddx.data.images import load_image
from meddx.data.records import Record
from meddx.logs import progress

PRELOAD_LIMIT_BYTES = 2 * 1024**3
STATS_SAMPLES = 2000


@dataclass
class Preprocess:
    """Everything needed to turn a file into the model's input; written to preprocess.json."""

    channels: int
    image_size: tuple[int, int]
    normalize: str
    mean: list[float] | None = None
    std: list[float] | None = None
    views: list[int] | None = None
    view_axis: int = 0
    dicom_window: tuple[float, float] | None = None

    def __call__(self, record: Record) -> torch.Tensor:
        """One record as a normalised float tensor (C, H, W)."""
        x = torch.from_numpy(self.raw(record))
        return self.normalise(x)

    def raw(self, record: Record) -> np.ndarray:
        """Decoded, channel-selected and resized, before normalisation."""
        return self.resize(load_image(record, self.views, self.view_axis, self.channels, self.dicom_window))

    def resize(self, arr: np.ndarray) -> np.ndarray:
        """A decoded (C, H, W) image at the model's size (bilinear, antialiased)."""
        if tuple(arr.shape[1:]) != tuple(self.image_size):
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
            arr = F.interpolate(t, size=tuple(self.image_size), mode="bilinear", antialias=True, align_corners=False)[
                0
            ].numpy()
        return arr

    def model_input(self, decoded: np.ndarray) -> torch.Tensor:
        """A decoded (C, H, W) image as the model's input batch of one: resized and normalised."""
        return self.normalise(torch.from_numpy(np.ascontiguousarray(self.resize(decoded), dtype=np.float32)))[None]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample z-score, data-set mean/std per channel, or nothing."""
        if self.normalize == "sample":
            dims = tuple(range(x.ndim - 2, x.ndim))
            return (x - x.mean(dims, keepdim=True)) / (x.std(dims, keepdim=True) + 1e-6)
        if self.normalize == "dataset":
            shape = (-1, 1, 1)
            return (x - torch.tensor(self.mean).view(shape)) / torch.tensor(self.std).view(shape)
        return x

    def save(self, path: str | Path) -> None:
        write_text(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Preprocess:
        d = json.loads(Path(path).read_text())
        d["image_size"] = tuple(d["image_size"])
        return cls(**d)


def resolve_preprocess(cfg: DataConfig, train_records: list[Record]) -> Preprocess:
    """Fill in channels and size from the first image and data-set statistics from the train split."""
    first = load_image(train_records[0], cfg.views, cfg.view_axis, cfg.channels, cfg.dicom_window)
    size = (cfg.image_size, cfg.image_size) if cfg.image_size else tuple(int(s) for s in first.shape[1:])
    prep = Preprocess(
        channels=cfg.channels or int(first.shape[0]),
        image_size=size,
        normalize=cfg.normalize,
        views=cfg.views,
        view_axis=cfg.view_axis,
        dicom_window=cfg.dicom_window,
    )
    if cfg.normalize == "dataset":
        step = max(1, len(train_records) // STATS_SAMPLES)
        stack = np.stack([prep.raw(r) for r in train_records[::step]])
        prep.mean = [float(v) for v in stack.mean(axis=(0, 2, 3))]
        prep.std = [float(max(v, 1e-6)) for v in stack.std(axis=(0, 2, 3))]
    return prep


class ImageDataset(Dataset):
    """(image, label) pairs; decodes every image up front when they fit in memory, which also finds bad files early."""

    def __init__(self, records: list[Record], prep: Preprocess, preload: bool | None = None):
        self.records, self.prep = records, prep
        self.labels = (
            torch.from_numpy(np.stack([r.labels for r in records]).astype(np.float32)) if records else torch.zeros(0)
        )
        nbytes = len(records) * prep.channels * prep.image_size[0] * prep.image_size[1] * 4
        self.images: torch.Tensor | None = None
        if preload if preload is not None else nbytes <= PRELOAD_LIMIT_BYTES:
            decoded = [prep.raw(r) for r in progress(records, f"decoding {len(records)} images")]
            raw = torch.from_numpy(np.stack(decoded)) if records else torch.zeros(0)
            self.images = prep.normalise(raw) if len(records) else raw

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i] if self.images is not None else self.prep(self.records[i])
        return x, self.labels[i]
