"""PASCAL VOC 2012 with the SBD-augmented masks (SegmentationClassAug), for PASCAL-5i.

Layout (the ``VOC2012`` folder HSNet, PFENet and LSeg point their ``datapath`` at)::

    <root>/JPEGImages/<id>.jpg
    <root>/SegmentationClassAug/<id>.png     (single-channel ids 0..20, 255 = boundary/ignore;
                                              falls back to VOC's palette SegmentationClass/)
    <root>/ImageSets/Segmentation/<split>.txt  (one image id a line: train, val, trainval, or
                                              train_aug.txt from the SegmentationClassAug bundle)

Split lists are the plain VOC ``ImageSets`` lists, not HSNet's per-fold ``trn/val/fold{i}.txt``
(those are (image, class) pairs drawn from the same images; folds here come from the label maps
through ``pipeline.data.splits``: ``training_view`` / ``evaluation_episodes``). Label ids are
VOC's own: 0 = background, 1..20 = the classes in VOC order, so fold i unseen = 5i+1..5i+5.
Class names use spaces ("dining table") so they read well in text prompts.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.base import Sample, SegmentationDataset, load_label_map, load_rgb_image
from pipeline.errors import BadInputError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa",
    "train", "tv monitor",
)


def read_id_list(path: Path) -> list[str]:
    """Image ids, one a line (first whitespace-separated token; blank lines skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read image list ({exc})") from exc
    ids = [line.split()[0] for line in lines if line.strip()]
    if not ids:
        raise BadInputError(f"{path}: empty image list")
    return ids


class PascalVOC(SegmentationDataset):
    """VOC2012 images + SegmentationClassAug masks; ``split`` names an ImageSets list."""

    def __init__(self, root: Path, split: str) -> None:
        self.name = "pascal"
        self.split = split
        self.root = Path(root)
        self.class_names = list(VOC_CLASSES)
        lists = self.root / "ImageSets" / "Segmentation"
        list_path = lists / f"{split}.txt"
        if not list_path.is_file():
            known = sorted(p.stem for p in lists.glob("*.txt")) if lists.is_dir() else []
            raise BadInputError(f"{list_path}: PASCAL split '{split}' not found; lists: {known}")
        self._ids = read_id_list(list_path)
        self._label_dir = self.root / "SegmentationClassAug"
        if not self._label_dir.is_dir():
            self._label_dir = self.root / "SegmentationClass"
        if not self._label_dir.is_dir():
            raise BadInputError(f"{self.root}: no SegmentationClassAug/ or SegmentationClass/")

    def __len__(self) -> int:
        return len(self._ids)

    def image_id(self, index: int) -> str:
        return self._ids[index]

    def __getitem__(self, index: int) -> Sample:
        image_id = self._ids[index]
        image = load_rgb_image(self.root / "JPEGImages" / f"{image_id}.jpg")
        label = load_label_map(self._label_dir / f"{image_id}.png", len(VOC_CLASSES), image.size)
        return Sample(image_id=image_id, image=image, label=label)
