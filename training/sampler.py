"""A resumable, shardable epoch sampler.

Each epoch's order is a permutation seeded by (seed, epoch), so a run stopped in the middle of an epoch resumes at
exactly the next batch, and every torchrun rank takes its own stride of the same permutation (padded, as
``DistributedSampler`` does, so that all ranks run the same number of steps).
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    def __init__(self, length: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        if length < 1:
            raise ValueError("The dataset is empty: nothing to train on.")
        self.length = length
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0  # samples of this rank's share to skip (resuming mid-epoch)
        self.per_rank = math.ceil(length / world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        """This rank's indices for the current epoch, before skipping."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            indices = torch.randperm(self.length, generator=generator).tolist()
        else:
            indices = list(range(self.length))
        padded = indices + indices[: self.per_rank * self.world_size - self.length]
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start
