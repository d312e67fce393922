"""Encoder registry: ``create_visual_encoder(name)`` and ``create_text_encoder(name)``."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.encoders import catalog  # noqa: F401  (registers the named encoders)
from pipeline.encoders.registry import TEXT_ENCODERS, VISUAL_ENCODERS, EncoderSpec
from pipeline.encoders.text import TextEncoder
from pipeline.encoders.visual import VisualEncoder
from pipeline.encoders.weights import WeightsSource, resolve_weights
from pipeline.names import DEFAULT_TEXT_ENCODER, DEFAULT_VISUAL_ENCODER


def _weights_for(spec: EncoderSpec, weights: Path | str | None,
                 random_init: bool) -> WeightsSource | None:
    locate = spec.options.get("locate")
    if locate is not None:  # data, not weights (precomputed tables): nothing to randomise
        return locate(weights)
    if random_init:
        return None
    return resolve_weights(spec.slug, weights, spec.weight_files, spec.packaged_weights, spec.hub)


def create_visual_encoder(
    name: str,
    weights: Path | str | None = None,
    random_init: bool = False,
    image_size: tuple[int, int] | None = None,
) -> VisualEncoder:
    """Build a frozen visual encoder by slug (or ``timm:NAME``) from its pretrained weights.

    Args:
        name: registered slug (``dino_vits16``, ``clip_vitb16``, ...), alias, or ``timm:MODEL``.
        weights: explicit checkpoint path; else ``$FUSIONER_WEIGHTS``, a package, then the
            Hugging Face hub (cache or download) are tried (``weights.resolve_weights``).
        random_init: build with random weights (tests only; recorded in stores).
        image_size: (H, W) input size, rounded to the patch stride; the encoder's default if None.
    """
    spec = VISUAL_ENCODERS.get(name)
    if not random_init:
        return spec.build(spec, _weights_for(spec, weights, random_init), image_size)
    # random weights are seeded: every process (e.g. distributed extraction workers) builds the
    # same encoder, and the caller's RNG stream is left untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return spec.build(spec, None, image_size)


def create_text_encoder(
    name: str, weights: Path | str | None = None, random_init: bool = False
) -> TextEncoder:
    """Build a frozen text encoder by slug (or ``hf:PATH``) from its pretrained weights.

    Args:
        name: registered slug (``minilm_l6``, ``bert_base``, ``clip_vitb16_text``,
            ``clip_vitb32_table``), alias, ``hf:PATH`` or ``table:PATH``.
        weights: explicit weights path (file or model directory); else as for visual encoders.
        random_init: random weights (tests only; the tokenizer still comes from local files).
            A precomputed table (``clip_vitb32_table``, ``table:PATH``) has no weights: it is
            read as it is (``pipeline.encoders.table``).
    """
    spec = TEXT_ENCODERS.get(name)
    return spec.build(spec, _weights_for(spec, weights, random_init))


def list_visual_encoders() -> list[str]:
    return VISUAL_ENCODERS.names()


def list_text_encoders() -> list[str]:
    return TEXT_ENCODERS.names()


__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "DEFAULT_VISUAL_ENCODER",
    "TextEncoder",
    "VisualEncoder",
    "create_text_encoder",
    "create_visual_encoder",
    "list_text_encoders",
    "list_visual_encoders",
]
