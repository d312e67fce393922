"""Real stores written by the real extractor on a tiny CamVid, and the damage done to them.

``extract_cache`` runs ``fusioner-extract`` (random-init DINO ViT-S/16 at 64x80, MiniLM text, 2
images per shard, one augmented view of the train split): 5 images a split make shards 0-2.
The damage helpers edit one stored object (a chunk file, or an S3 object through fsspec) in
ways a disk, a copy tool or a person can: flip bytes, swap, copy in a foreign chunk, truncate,
delete, zero-fill.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from click.testing import CliRunner

from pipeline.store.integrity import DIGEST_ARRAY
from pipeline.store.upgrade import copy_array
from stages.extract import main as extract_main

VISUAL, TEXT, DATASET = "dino_vits16", "minilm_l6", "camvid"
EXTRACT = ["--backbone", VISUAL, "--random-init", "--image-size", "64x80", "--shard-images", "2",
           "--batch-size", "2", "--device", "cpu", "--no-progress"]
IMAGES = 5  # per split: shards 0, 1 (2 images each) and 2 (1 image)


def extract_cache(camvid: Path, cache: str | Path, *extra: str) -> None:
    """Visual stores (train with 1 view, val) and the text store, as the CLI writes them."""
    result = CliRunner().invoke(extract_main, [
        *EXTRACT, "--text-encoder", TEXT, "--data-root", str(camvid), "--cache-dir", str(cache),
        "--views", "1", "--views-split", "train", *extra])
    assert result.exit_code == 0, result.output


def visual_store(cache: Path | str, split: str) -> str:
    return f"{cache}/visual/{VISUAL}/{DATASET}-{split}.zarr"


def text_store(cache: Path | str) -> str:
    return f"{cache}/text/{TEXT}/{DATASET}.zarr"


@dataclass(frozen=True)
class Objects:
    """Read and write a store's objects by key (a folder on disk, or an fsspec prefix)."""

    root: str
    fs: object | None = None  # None: the local disk

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def read(self, key: str) -> bytes:
        if self.fs is None:
            return Path(self.path(key)).read_bytes()
        return bytes(self.fs.cat_file(self.path(key)))  # type: ignore[attr-defined]

    def write(self, key: str, data: bytes) -> None:
        if self.fs is None:
            Path(self.path(key)).write_bytes(data)
        else:
            self.fs.pipe_file(self.path(key), data)  # type: ignore[attr-defined]

    def delete(self, key: str) -> None:
        if self.fs is None:
            Path(self.path(key)).unlink()
        else:
            self.fs.rm(self.path(key))  # type: ignore[attr-defined]


def flip(store: Objects, key: str, at: float = 0.5, count: int = 8) -> None:
    """Invert ``count`` bytes at fraction ``at`` of the object (its length is kept)."""
    data = bytearray(store.read(key))
    start = min(int(len(data) * at), len(data) - count - 4)
    for i in range(start, start + count):
        data[i] ^= 0xFF
    store.write(key, bytes(data))


def swap(store: Objects, key: str, other: str) -> None:
    a, b = store.read(key), store.read(other)
    store.write(key, b)
    store.write(other, a)


def truncate(store: Objects, key: str) -> None:
    store.write(key, store.read(key)[: len(store.read(key)) // 2])


def zero_fill(store: Objects, key: str) -> None:
    store.write(key, bytes(len(store.read(key))))


Damage = Callable[[Objects, Objects], None]  # (the store, the same split of another store)


def to_format_v1(store: Path) -> None:
    """Rewrite a store as the previous format wrote it: no CRC codec, no shard records,
    ``format_version`` 1 (what every store made before checksums looks like)."""
    group = zarr.open_group(str(store), mode="r")
    old = store.with_name(store.name + ".v1")
    out = zarr.open_group(str(old), mode="w")
    for name, array in group.arrays():
        if name != DIGEST_ARRAY:
            copy_array(array, out, name, array.compressors[:-1])  # the CRC codec is last
    out.attrs.put({**dict(group.attrs), "format_version": 1})
    shutil.rmtree(store)
    old.rename(store)


def decoded(store: Path | str) -> dict[str, np.ndarray]:
    """Every array of a store, decoded (what readers see), without the shard records."""
    group = zarr.open_group(str(store), mode="r")
    return {name: np.asarray(array[...]) for name, array in group.arrays()
            if name != DIGEST_ARRAY}
