"""The image bootstrap: seeded resamples of the evaluated images, shared by every figure.

A figure here is a function of per-image contributions summed over a sample of images: an IoU
accumulator's per-image (intersection, truth, prediction) counts give the split's mIoU of the
summed counts (HSNet's accumulation), so a resample of images is scored by summing the counts of
the images it drew, each as often as it was drawn. A figure is therefore written as a function
of image weights, ``figure(weights)`` with ``weights`` (m, n) = how often each of the n images
is in each of m samples, returning (m,) values; all ones is the evaluation itself.

Intervals come from ``scipy.stats.bootstrap`` (BCa, the bias-corrected and accelerated
interval, with its jackknife over images) on the image indices 0..n-1 (sorted ids), drawn by
``numpy.random.default_rng(seed)``: every figure of one evaluation is computed on the SAME
resamples, so the class folds of a replicate see the same images, and a ratio (model /
baseline, model / control) is the ratio of its two figures on each replicate. Same images,
resamples and seed: the same intervals, bit for bit. A figure equal on every replicate (e.g.
identical images) has the interval [value, value]; one undefined on some replicate has none.

Another figure plugs in with two pieces: per-image contributions (image id -> an array, all of
one shape, additive over images), summed over a sample by ``Resampler.summed``, and a
vectorised function from those sums (m, ...) to values (m,).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from pipeline.errors import FusionerError

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
METHOD = "BCa"
Figure = Callable[[np.ndarray], np.ndarray]  # image weights (m, n) -> values (m,)


def image_weights(indices: np.ndarray, n: int) -> np.ndarray:
    """(m, n) counts of each image index in each row of ``indices`` (m, k)."""
    rows = indices.reshape(-1, indices.shape[-1])
    offsets = rows + n * np.arange(rows.shape[0])[:, None]
    return np.bincount(offsets.ravel(), minlength=rows.shape[0] * n).reshape(rows.shape[0], n)


@dataclass(frozen=True)
class Resampler:
    """``resamples`` seeded bootstrap resamples of ``images`` (and their jackknife)."""

    images: tuple[str, ...]
    resamples: int = RESAMPLES
    seed: int = SEED
    level: float = LEVEL

    @classmethod
    def draw(cls, images: Sequence[str], resamples: int = RESAMPLES, seed: int = SEED,
             level: float = LEVEL) -> Resampler:
        """The resampler of these images (sorted, once each)."""
        ordered = tuple(sorted(set(images)))
        if len(ordered) < 2 or resamples < 1 or not 0 < level < 1:
            raise FusionerError(f"a bootstrap needs 2 or more images, resamples >= 1 and a "
                                f"level in (0, 1): {len(ordered)} images, {resamples}, {level}")
        return cls(ordered, resamples, seed, level)

    def summed(self, contributions: Mapping[str, np.ndarray]) -> Callable[[np.ndarray],
                                                                         np.ndarray]:
        """``weights`` (m, n) -> (m, ...) the contributions summed over each sample (an image
        without a contribution adds nothing); ``FusionerError`` for an unknown image."""
        index = {image: i for i, image in enumerate(self.images)}
        unknown = [image for image in contributions if image not in index]
        if not contributions or unknown:
            raise FusionerError(f"no per-image contributions, or image '{unknown[:1]}' is not "
                                "one of the resampled images")
        shape = np.shape(next(iter(contributions.values())))
        dtype = np.result_type(*(np.asarray(v).dtype for v in contributions.values()))
        dense = np.zeros((len(self.images), int(np.prod(shape))), dtype=dtype)
        for image, values in contributions.items():
            dense[index[image]] = np.asarray(values).reshape(-1)
        return lambda weights: (weights @ dense).reshape(len(weights), *shape)

    def point(self, figure: Figure) -> float:
        """``figure`` on the evaluated images themselves (every weight 1)."""
        return float(figure(np.ones((1, len(self.images)), dtype=np.int64))[0])

    def run(self, figure: Figure) -> Any:
        """``scipy.stats.bootstrap``'s result for ``figure`` (its ``bootstrap_distribution``
        holds the replicates)."""
        n = len(self.images)

        def statistic(indices: np.ndarray, axis: int = -1) -> np.ndarray:
            indices = np.moveaxis(indices, axis, -1)
            return figure(image_weights(indices, n)).reshape(indices.shape[:-1])

        with warnings.catch_warnings():  # a degenerate or undefined figure: handled below
            warnings.simplefilter("ignore")
            return stats.bootstrap((np.arange(n),), statistic, n_resamples=self.resamples,
                                   confidence_level=self.level, method=METHOD,
                                   vectorized=True, rng=np.random.default_rng(self.seed))

    def interval(self, figure: Figure) -> tuple[float, float] | None:
        """The BCa interval of ``figure``; [value, value] when every replicate agrees, None
        when the figure is undefined on some replicate."""
        result = self.run(figure)
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return float(low), float(high)
        values = result.bootstrap_distribution
        if np.isfinite(values).all() and np.ptp(values) == 0:
            return float(values[0]), float(values[0])
        return None

    def describe(self) -> dict[str, Any]:
        """The metrics file's ``bootstrap`` record: what was resampled, how, how often."""
        return {"unit": "image", "images": len(self.images), "resamples": self.resamples,
                "seed": self.seed, "level": self.level, "interval": METHOD,
                "library": f"scipy.stats.bootstrap (scipy {_scipy_version()})",
                "rng": "numpy default_rng(seed).integers(0, n, (resamples, n))",
                "pairing": "every figure, fold and ratio on the same resamples"}


def _scipy_version() -> str:
    import scipy

    return str(scipy.__version__)
