"""Which augmented view of each training image an epoch reads: one view per image per epoch.

A store made with ``fusioner-extract --views N`` holds N + 1 views of every training image
(0 = plain, 1..N = seeded random crops/flips) in view-major arrays: one file holds one view of
one shard. The view is drawn **per store shard and epoch**, not per image, so an epoch reads one
file per shard and array - the same bytes as a store without views - while every image still
sees exactly one view per epoch (the views of different images are independent draws, so
sharing a view *index* within a shard couples nothing).

The rule, for ``V = views + 1`` views, fit seed ``s``, epoch ``e`` (0-based) and shard ``b``:
``cycle, slot = divmod(e, V)``; the shard's view is
``numpy.random.default_rng([s mod 2**64, cycle, b]).permutation(V)[slot]``. Every block of V
consecutive epochs (0..V-1, V..2V-1, ...) therefore shows each image every view exactly once, in
a seeded order of its own per shard (consecutive epochs of a cycle never repeat a view). Every
DDP rank computes the same views. Validation and evaluation read view 0 only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def drawn_view(seed: int, epoch: int, block: int, views: int) -> int:
    """The view (0..``views``) that shard ``block`` is read as in ``epoch``."""
    cycle, slot = divmod(epoch, views + 1)
    order = np.random.default_rng([seed % 2**64, cycle, block]).permutation(views + 1)
    return int(order[slot])


class ViewSampler(Sampler[tuple[int, int, int]]):
    """Wraps an item sampler: yields ``(item, view, epoch)`` with the view of the item's shard
    this epoch (``drawn_view``; always 0 for ``views`` 0), so per-epoch draws reach DataLoader
    workers with the index; ``set_epoch`` reaches the wrapped sampler too."""

    def __init__(self, sampler: Sampler[int], blocks: Sequence[int], views: int,
                 seed: int) -> None:
        self.sampler, self.blocks, self.views, self.seed = sampler, list(blocks), views, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        chosen: dict[int, int] = {}
        for item in self.sampler:
            block = self.blocks[item]
            if block not in chosen:
                chosen[block] = drawn_view(self.seed, self.epoch, block, self.views)
            yield item, chosen[block], self.epoch
