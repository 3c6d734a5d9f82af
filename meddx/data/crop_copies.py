"""2-D images cut from a run's training images and shrunk (MedMNIST's 28 px PneumoniaMNIST holds Kermany's chest
X-rays centre-cropped and resized): neither SHA-1 nor the perceptual hash of the whole image finds them. The side
with the larger images is cut into centre crops (widths, then heights, CROPS of the side), every image and crop
averaged onto GRID^2 and z-scored; a new image and a training image that are each other's best match at
MIN_CORRELATION or more, MIN_MARGIN above the next, look like one scan. Measured (bench/crop_copies.py): 886 of 1,000
Kermany scans found against a PneumoniaMNIST run's train/val, none of its 624 test scans (other children) nor of 416
NIH scans against other patients'; the whole-image perceptual hash found none. A match is a likely copy: kept in the
figures and warned about, never dropped."""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

from meddx.data.near_duplicates import pixels_or_none, record_at
from meddx.data.records import Record

GRID, MIN_CORRELATION, MIN_MARGIN = 28, 0.97, 0.01
CROPS = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)  # the cut side's fractions: a whole image is the hash's to find
WHOLE = (1.0,)
SIDE = 96  # a plane's shorter side at most, before cropping
PROBE = 3  # records looked at to tell 2-D images from volumes and token sequences
MAX_PAIRS, MAX_TRAINING = 4e7, 30_000  # beyond either, the check is skipped (and said)
BLOCK = 2_000  # training images decoded and compared at once
RULE = (
    f"mutual best match of centre crops ({CROPS[-1]}-{CROPS[0]} of a side) at {GRID}^2 pixels, correlation >= "
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


def cropped_copies(records: list[Record], training: list[str]) -> dict:
    """{found: [(new record, training source)], unchecked: why not looked for, or "", unreadable: training files not
    readable here}: new 2-D images like a training image cropped and resized; nothing for volumes or sequences."""
    out: dict = {"found": [], "unchecked": "", "unreadable": 0}
    if not records or not training or not any(_plane(r) is not None for r in records[:PROBE]):
        return out
    if len(records) * len(training) > MAX_PAIRS or len(training) > MAX_TRAINING:
        return {**out, "unchecked": "too many images to compare"}
    new = [(r, p) for r in records if (p := _plane(r)) is not None]
    probe = [p for loc in training[:20] if (p := _plane(record_at(loc))) is not None]
    if not new or not probe:
        return {**out, "unchecked": "the training images are not readable here"}
    cut_new = np.median([p.size for _, p in new]) > np.median([p.size for p in probe])  # the larger side is cut
    a = _signatures([p for _, p in new], CROPS if cut_new else WHOLE)
    top = torch.full((len(new), 2), -1.0)  # each new image's best and second correlation ...
    best_at, column_best, kept = torch.full((len(new),), -1), [], []  # ... where, and each training image's best
    for start in range(0, len(training), BLOCK):
        read = [(loc, p) for loc in training[start : start + BLOCK] if (p := _plane(record_at(loc))) is not None]
        out["unreadable"] += min(BLOCK, len(training) - start) - len(read)
        if not read:
            continue
        b = _signatures([p for _, p in read], WHOLE if cut_new else CROPS)
        corr = torch.full((len(new), len(read)), -1.0)
        for i, j in itertools.product(range(a.shape[1]), range(b.shape[1])):  # the best crop of each pair
            corr = torch.maximum(corr, a[:, i] @ b[:, j].T)
        values = torch.cat([top, corr], 1)
        where = torch.cat([best_at[:, None], best_at[:, None], torch.arange(len(kept), len(kept) + len(read))
                           .expand(len(new), -1)], 1)  # fmt: skip
        order = values.topk(2, dim=1)
        top, best_at = order.values, where.gather(1, order.indices[:, :1]).ravel()
        column_best.append(corr.argmax(0))
        kept += [loc for loc, _ in read]
    if not kept:
        return {**out, "unchecked": "the training images are not readable here"}
    mutual = torch.cat(column_best)[best_at.clamp(min=0)] == torch.arange(len(new))
    hit = mutual & (top[:, 0] >= MIN_CORRELATION) & (top[:, 0] - top[:, 1] >= MIN_MARGIN)
    out["found"] = [(new[i][0], kept[int(best_at[i])]) for i in torch.nonzero(hit).ravel().tolist()]
    return out
