"""Ultralytics YOLO-seg datasets (``data.yaml`` + ``images/<split>`` + ``labels/<split>``).

Layout, as Ultralytics reads it::

    <root>/data.yaml                       names: {0: person, ...} (or a list); train/val/test:
                                           an image folder, a list of them, or a .txt list
    <root>/images/<split>/<stem>.jpg       images
    <root>/labels/<split>/<stem>.txt       one instance a line: <class> x1 y1 x2 y2 ... (a
                                           polygon, coordinates normalised to [0, 1])

A label file is found where Ultralytics looks: the image path with its last ``images`` folder
replaced by ``labels`` and the suffix by ``.txt``. An image with no label file shows only
background. Label maps: id 0 = ``background`` (a class of its own, not ignore; negatives for
every class), id i + 1 = ``names[i]``; instances are painted largest first, so a small object
lying on a large one stays visible.

Every label file of the split is parsed when the dataset is opened, so a bad one stops the run
before anything is written: one line naming the file and line (a coordinate outside [0, 1], an
odd number of coordinates, fewer than 3 points, a class index not in ``names``), or naming a
label file that has no image.

Zero-shot folds: 4, interleaved over the class indices as COCO-20i's (class index i is unseen in
fold i mod 4), so a COCO-named YOLO dataset gets exactly the COCO-20i folds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, ImageDraw

from pipeline.data.base import ImageFileDataset, Sample, load_rgb_image
from pipeline.data.splits import BACKGROUND, ZeroShotSplit, interleaved_split
from pipeline.errors import BadInputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
MAX_CLASSES = 254  # ids 1..254 + background 0 fit the uint8 label maps (255 = ignore)


@dataclass(frozen=True)
class Instance:
    """One labelled polygon: ``class_index`` into ``names``; ``points`` (P, 2) x, y in [0, 1]."""

    class_index: int
    points: np.ndarray


def read_data_yaml(path: Path) -> dict[str, Any]:
    """The parsed ``data.yaml`` (a mapping), or one clear error."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: no data.yaml (a YOLO-seg dataset needs one)") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BadInputError(f"{path}: unreadable data.yaml ({' '.join(str(exc).split())})") from exc
    if not isinstance(data, dict) or "names" not in data:
        raise BadInputError(f"{path}: data.yaml must be a mapping with 'names'")
    return data


def class_names_of(names: Any, where: Path) -> list[str]:
    """``names`` of data.yaml (a list, or a dict with keys 0..K-1) as a list of K names."""
    if isinstance(names, dict):
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise BadInputError(f"{where}: names must be numbered 0..{len(keys) - 1}")
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not names:
        raise BadInputError(f"{where}: names must be a non-empty list or mapping")
    names = [str(n).strip() for n in names]
    if len(names) > MAX_CLASSES:
        raise BadInputError(f"{where}: {len(names)} classes; at most {MAX_CLASSES} fit")
    if BACKGROUND in names or len(set(names)) != len(names) or "" in names:
        raise BadInputError(f"{where}: names must be unique, non-empty and not '{BACKGROUND}'")
    return names


def parse_label_file(path: Path, num_names: int) -> list[Instance]:
    """Every instance of a YOLO-seg label file; ``BadInputError`` naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: unreadable label file ({exc})") from exc
    instances = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            instances.append(_parse_line(line.split(), num_names, f"{path}:{number}"))
    return instances


def _parse_line(tokens: list[str], num_names: int, where: str) -> Instance:
    try:
        values = [float(t) for t in tokens]
    except ValueError as exc:
        raise BadInputError(f"{where}: not a number ({exc})") from exc
    class_value, coords = values[0], np.asarray(values[1:], dtype=np.float64)
    if class_value != int(class_value) or not 0 <= class_value < num_names:
        raise BadInputError(f"{where}: class index {tokens[0]} not in names (0..{num_names - 1})")
    if len(coords) % 2:
        raise BadInputError(f"{where}: odd number of coordinates ({len(coords)})")
    if len(coords) < 6:
        raise BadInputError(f"{where}: a polygon needs at least 3 points, got {len(coords) // 2}")
    outside = (coords < 0) | (coords > 1) | ~np.isfinite(coords)
    if outside.any():
        raise BadInputError(f"{where}: coordinate {coords[outside][0]:g} outside [0, 1]")
    return Instance(int(class_value), coords.reshape(-1, 2))


def polygon_area(points: np.ndarray) -> float:
    """Shoelace area of a polygon (P, 2)."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def paint_instances(instances: Sequence[Instance], size: tuple[int, int]) -> np.ndarray:
    """A (H, W) uint8 label map of ``size`` (width, height): 0 background, class index + 1 inside
    each polygon, the largest polygon painted first."""
    width, height = size
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    scale = np.array([width, height], dtype=np.float64)
    pixels = [instance.points * scale for instance in instances]
    order = sorted(range(len(instances)), key=lambda i: -polygon_area(pixels[i]))  # stable
    for i in order:
        draw.polygon([tuple(p) for p in pixels[i]], fill=instances[i].class_index + 1)
    return np.asarray(canvas, dtype=np.uint8)


def label_dir_for(image_dir: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``."""
    parts = list(image_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    raise BadInputError(f"{image_dir}: no 'images' folder in its path (YOLO layout)")


def label_path_for(image: Path) -> Path:
    """The label file of ``image``: ``<label dir>/<stem>.txt``."""
    return label_dir_for(image.parent) / f"{image.stem}.txt"


class YoloSegDataset(ImageFileDataset):
    """A split of an Ultralytics YOLO-seg dataset, painted into class-id label maps."""

    def __init__(self, root: Path, split: str, name: str = "yolo",
                 known_orphan_labels: Iterable[str] = ()) -> None:
        self.name, self.split, self.root = name, split, Path(root)
        yaml_path = self.root / "data.yaml"
        data = read_data_yaml(yaml_path)
        self.class_names = [BACKGROUND, *class_names_of(data["names"], yaml_path)]
        self._images = self._split_images(data, split, yaml_path)
        self._read_labels(set(known_orphan_labels))

    def _base(self, data: dict[str, Any]) -> Path:
        path = Path(str(data.get("path") or "."))
        base = path if path.is_absolute() else self.root / path
        return base if base.is_dir() else self.root

    def _split_images(self, data: dict[str, Any], split: str, where: Path) -> list[Path]:
        if not data.get(split):
            splits = [k for k in ("train", "val", "test") if data.get(k)]
            raise BadInputError(f"{where}: no split '{split}' (splits: {splits})")
        entries = data[split] if isinstance(data[split], list) else [data[split]]
        return self.images_in(self._base(data), [str(e) for e in entries])

    @staticmethod
    def images_in(base: Path, entries: Sequence[str]) -> list[Path]:
        """Images of folders (recursively) or ``.txt`` lists, relative to ``base``; sorted."""
        images: list[Path] = []
        for entry in entries:
            path = base / entry
            if path.is_dir():
                images += [p for p in path.rglob("*")
                           if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
            elif path.suffix == ".txt" and path.is_file():
                listed = [line.strip() for line in path.read_text().splitlines() if line.strip()]
                images += [(path.parent / line).resolve() for line in listed]
            else:
                raise BadInputError(f"{path}: image folder or list not found")
        if not images:
            raise BadInputError(f"{base}: no images in {list(entries)}")
        images = sorted(set(images), key=lambda p: (p.stem, str(p)))
        stems = [p.stem for p in images]
        if len(set(stems)) != len(stems):
            raise BadInputError(f"{base}: several images share a stem")
        return images

    def _read_labels(self, known_orphans: set[str]) -> None:
        """Parse every label file of the split now, for ``__getitem__`` (one line for the first
        bad one), and refuse a label file beside them that has no image (``known_orphans``
        stems: logged, skipped)."""
        num_names = len(self.class_names) - 1
        self._instances: dict[Path, list[Instance]] = {}
        for image in self._images:
            label = label_path_for(image)
            self._instances[image] = parse_label_file(label, num_names) if label.is_file() else []
        for image_dir in sorted({image.parent for image in self._images}):
            images = {p.stem for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
            for label in sorted(label_dir_for(image_dir).glob("*.txt")):
                if label.stem in images:
                    continue
                if label.stem not in known_orphans:
                    raise BadInputError(f"{label}: label file without its image")
                log.info("%s: known label file without an image, skipped", label)

    def image_path(self, index: int) -> Path:
        """The image file of sample ``index``."""
        return self._images[index]

    def instances(self, index: int) -> list[Instance]:
        """The labelled polygons of sample ``index`` (parsed when the dataset was opened)."""
        return self._instances[self._images[index]]

    def __getitem__(self, index: int) -> Sample:
        path = self._images[index]
        image = load_rgb_image(path)
        return Sample(image_id=path.stem, image=image,
                      label=paint_instances(self.instances(index), image.size))

    def zero_shot_split(self, fold: int) -> ZeroShotSplit:
        """4 interleaved folds over the class indices (COCO-20i's rule)."""
        return interleaved_split(self.name, self.class_names, fold)


# coco128-seg as shipped (../shared/data/coco128-seg): its labels 000000000656.txt and
# 000000000659.txt have no image (the copy lacks those two JPEGs); they are skipped by name.
COCO128_ORPHAN_LABELS = ("000000000656", "000000000659")
COCO128_VAL_EVERY = 4  # image k (sorted by stem) is val when k % 4 == 3: 96 train, 32 val


class Coco128(YoloSegDataset):
    """coco128-seg (71 COCO classes occur in its 128 images) with a fixed hold-out split.

    ``data.yaml`` lists the same folder for train and val, so the split is ours: images sorted by
    stem, every 4th (k % 4 == 3) is ``val`` (32), the rest ``train`` (96); ``all`` = the 128.
    """

    SPLITS = ("train", "val", "all")

    def __init__(self, root: Path, split: str) -> None:
        if split not in self.SPLITS:
            raise BadInputError(f"coco128 splits are {list(self.SPLITS)}, not '{split}'")
        super().__init__(root, "train", name="coco128", known_orphan_labels=COCO128_ORPHAN_LABELS)
        self.split = split
        if split != "all":
            held_out = split == "val"
            self._images = [image for k, image in enumerate(self._images)
                            if (k % COCO128_VAL_EVERY == COCO128_VAL_EVERY - 1) == held_out]
