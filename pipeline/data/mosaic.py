"""Mosaic-4: 2 x 2 tilings of four tiles of different classes, with their masks.

``write_mosaics`` tiles any ``TileSource``; ``build_mosaic4`` tiles FSS-1000 images (the paper's
Mosaic-4), ``pipeline.data.instance_mosaic`` tiles instance crops of a YOLO-seg dataset. Output,
replacing earlier outputs whole::

    <out>/images/<00000>.jpg    (2 tile x 2 tile RGB, JPEG quality 95)
    <out>/masks/<00000>.png     class ids of the source's vocabulary, 255 = ignore
    <out>/classes.txt           the source's vocabulary ("background" first)
    <out>/mosaic4.json          seed, tile size, the source's description and the four tiles
                                of each image

Everything is drawn from ``numpy.random.default_rng(seed)``, so a seed gives the same files.
``Mosaic4`` reads a built folder (a ``FolderDataset``; all classes unseen).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from pipeline.data.folder import FolderDataset
from pipeline.data.fss import FSS1000
from pipeline.errors import BadInputError

TILES = ((0, 0), (1, 0), (0, 1), (1, 1))  # (column, row) of the four tiles
MANIFEST = "mosaic4.json"


class TileSource(Protocol):
    """What a mosaic is tiled from: tiles grouped by class, each with its class-id mask."""

    class_names: list[str]  # the vocabulary of the masks (``classes.txt``)

    def members(self) -> Mapping[int, Sequence[int]]:
        """Tile indices of every class that has tiles."""

    def tile(self, index: int, size: int) -> tuple[Image.Image, np.ndarray]:
        """Tile ``index`` as a ``size`` x ``size`` RGB image and its uint8 class-id mask."""

    def tile_id(self, index: int) -> str:
        """Where tile ``index`` comes from (recorded in the manifest)."""

    def describe(self) -> dict[str, Any]:
        """The source's settings (recorded in the manifest)."""


class FssTiles:
    """FSS-1000 images of one split as tiles: the image resized (bicubic), its mask (nearest)."""

    def __init__(self, root: Path, split: str) -> None:
        self.fss = FSS1000(Path(root), split)
        self.split = split
        self.class_names = self.fss.class_names

    def members(self) -> dict[int, list[int]]:
        by_class: dict[int, list[int]] = {}
        for index in range(len(self.fss)):
            by_class.setdefault(self.fss.item(index)[0], []).append(index)
        return by_class

    def tile(self, index: int, size: int) -> tuple[Image.Image, np.ndarray]:
        image, foreground = self.fss.load(index)
        class_id = self.fss.item(index)[0]
        image = image.resize((size, size), Image.Resampling.BICUBIC)
        mask = Image.fromarray(foreground.astype(np.uint8)).resize((size, size),
                                                                   Image.Resampling.NEAREST)
        return image, np.asarray(mask).astype(np.uint8) * class_id

    def tile_id(self, index: int) -> str:
        return self.fss.image_id(index)

    def describe(self) -> dict[str, Any]:
        return {"source": "fss1000", "split": self.split}


def write_mosaics(source: TileSource, out_root: Path, num_images: int, seed: int,
                  tile: int = 224) -> Path:
    """Write ``num_images`` mosaics of 4 tiles of 4 distinct classes of ``source``: each
    mosaic draws 4 classes, then one tile of each (both uniformly)."""
    if num_images < 1 or tile < 1:
        raise BadInputError(f"num_images and tile must be positive ({num_images}, {tile})")
    by_class = {c: list(m) for c, m in source.members().items() if m}
    classes = sorted(by_class)
    if len(classes) < 4:
        raise BadInputError(f"{source.describe()}: {len(classes)} classes have tiles; a mosaic "
                            "needs 4")
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
            image, mask = source.tile(index, tile)
            canvas.paste(image, (col * tile, row * tile))
            label[row * tile:(row + 1) * tile, col * tile:(col + 1) * tile] = mask
            row_sources.append(source.tile_id(index))
        stem = f"{number:05d}"
        canvas.save(out_root / "images" / f"{stem}.jpg", quality=95)
        Image.fromarray(label).save(out_root / "masks" / f"{stem}.png")
        sources.append(row_sources)
    (out_root / "classes.txt").write_text("\n".join(source.class_names) + "\n", encoding="utf-8")
    manifest = {"seed": seed, **source.describe(), "tile": tile, "num_images": num_images,
                "sources": sources}
    (out_root / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out_root


def build_mosaic4(fss_root: Path, out_root: Path, num_images: int, seed: int,
                  split: str = "test", tile: int = 224) -> Path:
    """Write ``num_images`` mosaics of 4 distinct FSS-1000 ``split`` classes to ``out_root``."""
    return write_mosaics(FssTiles(Path(fss_root), split), out_root, num_images, seed, tile)


class Mosaic4(FolderDataset):
    """A folder written by ``build_mosaic4``; evaluation-only (every class unseen)."""

    def __init__(self, root: Path, split: str = "test") -> None:
        super().__init__(root, split, name="mosaic4")
