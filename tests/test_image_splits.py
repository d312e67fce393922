"""Image splits for cross-validation: disjoint held-out sets covering the store, coco128's fixed
split as split 3 of 4, and the record a checkpoint keeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.data import create_dataset
from pipeline.data.image_splits import ImageSplit, held_out_ids, ids_digest, rows_of
from pipeline.errors import FusionerError, StoreError
from tests.helpers import COCO128

IDS = st.lists(st.text("abcdef0123456789", min_size=1, max_size=6), min_size=2, max_size=60,
               unique=True)


@given(ids=IDS, splits=st.integers(2, 7))
def test_held_out_sets_are_disjoint_and_cover_every_image(ids: list[str], splits: int) -> None:
    if len(ids) < splits:
        with pytest.raises(FusionerError, match="cannot be cut"):
            ImageSplit.of(ids, 0, splits)
        return
    parts = [ImageSplit.of(ids, k, splits) for k in range(splits)]
    held = [set(p.val_rows) for p in parts]
    assert sorted(row for rows in held for row in rows) == list(range(len(ids)))  # once each
    for part in parts:
        assert set(part.train_rows) == set(range(len(ids))) - set(part.val_rows)
        assert list(part.val_ids) == sorted(ids[row] for row in part.val_rows)
    sizes = [len(rows) for rows in held]
    assert max(sizes) - min(sizes) <= 1


@given(ids=IDS)
def test_the_split_follows_the_ids_not_the_store_order(ids: list[str]) -> None:
    reordered = ids[::-1]
    for k in range(2):
        assert ImageSplit.of(ids, k, 2).val_ids == ImageSplit.of(reordered, k, 2).val_ids


@pytest.mark.skipif(not COCO128.exists(), reason="needs the shared coco128-seg copy")
def test_coco128_train_val_split_is_image_split_3_of_4() -> None:
    everything = create_dataset("coco128", "all", COCO128)
    ids = [everything.image_id(i) for i in range(len(everything))]
    split = ImageSplit.of(ids, 3, 4)
    val = create_dataset("coco128", "val", COCO128)
    train = create_dataset("coco128", "train", COCO128)
    assert list(split.val_ids) == [val.image_id(i) for i in range(len(val))]
    assert [ids[row] for row in split.train_rows] == [train.image_id(i) for i in range(len(train))]
    assert (len(split.train_rows), len(split.val_rows)) == (96, 32)


def test_the_record_finds_the_held_out_images_again() -> None:
    ids = [f"img{i:02d}" for i in range(10)]
    split = ImageSplit.of(ids, 1, 4)
    record = split.record("all")
    assert record["val_ids"] == ["img01", "img05", "img09"] and record["images"] == 10
    assert held_out_ids({"image_split": record}) == ("img01", "img05", "img09")
    assert held_out_ids({}) is None
    shuffled_store = ids[::-1]
    assert rows_of(shuffled_store, record["val_ids"], "store") == [0, 4, 8]
    with pytest.raises(StoreError, match="holds no image 'img01'"):
        rows_of(ids[2:], record["val_ids"], "store")
    tampered = {**record, "val_ids": ["img01", "img05", "img08"]}
    with pytest.raises(FusionerError, match="digest"):
        held_out_ids({"image_split": tampered})
    assert ids_digest(["b", "a"]) == ids_digest(["a", "b"]) != ids_digest(["a"])


def test_bad_splits_are_refused() -> None:
    ids = ["a", "b", "c", "d"]
    for split, splits in ((4, 4), (-1, 4), (0, 1)):
        with pytest.raises(FusionerError, match="image split"):
            ImageSplit.of(ids, split, splits)
    with pytest.raises(StoreError, match="repeats"):
        ImageSplit.of(["a", "a", "b"], 0, 2)
