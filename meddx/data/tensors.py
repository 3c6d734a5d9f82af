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
from meddx.data.cache import Decoded
from meddx.data.images import load_image, read_pixels
from meddx.data.records import Record
from meddx.logs import progress

PRELOAD_LIMIT_BYTES = 2 * 1024**3
STATS_SAMPLES = 2000
STATS_BLOCK = 64  # images summed at a time


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
    view_depth: int | None = None  # the training stacks' slices, which `views` index (other depths: same positions)

    def __call__(self, record: Record) -> torch.Tensor:
        """One record as a normalised float tensor (C, H, W)."""
        x = torch.from_numpy(self.raw(record))
        return self.normalise(x)

    def raw(self, record: Record) -> np.ndarray:
        """Decoded, channel-selected and resized, before normalisation."""
        return self.resize(
            load_image(record, self.views, self.view_axis, self.channels, self.dicom_window, self.view_depth)
        )

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


def stack_depth(record: Record, view_axis: int = 0, dicom_window: tuple[float, float] | None = None) -> int | None:
    """The number of slices along `view_axis` of a record's stack (None for a 2-D image)."""
    return volume_depth(*read_pixels(record, dicom_window), view_axis)


def volume_depth(pixels: np.ndarray, layout: str, view_axis: int = 0) -> int | None:
    """The number of slices along `view_axis` of decoded pixels (None for a 2-D image)."""
    return int(pixels.shape[view_axis % 3]) if layout == "dhw" else None


def resolve_preprocess(cfg: DataConfig, train_records: list[Record], decoded: Decoded | None = None) -> Preprocess:
    """Fill in channels and size from the first image and data-set statistics from the train split (read from
    `decoded`, the cached images, when given; else decoded here)."""
    prep = base_preprocess(cfg, train_records[0])
    fill_statistics(prep, train_records, decoded)
    return prep


def base_preprocess(cfg: DataConfig, first_record: Record) -> Preprocess:
    """Channels and size from the config or the first image; no statistics yet."""
    first = load_image(first_record, cfg.views, cfg.view_axis, cfg.channels, cfg.dicom_window)
    size = (cfg.image_size, cfg.image_size) if cfg.image_size else tuple(int(s) for s in first.shape[1:])
    return Preprocess(
        channels=cfg.channels or int(first.shape[0]),
        image_size=size,
        normalize=cfg.normalize,
        views=cfg.views,
        view_axis=cfg.view_axis,
        dicom_window=cfg.dicom_window,
        view_depth=stack_depth(first_record, cfg.view_axis, cfg.dicom_window) if cfg.views else None,
    )


def fill_statistics(prep: Preprocess, train_records: list[Record], decoded: Decoded | None = None) -> None:
    """Per-channel mean and std of (an even sample of up to STATS_SAMPLES) train images, for `dataset` normalising;
    summed in blocks of images, so memory stays small at any image size."""
    if prep.normalize != "dataset":
        return
    sample = train_records[:: max(1, len(train_records) // STATS_SAMPLES)]
    rows = np.sort(decoded.rows_of(sample)) if decoded is not None else None
    total = np.zeros((2, prep.channels))
    for start in range(0, len(sample), STATS_BLOCK):
        if rows is not None:
            block = np.asarray(decoded.array[rows[start : start + STATS_BLOCK]], dtype=np.float64)
        else:
            block = np.stack([prep.raw(r) for r in sample[start : start + STATS_BLOCK]]).astype(np.float64)
        total += [block.sum(axis=(0, 2, 3)), np.square(block).sum(axis=(0, 2, 3))]
    n = len(sample) * prep.image_size[0] * prep.image_size[1]
    mean = total[0] / n
    prep.mean = [float(v) for v in mean]
    prep.std = [float(max(np.sqrt(max(v, 0.0)), 1e-6)) for v in total[1] / n - mean**2]


def decode_settings(prep: Preprocess) -> dict:
    """What decides the decoded pixels (the cache's key, with the images); normalising comes after."""
    return {k: v for k, v in asdict(prep).items() if k not in ("normalize", "mean", "std")}


class ImageDataset(Dataset):
    """(image, label) pairs: from memory (decoded up front when they fit, which also finds bad files early), from the
    cache's memory-mapped rows (`decoded`), or decoded item by item."""

    def __init__(
        self, records: list[Record], prep: Preprocess, preload: bool | None = None, decoded: Decoded | None = None
    ):
        self.records, self.prep, self.decoded = records, prep, decoded
        self.labels = (
            torch.from_numpy(np.stack([r.labels for r in records]).astype(np.float32)) if records else torch.zeros(0)
        )
        self.rows = decoded.rows_of(records) if decoded is not None else None
        nbytes = len(records) * prep.channels * prep.image_size[0] * prep.image_size[1] * 4
        self.images: torch.Tensor | None = None
        if records and (preload if preload is not None else nbytes <= PRELOAD_LIMIT_BYTES):
            if decoded is not None:
                raw = np.asarray(decoded.array[self.rows], dtype=np.float32)
            else:
                raw = np.stack([prep.raw(r) for r in progress(records, f"decoding {len(records)} images")])
            self.images = prep.normalise(torch.from_numpy(raw))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.images is not None:
            x = self.images[i]
        elif self.rows is not None:
            x = self.prep.normalise(torch.from_numpy(np.array(self.decoded.array[self.rows[i]], dtype=np.float32)))
        else:
            x = self.prep(self.records[i])
        return x, self.labels[i]
