"""Tiny datasets in the exact on-disk layout of the real ones (generated JPEG/PNG files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from pipeline.data.coco import COCO_CLASSES

SIZE = (20, 16)  # width, height of the generated images


def write_image(path: Path, seed: int, size: tuple[int, int] = SIZE) -> None:
    """A noise JPEG of ``size`` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_mask(path: Path, label: np.ndarray, mode: str = "L") -> None:
    """A single-channel (or ``mode``) PNG of ``label``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint8)).convert(mode).save(path)


def blocks(ids: list[int], size: tuple[int, int] = SIZE, ignore_border: bool = True) -> np.ndarray:
    """A label map: 0 background, then one vertical band per id, a 255 row at the bottom."""
    width, height = size
    label = np.zeros((height, width), dtype=np.uint8)
    band = width // (len(ids) + 1)
    for k, class_id in enumerate(ids, start=1):
        label[2:height - 2, k * band:(k + 1) * band] = class_id
    if ignore_border:
        label[-1, :] = 255
    return label


# PASCAL image id -> VOC class ids in it (1..20; 0 background)
PASCAL_IMAGES = {
    "2007_000032": [1, 15], "2007_000039": [20], "2008_000008": [13, 6, 11],
    "2009_000012": [7, 16], "2010_000002": [3, 19, 12],
}
PASCAL_LISTS = {"train": ["2007_000032", "2008_000008", "2010_000002"],
                "val": ["2007_000039", "2009_000012"]}


def make_pascal(root: Path, palette: bool = False) -> Path:
    """``VOC2012``: JPEGImages, SegmentationClassAug (or palette SegmentationClass), ImageSets."""
    label_dir = root / ("SegmentationClass" if palette else "SegmentationClassAug")
    for n, (image_id, ids) in enumerate(PASCAL_IMAGES.items()):
        write_image(root / "JPEGImages" / f"{image_id}.jpg", n)
        write_mask(label_dir / f"{image_id}.png", blocks(ids), "P" if palette else "L")
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    for split, ids in PASCAL_LISTS.items():
        (lists / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


# COCO stem -> contiguous class ids (1..80)
COCO_IMAGES = {
    "train2014": {"COCO_train2014_000000000009": [1, 2, 5],
                  "COCO_train2014_000000000025": [80, 42], "COCO_train2014_000000000030": [3]},
    "val2014": {"COCO_val2014_000000000042": [4, 8], "COCO_val2014_000000000073": [21, 1]},
}


def make_coco(root: Path) -> Path:
    """``COCO2014``: train2014/ val2014/ images and annotations/<split>2014/*.png masks."""
    n = 0
    for folder, images in COCO_IMAGES.items():
        for stem, ids in images.items():
            write_image(root / folder / f"{stem}.jpg", n)
            write_mask(root / "annotations" / folder / f"{stem}.png", blocks(ids))
            n += 1
    return root


def coco_categories() -> list[dict]:
    """The 80 COCO categories with gapped ids (as in the real json: 1..90)."""
    ids = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]
    return [{"id": i, "name": name} for i, name in zip(ids, COCO_CLASSES[1:], strict=True)]


def write_coco_json(path: Path) -> dict:
    """A tiny ``instances_val2014.json``: one polygon, one crowd (list RLE), one string RLE."""
    cats = coco_categories()
    # 6 x 4 image (w x h); polygon square of class "person" (id 1) at x 0..2, y 0..2
    data = {
        "images": [{"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "width": 6,
                    "height": 4}],
        "categories": cats,
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 9.0,
             "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]},
            # column-major runs: columns 4 and 5 (rows 0..3) are crowd "car" (id 3)
            {"id": 2, "image_id": 7, "category_id": 3, "iscrowd": 1, "area": 8.0,
             "segmentation": {"size": [4, 6], "counts": [16, 8]}},
            # compressed string RLE "8;5" = runs [8, 11, 5]: pixels 8..18 column-major
            {"id": 3, "image_id": 7, "category_id": cats[-1]["id"], "iscrowd": 0, "area": 11.0,
             "segmentation": {"size": [4, 6], "counts": "8;5"}},
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return data


FSS_CLASSES = {"trn": ["ab_cat", "bb_dog", "cc_eel", "dd_fox"],
               "val": ["ee_gnu"],
               "test": ["ff_hen", "gg_ibis", "hh_jay", "ii_koi", "jj_lynx"]}


def make_fss(root: Path, per_class: int = 2, with_splits: bool = True) -> Path:
    """``FSS-1000``: <class>/<n>.jpg + <n>.png (0/255 RGB masks), optional splits/*.txt."""
    n = 0
    for classes in FSS_CLASSES.values():
        for name in classes:
            for k in range(1, per_class + 1):
                write_image(root / name / f"{k}.jpg", n)
                mask = (blocks([1], ignore_border=False) * 255).astype(np.uint8)
                write_mask(root / name / f"{k}.png", mask, "RGB")
                n += 1
    if with_splits:
        (root / "splits").mkdir(parents=True, exist_ok=True)
        for split, classes in FSS_CLASSES.items():
            (root / "splits" / f"{split}.txt").write_text("\n".join(classes) + "\n")
    return root


def make_folder(root: Path, names: tuple[str, ...] = ("background", "cat", "dog")) -> Path:
    """A user folder: images/*.jpg|png, masks/*.png, classes.txt."""
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    for n, (stem, ids) in enumerate({"a": [1], "b": [2, 1], "c": [2]}.items()):
        write_image(root / "images" / f"{stem}.jpg", n)
        write_mask(root / "masks" / f"{stem}.png", blocks(ids))
    return root


YOLO_NAMES = {0: "cat", 1: "dog", 2: "kite"}


def make_yolo(root: Path, labels: dict[str, dict[str, str | None]],
              names: dict | list = YOLO_NAMES, size: tuple[int, int] = (40, 32)) -> Path:
    """data.yaml + images/<split>/<stem>.jpg + labels/<split>/<stem>.txt (None: no label file)."""
    for split, stems in labels.items():
        for n, (stem, text) in enumerate(stems.items()):
            write_image(root / "images" / split / f"{stem}.jpg", n, size)
            if text is not None:
                label = root / "labels" / split / f"{stem}.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text(text + "\n")
    data = {"path": ".", "names": names, **{s: f"images/{s}" for s in labels}}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root
