"""Checksums on every chunk and a digest per shard: what every store write records and every
store read checks (visual and text stores alike; writers and readers all come through here).

**Chunks.** Every array of every store ends its codec chain with zarr's ``crc32c`` codec
(``checksummed``): zarr appends the CRC-32C of a chunk's encoded bytes when it writes the chunk
and compares it whenever it reads it, so a flipped, truncated or zero-filled chunk fails to
decode. For arrays with zarr's sharding codec each inner chunk carries its own CRC, and the
shard index carries one too (zarr's default ``index_codecs``).

**Placement.** A whole chunk copied from another shard, or from another store of the same shape,
still has a valid CRC. So when a store shard is marked done its *record* is written into the
``shard_digest`` array: the CRC trailer of every chunk of that shard in every array (4 bytes per
chunk, read back from the store: no second hash of the data) and a sha256 *digest* over
(shard index, the shard's ids, those CRCs). Before serving a shard, a reader compares the CRC
trailers it finds with the record (a chunk missing, truncated, replaced or moved is caught here,
even one that zarr would silently read as fill values) and the ids with the digest.

A text store (one chunk per array) is one shard: shard 0, its ids are the class names.
Damage is reported as ``StoreDamage``: one line naming the store, the array, the shard and the
command that repairs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.abc.codec import BytesBytesCodec
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from pipeline.errors import StoreError, first_line
from pipeline.store.layout import ITEM_ARRAYS, VIEW_PREFIX, view_count
from pipeline.store.location import StoreLocation

CHECKSUM = Crc32cCodec()
DEFAULT_COMPRESSORS = (ZstdCodec(level=0, checksum=False),)  # zarr's own default, made explicit
DIGEST_ARRAY = "shard_digest"  # (num_shards,) str: each done shard's record (JSON)
_NO_CHUNK = 2**64 - 1  # a sharding index's offset/length of an inner chunk never written


def checksummed(compressors: Iterable[BytesBytesCodec] | None = DEFAULT_COMPRESSORS,
                ) -> tuple[BytesBytesCodec, ...]:
    """A codec chain's bytes-to-bytes part with the CRC-32C codec last (``compressors=``)."""
    return (*(compressors or ()), CHECKSUM)


def has_checksums(array: zarr.Array) -> bool:
    """Whether every chunk of ``array`` carries zarr's CRC-32C."""
    return any(isinstance(codec, Crc32cCodec) for codec in array.compressors)


def repair_hint(path: StoreLocation | str) -> str:
    return f"repair it with: fusioner-store verify --repair {path}"


class StoreDamage(StoreError):
    """A damaged chunk or shard: ``path``, ``array``, ``shard`` (None: every shard) and why."""

    def __init__(self, path: StoreLocation | str, array: str | None = None,
                 shard: int | None = None, reason: str = "") -> None:
        self.path, self.array, self.shard, self.reason = str(path), array or "", shard, reason
        if array is None:  # rebuilt from its message alone (unpickled, re-raised by a worker)
            super().__init__(str(path))
            return
        where = "every shard" if shard is None else f"shard {shard}"
        super().__init__(f"{path}: array {array}, {where} is damaged ({reason}); "
                         f"{repair_hint(path)}")


@dataclass(frozen=True)
class ShardLayout:
    """How a store's rows fall into shards: ``rows`` per shard, ``total`` rows, each checked
    array's row axis (``view_*`` arrays: axis 1), and the array naming the rows."""

    rows: int
    total: int
    axes: Mapping[str, int]
    ids: str

    @classmethod
    def of(cls, attrs: Mapping[str, Any]) -> ShardLayout:
        """The layout a store's root attributes describe (``StoreError`` if they do not)."""
        try:
            if attrs.get("kind") == "text":
                count = int(attrs["num_classes"])
                return cls(max(count, 1), count, {"class_names": 0, "embeddings": 0},
                           "class_names")
            axes = dict.fromkeys((*ITEM_ARRAYS, "image_ids"), 0)
            if view_count(attrs):
                axes.update(dict.fromkeys((VIEW_PREFIX + name for name in ITEM_ARRAYS), 1))
            rows = int(attrs["shard_images"])
            if rows < 1:
                raise ValueError(f"shard_images={rows}")
            return cls(rows, int(attrs["num_images"]), axes, "image_ids")
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise StoreError(f"store attributes do not describe its shards ({exc!r}); "
                             "re-extract it with --overwrite") from exc

    @property
    def num_shards(self) -> int:
        return -(-self.total // self.rows)

    def shard_range(self, shard: int) -> range:
        start = shard * self.rows
        return range(start, min(start + self.rows, self.total))

    def shards_between(self, start: int, stop: int) -> range:
        """The shards holding rows [start, stop)."""
        return range(start // self.rows, -(-stop // self.rows)) if stop > start else range(0)


def digest(shard: int, ids: list[str], crcs: Mapping[str, Any]) -> str:
    """sha256 over (shard index, its ids, its chunks' CRCs): what binds a shard to its place."""
    text = json.dumps([shard, ids, crcs], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class ShardChecker:
    """Checked access to one open store: rows are read shard by shard (zarr checks every chunk's
    CRC) and each shard's record is checked once per checker before its rows are served."""

    def __init__(self, path: StoreLocation | str, group: zarr.Group) -> None:
        self.path, self.group = path, group
        try:
            self.layout = ShardLayout.of(group.attrs)
        except StoreError as exc:
            raise StoreError(f"{path}: {exc}") from exc
        try:
            self.arrays = {name: group[name] for name in self.layout.axes}
        except (KeyError, ValueError, OSError) as exc:
            raise StoreError(f"{path}: an array is missing or unreadable ({first_line(exc)}); "
                             "re-extract it with --overwrite") from exc
        self._records: list[str] | None = None
        self._record_array: zarr.Array | None = None
        self._checked: set[int] = set()

    def recheck(self) -> None:
        """Forget which shards were checked: the next reads check their records again."""
        self._records, self._checked = None, set()

    def rows(self, name: str, start: int, stop: int, view: int | None = None) -> np.ndarray:
        """Rows [start, stop) of array ``name`` (of a ``view_`` array: position ``view``, or
        every view when None), read one shard per call; ``StoreDamage`` if any is damaged."""
        axis = self.layout.axes[name]

        def selection(part: slice) -> tuple:
            return (part,) if axis == 0 else (slice(None) if view is None else view, part)

        parts = []
        for shard in self.layout.shards_between(start, stop):
            self.check_shard(shard)
            rows = self.layout.shard_range(shard)
            part = slice(max(start, rows.start), min(stop, rows.stop))
            parts.append(self._read(name, shard, selection(part)))
        if not parts:  # no row asked for: an empty array of the right shape
            return np.asarray(self.arrays[name][selection(slice(start, start))])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis if view is None
                                                                  else 0)

    def read_shard(self, name: str, shard: int) -> np.ndarray:
        """Every row of ``shard`` in array ``name`` (all views), its record not checked
        (``verify`` checks records and data apart); ``StoreDamage`` if a chunk fails."""
        rows = self.layout.shard_range(shard)
        return self._read(name, shard, (slice(None),) * self.layout.axes[name]
                          + (slice(rows.start, rows.stop),))

    def _read(self, name: str, shard: int, selection: tuple) -> np.ndarray:
        try:
            return np.asarray(self.arrays[name][selection])
        except Exception as exc:  # noqa: BLE001 - a CRC mismatch or any decode failure
            raise StoreDamage(self.path, name, shard, _reason(exc)) from exc

    def check_shard(self, shard: int) -> None:
        """``StoreDamage`` unless every chunk of ``shard`` is the one recorded for it and its
        ids match its digest (checked once per checker)."""
        if shard in self._checked:
            return
        record = self.record(shard)
        found, ids = self.found(shard)
        for name, chunks in found.items():
            recorded = record["crc32c"].get(name, {})
            for key, crcs in chunks.items():
                if recorded.get(key) != crcs:
                    raise StoreDamage(self.path, name, shard, _misplaced(key, crcs))
        if digest(shard, ids, record["crc32c"]) != record["digest"]:
            raise StoreDamage(self.path, self.layout.ids, shard,
                              "its ids and chunks do not match the digest recorded for the shard")
        self._checked.add(shard)

    def record(self, shard: int) -> dict[str, Any]:
        """The record written when ``shard`` was marked done."""
        if self._records is None:
            try:
                if self._record_array is None:
                    self._record_array = self.group[DIGEST_ARRAY]
                self._records = [str(r) for r in self._record_array[:]]
            except Exception as exc:  # noqa: BLE001 - missing array or damaged chunk alike
                raise StoreDamage(self.path, DIGEST_ARRAY, None, _reason(exc)) from exc
        text = self._records[shard] if shard < len(self._records) else ""
        try:
            record = json.loads(text)
            if (isinstance(record["digest"], str) and isinstance(record["crc32c"], dict)
                    and all(isinstance(v, dict) for v in record["crc32c"].values())):
                return record
        except (ValueError, KeyError, TypeError):
            pass
        raise StoreDamage(self.path, DIGEST_ARRAY, shard, "no valid digest recorded for it")

    def make_record(self, shard: int) -> str:
        """The record of ``shard`` as it lies in the store now (JSON)."""
        crcs, ids = self.found(shard)
        return json.dumps({"crc32c": crcs, "digest": digest(shard, ids, crcs)}, sort_keys=True,
                          ensure_ascii=False)

    def found(self, shard: int) -> tuple[dict[str, dict[str, list[str | None]]], list[str]]:
        """(array -> chunk key -> the CRC trailers found in the store for ``shard`` (hex; None
        for a chunk that is not there), the shard's ids), fetched concurrently in one go."""
        wanted = [(name, key) for name, array in self.arrays.items()
                  for key in _chunk_keys(array, self.layout, name, shard)]
        rows = self.layout.shard_range(shard)
        ids_array = self.arrays[self.layout.ids].async_array

        async def ids() -> Any:
            try:
                return await ids_array.getitem(slice(rows.start, rows.stop))
            except Exception as exc:  # noqa: BLE001 - reported below, naming the array
                return exc

        async def fetch() -> list[Any]:
            return await asyncio.gather(ids(), *(_trailers(self.arrays[name], key)
                                                 for name, key in wanted))

        try:
            names, *trailers = sync(fetch())
        except Exception as exc:  # noqa: BLE001 - storage unreachable, denied, ...
            raise StoreError(f"{self.path}: cannot read the chunks of shard {shard} "
                             f"({type(exc).__name__}: {first_line(exc)})") from exc
        if isinstance(names, Exception):
            raise StoreDamage(self.path, self.layout.ids, shard, _reason(names)) from names
        found: dict[str, dict[str, list[str | None]]] = {name: {} for name in self.arrays}
        for (name, key), crcs in zip(wanted, trailers, strict=True):
            found[name][key] = crcs
        return found, [str(i) for i in np.asarray(names)]


def record_shards(path: StoreLocation | str, group: zarr.Group, shards: Iterable[int]) -> None:
    """Write the records of ``shards`` (their data already written) into ``shard_digest``
    (one writer: the array is a single chunk)."""
    checker = ShardChecker(path, group)
    records = group[DIGEST_ARRAY]
    values = np.asarray(records[:], dtype=object)
    for shard in shards:
        values[shard] = checker.make_record(shard)
    records[:] = values


def clear_records(group: zarr.Group, shards: Iterable[int] | None) -> None:
    """Forget the records of ``shards`` (None: all; an unreadable record array is replaced)."""
    records = group[DIGEST_ARRAY]
    try:
        values = np.asarray(records[:], dtype=object)
    except Exception:  # noqa: BLE001 - damaged: every shard is being redone anyway
        values = np.full(records.shape, "", dtype=object)
    values[list(range(len(values))) if shards is None else list(shards)] = ""
    records[:] = values


def create_record_array(group: zarr.Group, num_shards: int) -> None:
    """The empty ``shard_digest`` array of a new store."""
    group.create_array(DIGEST_ARRAY, shape=(num_shards,), dtype=str, chunks=(max(num_shards, 1),),
                       compressors=checksummed())


def _chunk_keys(array: zarr.Array, layout: ShardLayout, name: str, shard: int) -> list[str]:
    """Keys of the stored objects (chunks, or sharding-codec shards) holding ``shard``."""
    axis = layout.axes[name]
    per_object = array.shards or array.chunks
    grid = [range(-(-n // c)) for n, c in zip(array.shape, per_object, strict=True)]
    rows = layout.shard_range(shard)
    size = per_object[axis]
    grid[axis] = range(rows.start // size, -(-rows.stop // size))
    return [array.metadata.encode_chunk_key(coords) for coords in itertools.product(*grid)]


async def _trailers(array: zarr.Array, key: str) -> list[str | None]:
    """The CRC trailers of one stored object: ``[crc]`` for a chunk, ``[index crc, inner
    chunk crcs...]`` for a sharding-codec shard (None: not there, "unreadable": garbled)."""
    where = array.store_path / key
    buffers = default_buffer_prototype()
    if array.shards is None:
        tail = await where.get(buffers, SuffixByteRequest(4))
        return [None if tail is None else tail.to_bytes().hex()]
    inner = math.prod(s // c for s, c in zip(array.shards, array.chunks, strict=True))
    index = await where.get(buffers, SuffixByteRequest(16 * inner + 4))
    if index is None:
        return [None]
    raw = index.to_bytes()
    if len(raw) != 16 * inner + 4:
        return ["unreadable"]
    spans = np.frombuffer(raw[:-4], dtype="<u8").reshape(inner, 2)
    try:
        tails = await asyncio.gather(*(
            where.get(buffers, RangeByteRequest(int(start + length - 4), int(start + length)))
            for start, length in spans if start != _NO_CHUNK))
    except Exception:  # noqa: BLE001 - a garbled index points anywhere
        return [raw[-4:].hex(), "unreadable"]
    found = iter(tails)
    return [raw[-4:].hex(), *(None if start == _NO_CHUNK else _hex(next(found))
                              for start, _ in spans)]


def _hex(buffer: Any) -> str | None:
    return None if buffer is None else buffer.to_bytes().hex()


def _misplaced(key: str, crcs: list[str | None]) -> str:
    if crcs and crcs[0] is None:
        return f"chunk {key} is missing"
    return (f"chunk {key} is not the one written there: truncated, overwritten, or copied from "
            "another shard or store")


def _reason(exc: BaseException) -> str:
    text = first_line(exc)
    if "checksum do not match" in text:
        return "checksum mismatch: its bytes changed since they were written"
    return f"unreadable: {text}"
