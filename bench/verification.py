"""Benchmark 8: what verifying every read costs on the read path, against the memmap limit.

The same CamVid items stream through the training Dataset in the order ``fusioner-fit`` reads
them (block-shuffled, whole shards, ``MIX`` mixed; also one image per call) from: raw ``.npy``
memmaps (the limit), the default Zarr store framed as before checksums and read without any
check ("unverified": no CRC codec, no shard record), and the same store as the pipeline writes
and reads it ("verified": zarr checks the CRC-32C of every chunk it decodes; the reader checks
each shard's record - CRC trailers and digest - the first time a process reads the shard, as
``fusioner-fit`` and its DataLoader workers do). A last row re-checks every shard's record in
every pass (what a fresh process pays on its first epoch). Passes of the containers alternate,
round after round, so load on the machine hits them alike; the cost is the median over rounds of
1 - verified / unverified throughput. Target: verification costs at most 10% of read
throughput on the memmap-limited path (shard reads).

Run: ``python -m bench.verification [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import time
from pathlib import Path

import numpy as np
import zarr

from bench.common import (
    BENCH_CACHE,
    MB,
    Table,
    ensure_stores,
    median,
    rewrite_store,
    train_store,
)
from bench.read_path import (
    MIX,
    ORDERS,
    ArrayFeatures,
    block_reader,
    item_bytes,
    open_npy,
    read_pass,
)
from pipeline.store import CachedFeatureDataset
from pipeline.store.integrity import DIGEST_ARRAY
from pipeline.store.layout import ITEM_ARRAYS
from pipeline.store.upgrade import copy_array

LIMIT, UNVERIFIED, VERIFIED, RECHECKED = (
    "npy memmap (limit)", "zarr default, unverified", "zarr default, verified (the pipeline's "
    "reader)", "zarr default, verified, records re-checked every pass")
TARGET = 0.10


def without_checksums(store: Path, out: Path) -> Path:
    """``store`` with its CRC codec and shard records stripped (the framing before them)."""
    source, target = zarr.open_group(str(store), mode="r"), zarr.open_group(str(out), mode="w")
    for name, array in source.arrays():
        if name != DIGEST_ARRAY:
            copy_array(array, target, name, array.compressors[:-1], 0,
                       int(source.attrs["shard_images"]))
    target.attrs.put(dict(source.attrs))
    return out


def open_zarr(path: str) -> dict[str, zarr.Array]:
    group = zarr.open_group(path, mode="r")
    return {name: group[name] for name in (*ITEM_ARRAYS, "image_ids")}


Variant = tuple[Path, CachedFeatureDataset, bool]  # files, Dataset, records re-checked per pass


def readers(work: Path, n_images: int) -> dict[str, Variant]:
    """label -> variant of each container, written once per run."""
    source = train_store(ensure_stores(64))
    rows = np.arange(n_images) % zarr.open_group(str(source), mode="r").attrs["num_images"]
    verified = rewrite_store(source, work / "verified.zarr", rows)
    unverified = without_checksums(verified, work / "unverified.zarr")
    raw = work / "npy"
    raw.mkdir(parents=True, exist_ok=True)
    group = zarr.open_group(str(verified), mode="r")
    for name in ITEM_ARRAYS:
        np.save(raw / f"{name}.npy", np.asarray(group[name][:]))
    return {
        LIMIT: (raw, ArrayFeatures(functools.partial(open_npy, str(raw)), n_images), False),
        UNVERIFIED: (unverified, ArrayFeatures(functools.partial(open_zarr, str(unverified)),
                                               n_images, shard_reads=True), False),
        VERIFIED: (verified, CachedFeatureDataset(verified), False),
        RECHECKED: (verified, CachedFeatureDataset(verified), True),
    }


def rounds_of(variants: dict[str, Variant], order: str, cold: bool,
              rounds: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per pass of each variant, ``rounds`` rounds of one pass each (after
    one untimed round). CPU = this process's time, zarr's I/O thread included: less disturbed
    by other work on the machine than the wall clock."""
    passes = {label: (path, dataset if order == "per image" else block_reader(dataset), again)
              for label, (path, dataset, again) in variants.items()}
    seconds: dict[str, list[tuple[float, float]]] = {label: [] for label in variants}
    for epoch in range(rounds + 1):
        for label, (path, reader, again) in passes.items():
            wall, cpu = time.perf_counter(), time.process_time()
            read_pass(reader, path, cold, order, epoch, again)
            if epoch:
                seconds[label].append((time.perf_counter() - wall, time.process_time() - cpu))
    return seconds


def cost_of(seconds: dict[str, list[tuple[float, float]]], label: str, clock: int) -> float:
    """Median over rounds of 1 - ``label``'s throughput / the unverified store's, by the wall
    (``clock`` 0) or CPU (1) clock."""
    return median([1 - u[clock] / v[clock]
                   for u, v in zip(seconds[UNVERIFIED], seconds[label], strict=True)])


def run(quick: bool = False, work: Path = BENCH_CACHE / "verification") -> list[Table]:
    n_images, rounds = (128, 5) if quick else (256, 11)
    shutil.rmtree(work, ignore_errors=True)
    variants = readers(work, n_images)
    per_item = item_bytes(variants[VERIFIED][0])
    total = per_item * n_images / MB
    table = Table(f"Verification cost: training Dataset items, {n_images} images x "
                  f"{per_item / 1e3:.0f} kB, shuffled, main process",
                  ["container", "read order", "cache", "MB/s", "vs memmap",
                   "cost vs unverified", "CPU cost vs unverified"],
                  notes=[f"shard reads: block-shuffled (mix {MIX}), one Zarr call per shard and "
                         "array; per image: one call per image and array (memmap: per image "
                         "in both)",
                         f"median of {rounds} alternating rounds; cost = 1 - verified / "
                         "unverified throughput (wall clock; CPU: process time), median of the "
                         f"per-round ratios; target <= {TARGET:.0%} on the memmap-limited path "
                         "(shard reads)"])
    for order in reversed(ORDERS):  # shard reads (fit's default) first
        for cold in (False, True):
            seconds = rounds_of(variants, order, cold, rounds)
            limit = median([wall for wall, _ in seconds[LIMIT]])
            for label in variants:
                wall = median([taken for taken, _ in seconds[label]])
                costs = ["-", "-"] if label in (LIMIT, UNVERIFIED) else [
                    f"{cost_of(seconds, label, clock):+.1%}" for clock in (0, 1)]
                table.add(label, order, "cold" if cold else "warm", total / wall, limit / wall,
                          *costs)
    shutil.rmtree(work, ignore_errors=True)
    return [table]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds")
    for table in run(parser.parse_args().quick):
        print(table.render(), end="\n\n")


if __name__ == "__main__":
    main()
