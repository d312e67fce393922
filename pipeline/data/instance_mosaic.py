"""Mosaic-4 on a YOLO-seg dataset (the paper's Mosaic protocol on coco128): 2 x 2 mosaics of
instance crops, built for one zero-shot fold.

``build_fold_mosaics`` writes, for fold k of the dataset's COCO-20i-style folds::

    <out>/train/...   mosaics of crops of the fold's SEEN classes, from the train images
    <out>/val/...     mosaics of crops of the fold's UNSEEN classes, from the held-out images

each in ``write_mosaics``' layout (images/, masks/, classes.txt, mosaic4.json with the fold).
A crop is the instance's box grown by ``margin`` on each side and made square (within the
image), resized to the tile size. Its mask: the tile's class where that class is painted, 0
where the image is background, 255 (ignore) on objects of other classes. Instances whose box has
a side under ``min_side`` pixels are left out (too small to show at a mosaic's patch grid).

``InstanceMosaic`` reads such a folder; its zero-shot split is the fold it was built for, any
other fold is refused, and ``built_for_fold`` is recorded in the stores extracted from it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.data.base import IGNORE_INDEX
from pipeline.data.folder import FolderDataset
from pipeline.data.mosaic import MANIFEST, write_mosaics
from pipeline.data.splits import ZeroShotSplit, interleaved_split
from pipeline.data.yolo import YoloSegDataset
from pipeline.errors import BadInputError

DEFAULT_MIN_SIDE = 32  # pixels of the source image
DEFAULT_MARGIN = 0.1  # of the box's longer side, on each side
SAMPLE_CACHE = 64  # decoded samples kept while tiling


def square_box(points: np.ndarray, size: tuple[int, int],
               margin: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a square around polygon ``points`` (pixels), grown by
    ``margin`` x its longer side on each side, shifted (then clipped) to stay in ``size``."""
    width, height = size
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    side = min(max(x1 - x0, y1 - y0) * (1 + 2 * margin), width, height)
    boxes = []
    for low, high, limit in ((x0, x1, width), (y0, y1, height)):
        start = min(max((low + high - side) / 2, 0.0), limit - side)
        boxes.append((int(round(start)), int(round(start + side))))
    (left, right), (top, bottom) = boxes
    return left, top, max(right, left + 1), max(bottom, top + 1)


class InstanceCrops:
    """The instances of ``classes`` (dataset class ids) in a YOLO-seg dataset, as mosaic tiles."""

    def __init__(self, dataset: YoloSegDataset, classes: Iterable[int], fold: int,
                 min_side: int = DEFAULT_MIN_SIDE, margin: float = DEFAULT_MARGIN) -> None:
        self.dataset, self.fold, self.min_side, self.margin = dataset, fold, min_side, margin
        self.class_names = dataset.class_names
        self.classes = tuple(sorted(set(classes)))
        self._tiles: list[tuple[int, int, int]] = []  # (sample index, instance index, class id)
        for index in range(len(dataset)):
            with Image.open(dataset.image_path(index)) as image:
                scale = np.array(image.size, dtype=np.float64)
            for number, instance in enumerate(dataset.instances(index)):
                extent = np.ptp(instance.points * scale, axis=0)
                class_id = instance.class_index + 1
                if class_id in self.classes and extent.min() >= min_side:
                    self._tiles.append((index, number, class_id))
        # decoded image + painted label of recently drawn samples (a sample gives several tiles)
        self._sample = functools.lru_cache(maxsize=SAMPLE_CACHE)(dataset.__getitem__)

    def members(self) -> dict[int, list[int]]:
        by_class: dict[int, list[int]] = {}
        for tile, (_, _, class_id) in enumerate(self._tiles):
            by_class.setdefault(class_id, []).append(tile)
        return by_class

    def tile(self, index: int, size: int) -> tuple[Image.Image, np.ndarray]:
        sample_index, number, class_id = self._tiles[index]
        sample = self._sample(sample_index)
        image, label = sample.image, sample.label
        mask = np.where(label == class_id, class_id, np.where(label == 0, 0, IGNORE_INDEX))
        points = self.dataset.instances(sample_index)[number].points
        box = square_box(points * np.array(image.size, dtype=np.float64), image.size, self.margin)
        crop = image.crop(box).resize((size, size), Image.Resampling.BICUBIC)
        mask_crop = Image.fromarray(mask.astype(np.uint8)).crop(box)
        return crop, np.asarray(mask_crop.resize((size, size), Image.Resampling.NEAREST))

    def tile_id(self, index: int) -> str:
        sample, number, _ = self._tiles[index]
        return f"{self.dataset.image_id(sample)}#{number}"

    def describe(self) -> dict[str, Any]:
        return {"source": self.dataset.name, "split": self.dataset.split, "fold": self.fold,
                "classes": list(self.classes), "min_side": self.min_side, "margin": self.margin}


def build_fold_mosaics(train: YoloSegDataset, val: YoloSegDataset, out_root: Path, fold: int,
                       num_train: int, num_val: int, seed: int, tile: int = 126,
                       min_side: int = DEFAULT_MIN_SIDE) -> ZeroShotSplit:
    """Write fold ``fold``'s train mosaics (seen-class crops of ``train``) and val mosaics
    (unseen-class crops of ``val``) under ``out_root``; returns the fold's split."""
    if train.class_names != val.class_names:
        raise BadInputError(f"{train.root}: train and val class names differ")
    split = interleaved_split(train.name, train.class_names, fold)
    out_root = Path(out_root)
    for kind, dataset, classes, count, offset in (("train", train, split.seen, num_train, 0),
                                                  ("val", val, split.unseen, num_val, 1)):
        crops = InstanceCrops(dataset, classes, fold, min_side)
        write_mosaics(crops, out_root / kind, count, seed + offset, tile)
    return split


class InstanceMosaic(FolderDataset):
    """A split folder written by ``build_fold_mosaics``; its split is the fold it was built for."""

    def __init__(self, root: Path, split: str, name: str) -> None:
        super().__init__(root, split, name=name)
        manifest = self.root / split / MANIFEST
        try:
            self.built_for_fold = int(json.loads(manifest.read_text(encoding="utf-8"))["fold"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadInputError(f"{manifest}: not a fold mosaic manifest ({exc}); build the "
                                "folder with fusioner-mosaic") from exc

    def zero_shot_split(self, fold: int) -> ZeroShotSplit:
        """The fold the mosaics were built for (COCO-20i's interleaved rule); others refused."""
        if fold != self.built_for_fold:
            raise BadInputError(f"{self.root}: mosaics built for fold {self.built_for_fold}, "
                                f"not {fold} (build fold {fold} with fusioner-mosaic --fold "
                                f"{fold})")
        return interleaved_split(self.name, self.class_names, fold)
