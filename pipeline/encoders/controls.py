"""Control text encoders: ``shuffled:<text encoder>`` attaches every class name's embedding to
another name, so "the names steer the masks" is a measured difference, not a reading.

``create_text_encoder("shuffled:minilm_l6")`` builds MiniLM-L6 itself; ``encode_classes(names)``
returns its rows under a seeded derangement of the names other than ``background`` (which stays
in place: it is never queried), so the same vectors come back attached to the wrong names, at
training and at evaluation alike. Its provenance says so: ``control: "name-shuffled"``, the
seed, the source encoder and (per store, ``store_attrs``) the permutation, ``perm[i]`` = the
class whose embedding name ``i`` gets. Everything else (a table's files and matches, its zero
``background`` row) is the source encoder's, forwarded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.data.splits import BACKGROUND
from pipeline.encoders.registry import TEXT_ENCODERS, EncoderSpec
from pipeline.encoders.templates import PROMPT_TEMPLATES
from pipeline.encoders.text import TextEncoder
from pipeline.encoders.weights import WeightsSource
from pipeline.errors import FusionerError
from pipeline.names import NAME_SHUFFLED_CONTROL, SHUFFLED_PREFIX

SHUFFLE_SEED = 0


def name_derangement(class_names: list[str], seed: int = SHUFFLE_SEED) -> list[int]:
    """``perm`` with ``perm[i]`` = the class whose embedding name ``i`` gets: no name other
    than ``background`` keeps its own (drawn from ``default_rng(seed)`` until one is a
    derangement), ``background`` stays."""
    movable = [i for i, name in enumerate(class_names) if name != BACKGROUND]
    if len(movable) < 2:
        raise FusionerError(f"name shuffling needs 2 or more class names besides "
                            f"'{BACKGROUND}', got {len(movable)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(movable))
    while (order == np.arange(len(movable))).any():
        order = rng.permutation(len(movable))
    perm = list(range(len(class_names)))
    for target, source in zip(movable, order, strict=True):
        perm[target] = movable[int(source)]
    return perm


class ShuffledTextEncoder(TextEncoder):
    """A text encoder whose class rows are deranged among the names (a control)."""

    def __init__(self, spec: EncoderSpec, inner: TextEncoder, seed: int = SHUFFLE_SEED) -> None:
        super().__init__(spec, inner.source, inner.feature_dim)
        self.inner, self.seed = inner, seed

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        return self.inner.encode_prompts(prompts)

    def encode_classes(self, class_names: list[str],
                       templates: tuple[str, ...] = PROMPT_TEMPLATES) -> torch.Tensor:
        """The source encoder's (K, D) rows, row ``i`` being name ``perm[i]``'s."""
        rows = self.inner.encode_classes(class_names, templates)
        return rows[name_derangement(class_names, self.seed)]

    def encode_store(self, class_names: list[str], templates: tuple[str, ...]) -> torch.Tensor:
        """The source encoder's store rows, row ``i`` being name ``perm[i]``'s."""
        rows = self.inner.encode_store(class_names, templates)
        return rows[name_derangement(class_names, self.seed)]

    def provenance(self) -> dict[str, Any]:
        """The source encoder's provenance under this slug, and what control it is."""
        return {**self.inner.provenance(), "encoder": self.slug,
                "control": NAME_SHUFFLED_CONTROL, "control_seed": self.seed,
                "control_source": self.inner.slug}

    def store_attrs(self, class_names: list[str], templates: tuple[str, ...]) -> dict[str, Any]:
        """The source encoder's store attributes and the permutation."""
        return {**self.inner.store_attrs(class_names, templates),
                "control_permutation": name_derangement(class_names, self.seed)}


def shuffled_spec(name: str) -> EncoderSpec:
    """The spec of ``shuffled:<name>``: the named encoder's, built then wrapped."""
    inner = TEXT_ENCODERS.get(name)

    def build(spec: EncoderSpec, weights: WeightsSource | None) -> TextEncoder:
        return ShuffledTextEncoder(spec, inner.build(inner, weights))

    return EncoderSpec(f"{SHUFFLED_PREFIX}:{inner.slug}", inner.library_id, build,
                       inner.weight_files, inner.packaged_weights,
                       f"{inner.description or inner.slug}, class names shuffled (a control)",
                       dict(inner.options), inner.hub, inner.pretrained)
