"""Slices of a stack taken as channels: the views chosen on training stacks of one depth, read at the same relative
positions in a stack of another."""

from __future__ import annotations

import numpy as np


def rescale_views(views: list[int], depth: int | None, n: int) -> list[int]:
    """Slices `views` of a `depth`-slice stack at the same relative positions in a stack of `n` (slice centres)."""
    if not depth or depth == n:
        return list(views)
    return [int(np.clip(round(((v % depth) + 0.5) * n / depth - 0.5), 0, n - 1)) for v in views]
