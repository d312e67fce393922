"""A user's own dataset: ``images/`` + ``masks/`` + ``classes.txt``.

Layout (``<base>`` is ``<root>/<split>`` when that folder has ``images/``, else ``<root>``)::

    <base>/images/<stem>.jpg|.jpeg|.png     RGB images
    <base>/masks/<stem>.png                 single-channel class ids, 255 = ignore
    <base>/classes.txt (or <root>/classes.txt)  one class name a line; line i = id i

A class named "background" is the background id (negatives for every class, never queried).
Every image needs a mask of the same stem and size, and every mask an image: mismatches are
reported at construction with the offending stems. The vocabulary is the user's own, so the
zero-shot split is evaluation-only: every class but background is unseen.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.base import (
    ImageFileDataset,
    Sample,
    load_label_map,
    load_rgb_image,
    read_class_names,
)
from pipeline.data.splits import ZeroShotSplit, all_unseen_split
from pipeline.errors import BadInputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class FolderDataset(ImageFileDataset):
    """Images and same-stem class-id masks from a folder, with its ``classes.txt``."""

    def __init__(self, root: Path, split: str, name: str = "folder") -> None:
        self.name = name
        self.split = split
        self.root = Path(root)
        base = self.root / split if (self.root / split / "images").is_dir() else self.root
        image_dir, mask_dir = base / "images", base / "masks"
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                raise BadInputError(f"{folder}: folder not found ({name} dataset needs "
                                    "images/, masks/ and classes.txt)")
        classes = base / "classes.txt"
        self.class_names = read_class_names(classes if classes.is_file()
                                            else self.root / "classes.txt")
        self._images = sorted(p for p in image_dir.iterdir()
                              if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self._images:
            raise BadInputError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self._mask_dir = mask_dir
        image_stems = [p.stem for p in self._images]
        if len(set(image_stems)) != len(image_stems):
            raise BadInputError(f"{image_dir}: several images share a stem")
        mask_stems = {p.stem for p in mask_dir.glob("*.png")}
        no_mask = [s for s in image_stems if s not in mask_stems]
        no_image = sorted(mask_stems - set(image_stems))
        if no_mask or no_image:
            raise BadInputError(f"{base}: images without masks {no_mask[:5]} "
                                f"({len(no_mask)}), masks without images {no_image[:5]} "
                                f"({len(no_image)})")

    def __getitem__(self, index: int) -> Sample:
        path = self._images[index]
        image = load_rgb_image(path)
        label = load_label_map(self._mask_dir / f"{path.stem}.png", len(self.class_names),
                               image.size)
        return Sample(image_id=path.stem, image=image, label=label)

    def zero_shot_split(self, fold: int) -> ZeroShotSplit:
        """Evaluation-only: every class except background is unseen."""
        return all_unseen_split(self.name, self.class_names, fold)
