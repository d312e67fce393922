"""CamVid road scenes (SegNet tutorial copy): the embedded default dataset."""

from __future__ import annotations

from pathlib import Path

from pipeline.data.base import (
    IGNORE_INDEX,
    ImageFileDataset,
    Sample,
    load_label_map,
    load_rgb_image,
    read_class_names,
)
from pipeline.errors import BadInputError

UNLABELLED_ID = 11  # CamVid "void": mapped to the ignore index


class CamVid(ImageFileDataset):
    """``<root>/{train,val}/images/*.jpg`` with ``labels/*.png`` and ``classes.txt``."""

    def __init__(self, root: Path, split: str) -> None:
        self.name = "camvid"
        self.split = split
        self.root = Path(root)
        image_dir = self.root / split / "images"
        if not image_dir.is_dir():
            raise BadInputError(f"{image_dir}: CamVid split '{split}' not found")
        self.class_names = read_class_names(self.root / "classes.txt")
        self._images = sorted(image_dir.glob("*.jpg"))
        if not self._images:
            raise BadInputError(f"{image_dir}: no images")

    def __getitem__(self, index: int) -> Sample:
        image_path = self._images[index]
        image = load_rgb_image(image_path)
        label_path = self.root / self.split / "labels" / f"{image_path.stem}.png"
        label = load_label_map(label_path, UNLABELLED_ID + 1, size=image.size)
        label[label == UNLABELLED_ID] = IGNORE_INDEX
        return Sample(image_id=image_path.stem, image=image, label=label)
