"""The YOLO-seg loader: a user's Ultralytics dataset and the embedded coco128-seg.

Generated datasets are written in the exact on-disk layout (data.yaml, images/<split>/*.jpg,
labels/<split>/*.txt polygons); bad label files are refused through ``fusioner-extract`` with one
line naming the file and line, before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.data import create_dataset, get_split, split_for
from pipeline.data.coco import COCO_CLASSES
from pipeline.data.splits import training_view
from pipeline.data.yolo import Instance, paint_instances
from pipeline.errors import BadInputError, UnknownNameError
from pipeline.store import CachedFeatureDataset
from stages import extract
from tests.dataset_fixtures import make_yolo
from tests.tally import expect_one_line_error, invoke, nothing_lost

BIG = "0 0.0 0.0 1.0 0.0 1.0 1.0 0.0 1.0"  # a cat covering the whole image
SMALL = "1 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75"  # a dog in the middle


def test_yolo_layout_painting_and_background(tmp_path: Path) -> None:
    # the small dog is listed FIRST but painted after (on top of) the big cat
    root = make_yolo(tmp_path, {"train": {"a": f"{SMALL}\n{BIG}", "b": None},
                                "val": {"c": "2 0.0 0.0 0.5 0.0 0.5 0.5"}})
    train = create_dataset("yolo", "train", root)
    assert train.class_names == ["background", "cat", "dog", "kite"]
    assert [train.image_id(i) for i in range(len(train))] == ["a", "b"]
    label = train[0].label
    assert label.shape == (32, 40)
    assert label[16, 20] == 2 and label[2, 2] == 1  # dog inside, cat around it
    assert set(np.unique(label)) == {1, 2}
    assert (train[1].label == 0).all()  # no label file: all background, not ignore
    val = create_dataset("yolo", "val", root)[0].label
    assert val[1, 15] == 3 and val[10, 2] == 0 and val[30, 38] == 0  # kite: a top triangle


def test_yolo_names_as_list_split_lists_and_txt(tmp_path: Path) -> None:
    root = make_yolo(tmp_path, {"train": {"a": BIG}, "extra": {"b": SMALL}}, names=["cat", "dog"])
    data = yaml.safe_load((root / "data.yaml").read_text())
    (root / "list.txt").write_text("images/extra/b.jpg\n")
    data.update(both=["images/train", "images/extra"], listed="list.txt")
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    both = create_dataset("yolo", "both", root)
    assert [both.image_id(i) for i in range(len(both))] == ["a", "b"]
    listed = create_dataset("yolo", "listed", root)
    assert len(listed) == 1 and listed[0].label[16, 20] == 2
    with pytest.raises(BadInputError, match="no split 'test'"):
        create_dataset("yolo", "test", root)


def test_paint_instances_largest_first_whatever_the_order() -> None:
    big = Instance(0, np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float))
    small = Instance(4, np.array([[0.4, 0.4], [0.6, 0.4], [0.6, 0.6]], dtype=float))
    for order in ([big, small], [small, big]):
        label = paint_instances(order, (50, 50))
        assert label[25, 29] == 5 and label[5, 5] == 1


def test_yolo_folds_interleave_like_coco20i(tmp_path: Path) -> None:
    root = make_yolo(tmp_path, {"train": {"a": BIG}}, names=[f"c{i}" for i in range(10)])
    dataset = create_dataset("yolo", "train", root)
    folds = [split_for(dataset, fold) for fold in range(4)]
    assert folds[0].unseen == (1, 5, 9) and folds[3].unseen == (4, 8)
    assert all(f.background == 0 for f in folds)
    assert sorted(c for f in folds for c in f.unseen) == list(range(1, 11))
    assert get_split("yolo", 1, dataset.class_names) == folds[1]  # what fit uses (store names)
    with pytest.raises(UnknownNameError, match="folds 0..3"):
        split_for(dataset, 4)


# ---- the embedded coco128-seg --------------------------------------------------------------

def test_coco128_split_is_fixed_disjoint_and_complete() -> None:
    train, val, every = (create_dataset("coco128", s) for s in ("train", "val", "all"))
    ids = {name: [d.image_id(i) for i in range(len(d))]
           for name, d in (("train", train), ("val", val), ("all", every))}
    assert (len(ids["train"]), len(ids["val"]), len(ids["all"])) == (96, 32, 128)
    assert not set(ids["train"]) & set(ids["val"])
    assert sorted(ids["train"] + ids["val"]) == ids["all"]
    assert ids["val"] == ids["all"][3::4]
    assert train.class_names == list(COCO_CLASSES)  # so its folds are COCO-20i's
    with pytest.raises(BadInputError, match="coco128 splits"):
        create_dataset("coco128", "test")


@pytest.mark.parametrize("fold", range(4))
def test_coco128_folds_never_train_on_unseen_classes(fold: int) -> None:
    train = create_dataset("coco128", "train")
    split = split_for(train, fold)
    assert split == replace(get_split("coco", fold), dataset="coco128")  # COCO-20i's classes
    shown = set()
    for i in range(0, len(train), 8):
        present, safe = training_view(train[i].label, split)
        assert not set(present) & set(split.unseen)
        assert not np.isin(safe, split.unseen).any()
        shown |= set(present)
    assert shown  # the episodes exist


# ---- bad label files: one line naming file and line, nothing written -------------------------

BAD_LABELS: dict[str, tuple[str, str]] = {
    "coordinate-outside": ("0 0.1 0.1 1.2 0.1 0.5 0.5", "outside [0, 1]"),
    "negative-coordinate": ("0 -0.1 0.1 0.9 0.1 0.5 0.5", "outside [0, 1]"),
    "odd-coordinates": ("0 0.1 0.1 0.9 0.1 0.5", "odd number of coordinates"),
    "class-not-in-names": ("7 0.1 0.1 0.9 0.1 0.5 0.5", "class index 7 not in names"),
    "negative-class": ("-1 0.1 0.1 0.9 0.1 0.5 0.5", "class index -1 not in names"),
    "fractional-class": ("1.5 0.1 0.1 0.9 0.1 0.5 0.5", "class index 1.5 not in names"),
    "two-points": ("0 0.1 0.1 0.9 0.1", "at least 3 points"),
    "not-a-number": ("0 0.1 zero 0.9 0.1 0.5 0.5", "not a number"),
}
EXTRACT = ["--backbone", "dino_vits16", "--random-init", "--dataset", "yolo", "--image-size",
           "32x32", "--shard-images", "2", "--batch-size", "2", "--device", "cpu"]


def _orphan(root: Path) -> None:
    (root / "labels" / "train" / "zz.txt").write_text(f"{SMALL}\n")


@pytest.fixture()
def yolo_with_val_store(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(data root, cache, val store): a complete val store exists before the hostile run."""
    root = make_yolo(tmp_path / "data", {"train": {"a": BIG, "b": SMALL, "c": None},
                                         "val": {"d": SMALL}})
    cache = tmp_path / "cache"
    code, stderr = invoke(extract.main, [*EXTRACT, "--split", "val", "--data-root", root,
                                          "--cache-dir", cache])
    assert code == 0, stderr
    return root, cache, cache / "visual" / "dino_vits16" / "yolo-val.zarr"


def _cases() -> dict[str, tuple[Callable[[Path], None], tuple[str, ...]]]:
    def second_line(text: str) -> Callable[[Path], None]:
        return lambda root: (root / "labels" / "train" / "b.txt").write_text(f"{SMALL}\n{text}\n")

    cases = {name: (second_line(text), ("b.txt:2", reason))
             for name, (text, reason) in BAD_LABELS.items()}
    cases["label-without-image"] = (_orphan, ("zz.txt", "label file without its image"))
    return cases


@pytest.mark.parametrize("fault", sorted(_cases()))
def test_bad_yolo_label_is_one_line_and_writes_nothing(yolo_with_val_store, fault: str) -> None:
    root, cache, val_store = yolo_with_val_store
    corrupt, needles = _cases()[fault]
    corrupt(root)
    for extra in ([], ["--skip-bad"]):  # a bad label file stops the run even with --skip-bad
        with nothing_lost(val_store, root):
            code, stderr = invoke(extract.main, [*EXTRACT, "--split", "train", "--data-root",
                                                 root, "--cache-dir", cache, *extra])
            expect_one_line_error(code, stderr, *needles)
    assert not (cache / "visual" / "dino_vits16" / "yolo-train.zarr").exists()
    assert not (cache / "visual" / "dino_vits16" / "yolo-train.zarr.creating").exists()


def test_yolo_extracts_with_background_labels(yolo_with_val_store) -> None:
    root, cache, _ = yolo_with_val_store
    code, stderr = invoke(extract.main, [*EXTRACT, "--split", "train", "--data-root", root,
                                          "--cache-dir", cache])
    assert code == 0, stderr
    store = CachedFeatureDataset(cache / "visual" / "dino_vits16" / "yolo-train.zarr")
    assert store.image_ids() == ["a", "b", "c"]
    assert store.attrs["class_names"] == ["background", "cat", "dog", "kite"]
    labels = [store[i]["label"].numpy() for i in range(3)]
    assert (labels[0] == 1).all() and labels[1][16, 16] == 2 and (labels[2] == 0).all()
