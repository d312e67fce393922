"""What every segmenter shares: class-name checks, dense inference at the image's own size, and
turning per-class probabilities into a label map.

Resolution (``mode``):
- ``resize`` (default): the whole image is resized to the encoder's input size (the size the
  fusion module was trained at), run once, and the class scores are upsampled bilinearly to the
  image's own size.
- ``slide``: windows of the encoder's input size are cut from the image at its own resolution
  (stride 2/3 of the window, last window flush with the border; an image smaller than a window
  is first upscaled to cover it); overlapping scores are averaged, then resized to the image.

Labels: each pixel takes its most probable class among those whose probability reaches their
threshold (a fixed probability, or ``"adaptive"``: per class, see ``pipeline.thresholds``), else
it is "no class" (``NO_CLASS`` = 255). With ``background="prompt"`` a class named
``background`` is queried as well and the pixels it wins are "no class" too.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from PIL import Image

from pipeline.data.base import IGNORE_INDEX
from pipeline.encoders.visual import VisualEncoder
from pipeline.errors import BadInputError
from pipeline.metrics import NONE, prediction_map
from pipeline.model.fusion import upsample_logits
from pipeline.thresholds import PAPER_THRESHOLD, Threshold, map_thresholds
from pipeline.visualize import label_png, overlay

NO_CLASS = IGNORE_INDEX  # label value of pixels that match no class
BACKGROUND_PROMPT = "background"
TEXT_CACHE_SIZE = 64  # class lists whose embeddings a segmenter keeps
MAX_CLASSES = 254  # ids 0..253 (+ a background prompt) stay below NO_CLASS

Background = Literal["threshold", "prompt"]
Mode = Literal["resize", "slide"]


@dataclass
class SegmentationResult:
    """One segmented image: ``label`` (H, W) uint8 ids into ``class_names`` (255 = no class),
    ``probs`` (K, H, W) float32 per-class probabilities at the image's own size. With a
    vocabulary (its name: ``vocabulary``), ``others``: the share of the image each name of it
    that was not asked for won (those pixels are "no class" in ``label``), largest first."""

    image: Image.Image
    label: np.ndarray
    probs: np.ndarray
    class_names: list[str]
    method: str
    others: dict[str, float] = field(default_factory=dict)
    vocabulary: str | None = None

    def label_image(self) -> Image.Image:
        """Palette PNG of the label map (index 255 = no class)."""
        return label_png(self.label, self.class_names)

    def overlay_image(self, alpha: float = 0.5) -> Image.Image:
        """The image with the classes blended in colour and a legend of the classes present."""
        return overlay(self.image, self.label, self.class_names, alpha=alpha)

    def fractions(self) -> dict[str, float]:
        """Share of the image's pixels given to each class (and to ``None``: no class)."""
        counts = np.bincount(self.label.ravel(), minlength=256)
        shares = {name: counts[i] / self.label.size for i, name in enumerate(self.class_names)}
        return {**shares, "(none)": counts[NO_CLASS] / self.label.size}


def check_class_names(classes: str | Sequence[str], background: Background = "threshold",
                      ) -> list[str]:
    """Class names from a list or a comma-separated string; refuse none, duplicates, too many.

    Blank entries (``"cat,,dog,"``) are dropped; duplicates are compared case-insensitively.
    """
    if background not in ("threshold", "prompt"):
        raise BadInputError(f"background must be 'threshold' or 'prompt', not {background!r}")
    items = classes.split(",") if isinstance(classes, str) else list(classes)
    names = [str(name).strip() for name in items if str(name).strip()]
    if not names:
        raise BadInputError("no class names given (e.g. --classes \"cat,sofa,window\")")
    lowered = [name.lower() for name in names]
    duplicates = sorted({name for name in lowered if lowered.count(name) > 1})
    if duplicates:
        raise BadInputError(f"duplicate class names: {', '.join(duplicates)}")
    if background == "prompt" and BACKGROUND_PROMPT in lowered:
        raise BadInputError(f"'{BACKGROUND_PROMPT}' is added by the background prompt itself: "
                            "remove it from the classes or use background 'threshold'")
    if len(names) > MAX_CLASSES:
        raise BadInputError(f"{len(names)} class names; at most {MAX_CLASSES} fit a label PNG")
    return names


def assign_labels(probs: torch.Tensor, threshold: Threshold,
                  background_slot: int | None = None) -> np.ndarray:
    """(K, H, W) probabilities -> (H, W) uint8: the most probable of the classes reaching their
    threshold (``pipeline.thresholds``), ``NO_CLASS`` where none does or where the background
    slot wins."""
    scores = probs.float().numpy()
    index = prediction_map(scores, range(len(scores)), map_thresholds(scores, threshold))
    none = (index == NONE) | (index == background_slot)
    return np.where(none, NO_CLASS, index).astype(np.uint8)


def window_origins(length: int, window: int, stride: int) -> list[int]:
    """Start offsets covering ``length`` with ``window``-long windows; the last one ends flush."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return [*starts, length - window]


class DenseSegmenter(ABC):
    """A frozen visual encoder + a way to score classes per pixel; see the module docstring.

    Subclasses set ``encoder`` (a ``VisualEncoder``) and ``device``, and implement
    ``encode_text`` (class names -> embeddings), ``scores`` (pixels -> per-class scores at some
    resolution) and ``probabilities`` (scores -> probabilities along dim 0/1).
    """

    method = "dense"
    encoder: VisualEncoder
    device: torch.device

    def __init__(self) -> None:
        self._text_cache: dict[tuple[str, ...], torch.Tensor] = {}

    @abstractmethod
    def _encode_text(self, names: list[str]) -> torch.Tensor: ...

    @abstractmethod
    def scores(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) pixels in [0, 1] at the encoder size -> (B, K, h, w) class scores."""

    @abstractmethod
    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) scores -> probabilities (sigmoid or softmax over classes)."""

    def encode_text(self, names: list[str]) -> torch.Tensor:
        """Class embeddings, cached per tuple of names (a notebook loop re-uses them)."""
        key = tuple(names)
        if key not in self._text_cache:
            if len(self._text_cache) >= TEXT_CACHE_SIZE:
                self._text_cache.pop(next(iter(self._text_cache)))
            self._text_cache[key] = self._encode_text(names).to(self.device)
        return self._text_cache[key]

    def windows(self, image: Image.Image, mode: Mode = "resize",
                ) -> tuple[tuple[int, int], Iterator[Window]]:
        """(work image size, its encoder-sized windows) for ``mode`` (module docstring)."""
        if mode == "resize":
            pixels = self.encoder.preprocess(image)[None].to(self.device)
            return (image.height, image.width), iter([Window(pixels, 0, 0, image.height,
                                                             image.width)])
        if mode != "slide":
            raise BadInputError(f"mode must be 'resize' or 'slide', not {mode!r}")
        win_h, win_w = self.encoder.image_size
        scale = max(1.0, win_h / image.height, win_w / image.width)
        work = image
        if scale > 1.0:
            work = image.resize((math.ceil(image.width * scale), math.ceil(image.height * scale)),
                                Image.Resampling.BICUBIC)

        def crops() -> Iterator[Window]:
            for top in window_origins(work.height, win_h, max(1, win_h * 2 // 3)):
                for left in window_origins(work.width, win_w, max(1, win_w * 2 // 3)):
                    crop = work.crop((left, top, left + win_w, top + win_h))
                    pixels = self.encoder.preprocess(crop)[None].to(self.device)
                    yield Window(pixels, top, left, win_h, win_w)

        return (work.height, work.width), crops()

    @torch.inference_mode()
    def image_scores(self, image: Image.Image, text: torch.Tensor,
                     mode: Mode = "resize") -> torch.Tensor:
        """(1, K, H, W) class scores at the image's own size (``resize`` or ``slide``)."""
        work, windows = self.windows(image, mode)
        scored = ((window, self.scores(window.pixels, text)) for window in windows)
        return merge_windows(scored, work, (image.height, image.width))

    def segment(self, image: Image.Image, classes: str | Sequence[str],
                threshold: Threshold = PAPER_THRESHOLD,
                background: Background = "threshold", mode: Mode = "resize",
                ) -> SegmentationResult:
        """Segment one RGB image into ``classes`` (see the module docstring for the rules)."""
        names = check_class_names(classes, background)
        queried = [*names, BACKGROUND_PROMPT] if background == "prompt" else names
        scores = self.image_scores(image.convert("RGB"), self.encode_text(queried), mode)
        probs = self.probabilities(scores)[0].float().cpu()
        label = assign_labels(probs, threshold, len(names) if background == "prompt" else None)
        return SegmentationResult(image, label, probs[: len(names)].numpy(), names, self.method)


@dataclass(frozen=True)
class Window:
    """An encoder-sized input (``pixels`` (1, 3, h, w)) and where its scores go in the work
    image: rows ``top:top + height``, columns ``left:left + width``."""

    pixels: torch.Tensor
    top: int
    left: int
    height: int
    width: int


def merge_windows(scored: Iterable[tuple[Window, torch.Tensor]], work: tuple[int, int],
                  size: tuple[int, int]) -> torch.Tensor:
    """(1, K, H, W) at ``size``: each window's (1, K, h, w) scores resized onto its place in
    the ``work`` image, overlaps averaged, then resized to ``size``."""
    total = count = None
    for window, scores in scored:
        if total is None:
            total = scores.new_zeros((1, scores.shape[1], *work), dtype=torch.float32)
            count = total.new_zeros((1, 1, *work))
        rows = slice(window.top, window.top + window.height)
        cols = slice(window.left, window.left + window.width)
        total[..., rows, cols] += _resize(scores, (window.height, window.width))
        count[..., rows, cols] += 1  # type: ignore[index]
    if total is None:
        raise ValueError("no window to merge")
    return _resize(total / count, size)


def _resize(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, K, h, w) scores (logits, before any sigmoid/softmax) to ``size``."""
    return upsample_logits(scores.float(), size)
