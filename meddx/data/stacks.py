"""Slices of a stack taken as channels: the views chosen on training stacks of one depth, read at the same relative
positions in a stack of another."""

from __future__ import annotations


def rescale_views(views: list[int], depth: int | None, n: int) -> list[int]:
    """Slices `views` of a `depth`-slice stack at the same relative positions in a stack of `n`, ends kept (slice
    0 stays the first, -1 the last); views outside `depth` are left as given, for the range check to name."""
    if not depth or depth == n or any(not -depth <= v < depth for v in views):
        return list(views)
    return [round((v % depth) * (n - 1) / max(depth - 1, 1)) for v in views]
