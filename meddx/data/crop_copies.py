"""2-D images cut from a run's training images and shrunk (MedMNIST's 28 px PneumoniaMNIST holds Kermany's chest
X-rays centre-cropped and resized): neither SHA-1 nor the perceptual hash of the whole image finds them. The side
with the larger images is cut into centre crops (widths, then heights, FRACTIONS of the side), every image and crop
averaged onto GRID^2 and z-scored; a new image and a training image that are each other's best match at
MIN_CORRELATION or more, MIN_MARGIN above the next, look like one scan. Measured (bench/crop_copies.py): 910 of 1,000
Kermany scans found against a PneumoniaMNIST run's train/val, none of its 624 test scans (other children); the
whole-image perceptual hash found none. A match is a likely copy: kept in the figures and warned about, never
dropped."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from meddx.data.near_duplicates import pixels_or_none, record_at
from meddx.data.records import Record

GRID, MIN_CORRELATION, MIN_MARGIN = 28, 0.96, 0.01
FRACTIONS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)
SIDE = 96  # a plane's shorter side at most, before cropping
PROBE = 3  # records looked at to tell 2-D images from volumes and token sequences
MAX_PAIRS = 4e7  # new x training images compared at most (a 160 MB table): beyond it the check is skipped
RULE = (
    f"mutual best match of centre crops ({FRACTIONS[-1]}-1.0 of a side) at {GRID}^2 pixels, correlation >= "
    f"{MIN_CORRELATION} and {MIN_MARGIN} above the next"
)


def _plane(record: Record) -> np.ndarray | None:
    """The record as one float grey plane (colour averaged); None for a volume, a token sequence or an unreadable
    file."""
    if (read := pixels_or_none(record)) is None or read[1] == "dhw":
        return None
    pixels, layout = read
    a = torch.from_numpy(np.asarray(pixels, dtype=np.float32))
    a = a.mean(-1) if layout == "hwc" else a
    if (scale := SIDE / min(a.shape)) < 1:  # large scans shrunk first: their crops then cost little
        size = (max(1, round(a.shape[0] * scale)), max(1, round(a.shape[1] * scale)))
        a = F.interpolate(a[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]
    return a.numpy()


def _signatures(planes: list[np.ndarray], fractions: tuple[float, ...]) -> torch.Tensor:
    """(images, crops, GRID^2): each plane's centre crops (the widths, then the heights, cut to each fraction)
    averaged onto GRID^2, z-scored and of unit length, so a dot product is a correlation; planes of one size at once."""
    shapes = [(f, 1.0) for f in fractions] + [(1.0, f) for f in fractions if f < 1.0]
    out = torch.empty(len(planes), len(shapes), GRID * GRID)
    by_size: dict[tuple, list[int]] = {}
    for i, plane in enumerate(planes):
        by_size.setdefault(plane.shape, []).append(i)
    for (h, w), rows in by_size.items():
        stack = torch.from_numpy(np.stack([planes[i] for i in rows]))[:, None]
        for k, (fw, fh) in enumerate(shapes):
            cw, ch = max(1, round(w * fw)), max(1, round(h * fh))
            x0, y0 = (w - cw) // 2, (h - ch) // 2
            crop = stack[:, :, y0 : y0 + ch, x0 : x0 + cw]
            small = F.interpolate(crop, size=(GRID, GRID), mode="bilinear", antialias=True, align_corners=False)
            out[rows, k] = small.flatten(1)
    out -= out.mean(2, keepdim=True)
    return out / (out.norm(dim=2, keepdim=True) + 1e-9)


def cropped_copies(records: list[Record], training: list[str]) -> list[tuple[Record, str]] | None:
    """New 2-D images that look like one of the `training` images (split.csv sources) cropped and resized, each with
    that image's source (one new image per training image at most); [] for volumes or token sequences, None for
    images too many to compare (more than MAX_PAIRS pairs)."""
    if not records or not training or not any(_plane(r) is not None for r in records[:PROBE]):
        return []
    if len(records) * len(training) > MAX_PAIRS:
        return None
    new = [(r, p) for r in records if (p := _plane(r)) is not None]
    old = [(loc, p) for loc in training if (p := _plane(record_at(loc))) is not None]
    if not new or not old:
        return []
    cut_new = np.median([p.size for _, p in new]) > np.median([p.size for _, p in old])  # the larger side is cut
    a = _signatures([p for _, p in new], FRACTIONS if cut_new else (1.0,))
    b = _signatures([p for _, p in old], (1.0,) if cut_new else FRACTIONS)
    corr = torch.full((len(new), len(old)), -1.0)
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            corr = torch.maximum(corr, a[:, i] @ b[:, j].T)
    top = corr.topk(min(2, len(old)), dim=1)
    best, runner_up = top.indices[:, 0], top.values[:, 1] if len(old) > 1 else torch.full((len(new),), -1.0)
    mutual = corr.argmax(0)[best] == torch.arange(len(new))
    hit = mutual & (top.values[:, 0] >= MIN_CORRELATION) & (top.values[:, 0] - runner_up >= MIN_MARGIN)
    return [(new[i][0], old[int(best[i])][0]) for i in torch.nonzero(hit).ravel().tolist()]
