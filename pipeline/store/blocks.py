"""Block-shuffled sampling: read a store one shard at a time, still visit items in random order.

Reading one item per call pays zarr's per-call cost for every image; reading a whole shard per
call streams at close to the disk/memmap limit (``bench/read_path.py``). ``BlockShuffleSampler``
orders items so that a reader holding a few shards in memory reads each shard once per epoch:
shards are shuffled, grouped into windows of ``mix`` shards, and the items of each window are
shuffled together (a shuffle buffer of ``mix`` shards, as streaming loaders such as WebDataset
do). Under DDP rank r takes every N-th position of that one order (as ``DistributedSampler``
does), so the N local batches of a step are the one-process batch and a DDP run follows the
one-process trajectory; each rank then reads the shards of every window (N times the I/O of one
process in total, the same per rank).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class BlockShuffleSampler(Sampler[int]):
    """Item positions in block-shuffled order; ``blocks[i]`` = the shard that item i lives in."""

    def __init__(self, blocks: Sequence[int], mix: int = 4, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if mix < 1:
            raise ValueError(f"mix must be >= 1, not {mix}")
        self.blocks = torch.as_tensor(list(blocks), dtype=torch.int64)
        self.mix, self.seed = mix, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.per_rank = -(-len(self.blocks) // world_size)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (same seed + epoch -> same order on every rank)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def global_order(self) -> list[int]:
        """Every item once (padded by wrapping to a multiple of ``world_size``)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        unique = self.blocks.unique()
        unique = unique[torch.randperm(len(unique), generator=generator)]
        order: list[int] = []
        for start in range(0, len(unique), self.mix):
            window = torch.isin(self.blocks, unique[start: start + self.mix]).nonzero()[:, 0]
            order += window[torch.randperm(len(window), generator=generator)].tolist()
        padding = self.per_rank * self.world_size - len(order)
        return order + (order * (1 + padding // max(len(order), 1)))[:padding]

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_order()[self.rank:: self.world_size])
