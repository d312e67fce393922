"""Render COCO ``instances_*.json`` into the class-id mask PNGs ``Coco`` reads (no pycocotools).

Polygons are filled with PIL (borders may differ from pycocotools by a pixel); RLE masks, both
uncompressed (``counts`` a list, as crowd regions are stored) and compressed (a string), are
decoded here. Instances are painted largest first so small objects stay visible; crowd regions
not covered by an instance become 255 (ignore). Ids: 0 = background, 1..80 in category-id order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.data.base import IGNORE_INDEX
from pipeline.data.coco import COCO_CLASSES
from pipeline.errors import BadInputError


def rle_counts_from_string(text: str) -> list[int]:
    """Decode COCO's compressed RLE string (LEB128-like, 6 bits a char) into run lengths."""
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            chunk = ord(text[pos]) - 48
            value |= (chunk & 0x1F) << (5 * shift)
            more = bool(chunk & 0x20)
            pos += 1
            shift += 1
            if not more and chunk & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def decode_rle(counts: list[int] | str, height: int, width: int) -> np.ndarray:
    """Run lengths (zeros first, column-major) -> (height, width) boolean mask."""
    runs = rle_counts_from_string(counts) if isinstance(counts, str) else list(counts)
    if sum(runs) != height * width:
        raise BadInputError(f"RLE covers {sum(runs)} pixels, image has {height * width}")
    flat = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
    return flat.reshape(width, height).T


def annotation_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """One instance (polygons or RLE) -> boolean mask."""
    if isinstance(segmentation, dict):
        return decode_rle(segmentation["counts"], height, width)
    canvas = Image.new("L", (width, height))
    draw = ImageDraw.Draw(canvas)
    for polygon in segmentation:
        if len(polygon) >= 6:
            draw.polygon([float(v) for v in polygon], fill=1, outline=1)
    return np.asarray(canvas).astype(bool)


def render_coco_masks(instances_json: Path, out_dir: Path) -> int:
    """Write ``<out_dir>/<image stem>.png`` for every image of the json; returns the count."""
    try:
        data = json.loads(Path(instances_json).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{instances_json}: unreadable COCO json ({exc})") from exc
    categories = sorted(data["categories"], key=lambda c: c["id"])
    if [c["name"] for c in categories] != list(COCO_CLASSES[1:]):
        raise BadInputError(f"{instances_json}: categories are not the 80 COCO classes")
    class_of = {c["id"]: index for index, c in enumerate(categories, start=1)}
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for image in data["images"]:
        height, width = image["height"], image["width"]
        label = np.zeros((height, width), dtype=np.uint8)
        crowd = np.zeros((height, width), dtype=bool)
        anns = sorted(by_image.get(image["id"], []), key=lambda a: -a.get("area", 0))
        for ann in anns:
            mask = annotation_mask(ann["segmentation"], height, width)
            if ann.get("iscrowd", 0):
                crowd |= mask
            else:
                label[mask] = class_of[ann["category_id"]]
        label[crowd & (label == 0)] = IGNORE_INDEX
        Image.fromarray(label).save(out_dir / f"{Path(image['file_name']).stem}.png")
    return len(data["images"])
