"""Benchmark 2: the training read path vs the practical limit (a raw uncompressed .npy memmap).

Every row streams the same items through the training Dataset (``CachedFeatureDataset``'s
``__getitem__``: patch tokens + CLS token + label map, converted as training converts them) in a
shuffled order, from: the Zarr store under several codecs / shard sizes, raw ``.npy`` memmaps
of the same arrays, and HDF5 exports (``pipeline.store.hdf5_export``). Two orders: images
shuffled one by one (one read call per image and array), and block-shuffled as ``fusioner-fit``
reads by default (``BlockShuffleSampler``, shards shuffled and mixed 4 at a time; the Dataset
reads a whole shard per call and serves its images from memory). Each row is compared with the
memmap read in the same order. Throughput counts the
stored (decoded) bytes per item. "warm" = files in the page cache (the usual case: a store of
a few GB sits in RAM after the first epoch); "cold" = every file evicted from the page cache
(``posix_fadvise(DONTNEED)``) before each pass.

Run: ``python -m bench.read_path [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import zarr
from torch.utils.data import DataLoader

from bench.common import (
    BENCH_CACHE,
    MB,
    Table,
    dir_bytes,
    ensure_stores,
    median,
    rewrite_store,
    timed,
    train_store,
)
from pipeline.store import CachedFeatureDataset, loader_kwargs
from pipeline.store.blocks import BlockShuffleSampler
from pipeline.store.hdf5_export import export_visual_store_to_hdf5
from pipeline.store.layout import ITEM_ARRAYS
from pipeline.store.visual import StoreCodec

DEFAULT = StoreCodec()
CODECS = [  # features: default / raw / fast / strong codec, one chunk per shard or per image
    StoreCodec(chunk_images=chunk, **codec)
    for codec in ({}, {"cname": "blosclz", "clevel": 1},
                  {"cname": "lz4", "clevel": 1, "shuffle": "bitshuffle"},
                  {"cname": "zstd", "clevel": 1, "shuffle": "bitshuffle"})
    for chunk in (0, 1)
]
SHARD_SIZES = (8, 32, 128)
CHUNK_IMAGES = (1, 2, 4)
MIX = 4  # shards mixed per shuffle window (the FitConfig default)
ORDERS = ("per image", "shard reads")


def open_npy(folder: str) -> dict[str, np.ndarray]:
    return {name: np.load(Path(folder) / f"{name}.npy", mmap_mode="r") for name in ITEM_ARRAYS}


def open_hdf5(path: str) -> Mapping[str, Any]:
    return h5py.File(path, "r")


class ArrayFeatures(CachedFeatureDataset):
    """The training Dataset's items (same ``__getitem__``) from another container: ``opener()``
    returns name -> array (npy memmaps, an HDF5 file, unchecked zarr arrays), opened lazily in
    each process and read as they are (no shard records checked). ``shard_reads``: read whole
    shards when block-shuffled, as the store's reader does (memmap/HDF5: per image, their
    per-call cost is small)."""

    def __init__(self, opener: Callable[[], Mapping[str, Any]], num_images: int,
                 shard_reads: bool = False) -> None:
        self.path, self.attrs, self.indices = Path("."), {}, list(range(num_images))
        self.block_images, self.cache_blocks, self._blocks = 32, 0, OrderedDict()
        self.opener, self._arrays, self._pid, self._checker = opener, None, None, None
        self.views, self.shard_reads = 0, shard_reads

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_arrays": None}

    def rows(self, name: str, start: int, stop: int, view: int = 0) -> np.ndarray:
        if self._arrays is None or self._pid != os.getpid():
            self._arrays, self._pid = self.opener(), os.getpid()
        return np.asarray(self._arrays[name][start:stop])


def item_bytes(store: Path) -> int:
    """Stored (decoded) bytes of one item: tokens + CLS + label map."""
    group = zarr.open_group(str(store), mode="r")
    return sum(int(np.prod(group[n].shape[1:])) * group[n].dtype.itemsize for n in ITEM_ARRAYS)


def evict(path: Path) -> None:
    """Drop a file's (or folder's) pages from the page cache (no root needed)."""
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def stream(dataset: CachedFeatureDataset, order: Iterable[int]) -> None:
    for item in order:
        dataset[int(item)]


def block_reader(dataset: CachedFeatureDataset) -> CachedFeatureDataset:
    """The same Dataset reading whole shards (``MIX`` kept), as ``fusioner-fit`` does."""
    # memmap/HDF5 rows keep reading per image (cheap calls)
    per_image = isinstance(dataset, ArrayFeatures) and not dataset.shard_reads
    return dataset.with_block_cache(0 if per_image else MIX)


def shuffled(dataset: CachedFeatureDataset, order: str, epoch: int) -> list[int]:
    """A fresh pass order: images shuffled one by one, or block-shuffled (``MIX`` shards)."""
    if order == "per image":
        return np.random.default_rng(epoch).permutation(len(dataset)).tolist()
    blocks = [dataset.block_of(i) for i in range(len(dataset))]
    sampler = BlockShuffleSampler(blocks, MIX, seed=0)
    sampler.set_epoch(epoch)
    return list(sampler)


def measure(dataset: CachedFeatureDataset, path: Path, repeats: int, cold: bool,
            order: str = "per image") -> float:
    """Median seconds of one shuffled pass over ``dataset`` (a fresh order each pass)."""
    reader = dataset if order == "per image" else block_reader(dataset)
    epochs = iter(range(repeats + 1))
    return median(timed(lambda: read_pass(reader, path, cold, order, next(epochs)), repeats))


def read_pass(reader: CachedFeatureDataset, path: Path, cold: bool, order: str,
              epoch: int, recheck: bool = False) -> None:
    """One shuffled pass of ``reader`` (already ``block_reader``'d for shard reads);
    ``recheck``: its shards' records are checked again, as in a fresh process."""
    reader.clear_block_cache(recheck)  # every shard is read in each pass
    if cold:
        evict(path)
    stream(reader, shuffled(reader, order, epoch))


def zarr_label(codec: StoreCodec, shard: int) -> str:
    default = " (default)" if codec == DEFAULT and shard == 32 else ""
    return f"zarr {codec.label()}, shard {shard}{default}"


def build_variants(source: Path, work: Path, n_images: int) -> dict[str, tuple[Path, Any]]:
    """label -> (path on disk, Dataset) for every container compared; written once per run."""
    rows = np.arange(n_images) % zarr.open_group(str(source), mode="r").attrs["num_images"]
    variants: dict[str, tuple[Path, Any]] = {}
    base = rewrite_store(source, work / "default.zarr", rows)
    raw = work / "npy"
    raw.mkdir(parents=True, exist_ok=True)
    group = zarr.open_group(str(base), mode="r")
    for name in ITEM_ARRAYS:
        np.save(raw / f"{name}.npy", np.asarray(group[name][:]))
    variants["npy memmap (limit)"] = (raw, ArrayFeatures(
        functools.partial(open_npy, str(raw)), n_images))
    for codec in CODECS:
        path = work / f"{codec.label()}.zarr"
        rewrite_store(base, path, np.arange(n_images), codec)
        variants[zarr_label(codec, 32)] = (path, CachedFeatureDataset(path))
    for shard in SHARD_SIZES:
        if shard != 32:
            path = rewrite_store(base, work / f"shard{shard}.zarr", np.arange(n_images), DEFAULT,
                                 shard)
            variants[zarr_label(DEFAULT, shard)] = (path, CachedFeatureDataset(path))
    for compression, opts in ((None, None), ("lzf", None), ("gzip", 1)):
        h5 = export_visual_store_to_hdf5(base, work / f"h5-{compression}.h5", compression, opts)
        label = f"hdf5 {compression or 'raw'}{'-' + str(opts) if opts else ''}, chunk 1 image"
        variants[label] = (h5, ArrayFeatures(functools.partial(open_hdf5, str(h5)), n_images))
    return variants


def granularity_table(base: Path, work: Path, repeats: int) -> Table:
    """Patch tokens alone: one image per call (chunk = 1, 2, 4 images inside 32-image shards,
    shuffled) vs one shard per call vs the whole array in one call; each against the memmap."""
    tokens = np.asarray(zarr.open_group(str(base), mode="r")["patch_tokens"][:])
    memmap = np.load(work / "npy" / "patch_tokens.npy", mmap_mode="r")
    order = np.random.default_rng(0).permutation(tokens.shape[0])
    nbytes = tokens.nbytes
    limit = median(timed(lambda: [np.asarray(memmap[i], np.float32) for i in order], repeats))
    codec = StoreCodec("zstd", 1, "bitshuffle")
    table = Table("Read path: access granularity (patch_tokens only, warm cache, to float32)",
                  ["zarr access", "MB/s", "vs memmap per image"],
                  notes=[f"memmap, one shuffled image per call: {nbytes / MB / limit:.0f} MB/s; "
                         f"zarr blosc {codec.cname}-{codec.clevel} {codec.shuffle}, "
                         "shard 32 images"])
    for k in CHUNK_IMAGES:
        path = work / f"chunk{k}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        array = zarr.create_array(str(path), shape=tokens.shape, dtype="float16",
                                  chunks=(k, *tokens.shape[1:]), shards=(32, *tokens.shape[1:]),
                                  compressors=codec.compressors())
        array[:] = tokens
        seconds = median(timed(lambda a=array: [np.asarray(a[i], np.float32) for i in order],
                               repeats))
        table.add(f"1 shuffled image per call, chunk {k} image(s)", nbytes / MB / seconds,
                  limit / seconds)
    array = zarr.open_array(str(work / "chunk1.zarr"), mode="r")
    shards = range(0, tokens.shape[0], 32)
    seconds = median(timed(lambda: [np.asarray(array[s:s + 32], np.float32) for s in shards],
                           repeats))
    table.add("1 shard (32 images) per call, chunk 1", nbytes / MB / seconds, limit / seconds)
    seconds = median(timed(lambda: np.asarray(array[:], np.float32), repeats))
    table.add("whole array in one call, chunk 1", nbytes / MB / seconds, limit / seconds)
    return table


def loader_table(variants: dict[str, tuple[Path, Any]], keys: list[str], n_images: int,
                 per_item: int, repeats: int, batch_size: int = 8) -> Table:
    """The same reads through a DataLoader (batch 8, shuffled), 0 vs 2 spawn workers, images
    shuffled one by one vs block-shuffled (the fit default)."""
    table = Table(f"Read path through the DataLoader (batch {batch_size}, shuffled, warm cache)",
                  ["container", "read order", "workers", "MB/s", "items/s", "vs memmap"])
    for order in ORDERS:
        for workers in (0, 2):
            limit = 0.0
            for key in keys:  # the memmap first
                dataset = variants[key][1]
                seconds = median([loader_pass(dataset, order, workers, batch_size, epoch)
                                  for epoch in range(repeats)])
                items = n_images - batch_size * max(workers, 1)  # first batches not timed
                limit = limit or seconds
                table.add(key, order, workers, items * per_item / MB / seconds,
                          items / seconds, limit / seconds)
    return table


def loader_pass(dataset: CachedFeatureDataset, order: str, workers: int, batch_size: int,
                epoch: int) -> float:
    """Seconds from each worker's first batch to the end of one pass of a fresh DataLoader
    (fresh workers and shard caches; their start-up is not counted)."""
    reader = dataset if order == "per image" else block_reader(dataset)
    loader = DataLoader(reader, batch_size=batch_size, sampler=shuffled(reader, order, epoch),
                        **{**loader_kwargs(workers), "persistent_workers": False})
    batches = iter(loader)
    for _ in range(max(workers, 1)):  # one batch from each worker: all of them have started
        next(batches)
    tick = time.perf_counter()
    for _ in batches:
        pass
    return time.perf_counter() - tick


def run(quick: bool = False, work: Path = BENCH_CACHE / "read_path") -> list[Table]:
    n_images, repeats = (128, 3) if quick else (256, 5)
    source = train_store(ensure_stores(64))
    shutil.rmtree(work, ignore_errors=True)
    variants = build_variants(source, work, n_images)
    per_item = item_bytes(variants[zarr_label(DEFAULT, 32)][0])
    raw_size = per_item * n_images
    results = {}
    for order in ORDERS:
        for cold in (False, True):
            for label, (path, dataset) in variants.items():
                results[label, order, cold] = measure(dataset, path, repeats, cold, order)
    table = Table(
        f"Read path: training Dataset items, {n_images} images x {per_item / 1e3:.0f} kB, "
        "shuffled, main process", ["container", "read order", "size MB", "ratio", "warm MB/s",
                                   "warm vs memmap", "cold MB/s", "cold vs memmap"],
        notes=["ratio = raw f16 bytes / bytes on disk; vs memmap = throughput / memmap's in the "
               "same order (same run, median of repeats)",
               f"shard reads: block-shuffled order (mix {MIX}); Zarr reads a whole shard per call, "
               "memmap/HDF5 still read per image (their per-call cost is small)"])
    for order in ORDERS:
        limit = {cold: results["npy memmap (limit)", order, cold] for cold in (False, True)}
        for label, (path, _) in variants.items():
            warm, cold = results[label, order, False], results[label, order, True]
            table.add(label, order, dir_bytes(path) / MB, raw_size / dir_bytes(path),
                      raw_size / MB / warm, limit[False] / warm, raw_size / MB / cold,
                      limit[True] / cold)
    tables = [table, granularity_table(work / "default.zarr", work, repeats)]
    keys = ["npy memmap (limit)", zarr_label(DEFAULT, 32),
            zarr_label(StoreCodec("zstd", 1, "bitshuffle", 1), 32)]
    tables.append(loader_table(variants, keys, n_images, per_item, repeats))
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    for table in run(parser.parse_args().quick):
        print(table.render(), end="\n\n")


if __name__ == "__main__":
    main()
