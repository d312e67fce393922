"""The image bootstrap: seeded resamples of the evaluated images, shared by every figure.

A figure here is a function of per-image contributions summed over a set of images: an IoU
accumulator's per-image (intersection, truth, prediction) counts give the split's mIoU of the
summed counts (HSNet's accumulation), so a resample of images is scored by summing the counts of
the images it drew, each as often as it was drawn. Every figure of one evaluation is computed on
the SAME resamples (one ``Resampler``): the class folds of a replicate see the same images, and a
ratio (model / baseline, model / control) is the ratio of its two figures on each replicate, so
the pairing of images is kept.

Resampling: ``resamples`` (B) replicates, each ``n`` images drawn with replacement from the
``n`` evaluated ones (sorted ids), by ``numpy.random.default_rng(seed)``; the interval is the
percentile one (the 2.5th and 97.5th percentiles of the B replicate values, numpy's linear
interpolation). Same images, B and seed: the same intervals, bit for bit.

Another figure plugs in with two pieces: per-image contributions (image id -> an array, all of
one shape, additive over images) and a vectorised function from summed contributions (B, ...)
to values (B,): ``Resampler.replicates(contributions, figure)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import FusionerError

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class Resampler:
    """B resamples of ``images``: ``weights[b, i]`` = how often replicate b drew image i."""

    images: tuple[str, ...]
    weights: np.ndarray  # (B, n) int64, each row sums to n
    seed: int
    level: float = LEVEL

    @classmethod
    def draw(cls, images: Sequence[str], resamples: int = RESAMPLES, seed: int = SEED,
             level: float = LEVEL) -> Resampler:
        """``resamples`` seeded draws of ``len(images)`` images with replacement."""
        ordered = tuple(sorted(set(images)))
        if not ordered or resamples < 1 or not 0 < level < 1:
            raise FusionerError(f"a bootstrap needs images, resamples >= 1 and a level in "
                                f"(0, 1): {len(ordered)} images, {resamples}, {level}")
        n = len(ordered)
        picks = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
        flat = (picks + n * np.arange(resamples)[:, None]).ravel()
        weights = np.bincount(flat, minlength=resamples * n).reshape(resamples, n)
        return cls(ordered, weights.astype(np.int64), seed, level)

    @property
    def resamples(self) -> int:
        return int(self.weights.shape[0])

    def sums(self, contributions: Mapping[str, np.ndarray]) -> np.ndarray:
        """(B, ...) the contributions summed over each replicate's draws (an image without a
        contribution adds nothing); ``FusionerError`` for an image not among ``images``."""
        if not contributions:
            raise FusionerError("no per-image contributions to resample")
        index = {image: i for i, image in enumerate(self.images)}
        unknown = [image for image in contributions if image not in index]
        if unknown:
            raise FusionerError(f"image '{unknown[0]}' is not one of the resampled images")
        shape = np.shape(next(iter(contributions.values())))
        dense = np.zeros((len(self.images), int(np.prod(shape))), dtype=np.int64)
        for image, values in contributions.items():
            dense[index[image]] = np.asarray(values).reshape(-1)
        return (self.weights @ dense).reshape(self.resamples, *shape)

    def replicates(self, contributions: Mapping[str, np.ndarray],
                   figure: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """(B,) ``figure`` of each replicate's summed contributions."""
        return np.asarray(figure(self.sums(contributions)), dtype=np.float64)

    def interval(self, values: np.ndarray) -> tuple[float, float] | None:
        """The percentile interval of replicate ``values`` (undefined replicates, NaN, left
        out); None when no replicate is defined."""
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if not values.size:
            return None
        tail = 100 * (1 - self.level) / 2
        low, high = np.percentile(values, [tail, 100 - tail])
        return float(low), float(high)

    def describe(self) -> dict[str, Any]:
        """The metrics file's ``bootstrap`` record: what was resampled, how, how often."""
        return {"unit": "image", "images": len(self.images), "resamples": self.resamples,
                "seed": self.seed, "level": self.level, "interval": "percentile",
                "rng": "numpy default_rng(seed).integers(0, n, (resamples, n))",
                "pairing": "every figure, fold and ratio on the same resamples"}
