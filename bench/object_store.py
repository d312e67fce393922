"""Benchmark 6: the training Dataset reading from an S3 endpoint against the local disk.

The same images (the default encoder's CamVid store, repeated to ``n`` images) are written by
the pipeline's own writer to a local folder and to S3 with several shard sizes, then streamed
through ``CachedFeatureDataset`` in ``fusioner-fit``'s default block-shuffled order (shards
shuffled, mixed ``MIX`` at a time, one read call per array per shard) in the main process.
The endpoint is moto's S3 server in a separate process on
127.0.0.1 (no network here): its per-request cost is Python's HTTP stack, not a data centre's
first-byte latency, so the table also states the measured latency of one small GET.

Run: ``python -m bench.object_store [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zarr

from bench.common import MB, Table, ensure_stores, median, rewrite_store, timed, train_store
from bench.read_path import item_bytes
from pipeline.store import CachedFeatureDataset, RemoteLocation
from pipeline.store.blocks import BlockShuffleSampler

MIX = 4  # fusioner-fit's default --block-mix
SHARD_SIZES = (8, 32, 128)
BUCKET = "bench"


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server in its own process on a free loopback port; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()  # noqa: S310
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait()


def one_pass(dataset: CachedFeatureDataset, epoch: int) -> None:
    """Every item once, block-shuffled as ``fusioner-fit`` reads; no shard kept from before."""
    reader = dataset.with_block_cache(MIX)
    sampler = BlockShuffleSampler([reader.block_of(i) for i in range(len(reader))], MIX, seed=0)
    sampler.set_epoch(epoch)
    for index in sampler:
        reader[index]


def seconds_per_pass(dataset: CachedFeatureDataset, repeats: int) -> float:
    epochs = iter(range(repeats + 1))
    return median(timed(lambda: one_pass(dataset, next(epochs)), repeats))


def request_latency(location: RemoteLocation, repeats: int = 50) -> float:
    """Median seconds of one GET of a small object (the store's root ``zarr.json``)."""
    fs, path = location.filesystem()
    return median(timed(lambda: fs.cat_file(f"{path}/zarr.json"), repeats))


def run(quick: bool = False) -> list[Table]:
    n_images, repeats = (128, 2) if quick else (256, 3)
    source = train_store(ensure_stores(64))
    rows = np.arange(n_images) % zarr.open_group(str(source), mode="r").attrs["num_images"]
    work = Path(tempfile.mkdtemp(prefix="fusioner-bench-s3-"))
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    os.environ.update(env)  # DataLoader workers inherit it
    with s3_server() as url:
        options = {"endpoint_url": url}
        fs = RemoteLocation(f"s3://{BUCKET}", options).filesystem()[0]
        fs.mkdir(BUCKET)
        local = CachedFeatureDataset(rewrite_store(source, work / "local.zarr", rows))
        size = item_bytes(local.path)  # type: ignore[arg-type]
        table = Table(f"Object store: training Dataset reads, {n_images} images x "
                      f"{size / 1e3:.0f} kB, block-shuffled (mix {MIX}), S3 (moto, loopback) "
                      "vs local disk (warm)",
                      ["store", "shard (tokens+CLS+labels)", "GETs per pass", "s per pass",
                       "MB/s", "vs local"])
        base = seconds_per_pass(local, repeats)
        total = size * n_images / MB
        table.add("local disk, shard 32 (default)", f"{size * 32 / MB:.1f} MB", "-", base,
                  total / base, 1.0)
        latency = 0.0
        for shard in SHARD_SIZES:
            where = RemoteLocation(f"s3://{BUCKET}/shard{shard}.zarr", options)
            rewrite_store(source, where, rows, shard_images=shard)  # type: ignore[arg-type]
            remote = CachedFeatureDataset(where)
            latency = latency or request_latency(where)
            seconds = seconds_per_pass(remote, repeats)
            table.add(f"S3, shard {shard}{' (default)' if shard == 32 else ''}",
                      f"{size * shard / MB:.1f} MB", 3 * -(-n_images // shard), seconds,
                      total / seconds, base / seconds)
        table.notes.append(f"one small GET on this endpoint: {latency * 1e3:.1f} ms median; "
                           "a pass reads 3 objects per shard (tokens, CLS, labels)")
    shutil.rmtree(work, ignore_errors=True)
    return [table]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 images, 2 repeats")
    args = parser.parse_args()
    for table in run(args.quick):
        print(table.render(), end="\n\n")


if __name__ == "__main__":
    main()

