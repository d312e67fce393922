"""Upgrade an older store to this format without re-encoding: the same arrays, chunking,
compression and attributes, every chunk rewritten with its CRC-32C and every written shard given
its record (``pipeline.store.integrity``); only ``format_version`` changes.

The new store is laid out beside the old one (a local scratch folder for an object store) and
published over it as a new store is (``layout.publish``), under the store's writer lock. The old
bytes are trusted as they are: a store damaged before its upgrade stays damaged (nothing recorded
them); re-extract it if in doubt.
"""

from __future__ import annotations

import logging

import numpy as np
import zarr
from zarr.abc.codec import BytesBytesCodec

from pipeline.errors import StoreError, first_line
from pipeline.store.integrity import (
    ShardLayout,
    checksummed,
    create_record_array,
    record_shards,
)
from pipeline.store.layout import (
    FORMAT_VERSION,
    UPGRADABLE,
    check_format,
    publish,
    scratch_path,
)
from pipeline.store.location import StoreLocation, as_location, open_group, store_exists
from pipeline.store.lock import store_lock

log = logging.getLogger(__name__)


def upgrade_store(path: StoreLocation | str) -> bool:
    """Rewrite the store at ``path`` in this format; False if it is in this format already."""
    path = as_location(path)
    with store_lock(path):
        if not store_exists(path):
            raise StoreError(f"{path}: no such store")
        try:
            old = open_group(path, mode="r")
            attrs = dict(old.attrs)
        except Exception as exc:  # noqa: BLE001 - any zarr failure is one message
            raise StoreError(f"{path}: not a readable Zarr store ({first_line(exc)}); "
                             "re-extract it with --overwrite") from exc
        version = attrs.get("format_version")
        if version == FORMAT_VERSION:
            return False
        if version not in UPGRADABLE:
            check_format(path, attrs)  # raises: says what the store is and what to do
        layout = ShardLayout.of(attrs)
        scratch = scratch_path(path)
        new = zarr.open_group(str(scratch), mode="w")
        for name, array in old.arrays():
            copy_array(array, new, name, checksummed(array.compressors),
                       layout.axes.get(name), layout.rows)
        create_record_array(new, layout.num_shards)
        new.attrs.put({**attrs, "format_version": FORMAT_VERSION})
        record_shards(scratch, new, _written(old, layout))
        publish(scratch, path)
    log.info("%s: upgraded from format v%s to v%d", path, version, FORMAT_VERSION)
    return True


def copy_array(array: zarr.Array, group: zarr.Group, name: str,
               compressors: tuple[BytesBytesCodec, ...], axis: int | None = None,
               rows: int = 1) -> zarr.Array:
    """``array`` into ``group`` as ``name``: same shape, chunking, fill value and codecs but
    the bytes-to-bytes ones (``compressors``), copied ``rows`` at a time along ``axis`` (None:
    whole)."""
    target = group.create_array(
        name, shape=array.shape, dtype=array.dtype, chunks=array.chunks, shards=array.shards,
        filters=array.filters, serializer=array.serializer, compressors=compressors,
        fill_value=array.fill_value)
    if axis is None or array.shape[axis] == 0:
        target[...] = array[...]
        return target
    for start in range(0, array.shape[axis], rows):
        block = (slice(None),) * axis + (slice(start, start + rows),)
        target[block] = array[block]
    return target


def _written(group: zarr.Group, layout: ShardLayout) -> list[int]:
    """The shards an older store marks written (every shard of a text store)."""
    if "shard_done" not in group.array_keys():
        return list(range(layout.num_shards))
    done = np.asarray(group["shard_done"][:], dtype=bool)
    return [shard for shard in range(layout.num_shards) if done[shard]]
