"""The training shuffle as a function of (seed, epoch) alone, so a resumed run draws the same order as one never
stopped; torchdata's StatefulDataLoader then skips what an interrupted epoch already trained."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler


class EpochShuffle(Sampler[int]):
    """A permutation of range(n) seeded by seed and the epoch being trained, read when an epoch's iteration starts
    (`epoch()`: the trainer's current epoch, already restored in a resumed run when its loader is first iterated)."""

    def __init__(self, n: int, seed: int, epoch: Callable[[], int]):
        self.n, self.seed, self.epoch = n, seed, epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch())
        return iter(torch.randperm(self.n, generator=generator).tolist())
