"""Short names users type for catalogue encoders (``dino`` -> ``dino_vits16``).

Kept outside ``pipeline.encoders`` so stages that never build an encoder (fit, evaluate) resolve
the same names without importing an encoder library. Stores and checkpoints always record the
full slug.
"""

from __future__ import annotations

VISUAL_ALIASES = {"dino": "dino_vits16", "dinov2": "dinov2_vits14", "mocov3": "mocov3_vitb16",
                  "clip": "clip_vitb16"}
TEXT_ALIASES = {"minilm": "minilm_l6", "bert": "bert_base", "clip": "clip_vitb16_text"}


def visual_slug(name: str) -> str:
    """The catalogue slug of a visual encoder name or alias (other names pass through)."""
    return VISUAL_ALIASES.get(name, name)


def text_slug(name: str) -> str:
    """The catalogue slug of a text encoder name or alias (other names pass through)."""
    return TEXT_ALIASES.get(name, name)
