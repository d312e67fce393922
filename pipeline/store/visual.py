"""The visual feature store: patch tokens, CLS tokens, label masks and image ids, sharded Zarr v3.

Augmented views (a ``views`` recipe attribute, ``pipeline.data.views``) live beside the plain
image in ``view_<array>`` arrays of shape (views, N, ...), view-major: one chunk/shard file holds
one view of one store shard, so reading a shard's view costs what reading the plain shard does.
The plain arrays are exactly those of a store without views.

Writes go one whole shard at a time (never two writers on one shard), each shard is marked done
after its data, and the store is marked ``complete`` only when every shard is done: an
interrupted extraction resumes at the first missing shard and is never read as complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from pipeline.errors import StoreError
from pipeline.store.integrity import (
    ShardLayout,
    checksummed,
    clear_records,
    create_record_array,
    record_shards,
    repair_hint,
)
from pipeline.store.layout import (
    FORMAT_VERSION,
    ITEM_ARRAYS,
    VIEW_PREFIX,
    check_format,
    check_shapes,
    identity,
    open_complete_group,
    publish,
    scratch_path,
    view_count,
)
from pipeline.store.location import (
    RemoteLocation,
    StoreLocation,
    as_location,
    count_files,
    open_group,
    remove,
    store_exists,
)

DEFAULT_SHARD_IMAGES = 32


@dataclass(frozen=True)
class StoreCodec:
    """Compression and chunking of the feature arrays (default chosen by ``bench/read_path.py``).

    Frozen-encoder features barely compress (DINOv2 tokens on CamVid: 1.004x with zstd-1
    bitshuffle) and decoding them costs read speed, so the default stores them raw (``cname``
    "none"); the price is the fill-value padding of a store's last, partial chunk, which blosc's
    fastest codec (``blosclz`` level 1, no shuffle, ~10% slower reads) would squeeze.
    ``chunk_images``: images per chunk inside a shard; 0 = one chunk per shard (fastest
    whole-shard reads, as training and evaluation read; one random image costs a shard's read).
    """

    cname: str = "none"
    clevel: int = 0
    shuffle: str = "noshuffle"
    chunk_images: int = 0

    def compressors(self) -> tuple[Any, ...]:
        """The bytes-to-bytes codecs of the feature arrays, the CRC-32C last."""
        if self.cname == "none":
            return checksummed(None)
        return checksummed((BloscCodec(cname=self.cname, clevel=self.clevel,
                                       shuffle=self.shuffle),))

    def label(self) -> str:
        """What the store's ``codec`` attribute records."""
        chunk = f"chunk{self.chunk_images or 'shard'}"
        if self.cname == "none":
            return f"none-{chunk}"
        return f"blosc-{self.cname}-{self.clevel}-{self.shuffle}-{chunk}"

    def chunking(self, shard_images: int, item_shape: tuple[int, ...]) -> dict[str, Any]:
        """``create_array`` chunks/shards for ``shard_images`` items of ``item_shape``."""
        if not self.chunk_images or self.chunk_images >= shard_images:
            return {"chunks": (shard_images, *item_shape)}
        return {"chunks": (self.chunk_images, *item_shape), "shards": (shard_images, *item_shape)}


class VisualStoreWriter:
    """Create (or resume) a visual store and fill it shard by shard."""

    def __init__(
        self,
        path: StoreLocation | str,
        attrs: Mapping[str, Any],
        num_images: int,
        grid_size: tuple[int, int],
        feature_dim: int,
        label_size: tuple[int, int],
        shard_images: int = DEFAULT_SHARD_IMAGES,
        codec: StoreCodec = StoreCodec(),
        overwrite: bool = False,
    ) -> None:
        self.path = as_location(path)
        self.views = view_count(attrs)
        wanted = {
            **attrs,
            "format_version": FORMAT_VERSION,
            "kind": "visual",
            "num_images": num_images,
            "shard_images": shard_images,
            "dtype": "float16",
            "codec": codec.label(),
        }
        self.layout = ShardLayout.of(wanted)
        if overwrite and (isinstance(self.path, RemoteLocation) or self.path.exists()):
            remove(self.path)
        if store_exists(self.path):
            self.group = open_group(self.path, mode="r+")
            check_format(self.path, dict(self.group.attrs), "visual")
            found, asked = identity(dict(self.group.attrs)), identity(wanted)
            if found != asked:
                diff = sorted(k for k in set(found) | set(asked) if found.get(k) != asked.get(k))
                raise StoreError(
                    f"{self.path}: existing store was made with other settings "
                    f"({', '.join(diff)}); pass --overwrite to replace it"
                )
        else:
            self.group = self._create(wanted, grid_size, feature_dim, label_size, codec)

    def _create(self, attrs, grid_size, feature_dim, label_size, codec) -> zarr.Group:
        """Lay the empty store out beside ``path``, then publish it (rename, or upload with the
        root last): a run killed while creating leaves no half-made store behind (only a scratch
        folder, or objects without a root, cleared next run).
        """
        n, s = self.layout.total, self.layout.rows
        scratch = scratch_path(self.path)
        group = zarr.open_group(str(scratch), mode="w")
        h, w = grid_size
        group.create_array("patch_tokens", shape=(n, h, w, feature_dim), dtype="float16",
                           **codec.chunking(s, (h, w, feature_dim)),
                           compressors=codec.compressors(), fill_value=0)
        group.create_array("cls_token", shape=(n, feature_dim), dtype="float16",
                           chunks=(s, feature_dim), compressors=codec.compressors(), fill_value=0)
        group.create_array("labels", shape=(n, *label_size), dtype="uint8",
                           **codec.chunking(s, tuple(label_size)),  # label maps compress ~25x
                           compressors=checksummed((BloscCodec(cname="zstd", clevel=1,
                                                                shuffle="noshuffle"),)),
                           fill_value=255)
        for name in ITEM_ARRAYS if self.views else ():  # views 1..V: same codecs, view-major
            array = group[name]
            view_chunks = {k: (1, *v) for k, v in
                           codec.chunking(s, tuple(array.shape[1:])).items()}
            group.create_array(VIEW_PREFIX + name, shape=(self.views, *array.shape),
                               dtype=array.dtype, **view_chunks, compressors=array.compressors,
                               fill_value=array.fill_value)
        group.create_array("image_ids", shape=(n,), dtype=str, chunks=(s,),
                           compressors=checksummed())
        group.create_array("shard_done", shape=(self.num_shards,), dtype="bool",
                           chunks=(self.num_shards,), fill_value=False, compressors=checksummed())
        create_record_array(group, self.num_shards)
        group.attrs.put({**attrs, "complete": False})
        publish(scratch, self.path)
        return open_group(self.path, mode="r+")

    @property
    def num_shards(self) -> int:
        return self.layout.num_shards

    @property
    def num_images(self) -> int:
        return self.layout.total

    @property
    def shard_images(self) -> int:
        return self.layout.rows

    def shard_range(self, shard: int) -> range:
        return self.layout.shard_range(shard)

    def pending_shards(self) -> list[int]:
        """Shards still to write (all of them for a new store, none for a complete one)."""
        done = self.group["shard_done"][:]
        return [i for i in range(self.num_shards) if not done[i]]

    @property
    def complete(self) -> bool:
        return self.group.attrs.get("complete") is True

    @classmethod
    def reopen(cls, path: StoreLocation | str) -> VisualStoreWriter:
        """An existing store opened for shard writes only (a distributed worker's view).

        No creation and no settings check: the client that created the store did both.
        """
        self = cls.__new__(cls)
        self.path = as_location(path)
        self.group = open_group(self.path, mode="r+")
        self.layout = ShardLayout.of(self.group.attrs)
        self.views = view_count(self.group.attrs)
        return self

    def write_shard(self, shard: int, patch_tokens: np.ndarray, cls_token: np.ndarray,
                    labels: np.ndarray, image_ids: list[str],
                    views: Mapping[str, np.ndarray] | None = None) -> None:
        """Write one whole shard, then mark it done."""
        self.write_shard_data(shard, patch_tokens, cls_token, labels, image_ids, views)
        self.mark_done([shard])

    def write_shard_data(self, shard: int, patch_tokens: np.ndarray, cls_token: np.ndarray,
                         labels: np.ndarray, image_ids: list[str],
                         views: Mapping[str, np.ndarray] | None = None) -> None:
        """Write one whole shard's arrays, not its done flag (safe from concurrent writers of
        other shards: every array's chunks/shards are aligned to the store's shards).

        ``views``: item array name -> (views, rows, ...) of augmented views 1..views; required
        exactly when the store holds views.
        """
        rows = self.shard_range(shard)
        if patch_tokens.shape[0] != len(rows) or len(image_ids) != len(rows):
            raise ValueError(f"shard {shard} needs {len(rows)} rows, got {patch_tokens.shape[0]}")
        views = views or {}
        if set(views) != (set(ITEM_ARRAYS) if self.views else set()) or any(
                value.shape[:2] != (self.views, len(rows)) for value in views.values()):
            raise ValueError(f"shard {shard} needs {self.views} views of {len(rows)} rows")
        block = slice(rows.start, rows.stop)
        self.group["patch_tokens"][block] = patch_tokens.astype(np.float16)
        self.group["cls_token"][block] = cls_token.astype(np.float16)
        self.group["labels"][block] = labels
        for name, values in views.items():
            array = self.group[VIEW_PREFIX + name]
            array[:, block] = values.astype(array.dtype)
        self.group["image_ids"][block] = np.asarray(image_ids, dtype=object)

    def mark_done(self, shards: list[int]) -> None:
        """Record the digests of written shards, then flag them done (one writer only:
        ``shard_digest`` and ``shard_done`` are single chunks)."""
        record_shards(self.path, self.group, shards)
        done = self.group["shard_done"][:]
        done[list(shards)] = True
        self.group["shard_done"][:] = done

    def mark_pending(self, shards: list[int] | None) -> None:
        """Make ``shards`` (None: all) pending again, the store incomplete first (``repair``
        re-extracts them); an unreadable ``shard_done`` makes every shard pending."""
        self.group.attrs["complete"] = False
        try:
            done = self.group["shard_done"][:]
        except Exception:  # noqa: BLE001 - damaged flags: redo every shard
            done, shards = np.zeros(self.num_shards, dtype=bool), None
        done[list(range(self.num_shards)) if shards is None else list(shards)] = False
        self.group["shard_done"][:] = done
        clear_records(self.group, shards)

    def finalize(self) -> None:
        """Mark the store complete once every shard is written."""
        missing = self.pending_shards()
        if missing:
            raise StoreError(f"{self.path}: cannot finalize, shards {missing[:5]} not written")
        self.group.attrs["complete"] = True


def open_visual_store(path: StoreLocation | str,
                      expect: Mapping[str, Any] | None = None) -> zarr.Group:
    """A complete visual store, read-only; ``expect`` lists attributes it must have."""
    group = open_complete_group(path, "visual", expect)
    attrs = group.attrs
    n, grid, dim = attrs.get("num_images"), attrs.get("grid_size", ()), attrs.get("feature_dim")
    shapes = {"patch_tokens": (n, *grid, dim), "cls_token": (n, dim), "labels": (n, None, None)}
    views = view_count(attrs)
    check_shapes(path, group, {**shapes, "image_ids": (n,), **{
        VIEW_PREFIX + name: (views, *shape) for name, shape in shapes.items() if views}})
    check_token_files(as_location(path), group["patch_tokens"])
    if views:
        check_token_files(as_location(path), group[VIEW_PREFIX + "patch_tokens"])
    return group


def check_token_files(path: StoreLocation, tokens: zarr.Array) -> None:
    """``StoreError`` if a patch-token file of a complete store is gone: zarr would read the
    missing images as fill values (zeros) without a word. Features of a real or random encoder
    are never all zero, so every file was written."""
    per_file = tokens.shards or tokens.chunks
    expected = int(np.prod([-(-n // c) for n, c in zip(tokens.shape, per_file, strict=True)]))
    found = count_files(path / tokens.basename / "c")
    if found < expected:
        raise StoreError(f"{path}: {expected - found} of {expected} {tokens.basename} files are "
                         f"missing; {repair_hint(path)}")
