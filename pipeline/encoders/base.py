"""What every frozen encoder has: a name, its library id, its weights, and their provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from pipeline.encoders.registry import EncoderSpec
from pipeline.encoders.weights import weights_sha256


class FrozenEncoder(nn.Module):
    """Base of visual and text encoders: identity and provenance of the weights in use."""

    def __init__(self, spec: EncoderSpec, weights: Path | None, feature_dim: int) -> None:
        super().__init__()
        self.slug = spec.slug
        self.library_id = spec.library_id
        self.weights_path = weights
        self.feature_dim = feature_dim

    @property
    def random_init(self) -> bool:
        return self.weights_path is None

    def provenance(self) -> dict[str, Any]:
        """What a store records so features from different weights are never mixed."""
        return {
            "encoder": self.slug,
            "library_id": self.library_id,
            "weights_sha256": weights_sha256(self.weights_path),
            "random_init": self.random_init,
            "feature_dim": self.feature_dim,
        }
