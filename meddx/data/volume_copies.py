"""3-D volumes resampled to another depth or size (AdrenalMNIST3D's 28- and 64-voxel files hold the same cases): the
perceptual hash of a middle slice misses them, since the slices differ. Each volume is averaged onto a GRID^3 grid
and z-scored; a new volume and a training volume that are each other's best match, correlate at MIN_CORRELATION or
more and lead the runner-up by MIN_MARGIN look like one case. Measured on AdrenalMNIST3D (64 against 28 voxels):
1,186 of 1,188 training copies matched and 2 of 298 test volumes (different cases) did too, so a match is a likely
copy, kept in the figures and warned about, never dropped."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from meddx.data.near_duplicates import pixels_or_none, record_at
from meddx.data.records import Record

GRID, MIN_CORRELATION, MIN_MARGIN = 12, 0.95, 0.02
PROBE = 3  # records looked at to tell volumes from 2-D images
MIN_DEPTH = 8  # fewer planes are channels (colour, a stack of views), which the 2-D check reads
RULE = f"mutual best match at {GRID}^3 voxels, correlation >= {MIN_CORRELATION} and {MIN_MARGIN} above the next"


def signature(record: Record) -> np.ndarray | None:
    """The record's volume averaged onto GRID^3 and z-scored; None for a 2-D image, a few channels or an unreadable
    file."""
    if (read := pixels_or_none(record)) is None:
        return None
    pixels, layout = read
    if layout != "dhw" or min(pixels.shape) < MIN_DEPTH:
        return None
    grid = F.adaptive_avg_pool3d(torch.as_tensor(np.asarray(pixels, np.float32))[None, None], GRID).double().ravel()
    return ((grid - grid.mean()) / (grid.std() + 1e-9)).numpy()


def resampled_copies(records: list[Record], training: list[str]) -> list[tuple[Record, str]]:
    """New volumes that look like one of the `training` volumes (split.csv sources) at another depth or size, each
    with that volume's source (one new volume per training volume at most); [] when either side holds no volume."""
    if not any(signature(r) is not None for r in records[:PROBE]):  # 2-D data: decoded for nothing else here
        return []
    new = [(r, s) for r in records if (s := signature(r)) is not None]
    if not any(signature(record_at(loc)) is not None for loc in training[:PROBE]):
        return []
    old = [(loc, s) for loc in training if (s := signature(record_at(loc))) is not None]
    if not old:
        return []
    corr = np.stack([s for _, s in new]) @ np.stack([s for _, s in old]).T / GRID**3
    best = corr.argmax(1)
    runner_up = np.sort(corr, 1)[:, -2] if corr.shape[1] > 1 else np.full(len(new), -1.0)
    mutual = corr.argmax(0)[best] == np.arange(len(new))
    hit = mutual & (corr[np.arange(len(new)), best] >= MIN_CORRELATION)
    hit &= corr[np.arange(len(new)), best] - runner_up >= MIN_MARGIN
    return [(new[i][0], old[best[i]][0]) for i in np.flatnonzero(hit)]
