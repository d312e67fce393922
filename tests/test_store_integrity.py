"""The store's own checks, unit by unit: a CRC-32C codec on every chunk of every array (sharded
arrays included), a record per shard, older stores refused with the upgrade hint and upgraded
to identical decoded arrays, damage unwrapped from a DataLoader worker into one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from torch.utils.data import DataLoader
from zarr.codecs import Crc32cCodec, ShardingCodec

from pipeline.errors import StoreError, one_line
from pipeline.store import (
    CachedFeatureDataset,
    VisualStoreWriter,
    loader_kwargs,
    open_visual_store,
    read_text_store,
)
from pipeline.store.integrity import DIGEST_ARRAY, ShardChecker, StoreDamage, digest
from pipeline.store.verify import find_stores, verify_store
from pipeline.store.visual import StoreCodec
from stages.store import main as store_main
from tests.store_faults import Objects, decoded, flip, swap, to_format_v1
from tests.tally import expect_one_line_error

ATTRS = {"encoder": "dino_vits16", "weights_sha256": "abc", "image_size": [32, 48],
         "grid_size": [2, 3], "feature_dim": 8, "dataset": "toy", "split": "train"}


def _write(path: Path, codec: StoreCodec, num: int = 6) -> None:
    """A complete store of ``num`` images, 2 per shard."""
    rng = np.random.default_rng(0)
    writer = VisualStoreWriter(path, ATTRS, num, (2, 3), 8, (4, 6), shard_images=2, codec=codec)
    for shard in writer.pending_shards():
        rows = writer.shard_range(shard)
        n = len(rows)
        writer.write_shard(shard, rng.normal(size=(n, 2, 3, 8)), rng.normal(size=(n, 8)),
                           rng.integers(0, 4, size=(n, 4, 6)).astype(np.uint8),
                           [f"img{i}" for i in rows])
    writer.finalize()


def test_every_chunk_of_every_array_carries_a_crc_and_every_shard_a_record(
        make_stores, tmp_path: Path) -> None:
    stores = make_stores(tmp_path, views=1)
    for path in (stores.visual_paths["train"], stores.text_path):
        group = zarr.open_group(str(path), mode="r")
        assert group.attrs["format_version"] == 2
        for name, array in group.arrays():
            assert isinstance(array.compressors[-1], Crc32cCodec), (path, name)
        checker = ShardChecker(path, group)
        records = [json.loads(r) for r in group[DIGEST_ARRAY][:]]
        assert len(records) == checker.layout.num_shards
        for shard, record in enumerate(records):
            crcs, ids = checker.found(shard)
            assert record == {"crc32c": crcs, "digest": digest(shard, ids, crcs)}
    assert verify_store(stores.visual_paths["train"]) == []


def test_a_sharded_store_has_crcs_inside_and_catches_damage(tmp_path: Path) -> None:
    """StoreCodec(chunk_images=1): zarr's sharding codec, a CRC per inner chunk and one on the
    shard index; flipped bytes and swapped shard files are both named."""
    path = tmp_path / "s.zarr"
    _write(path, StoreCodec(chunk_images=1))
    tokens = zarr.open_group(str(path), mode="r")["patch_tokens"]
    sharding = tokens.metadata.codecs[0]
    assert isinstance(sharding, ShardingCodec)
    assert isinstance(sharding.codecs[-1], Crc32cCodec)
    assert isinstance(sharding.index_codecs[-1], Crc32cCodec)
    store = Objects(str(path))
    flip(store, "patch_tokens/c/1/0/0/0", at=0.2)
    with pytest.raises(StoreDamage, match="array patch_tokens, shard 1 .*checksum mismatch"):
        CachedFeatureDataset(path, cache_blocks=1)[2]
    shutil.rmtree(path)
    _write(path, StoreCodec(chunk_images=1))
    swap(store, "labels/c/0/0/0", "labels/c/2/0/0")  # whole shard files, valid CRCs inside
    with pytest.raises(StoreDamage, match="array labels, shard 0 .*not the one written"):
        CachedFeatureDataset(path)  # placement is checked up front
    assert [(f.array, f.shard) for f in verify_store(path)] == [("labels", 0), ("labels", 2)]


def test_older_stores_are_refused_then_upgraded_to_identical_arrays(make_stores,
                                                                      tmp_path: Path) -> None:
    stores = make_stores(tmp_path, views=1)
    visual, text = stores.visual_paths["train"], stores.text_path
    for path in (visual, stores.visual_paths["val"], text):
        to_format_v1(path)
    before = {path: decoded(path) for path in (visual, text)}
    hint = f"fusioner-store upgrade {visual}"
    with pytest.raises(StoreError, match=hint):
        open_visual_store(visual)
    with pytest.raises(StoreError, match=hint):  # nor resumed by a writer
        VisualStoreWriter(visual, ATTRS, 8, (4, 5), 16, (32, 40), shard_images=4)
    with pytest.raises(StoreError, match="fusioner-store upgrade"):
        read_text_store(text)
    assert {f.fix for f in verify_store(visual)} == {"upgrade"}

    result = CliRunner().invoke(store_main, ["upgrade", str(stores.cache_dir)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("upgraded to format v2") == 3
    for path, arrays in before.items():
        after = decoded(path)
        assert after.keys() == arrays.keys()
        assert all(np.array_equal(after[name], arrays[name]) for name in arrays), path
        assert verify_store(path) == []
    again = CliRunner().invoke(store_main, ["upgrade", str(visual)])
    assert again.exit_code == 0 and "already format v2" in again.stdout
    assert len(CachedFeatureDataset(visual)) == 8


def test_verify_finds_the_stores_under_a_cache_and_refuses_nothing_there(
        make_stores, tmp_path: Path) -> None:
    stores = make_stores(tmp_path)
    assert set(find_stores(stores.cache_dir)) == {*stores.visual_paths.values(), stores.text_path}
    ok = CliRunner().invoke(store_main, ["verify", str(stores.cache_dir)])
    assert ok.exit_code == 0 and "verified 3 store(s): every chunk" in ok.stdout
    empty = CliRunner().invoke(store_main, ["verify", str(tmp_path / "nothing")])
    expect_one_line_error(empty.exit_code, empty.stderr, "no store there")


def test_damage_met_in_a_dataloader_worker_is_the_store_line(make_stores,
                                                              tmp_path: Path) -> None:
    stores = make_stores(tmp_path)
    path = stores.visual_paths["train"]
    flip(Objects(str(path)), "patch_tokens/c/1/0/0/0")
    loader = DataLoader(CachedFeatureDataset(path, cache_blocks=1), batch_size=8,
                        **loader_kwargs(1))
    with pytest.raises(StoreDamage) as caught:
        next(iter(loader))
    assert "DataLoader worker" in str(caught.value)  # torch wraps the worker's traceback...
    line = one_line(caught.value)  # ...which the CLIs unwrap to the store's own line
    assert line.startswith(f"{path}: array patch_tokens, shard 1 is damaged (checksum")
    assert line.endswith(f"fusioner-store verify --repair {path}")
