"""``segment(image, classes, ...)``: the one-call Python API, with the loaded models cached."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast

import torch
from PIL import Image

from pipeline.data.base import load_rgb_image
from pipeline.errors import FusionerError
from pipeline.segmentation.core import Background, DenseSegmenter, Mode, SegmentationResult
from pipeline.segmentation.fusion import Segmenter
from pipeline.segmentation.vocabulary import (
    check_vocabulary_options,
    load_table,
    plan_competition,
    segment_in_vocabulary,
)
from pipeline.store import DEFAULT_CACHE_DIR, StoreLocation
from pipeline.thresholds import PAPER_THRESHOLD, Threshold

Method = Literal["fusion", "maskclip"]
_CACHE: dict[tuple, DenseSegmenter] = {}


def load_segmenter(method: Method = "fusion", checkpoint: Path | str | None = None,
                   weights: Path | str | None = None, text_weights: Path | str | None = None,
                   random_init: bool = False, device: str | torch.device = "cpu",
                   image_size: tuple[int, int] | None = None) -> DenseSegmenter:
    """The segmenter for ``method``, built once per argument set and then re-used.

    ``fusion`` needs ``checkpoint`` (its meta names the encoders and their input size);
    ``maskclip`` needs no checkpoint but CLIP ViT-B/16 weights (``image_size``: its input size).
    """
    if method == "fusion" and checkpoint is None:
        raise FusionerError("method 'fusion' needs a checkpoint (a fusioner-fit checkpoint.pt)")
    if method not in ("fusion", "maskclip"):
        raise FusionerError(f"unknown method {method!r}: use 'fusion' or 'maskclip'")
    key = (method, str(checkpoint), str(weights), str(text_weights), random_init, str(device),
           image_size)
    if key not in _CACHE:
        if method == "fusion":
            _CACHE[key] = Segmenter.from_checkpoint(checkpoint, weights, text_weights,  # type: ignore[arg-type]
                                                    random_init, device)
        else:
            from pipeline.maskclip import MaskClipSegmenter

            _CACHE[key] = MaskClipSegmenter(weights, text_weights, random_init, image_size,
                                            device)
    return _CACHE[key]


def segment(image: Image.Image | Path | str, classes: str | Sequence[str],
            checkpoint: Path | str | None = None, *, method: Method = "fusion",
            threshold: Threshold = PAPER_THRESHOLD, background: Background = "threshold",
            mode: Mode = "resize", weights: Path | str | None = None,
            text_weights: Path | str | None = None, random_init: bool = False,
            device: str | torch.device = "cpu", vocabulary: str | Path | None = None,
            cache_dir: StoreLocation | str = DEFAULT_CACHE_DIR,
            progress: bool = False) -> SegmentationResult:
    """Segment one image (PIL image or path) into ``classes`` (list or ``"cat,sofa,window"``).

    Returns ``SegmentationResult``: ``label`` (H, W) at the image's own size (255 = no class),
    ``probs`` (K, H, W), ``class_names``; ``.overlay_image()`` / ``.label_image()`` draw it.
    Models are loaded on the first call and cached for the next ones (same arguments).
    ``vocabulary`` (``coco``, ``lvis``, ``objects365``, ``openimages`` or a names file): the
    classes compete with its other names, whose pixels are "no class"
    (``pipeline.segmentation.vocabulary``); its embeddings are cached under ``cache_dir``.

    Example::

        from pipeline import segment
        result = segment("street.jpg", "car,road,pole", checkpoint="models/run/checkpoint.pt")
        result.overlay_image().save("street_overlay.png")
    """
    picture = image if isinstance(image, Image.Image) else load_rgb_image(Path(image))
    if vocabulary is not None:
        check_vocabulary_options(method, background, threshold)
    segmenter = load_segmenter(method, checkpoint, weights, text_weights, random_init, device)
    if vocabulary is None:
        return segmenter.segment(picture, classes, threshold, background, mode)
    fusion = cast(Segmenter, segmenter)
    plan = plan_competition(fusion, classes, load_table(fusion, vocabulary, cache_dir))
    return segment_in_vocabulary(fusion, picture, plan, float(threshold), mode,  # type: ignore[arg-type]
                                 progress)
