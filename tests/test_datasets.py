"""Loaders on miniature copies of each dataset's real on-disk layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pipeline.data import build_mosaic4, create_dataset
from pipeline.data import fss as fss_module
from pipeline.data.coco_json import decode_rle, render_coco_masks, rle_counts_from_string
from pipeline.data.fss import class_split_of
from pipeline.errors import BadInputError
from tests.dataset_fixtures import (
    COCO_IMAGES,
    PASCAL_IMAGES,
    PASCAL_LISTS,
    SIZE,
    blocks,
    make_coco,
    make_folder,
    make_fss,
    make_pascal,
    write_coco_json,
    write_image,
    write_mask,
)


def _check_sample(dataset, index: int, expected: np.ndarray) -> None:
    sample = dataset[index]
    assert sample.image.mode == "RGB" and sample.image.size == SIZE
    assert sample.label.dtype == np.uint8
    assert np.array_equal(sample.label, expected)
    assert sample.image_id == dataset.image_id(index)


@pytest.mark.parametrize("palette", [False, True])
def test_pascal(tmp_path: Path, palette: bool) -> None:
    root = make_pascal(tmp_path / "VOC2012", palette=palette)
    for split, ids in PASCAL_LISTS.items():
        dataset = create_dataset("pascal", split, root)
        assert len(dataset) == len(ids) and dataset.class_names[0] == "background"
        assert len(dataset.class_names) == 21 and dataset.class_names[20] == "tv monitor"
        for index, image_id in enumerate(ids):
            assert dataset.image_id(index) == image_id
            _check_sample(dataset, index, blocks(PASCAL_IMAGES[image_id]))
    with pytest.raises(BadInputError, match=r"train_aug.*\['train', 'val'\]"):
        create_dataset("pascal", "train_aug", root)


def test_default_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_pascal(tmp_path / "VOC2012")
    monkeypatch.setenv("FUSIONER_DATA", str(tmp_path))
    assert len(create_dataset("pascal", "val")) == 2


def test_coco(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "COCO2014")
    for split, folder in (("train", "train2014"), ("val", "val2014")):
        dataset = create_dataset("coco", split, root)
        assert len(dataset.class_names) == 81 and dataset.class_names[80] == "toothbrush"
        for index, (stem, ids) in enumerate(sorted(COCO_IMAGES[folder].items())):
            assert dataset.image_id(index) == stem
            _check_sample(dataset, index, blocks(ids))
    (root / "val2014" / "COCO_val2014_000000000042.jpg").unlink()
    with pytest.raises(BadInputError, match="no image"):
        create_dataset("coco", "val", root)
    with pytest.raises(BadInputError, match="split"):
        create_dataset("coco", "test", root)


def test_coco_json_rendering(tmp_path: Path) -> None:
    write_coco_json(tmp_path / "instances_val2014.json")
    assert render_coco_masks(tmp_path / "instances_val2014.json", tmp_path / "masks") == 1
    label = np.asarray(Image.open(tmp_path / "masks" / "COCO_val2014_000000000007.png"))
    assert label.tolist() == [[1, 1, 1, 80, 80, 255], [1, 1, 1, 80, 80, 255],
                              [1, 1, 1, 80, 80, 255], [0, 0, 80, 80, 255, 255]]


def _encode(runs: list[int]) -> str:
    """COCO's compressed RLE string (the reference algorithm, for the round trip)."""
    out = []
    for i, value in enumerate(runs):
        x = value - runs[i - 2] if i > 2 else value
        more = True
        while more:
            chunk = x & 0x1F
            x >>= 5
            more = x != -1 if chunk & 0x10 else x != 0
            out.append(chr((chunk | (0x20 if more else 0)) + 48))
    return "".join(out)


@given(runs=st.lists(st.integers(0, 5000), min_size=1, max_size=12))
def test_rle_string_round_trip(runs: list[int]) -> None:
    assert rle_counts_from_string(_encode(runs)) == runs


def test_rle_decode_column_major() -> None:
    mask = decode_rle([1, 2, 3], 2, 3)
    assert mask.tolist() == [[False, True, False], [True, False, False]]
    with pytest.raises(BadInputError):
        decode_rle([1, 2], 2, 3)


def test_fss_with_split_lists(tmp_path: Path) -> None:
    root = make_fss(tmp_path / "FSS-1000")
    test = create_dataset("fss1000", "test", root)
    assert test.class_names == ["background", "ff hen", "gg ibis", "hh jay", "ii koi", "jj lynx"]
    assert len(test) == 10 and test.image_id(3) == "gg_ibis__2"
    _check_sample(test, 3, blocks([2], ignore_border=False))
    assert len(create_dataset("fss1000", "train", root)) == 8
    (root / "ab_cat" / "1.png").unlink()
    with pytest.raises(BadInputError, match="not found"):
        create_dataset("fss1000", "trn", root)[0]
    (root / "splits" / "val.txt").write_text("ee_gnu\nzz_missing\n")
    with pytest.raises(BadInputError, match="zz_missing"):
        create_dataset("fss1000", "val", root)


def test_fss_hash_split_and_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_fss(tmp_path / "FSS-1000", per_class=1, with_splits=False)
    sizes = 0
    for split in ("trn", "val", "test"):
        try:
            dataset = create_dataset("fss1000", split, root)
        except BadInputError:
            continue  # a split may be empty with 10 classes
        folders = {i.split("__")[0] for i in map(dataset.image_id, range(len(dataset)))}
        assert all(class_split_of(f) == split for f in folders)
        sizes += len(dataset)
    assert sizes == 10
    shares = [class_split_of(f"class_{n}") for n in range(2000)]
    assert 0.47 < shares.count("trn") / 2000 < 0.57 and 0.19 < shares.count("test") / 2000 < 0.29
    monkeypatch.setattr(fss_module, "MAX_CLASSES", 1)
    make_fss(tmp_path / "lists", per_class=1)
    with pytest.raises(BadInputError, match="uint8"):
        create_dataset("fss1000", "test", tmp_path / "lists")


def test_mosaic4_build_and_load(tmp_path: Path) -> None:
    fss = make_fss(tmp_path / "FSS-1000")
    first = build_mosaic4(fss, tmp_path / "m1", num_images=4, seed=3, tile=8)
    build_mosaic4(fss, tmp_path / "m2", num_images=4, seed=3, tile=8)
    for kind in ("images/00002.jpg", "masks/00002.png", "classes.txt", "mosaic4.json"):
        assert (first / kind).read_bytes() == (tmp_path / "m2" / kind).read_bytes()
    build_mosaic4(fss, tmp_path / "m3", num_images=4, seed=4, tile=8)
    assert any((first / f"masks/0000{i}.png").read_bytes()
               != (tmp_path / "m3" / f"masks/0000{i}.png").read_bytes() for i in range(4))
    mosaic = create_dataset("mosaic4", "test", first)
    assert len(mosaic) == 4 and mosaic.class_names[0] == "background"
    assert mosaic.class_names == create_dataset("fss1000", "test", fss).class_names
    for index in range(len(mosaic)):
        sample = mosaic[index]
        assert sample.image.size == (16, 16)
        quadrants = [sample.label[r:r + 8, c:c + 8] for r in (0, 8) for c in (0, 8)]
        ids = [set(np.unique(q).tolist()) - {0} for q in quadrants]
        assert all(len(i) == 1 for i in ids) and len(set.union(*ids)) == 4
    assert mosaic.zero_shot_split(0).unseen == (1, 2, 3, 4, 5)
    build_mosaic4(fss, first, num_images=2, seed=3, tile=8)  # rewrites whole
    assert len(create_dataset("mosaic4", "test", first)) == 2
    with pytest.raises(BadInputError, match="needs 4"):
        build_mosaic4(fss, tmp_path / "m4", num_images=1, seed=0, split="val")


def test_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mine")
    dataset = create_dataset("folder", "test", root)
    assert dataset.class_names == ["background", "cat", "dog"] and len(dataset) == 3
    _check_sample(dataset, 1, blocks([2, 1]))
    nested = tmp_path / "nested"
    shutil.copytree(root, nested / "val")
    assert len(create_dataset("folder", "val", nested)) == 3


def test_folder_errors(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mine")
    (root / "masks" / "b.png").unlink()
    write_mask(root / "masks" / "zz.png", blocks([1]))
    with pytest.raises(BadInputError, match=r"\['b'\].*\['zz'\]"):
        create_dataset("folder", "test", root)
    (root / "masks" / "zz.png").unlink()
    write_image(root / "images" / "b.jpg", 0, size=(8, 8))
    write_mask(root / "masks" / "b.png", blocks([1], size=(9, 8)))
    with pytest.raises(BadInputError, match="size"):
        create_dataset("folder", "test", root)[1]
    write_mask(root / "masks" / "b.png", np.full((8, 8), 7, np.uint8))
    with pytest.raises(BadInputError, match="out of range"):
        create_dataset("folder", "test", root)[1]
    with pytest.raises(BadInputError, match="images/"):
        create_dataset("folder", "test", tmp_path / "absent")
