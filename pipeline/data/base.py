"""The dataset contract every loader follows, and safe image/mask reading."""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from pipeline.errors import BadInputError

IGNORE_INDEX = 255
MAX_IMAGE_PIXELS = 80_000_000  # refuse decompression bombs well before they eat the memory
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Sample:
    """One image with its label map: class ids into ``class_names``, 255 = ignore."""

    image_id: str
    image: Image.Image
    label: np.ndarray


class SegmentationDataset(ABC):
    """A split of a segmentation dataset: indexable ``Sample``s plus the class names."""

    name: str
    split: str
    class_names: list[str]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def image_id(self, index: int) -> str:
        """A stable identifier of sample ``index`` (no image decoding)."""

    @abstractmethod
    def __getitem__(self, index: int) -> Sample: ...


class ImageFileDataset(SegmentationDataset):
    """A dataset whose samples are image files (``self._images``), identified by file stem."""

    _images: list[Path]

    def __len__(self) -> int:
        return len(self._images)

    def image_id(self, index: int) -> str:
        return self._images[index].stem


def default_data_root() -> Path:
    """``$FUSIONER_DATA``, else the shared data folder beside the project checkout."""
    env = os.environ.get("FUSIONER_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


def load_rgb_image(path: Path | IO[bytes], name: str | None = None) -> Image.Image:
    """Decode an image (a file, or an open binary stream such as an upload) fully as 8-bit RGB,
    or raise one clear ``BadInputError`` that names it (``name``, else the path)."""
    path_name = name or str(path)
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                if image.width == 0 or image.height == 0:
                    raise BadInputError(f"{path_name}: image has zero size")
                if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                    array = np.asarray(image, dtype=np.float64)
                    scale = 255.0 / max(float(array.max()), 1.0)
                    image = Image.fromarray((array * scale).astype(np.uint8))
                return image.convert("RGB")
    except BadInputError:
        raise
    except FileNotFoundError as exc:
        raise BadInputError(f"{path_name}: file not found") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(f"{path_name}: image too large (decompression bomb guard)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(f"{path_name}: unreadable image ({exc})") from exc


def load_label_map(path: Path, num_classes: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a single-channel label PNG; ids >= ``num_classes`` (other than 255) are refused.

    ``size`` (width, height) is the image size the mask must match.
    """
    try:
        with Image.open(path) as mask:
            mask.load()
            if mask.mode not in ("L", "P", "I", "I;16"):
                raise BadInputError(
                    f"{path}: label map must be single-channel, got mode {mask.mode}"
                )
            label = np.asarray(mask)
    except BadInputError:
        raise
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: file not found") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(f"{path}: unreadable label map ({exc})") from exc
    if size is not None and (label.shape[1], label.shape[0]) != tuple(size):
        raise BadInputError(
            f"{path}: mask size {label.shape[1]}x{label.shape[0]} != image size {size[0]}x{size[1]}"
        )
    bad = (label >= num_classes) & (label != IGNORE_INDEX)
    if bad.any():
        raise BadInputError(f"{path}: label ids {sorted(np.unique(label[bad]).tolist())[:5]} "
                            f"out of range 0..{num_classes - 1} (255 = ignore)")
    return label.astype(np.uint8)


def read_class_names(path: Path) -> list[str]:
    """One class name a line; blank lines skipped; duplicates refused."""
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read class names ({exc})") from exc
    names = [name for name in names if name]
    if not names:
        raise BadInputError(f"{path}: no class names")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise BadInputError(f"{path}: duplicate class names {duplicates}")
    return names
