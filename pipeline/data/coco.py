"""COCO 2014 with pre-rendered class-id masks (the layout HSNet's COCO-20i loader reads).

Layout (HSNet's ``COCO2014`` datapath: the official image zips plus the per-image mask PNGs
HSNet links to, rendered from the instances json)::

    <root>/train2014/COCO_train2014_<n>.jpg      <root>/val2014/COCO_val2014_<n>.jpg
    <root>/annotations/train2014/<same stem>.png  <root>/annotations/val2014/<same stem>.png

Masks are single-channel: 0 = background, 1..80 = the 80 categories in COCO category-id order
(contiguous, HSNet's ``class_id + 1``), 255 = ignore. The mask folder defines the split: every
mask needs its image (missing images are reported at construction). For the official
``instances_*.json`` only, render these PNGs first with ``pipeline.data.coco_json``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.base import Sample, SegmentationDataset, load_label_map, load_rgb_image
from pipeline.errors import BadInputError

COCO_CLASSES = (
    "background", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
SPLIT_FOLDERS = {"train": "train2014", "val": "val2014", "train2014": "train2014",
                 "val2014": "val2014"}


class Coco(SegmentationDataset):
    """COCO2014 images with ``annotations/<split>2014/*.png`` class-id masks."""

    def __init__(self, root: Path, split: str) -> None:
        if split not in SPLIT_FOLDERS:
            raise BadInputError(f"COCO split must be one of {sorted(SPLIT_FOLDERS)}, not '{split}'")
        self.name = "coco"
        self.split = split
        self.root = Path(root)
        self.class_names = list(COCO_CLASSES)
        folder = SPLIT_FOLDERS[split]
        self._image_dir = self.root / folder
        mask_dir = self.root / "annotations" / folder
        if not mask_dir.is_dir():
            raise BadInputError(f"{mask_dir}: COCO mask folder not found (see pipeline.data.coco)")
        self._masks = sorted(mask_dir.glob("*.png"))
        if not self._masks:
            raise BadInputError(f"{mask_dir}: no masks")
        missing = [m.stem for m in self._masks if not (self._image_dir / f"{m.stem}.jpg").is_file()]
        if missing:
            raise BadInputError(f"{self._image_dir}: {len(missing)} masks have no image, "
                                f"e.g. {missing[:3]}")

    def __len__(self) -> int:
        return len(self._masks)

    def image_id(self, index: int) -> str:
        return self._masks[index].stem

    def __getitem__(self, index: int) -> Sample:
        mask_path = self._masks[index]
        image = load_rgb_image(self._image_dir / f"{mask_path.stem}.jpg")
        label = load_label_map(mask_path, len(COCO_CLASSES), image.size)
        return Sample(image_id=mask_path.stem, image=image, label=label)
