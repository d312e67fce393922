"""What every frozen encoder has: a name, its library id, its weights, and their provenance."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from pipeline.encoders.hub import cached_weights
from pipeline.encoders.registry import EncoderSpec
from pipeline.encoders.weights import (
    FROM_HUB,
    RANDOM_RECORD,
    WeightsSource,
    missing_from_hub,
    weights_sha256,
)
from pipeline.errors import FusionerError, MissingWeightsError, first_line

T = TypeVar("T")


def from_hub(spec: EncoderSpec, source: WeightsSource | None, load: Callable[[], T]) -> T:
    """Run a library's own hub loader; a failed download of uncached weights is one line."""
    try:
        return load()
    except Exception as exc:  # noqa: BLE001 - the libraries raise many kinds (OSError, HTTP...)
        if source is None or source.path is not None or source.hub is None:
            raise
        why = f"download failed: {first_line(exc).split('. ')[0]}"
        raise MissingWeightsError(missing_from_hub(spec.slug, source.hub, [], why)) from exc


def downloaded(source: WeightsSource | None) -> WeightsSource | None:
    """``source`` with its hub file and revision filled in once the library has downloaded it."""
    if source is None or source.kind != FROM_HUB or source.path is not None or source.hub is None:
        return source
    found = cached_weights(source.hub)
    if found is None:
        raise FusionerError(f"{source.hub.repo_id}: downloaded, but none of "
                            f"{', '.join(source.hub.weight_files)} is in the hub cache")
    return WeightsSource(FROM_HUB, found[0], source.hub, found[1])


class FrozenEncoder(nn.Module):
    """Base of visual and text encoders: identity and provenance of the weights in use."""

    def __init__(self, spec: EncoderSpec, source: WeightsSource | None, feature_dim: int) -> None:
        super().__init__()
        self.slug = spec.slug
        self.library_id = spec.library_id
        self.source = downloaded(source)
        self.feature_dim = feature_dim

    @property
    def weights_path(self) -> Path | None:
        """The local weights file in use (for hub weights: the cached snapshot file)."""
        return self.source.path if self.source is not None else None

    @property
    def random_init(self) -> bool:
        return self.source is None

    def weights_digest(self) -> str:
        """sha256 of the weights in use (``random-init`` for random weights)."""
        return weights_sha256(self.weights_path)

    def provenance(self) -> dict[str, Any]:
        """What a store records so features from different weights are never mixed, and where
        the weights came from (``weights_source``; ``hub_id`` and ``hub_revision`` for the hub)."""
        return {
            "encoder": self.slug,
            "library_id": self.library_id,
            "weights_sha256": self.weights_digest(),
            "random_init": self.random_init,
            "feature_dim": self.feature_dim,
            **(self.source.record() if self.source is not None else RANDOM_RECORD),
        }
