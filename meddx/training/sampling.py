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

    def generator(self) -> torch.Generator:
        """A generator seeded by the seed and the epoch about to be trained."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch())

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.n, generator=self.generator()).tolist())


class EpochLengthGrouped(EpochShuffle):
    """transformers' length grouping (random mega-batches of 50 batches, each sorted by length), drawn from (seed,
    epoch) like EpochShuffle, so a run resumed inside an epoch trains the rest of the same order."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, epoch: Callable[[], int]):
        super().__init__(len(lengths), seed, epoch)
        self.lengths, self.batch_size = lengths, batch_size

    def __iter__(self) -> Iterator[int]:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator()))
