"""FSS-1000: 1000 classes, 10 images each, one binary mask per image.

Layout (as distributed, and as HSNet reads it)::

    <root>/<class folder>/<n>.jpg     RGB image (224 x 224 in the release)
    <root>/<class folder>/<n>.png     its mask: foreground >= 128 (0/255, grey or RGB)
    <root>/splits/{trn,val,test}.txt  optional: class folders of each split, one a line
                                      (copy HSNet's data/splits/fss/*.txt here to match it)

Without ``splits/``, each class goes to a split by a fixed hash of its folder name
(``class_split_of``): about 52% trn, 24% val, 24% test, HSNet's 520/240/240 proportions; adding
or removing classes never moves the others. Splits are class-disjoint, so each split has its own
vocabulary: 0 = background, then the split's class folders sorted, "_" shown as a space. Labels
are uint8 with 255 = ignore, so a split may hold at most 254 classes: val/test (240) fit, the
full trn split (520) does not and is refused with a clear error (see ``MAX_CLASSES``). The
zero-shot split follows: trn classes are all seen, val/test classes all unseen.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.base import Sample, SegmentationDataset, load_rgb_image
from pipeline.data.splits import BACKGROUND, ZeroShotSplit
from pipeline.errors import BadInputError, UnknownNameError

CLASS_SPLITS = ("trn", "val", "test")
SPLIT_ALIASES = {"train": "trn", "trn": "trn", "val": "val", "test": "test"}
HASH_CUTS = (0.52, 0.76)  # trn below the first cut, val below the second, test above
MAX_CLASSES = 254  # ids 1..254 in uint8 labels; 255 is the ignore index


def class_split_of(folder: str) -> str:
    """The default split of a class: a fixed hash of its folder name (SHA-256)."""
    digest = int.from_bytes(hashlib.sha256(folder.encode("utf-8")).digest()[:8], "big")
    fraction = digest / 2**64
    return "trn" if fraction < HASH_CUTS[0] else "val" if fraction < HASH_CUTS[1] else "test"


def load_binary_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A 0/255 mask (any mode) -> bool foreground (grey >= 128), checked against ``size``."""
    try:
        with Image.open(path) as mask:
            grey = np.asarray(mask.convert("L"))
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: file not found") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(f"{path}: unreadable mask ({exc})") from exc
    if (grey.shape[1], grey.shape[0]) != tuple(size):
        raise BadInputError(f"{path}: mask size {grey.shape[1]}x{grey.shape[0]} "
                            f"!= image size {size[0]}x{size[1]}")
    return grey >= 128


def read_class_splits(root: Path) -> dict[str, str]:
    """Class folder -> split, from ``<root>/splits/*.txt`` or the hash rule."""
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "splits")
    if not folders:
        raise BadInputError(f"{root}: no class folders (FSS-1000 layout <class>/<n>.jpg)")
    lists = root / "splits"
    if not lists.is_dir():
        return {folder: class_split_of(folder) for folder in folders}
    assigned: dict[str, str] = {}
    for split in CLASS_SPLITS:
        path = lists / f"{split}.txt"
        if not path.is_file():
            raise BadInputError(f"{path}: missing (splits/ needs trn.txt, val.txt, test.txt)")
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                assigned[line.strip()] = split
    unknown = sorted(set(assigned) - set(folders))
    if unknown:
        raise BadInputError(f"{lists}: classes without a folder: {unknown[:5]}")
    return assigned


class FSS1000(SegmentationDataset):
    """Images of the classes in one split (trn/val/test), labels in that split's vocabulary."""

    def __init__(self, root: Path, split: str) -> None:
        if split not in SPLIT_ALIASES:
            raise BadInputError(f"FSS-1000 split must be one of {sorted(SPLIT_ALIASES)}, "
                                f"not '{split}'")
        self.name = "fss1000"
        self.split = split
        self.root = Path(root)
        if not self.root.is_dir():
            raise BadInputError(f"{self.root}: FSS-1000 folder not found")
        self.class_split = SPLIT_ALIASES[split]
        splits = read_class_splits(self.root)
        self.folders = sorted(f for f, s in splits.items() if s == self.class_split)
        if len(self.folders) > MAX_CLASSES:
            raise BadInputError(f"{self.root}: FSS-1000 split '{split}' has {len(self.folders)} "
                                f"classes; uint8 labels hold {MAX_CLASSES}")
        self.class_names = [BACKGROUND] + [f.replace("_", " ") for f in self.folders]
        self._items: list[tuple[int, Path]] = []
        for class_id, folder in enumerate(self.folders, start=1):
            self._items += [(class_id, p) for p in sorted((self.root / folder).glob("*.jpg"))]
        if not self._items:
            raise BadInputError(f"{self.root}: no images in FSS-1000 split '{split}'")

    def __len__(self) -> int:
        return len(self._items)

    def image_id(self, index: int) -> str:
        class_id, path = self._items[index]
        return f"{self.folders[class_id - 1]}__{path.stem}"

    def item(self, index: int) -> tuple[int, Path]:
        """(class id, image path) of sample ``index``, without decoding it."""
        return self._items[index]

    def load(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """(RGB image, boolean foreground mask) of sample ``index``."""
        path = self._items[index][1]
        image = load_rgb_image(path)
        return image, load_binary_mask(path.with_suffix(".png"), image.size)

    def __getitem__(self, index: int) -> Sample:
        image, foreground = self.load(index)
        label = np.where(foreground, self._items[index][0], 0).astype(np.uint8)
        return Sample(image_id=self.image_id(index), image=image, label=label)

    def zero_shot_split(self, fold: int) -> ZeroShotSplit:
        """Fold 0 only: trn classes all seen; val/test classes all unseen."""
        if fold != 0:
            raise UnknownNameError(f"fss1000 has a single fold 0, not {fold}")
        ids = tuple(range(1, len(self.class_names)))
        seen, unseen = (ids, ()) if self.class_split == "trn" else ((), ids)
        return ZeroShotSplit(self.name, 0, seen, unseen, background=0)
