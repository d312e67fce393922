"""A torch Dataset over a visual store, read lazily and safe under DataLoader workers.

The Zarr group is opened on first access in each process (never inherited across ``fork``:
zarr v3's event loop and fork deadlock), and ``loader_kwargs`` asks for ``spawn`` workers.
With ``cache_blocks`` > 0 an item is served from its whole shard, read in one call per array and
kept among the last ``cache_blocks`` shards: fast for sequential or block-shuffled order
(``pipeline.store.blocks``), wasteful for fully random order (one shard read per item).
A store with augmented views serves view ``v`` of an item as ``dataset[(item, v)]`` (a plain
``dataset[item]`` is view 0); each cached block is one view of one shard.
Every read goes through ``pipeline.store.integrity.ShardChecker``: the records of the shards
holding the dataset's items are checked when it is opened (a missing, truncated or misplaced
chunk stops it before any work), zarr checks each chunk's CRC-32C on every read, and a worker
process checks a shard's record again the first time it reads the shard; damage is one
``StoreDamage`` line naming the store, the array and the shard.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.errors import StoreError, first_line
from pipeline.store.integrity import ShardChecker
from pipeline.store.layout import ITEM_ARRAYS, VIEW_PREFIX, view_count
from pipeline.store.location import StoreLocation, as_location, open_group
from pipeline.store.visual import open_visual_store


class CachedFeatureDataset(Dataset):
    """Items: ``patch_tokens`` (h, w, C) f32, ``cls_token`` (C,), ``label`` (H, W), ``index``,
    ``view`` (0 = the plain image, 1..``views`` = the store's augmented views)."""

    views: int = 0  # augmented views per image, from the store's ``views`` recipe

    def __init__(self, path: StoreLocation | str, expect: Mapping[str, Any] | None = None,
                 indices: Sequence[int] | None = None, cache_blocks: int = 0) -> None:
        self.path = as_location(path)
        group = open_visual_store(self.path, expect)  # validates once, up front
        self.attrs = dict(group.attrs)
        self.indices = list(range(self.attrs["num_images"])) if indices is None else list(indices)
        self.block_images = max(int(self.attrs.get("shard_images", 1)), 1)
        self.cache_blocks = cache_blocks
        self.views = view_count(self.attrs)
        self._blocks: OrderedDict[tuple[int, int], dict[str, np.ndarray]] = OrderedDict()
        self._checker: ShardChecker | None = None
        self._pid: int | None = None
        for shard in sorted({index // self.block_images for index in self.indices}):
            self._open().check_shard(shard)  # a missing or misplaced chunk stops us up front

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_checker"] = None  # never ship an open store to a worker
        state["_blocks"] = OrderedDict()
        return state

    def with_block_cache(self, cache_blocks: int) -> CachedFeatureDataset:
        """A copy of this reader keeping the last ``cache_blocks`` whole shards (0: reads per
        item), its shard cache empty; the store stays validated, never reopened per copy."""
        reader = copy.copy(self)
        reader.cache_blocks, reader._blocks = cache_blocks, OrderedDict()
        return reader

    def subset(self, rows: Sequence[int]) -> CachedFeatureDataset:
        """A copy of this reader serving only these store ``rows`` (e.g. an image split's),
        its shard cache empty; the store stays validated (its shards were checked when this
        reader opened it), never reopened per copy."""
        if any(not 0 <= int(row) < self.attrs["num_images"] for row in rows):
            raise IndexError(f"{self.path}: rows outside 0..{self.attrs['num_images'] - 1}")
        reader = self.with_block_cache(self.cache_blocks)
        reader.indices = [int(row) for row in rows]
        return reader

    def clear_block_cache(self, recheck: bool = False) -> None:
        """Forget the cached shards: the next items are read from the store again (``recheck``:
        and their shards' records checked again, as a fresh process would)."""
        self._blocks.clear()
        if recheck and self._checker is not None:
            self._checker.recheck()

    def block_of(self, item: int) -> int:
        """The shard holding ``item`` (what ``BlockShuffleSampler`` groups by)."""
        return self.indices[item] // self.block_images

    def _open(self) -> ShardChecker:
        """This store's checked reader, opened once per process (a lookup re-reads metadata)."""
        if self._checker is None or self._pid != os.getpid():
            self._checker = ShardChecker(self.path, open_group(self.path, mode="r"))
            self._pid = os.getpid()
        return self._checker

    def rows(self, name: str, start: int, stop: int, view: int = 0) -> np.ndarray:
        """Store rows [start, stop) of item array ``name`` (or ``image_ids``) in view ``view``,
        every chunk and shard checked (``StoreDamage`` names the damaged one)."""
        if view == 0:
            return self._open().rows(name, start, stop)
        return self._open().rows(VIEW_PREFIX + name, start, stop, view - 1)

    def image_ids(self) -> list[str]:
        """The ids of this dataset's items (its ``indices``' store rows), in item order."""
        return [str(i) for i in self._items("image_ids")]

    def store_image_ids(self) -> list[str]:
        """The ids of every row of the store, whatever ``indices`` serves."""
        return [str(i) for i in self.rows("image_ids", 0, int(self.attrs["num_images"]))]

    def labels(self) -> np.ndarray:
        """Every label map of this dataset (N, H, W) uint8, e.g. to plan training episodes."""
        return self._items("labels")

    def _items(self, name: str) -> np.ndarray:
        """Array ``name`` at this dataset's items, read from the shards holding them only."""
        size = self.block_images
        shards = {shard: self.rows(name, shard * size, (shard + 1) * size)
                  for shard in sorted({index // size for index in self.indices})}
        if not shards:
            return self.rows(name, 0, 0)
        return np.stack([shards[index // size][index % size] for index in self.indices])

    def _read(self, index: int, view: int = 0) -> list[np.ndarray]:
        """The ``ITEM_ARRAYS`` of view ``view`` of store image ``index``: alone, or sliced from
        its cached shard (one view of one shard: one chunk file per array)."""
        if self.cache_blocks <= 0:
            return [self.rows(name, index, index + 1, view)[0] for name in ITEM_ARRAYS]
        block, offset = divmod(index, self.block_images)
        key = (block, view)
        if key not in self._blocks:
            start = block * self.block_images
            self._blocks[key] = {name: self.rows(name, start, start + self.block_images, view)
                                 for name in ITEM_ARRAYS}
            while len(self._blocks) > self.cache_blocks:
                self._blocks.popitem(last=False)
        self._blocks.move_to_end(key)
        return [self._blocks[key][name][offset] for name in ITEM_ARRAYS]

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        item, view = item if isinstance(item, tuple) else (item, 0)
        if not 0 <= view <= self.views:
            raise IndexError(f"{self.path}: view {view} of {self.views} augmented views")
        index = self.indices[item]
        try:
            tokens, cls, label = self._read(index, view)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged shard is one clear message
            raise StoreError(f"{self.path}: image {index} unreadable, the store is damaged "
                             f"({first_line(exc)}); re-extract it with --overwrite") from exc
        return {
            "patch_tokens": torch.from_numpy(tokens.astype(np.float32)),
            "cls_token": torch.from_numpy(cls.astype(np.float32)),
            "label": torch.from_numpy(label.astype(np.int64)),
            "index": index,
            "view": view,
        }


def loader_kwargs(num_workers: int) -> dict[str, Any]:
    """DataLoader settings that keep Zarr safe in worker processes."""
    if num_workers <= 0:
        return {"num_workers": 0}
    return {"num_workers": num_workers, "multiprocessing_context": "spawn",
            "persistent_workers": True}
