"""Zarr feature store: round trip, sharding, provenance checks, incomplete stores refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader
from zarr.codecs import Crc32cCodec

from pipeline.errors import StoreError
from pipeline.store import (
    CachedFeatureDataset,
    VisualStoreWriter,
    loader_kwargs,
    open_visual_store,
    read_text_store,
    write_text_store,
)
from pipeline.store.blocks import BlockShuffleSampler

ATTRS = {"encoder": "dino_vits16", "weights_sha256": "abc", "image_size": [32, 48],
         "grid_size": [2, 3], "feature_dim": 8, "dataset": "toy", "split": "train"}


def _write(path: Path, num: int = 5, shard: int = 2, finish: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(num, 2, 3, 8)).astype(np.float32)
    cls = rng.normal(size=(num, 8)).astype(np.float32)
    labels = rng.integers(0, 4, size=(num, 32, 48)).astype(np.uint8)
    labels[:, 0, 0] = 255
    ids = [f"img{i}" for i in range(num)]
    writer = VisualStoreWriter(path, ATTRS, num, (2, 3), 8, (32, 48), shard_images=shard)
    for s in writer.pending_shards():
        rows = writer.shard_range(s)
        writer.write_shard(s, tokens[rows.start:rows.stop], cls[rows.start:rows.stop],
                           labels[rows.start:rows.stop], ids[rows.start:rows.stop])
        if not finish and s == 1:
            break
    if finish:
        writer.finalize()
    return tokens, labels, ids


def test_round_trip_and_layout(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    tokens, labels, ids = _write(path)
    group = open_visual_store(path, {"encoder": "dino_vits16"})
    assert group["patch_tokens"].dtype == np.float16
    assert group["patch_tokens"].chunks == (2, 2, 3, 8)  # one chunk per 2-image shard
    # raw float16 (features barely compress), framed by a CRC-32C per chunk
    assert group["patch_tokens"].compressors == (Crc32cCodec(),)
    assert all(isinstance(group[name].compressors[-1], Crc32cCodec) for name in group.array_keys())
    assert group["labels"].dtype == np.uint8
    assert group.attrs["complete"] is True and group.attrs["format_version"] == 2
    dataset = CachedFeatureDataset(path)
    assert len(dataset) == 5 and dataset.image_ids() == ids
    item = dataset[3]
    assert torch.allclose(item["patch_tokens"], torch.from_numpy(tokens[3]), atol=1e-2)
    assert torch.equal(item["label"], torch.from_numpy(labels[3]).long())
    # sharded: one file per shard for the big arrays, not one per image
    assert len(list((path / "patch_tokens" / "c").iterdir())) == 3


def test_incomplete_store_is_refused_and_resumable(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _write(path, finish=False)
    with pytest.raises(StoreError, match="incomplete"):
        CachedFeatureDataset(path)
    writer = VisualStoreWriter(path, ATTRS, 5, (2, 3), 8, (32, 48), shard_images=2)
    assert writer.pending_shards() == [2]
    with pytest.raises(StoreError, match="cannot finalize"):
        writer.finalize()


def test_provenance_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _write(path)
    with pytest.raises(StoreError, match="encoder='dino_vits16'"):
        open_visual_store(path, {"encoder": "clip_vitb16"})
    with pytest.raises(StoreError, match="other settings"):
        VisualStoreWriter(path, {**ATTRS, "weights_sha256": "other"}, 5, (2, 3), 8, (32, 48), 2)
    group = zarr.open_group(str(path), mode="r+")
    group.attrs["format_version"] = 999
    with pytest.raises(StoreError, match="re-extract"):
        open_visual_store(path)


def test_missing_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="run fusioner-extract"):
        open_visual_store(tmp_path / "absent.zarr")


def test_overwrite_replaces_store(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _write(path)
    writer = VisualStoreWriter(path, {**ATTRS, "weights_sha256": "new"}, 5, (2, 3), 8, (32, 48), 2,
                               overwrite=True)
    assert writer.pending_shards() == [0, 1, 2] and not writer.complete


def test_spawned_dataloader_workers_read_the_store(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    tokens, _, _ = _write(path)
    loader = DataLoader(CachedFeatureDataset(path), batch_size=5, **loader_kwargs(2))
    batch = next(iter(loader))
    assert torch.allclose(batch["patch_tokens"], torch.from_numpy(tokens), atol=1e-2)


def test_text_store_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    emb = np.eye(3, 4, dtype=np.float32)
    write_text_store(path, ["cat", "dög", "traffic sign"], emb, {"encoder": "minilm_l6"})
    text = read_text_store(path, {"encoder": "minilm_l6"})
    assert text.class_names == ["cat", "dög", "traffic sign"]
    assert torch.equal(text.embeddings, torch.from_numpy(emb))
    with pytest.raises(StoreError, match="encoder="):
        read_text_store(path, {"encoder": "bert_base"})


# ---- property-based: any shapes, shard sizes, write orders and names round-trip -------------

names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)


@given(num=st.integers(1, 9), shard=st.integers(1, 4), grid=st.tuples(st.integers(1, 3),
       st.integers(1, 3)), dim=st.integers(1, 6), seed=st.integers(0, 2**16),
       ids=st.lists(names, min_size=9, max_size=9, unique=True), data=st.data())
def test_property_visual_store_round_trip(tmp_path_factory, num: int, shard: int,
                                          grid: tuple[int, int], dim: int, seed: int,
                                          ids: list[str], data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    tokens = (rng.normal(size=(num, *grid, dim)) * 100).astype(np.float16)
    labels = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(num, 5, 6))
    path = tmp_path_factory.mktemp("prop") / "store.zarr"
    writer = VisualStoreWriter(path, {"grid_size": list(grid), "feature_dim": dim}, num, grid,
                               dim, (5, 6), shard_images=shard)
    for s in data.draw(st.permutations(writer.pending_shards())):  # any write order
        rows = writer.shard_range(s)
        writer.write_shard(s, tokens[rows.start:rows.stop], tokens[rows.start:rows.stop, 0, 0],
                           labels[rows.start:rows.stop], ids[rows.start:rows.stop])
    writer.finalize()
    store = CachedFeatureDataset(path)
    assert store.image_ids() == ids[:num]
    for i in range(num):
        item = store[i]
        assert np.array_equal(item["patch_tokens"].numpy(), tokens[i].astype(np.float32))
        assert np.array_equal(item["cls_token"].numpy(), tokens[i, 0, 0].astype(np.float32))
        assert np.array_equal(item["label"].numpy(), labels[i])


@given(class_names=st.lists(names, min_size=1, max_size=8, unique=True), dim=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_property_text_store_round_trip(tmp_path_factory, class_names: list[str], dim: int,
                                        seed: int) -> None:
    vectors = np.random.default_rng(seed).normal(size=(len(class_names), dim)).astype(np.float32)
    path = tmp_path_factory.mktemp("prop") / "text.zarr"
    write_text_store(path, class_names, vectors, {"feature_dim": dim})
    back = read_text_store(path)
    assert back.class_names == class_names
    assert np.array_equal(back.embeddings.numpy(), vectors)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_block_shuffle_visits_every_item_shard_by_shard(world_size: int) -> None:
    """Each epoch: every item once (ranks split it), items of a window of ``mix`` shards
    together, a new order per epoch, the same order on every rank."""
    blocks = [i // 4 for i in range(30)]  # 8 shards of 4 (the last one of 2)
    orders = []
    for epoch in (0, 1):
        ranks = [BlockShuffleSampler(blocks, mix=2, seed=3, rank=r, world_size=world_size)
                 for r in range(world_size)]
        for sampler in ranks:
            sampler.set_epoch(epoch)
        parts = [list(sampler) for sampler in ranks]
        assert {len(part) for part in parts} == {len(ranks[0])}
        order = [part[step] for step in range(len(parts[0])) for part in parts]  # interleaved
        assert sorted(set(order)) == list(range(30))
        assert len(order) - 30 < world_size  # padding only to a multiple of world_size
        whole = order[:30]
        window: set[int] = set()
        closed: set[int] = set()
        for item in whole:  # windows of <= 2 shards; a shard left behind never comes back
            block = blocks[item]
            if block not in window and len(window) == 2:
                closed |= window
                window = set()
            assert block not in closed
            window.add(block)
        orders.append(whole)
    assert orders[0] != orders[1]


def test_shard_cache_serves_the_same_items(make_stores, tmp_path: Path) -> None:
    path = make_stores(tmp_path, num_images=7, splits=("train",)).visual_paths["train"]
    plain, cached = CachedFeatureDataset(path), CachedFeatureDataset(path, cache_blocks=2)
    assert cached.block_images == 4 and [cached.block_of(i) for i in (0, 3, 4, 6)] == [0, 0, 1, 1]
    for item in np.random.default_rng(0).permutation(7).tolist() * 2:
        want, got = plain[item], cached[item]
        for key in ("patch_tokens", "cls_token", "label"):
            assert torch.equal(got[key], want[key])
        assert len(cached._blocks) <= 2
    copy = cached.with_block_cache(1)  # an empty cache of its own; the original keeps its shards
    assert copy.cache_blocks == 1 and not copy._blocks and cached._blocks
    assert torch.equal(copy[6]["patch_tokens"], plain[6]["patch_tokens"]) and len(copy._blocks) == 1
    cached.clear_block_cache()
    assert not cached._blocks and len(copy._blocks) == 1
