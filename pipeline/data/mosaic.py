"""Mosaic-4: 2 x 2 tilings of four FSS-1000 images of different classes, with their masks.

``build_mosaic4`` (the DVC "prepare" stage) writes, replacing earlier outputs whole::

    <out>/images/<00000>.jpg    (2 tile x 2 tile RGB, JPEG quality 95)
    <out>/masks/<00000>.png     class ids: 0 = background, 1.. = the FSS split's classes
    <out>/classes.txt           "background" then the split's classes (the FSS vocabulary)
    <out>/mosaic4.json          seed, source split, tile size and the four sources of each image

Everything is drawn from ``numpy.random.default_rng(seed)``, so a seed gives the same files.
``Mosaic4`` reads the built folder (a ``FolderDataset``; all classes unseen).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.folder import FolderDataset
from pipeline.data.fss import FSS1000
from pipeline.errors import BadInputError

TILES = ((0, 0), (1, 0), (0, 1), (1, 1))  # (column, row) of the four tiles


def _tile(dataset: FSS1000, index: int, size: int) -> tuple[Image.Image, np.ndarray]:
    """One FSS image resized to ``size`` (bicubic) and its mask (nearest) as class ids."""
    image, foreground = dataset.load(index)
    class_id = dataset.item(index)[0]
    image = image.resize((size, size), Image.Resampling.BICUBIC)
    mask = Image.fromarray(foreground.astype(np.uint8)).resize((size, size),
                                                               Image.Resampling.NEAREST)
    return image, np.asarray(mask).astype(np.uint8) * class_id


def build_mosaic4(fss_root: Path, out_root: Path, num_images: int, seed: int,
                  split: str = "test", tile: int = 224) -> Path:
    """Write ``num_images`` mosaics of 4 distinct FSS-1000 ``split`` classes to ``out_root``."""
    if num_images < 1 or tile < 1:
        raise BadInputError(f"num_images and tile must be positive ({num_images}, {tile})")
    fss = FSS1000(Path(fss_root), split)
    by_class: dict[int, list[int]] = {}
    for index in range(len(fss)):
        by_class.setdefault(fss.item(index)[0], []).append(index)
    classes = sorted(by_class)
    if len(classes) < 4:
        raise BadInputError(f"{fss_root}: split '{split}' has {len(classes)} classes with "
                            "images; a mosaic needs 4")
    out_root = Path(out_root)
    for sub in ("images", "masks"):
        shutil.rmtree(out_root / sub, ignore_errors=True)
        (out_root / sub).mkdir(parents=True)
    rng = np.random.default_rng(seed)
    sources: list[list[str]] = []
    for number in range(num_images):
        picked = rng.choice(len(classes), size=4, replace=False)
        canvas = Image.new("RGB", (2 * tile, 2 * tile))
        label = np.zeros((2 * tile, 2 * tile), dtype=np.uint8)
        row_sources = []
        for (col, row), choice in zip(TILES, picked, strict=True):
            members = by_class[classes[int(choice)]]
            index = members[int(rng.integers(len(members)))]
            image, mask = _tile(fss, index, tile)
            canvas.paste(image, (col * tile, row * tile))
            label[row * tile:(row + 1) * tile, col * tile:(col + 1) * tile] = mask
            row_sources.append(fss.image_id(index))
        stem = f"{number:05d}"
        canvas.save(out_root / "images" / f"{stem}.jpg", quality=95)
        Image.fromarray(label).save(out_root / "masks" / f"{stem}.png")
        sources.append(row_sources)
    (out_root / "classes.txt").write_text("\n".join(fss.class_names) + "\n", encoding="utf-8")
    manifest = {"seed": seed, "split": split, "tile": tile, "num_images": num_images,
                "sources": sources}
    (out_root / "mosaic4.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out_root


class Mosaic4(FolderDataset):
    """A folder written by ``build_mosaic4``; evaluation-only (every class unseen)."""

    def __init__(self, root: Path, split: str = "test") -> None:
        super().__init__(root, split, name="mosaic4")
