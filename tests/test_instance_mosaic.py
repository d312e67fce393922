"""Mosaic-4 of instance crops on a YOLO-seg dataset: seen-class crops to train, unseen to
evaluate, one fold per built folder, and stores that refuse another fold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data import create_dataset
from pipeline.data.base import IGNORE_INDEX
from pipeline.data.instance_mosaic import InstanceCrops, build_fold_mosaics, square_box
from pipeline.data.splits import check_store_fold
from pipeline.errors import BadInputError, StoreError
from pipeline.store import CachedFeatureDataset, RemoteLocation, for_fold
from stages import evaluate, extract, fit, mosaic
from tests.dataset_fixtures import make_yolo
from tests.helpers import TINY_FIT
from tests.tally import expect_one_line_error, invoke

NAMES = [f"c{i}" for i in range(16)]  # fold 0 of the interleaved rule: c0, c4, c8, c12 unseen
UNSEEN_FOLD0 = (1, 5, 9, 13)  # their class ids (0 = background)
TILE = 8


def rect(index: int, x0: float, y0: float, x1: float, y1: float) -> str:
    """A YOLO-seg line: a rectangle of class ``index`` (normalised corners)."""
    return f"{index} {x0} {y0} {x1} {y0} {x1} {y1} {x0} {y1}"


def make_source(root: Path) -> Path:
    """Train images show seen classes c1, c2, c3, c5 (and a tiny c6); val images unseen ones."""
    train = {
        "a": f"{rect(1, 0, 0, 0.5, 1)}\n{rect(2, 0.5, 0, 1, 1)}",  # c1 | c2, side by side
        "b": f"{rect(3, 0.1, 0.1, 0.9, 0.9)}\n{rect(6, 0, 0, 0.05, 0.05)}",  # c6: 2 x 2 px
        "c": rect(5, 0.2, 0.2, 0.8, 0.8),
        "d": f"{rect(0, 0.6, 0.6, 1, 1)}\n{rect(1, 0, 0, 0.6, 0.6)}",  # c0 is unseen: no tile
    }
    val = {"e": rect(0, 0, 0, 1, 1), "f": f"{rect(4, 0, 0, 0.5, 1)}\n{rect(8, 0.5, 0, 1, 1)}",
           "g": rect(12, 0.25, 0.25, 0.75, 0.75), "h": rect(1, 0, 0, 1, 1)}  # h: seen, no tile
    return make_yolo(root, {"train": train, "val": val}, names=NAMES, size=(40, 32))


def quadrant_classes(mask: np.ndarray) -> list[set[int]]:
    """The class ids (not background, not ignore) of each of a mosaic's four tiles."""
    tiles = [mask[r:r + TILE, c:c + TILE] for r in (0, TILE) for c in (0, TILE)]
    return [set(np.unique(t).tolist()) - {0, IGNORE_INDEX} for t in tiles]


def test_square_box_grows_squares_and_stays_inside() -> None:
    box = square_box(np.array([[10.0, 10.0], [20.0, 15.0]]), (100, 80), margin=0.1)
    assert box == (9, 6, 21, 18)  # 10 x 5 -> a 12 x 12 square around its centre (15, 12.5)
    assert square_box(np.array([[0.0, 0.0], [10.0, 10.0]]), (100, 80), 0.5) == (0, 0, 20, 20)
    assert square_box(np.array([[0.0, 0.0], [100.0, 40.0]]), (100, 80), 0.1) == (10, 0, 90, 80)


def test_crops_keep_their_class_and_ignore_other_objects(tmp_path: Path) -> None:
    train = create_dataset("yolo", "train", make_source(tmp_path / "src"))
    crops = InstanceCrops(train, (2, 3, 4, 6, 7), fold=0, min_side=4)
    members = crops.members()
    assert sorted(members) == [2, 3, 4, 6]  # c6 (2 x 2 px) is under min_side; c0 not asked
    assert len(members[2]) == 2  # c1 in image a and in image d
    image, mask = crops.tile(members[2][0], 16)  # c1, left half of image a, beside c2
    assert image.size == (16, 16) and mask.shape == (16, 16)
    assert set(np.unique(mask).tolist()) == {2, IGNORE_INDEX}  # c2's pixels: ignore
    _, mask = crops.tile(members[4][0], 16)  # c3 in the middle of image b
    assert set(np.unique(mask).tolist()) == {0, 4}


def test_fold_mosaics_seen_to_train_unseen_to_val(tmp_path: Path) -> None:
    root = make_source(tmp_path / "src")
    train, val = (create_dataset("yolo", s, root) for s in ("train", "val"))
    out = tmp_path / "fold0"
    split = build_fold_mosaics(train, val, out, 0, num_train=6, num_val=5, seed=2, tile=TILE,
                               min_side=4)
    assert split.unseen == UNSEEN_FOLD0
    for kind, allowed, count in (("train", {2, 3, 4, 6}, 6), ("val", set(UNSEEN_FOLD0), 5)):
        masks = sorted((out / kind / "masks").glob("*.png"))
        assert len(masks) == count
        for path in masks:
            classes = quadrant_classes(np.asarray(Image.open(path)))
            assert all(len(c) == 1 for c in classes)  # one class a tile
            assert set.union(*classes) <= allowed and len(set.union(*classes)) == 4
    again = tmp_path / "again"
    build_fold_mosaics(train, val, again, 0, num_train=6, num_val=5, seed=2, tile=TILE,
                       min_side=4)
    for kind in ("train/images/00003.jpg", "train/masks/00003.png", "val/mosaic4.json"):
        assert (out / kind).read_bytes() == (again / kind).read_bytes()
    dataset = create_dataset("yolo_mosaic", "val", out)
    assert dataset.built_for_fold == 0 and dataset.zero_shot_split(0).unseen == UNSEEN_FOLD0
    with pytest.raises(BadInputError, match="built for fold 0, not 1"):
        dataset.zero_shot_split(1)
    with pytest.raises(BadInputError, match="needs 4"):  # fold 1's val shows no unseen class
        build_fold_mosaics(train, val, tmp_path / "fold1", 1, 6, 5, seed=2, tile=TILE,
                           min_side=4)


def test_fold_field_in_cache_locations() -> None:
    assert for_fold(Path("cache/mosaic/fold{fold}"), 2) == Path("cache/mosaic/fold2")
    assert for_fold(Path("cache"), 2) == Path("cache")
    remote = for_fold(RemoteLocation("s3://bucket/f{fold}", {"anon": True}), 1)
    assert remote.url == "s3://bucket/f1" and remote.storage_options == {"anon": True}


def test_fold_stores_refuse_other_folds_and_serve_cross_dataset_evaluation(
        tmp_path: Path) -> None:
    check_store_fold({}, 3, "plain store")  # stores of ordinary datasets serve every fold
    check_store_fold({"built_for_fold": 2}, 2, "fold-2 store")
    with pytest.raises(StoreError, match="built for fold 2, not fold 0"):
        check_store_fold({"built_for_fold": 2}, 0, "fold-2 store")
    root = make_source(tmp_path / "src")
    out, cache = tmp_path / "mosaics", tmp_path / "cache0"
    code, stderr = invoke(mosaic.main, ["--dataset", "yolo", "--data-root", root, "--fold", "0",
                                        "--out", out, "--train-images", "4", "--val-images", "2",
                                        "--tile", str(TILE), "--min-side", "4"])
    assert code == 0, stderr
    encode = ["--backbone", "dino_vits16", "--random-init", "--text-encoder", "minilm_l6",
              "--image-size", "32x32", "--device", "cpu", "--cache-dir", cache]
    code, stderr = invoke(extract.main, [*encode, "--dataset", "yolo_mosaic", "--data-root", out,
                                          "--split", "train", "--split", "val"])
    assert code == 0, stderr
    store = CachedFeatureDataset(cache / "visual" / "dino_vits16" / "yolo_mosaic-train.zarr")
    assert store.attrs["built_for_fold"] == 0
    run = ["--visual", "dino_vits16", "--text", "minilm_l6", "--dataset", "yolo_mosaic",
           "--device", "cpu", *TINY_FIT]
    code, stderr = invoke(fit.main, [*run, "--fold", "1", "--cache-dir", cache,
                                     "--out", tmp_path / "f1"])
    expect_one_line_error(code, stderr, "yolo_mosaic-train.zarr", "built for fold 0, not fold 1")
    assert not (tmp_path / "f1" / "checkpoint.pt").exists()
    per_fold = tmp_path / "cache{fold}"  # fold 0 -> cache0
    code, stderr = invoke(fit.main, [*run, "--fold", "0", "--cache-dir", per_fold,
                                     "--out", tmp_path / "f0"])
    assert code == 0, stderr
    checkpoint = tmp_path / "f0" / "checkpoint.pt"
    code, stderr = invoke(extract.main, [*encode, "--dataset", "yolo", "--data-root", root,
                                          "--split", "val"])
    assert code == 0, stderr
    for dataset, episodes in (("yolo_mosaic", 8), ("yolo", 4)):  # 2 mosaics x 4; e, f x 2, g
        metrics = tmp_path / f"{dataset}.json"
        code, stderr = invoke(evaluate.main, [
            "--checkpoint", checkpoint, "--dataset", dataset, "--cache-dir", per_fold,
            "--mode", "binary", "--resolution", "cached", "--no-seen-reference",
            "--num-overlays", "0", "--out-metrics", metrics, "--out-plots", tmp_path / dataset,
            "--no-progress"])
        assert code == 0, stderr
        document = json.loads(metrics.read_text())
        assert document["dataset"] == dataset
        assert document.get("trained_on") == (None if dataset == "yolo_mosaic" else "yolo_mosaic")
        assert document["per_fold"]["fold0"]["episodes"]["binary"] == episodes
