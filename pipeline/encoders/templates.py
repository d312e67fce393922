"""Prompt templates for class-name embeddings (the paper's list, after CLIP's ImageNet prompts)."""

from __future__ import annotations

PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
    "a bad photo of a {}.",
    "a cropped photo of the {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a close-up photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "itap of a {}.",
)


def expand_prompts(class_name: str, templates: tuple[str, ...] = PROMPT_TEMPLATES) -> list[str]:
    """Every template filled with ``class_name``."""
    return [template.format(class_name) for template in templates]
