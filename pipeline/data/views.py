"""Seeded augmented views of a training image and its label map, for the feature cache.

A view is a random resized crop (output at the encoder's input size), a horizontal flip and,
optionally, colour jitter; the label map gets the same crop and flip (nearest neighbour, so
class ids and 255 = ignore are preserved; a crop never leaves the image, so no pixel is
invented). View 0 is the plain image as the store has always held it; views 1..N are drawn.

Every random number of view ``v`` of image ``i`` comes from its own generator,
``numpy.random.default_rng([seed, i, v])`` (PCG64 seeded by a ``SeedSequence``): a view is a
pure function of (recipe, image index, view index), whatever the shard order, the process or
the thread that makes it - so a resumed or distributed extraction writes identical bytes. The
library samplers (torchvision's ``RandomResizedCrop``, timm's) draw from the process-global RNG,
which cannot promise that; the parameters are therefore drawn here (torchvision's
``RandomResizedCrop`` algorithm: up to 10 tries, then the whole image) and applied with PIL and
``torchvision.transforms.v2.functional`` ops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from pipeline.data.transforms import image_to_tensor, resize_label


@dataclass(frozen=True)
class ViewRecipe:
    """How ``count`` augmented views per image are drawn (recorded in the store's ``views``).

    ``scale``: crop area as a fraction of the image's; ``ratio``: crop aspect ratio relative to
    the image's own (log-uniform; 1 = the image's shape); ``flip``: probability of a horizontal
    flip; ``jitter``: brightness, contrast and saturation factors drawn in [1 - j, 1 + j] and
    applied in that order (0 = no colour jitter).
    """

    count: int = 0
    seed: int = 0
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter: float = 0.0

    def __post_init__(self) -> None:
        low, high = self.scale
        if self.count < 0 or self.seed < 0:
            raise ValueError(f"views and their seed must be >= 0, not {self.count}, {self.seed}")
        if not 0 < low <= high <= 1:
            raise ValueError(f"view crop scale must satisfy 0 < min <= max <= 1, not {self.scale}")
        if not 0 <= self.jitter < 1 or not 0 <= self.flip <= 1:
            raise ValueError(f"view jitter must be in [0, 1) and flip in [0, 1]: "
                             f"{self.jitter}, {self.flip}")

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> ViewRecipe:
        """The recipe a store's ``views`` attribute records (what ``attrs`` wrote), e.g. to
        redo a damaged shard's views the same way."""
        ops = {op.get("op"): op for op in attrs.get("ops", []) if isinstance(op, Mapping)}
        crop = ops.get("random_resized_crop", {})
        given = {"scale": tuple(crop.get("scale", ())) or None,
                 "ratio": tuple(crop.get("ratio", ())) or None,
                 "flip": ops.get("horizontal_flip", {}).get("p"),
                 "jitter": ops.get("color_jitter", {}).get("brightness")}
        return cls(int(attrs.get("count", 0)), int(attrs.get("seed", 0)),
                   **{key: value for key, value in given.items() if value is not None})

    def attrs(self) -> dict[str, Any]:
        """The store's ``views`` attribute: the whole recipe (part of the store's identity)."""
        ops: list[dict[str, Any]] = [
            {"op": "random_resized_crop", "scale": list(self.scale), "ratio": list(self.ratio),
             "ratio_of": "image aspect", "image": "bicubic", "label": "nearest"},
            {"op": "horizontal_flip", "p": self.flip},
        ]
        if self.jitter:
            ops.append({"op": "color_jitter", "brightness": self.jitter,
                        "contrast": self.jitter, "saturation": self.jitter})
        return {"count": self.count, "seed": self.seed, "ops": ops,
                "rng": "numpy default_rng([seed, image index, view])",
                "library": f"torchvision {_torchvision_version()}"}


def view_rng(seed: int, index: int, view: int) -> np.random.Generator:
    """The generator of view ``view`` of image ``index`` (its only source of randomness)."""
    return np.random.default_rng([seed, index, view])


def crop_box(rng: np.random.Generator, width: int, height: int, scale: tuple[float, float],
             ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop: torchvision's RandomResizedCrop sampling,
    with the aspect ratio taken relative to the image's (the whole image if 10 tries fail)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = (width / height) * math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    return 0, 0, height, width


def make_view(image: Image.Image, label: np.ndarray, size: tuple[int, int], recipe: ViewRecipe,
              index: int, view: int) -> tuple[torch.Tensor, np.ndarray]:
    """View ``view`` (>= 1) of image ``index``: ((3, H, W) float pixels in [0, 1], (H, W) label).

    The crop is resized exactly as view 0 is (``image_to_tensor``, ``resize_label``), so a
    full-image crop without flip or jitter reproduces view 0.
    """
    from torchvision.transforms.v2 import functional as F  # noqa: N812 (pipeline/_compat.py)

    rng = view_rng(recipe.seed, index, view)
    top, left, h, w = crop_box(rng, image.width, image.height, recipe.scale, recipe.ratio)
    flip = rng.random() < recipe.flip
    if label.shape != (image.height, image.width):
        label = resize_label(label, (image.height, image.width))
    pixels = image_to_tensor(image.crop((left, top, left + w, top + h)), size)
    target = resize_label(np.ascontiguousarray(label[top:top + h, left:left + w]), size)
    if flip:
        pixels = F.horizontal_flip(pixels)
        target = target[:, ::-1]
    if recipe.jitter:
        brightness, contrast, saturation = rng.uniform(1 - recipe.jitter, 1 + recipe.jitter, 3)
        pixels = F.adjust_brightness(pixels, float(brightness))
        pixels = F.adjust_contrast(pixels, float(contrast))
        pixels = F.adjust_saturation(pixels, float(saturation))
    return pixels.contiguous(), np.ascontiguousarray(target)


def _torchvision_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torchvision")
    except PackageNotFoundError:
        return "none"
