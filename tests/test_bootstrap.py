"""The image bootstrap: seeded and reproducible, exact on hand-made cases, paired across
figures, and per-image records that add up to the split's accumulator."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.errors import FusionerError
from pipeline.evaluation.bootstrap import Resampler
from pipeline.evaluation.intervals import accumulator_replicates, image_intervals
from pipeline.evaluation.run import ALL_FOREGROUND, MODEL, NAME_SHUFFLED, FoldResult
from pipeline.metrics import IoUAccumulator, RankingAccumulator, iou_summary

IMAGES = [f"im{i:03d}" for i in range(40)]


def _mean_figure(sums: np.ndarray) -> np.ndarray:
    """A plain mean as a bootstrap figure: contributions (value, 1), summed."""
    return sums[:, 0] / sums[:, 1]


def test_replicates_are_the_resampled_images_own_means() -> None:
    """A mean resamples exactly as numpy's own draw says: the replicate of a (value, 1)
    contribution is the mean of the values of the images the replicate drew."""
    values = np.random.default_rng(5).normal(size=len(IMAGES)).round(3) * 1000
    contributions = {image: np.array([int(v), 1]) for image, v in zip(IMAGES, values, strict=True)}
    resampler = Resampler.draw(IMAGES, resamples=500, seed=11)
    picks = np.random.default_rng(11).integers(0, len(IMAGES), size=(500, len(IMAGES)))
    expected = np.array([int(v) for v in values])[picks].mean(1)
    assert np.allclose(resampler.replicates(contributions, _mean_figure), expected)
    low, high = resampler.interval(expected)
    assert (low, high) == tuple(np.percentile(expected, [2.5, 97.5]))
    assert low < np.mean([int(v) for v in values]) < high


def test_seeded_and_reproducible_bit_for_bit() -> None:
    contributions = {image: np.array([i % 7, 1]) for i, image in enumerate(IMAGES)}
    first = Resampler.draw(IMAGES[::-1], resamples=300, seed=3)  # order of images: irrelevant
    again = Resampler.draw(IMAGES, resamples=300, seed=3)
    other = Resampler.draw(IMAGES, resamples=300, seed=4)
    assert np.array_equal(first.weights, again.weights)
    assert (first.weights.sum(1) == len(IMAGES)).all()
    one = first.replicates(contributions, _mean_figure)
    assert np.array_equal(one, again.replicates(contributions, _mean_figure))
    assert first.interval(one) == again.interval(again.replicates(contributions, _mean_figure))
    assert not np.array_equal(one, other.replicates(contributions, _mean_figure))


def test_identical_images_collapse_the_interval_to_the_point() -> None:
    acc = IoUAccumulator([1, 2])
    label = np.array([[0, 1, 1], [2, 2, 0]])
    pred = np.array([[1, 1, 0], [2, 0, 0]])
    for image in IMAGES[:10]:
        acc.update(pred, label, image)
    point = acc.result()
    replicates = accumulator_replicates(acc, Resampler.draw(IMAGES[:10], 200, seed=0))
    assert (replicates["miou"] == point.miou).all() and (replicates["fb_iou"] == point.fb_iou).all()


def test_images_without_a_contribution_still_count_as_draws() -> None:
    """An evaluated image with no episode adds nothing to a figure but takes a draw: the
    replicates of a 2-image sum over 4 images vary; unknown images are refused."""
    resampler = Resampler.draw(["a", "b", "c", "d"], resamples=100, seed=0)
    sums = resampler.sums({"a": np.array([1]), "b": np.array([1])})
    assert set(np.unique(sums)) <= {0, 1, 2, 3, 4} and len(np.unique(sums)) > 1
    with pytest.raises(FusionerError, match="not one of the resampled"):
        resampler.sums({"z": np.array([1])})
    with pytest.raises(FusionerError):
        Resampler.draw([], resamples=10)


LABELS = arrays(np.uint8, (4, 6, 7), elements=st.sampled_from([0, 1, 2, 3, 255]))
MASKS = arrays(np.bool_, (4, 6, 7))


@given(labels=LABELS, masks=MASKS)
def test_per_image_counts_add_up_to_the_split(labels: np.ndarray, masks: np.ndarray) -> None:
    """The split's result is the IoU of the summed per-image counts (binary episodes of several
    classes on one image land in one record), and merging keeps both."""
    acc, halves = IoUAccumulator([1, 2, 3]), [IoUAccumulator([1, 2, 3]) for _ in range(2)]
    for i, (label, mask) in enumerate(zip(labels, masks, strict=True)):
        for c in (1, 2, 3):
            acc.update_binary(c, mask, label, image=f"im{i}")
            halves[i % 2].update_binary(c, mask, label, image=f"im{i}")
    assert np.array_equal(sum(acc.images.values()), acc.counts())
    merged = halves[0].merge(halves[1])
    assert np.array_equal(merged.confusion, acc.confusion)
    assert merged.images.keys() == acc.images.keys()
    assert all(np.array_equal(merged.images[k], acc.images[k]) for k in acc.images)
    summary = iou_summary(acc.counts())
    result = acc.result()
    assert np.isclose(summary.miou, result.miou, equal_nan=True)
    assert np.isclose(summary.fb_iou, result.fb_iou, equal_nan=True)


def test_rankings_merge_to_the_whole() -> None:
    label = np.array([[1, 1, 0, 0]])
    scores = np.array([[0.9, 0.2, 0.4, 0.1]])
    whole, parts = RankingAccumulator([1]), [RankingAccumulator([1]) for _ in range(2)]
    for i in range(4):
        whole.update_binary(1, scores * (i + 1) / 5, label)
        parts[i % 2].update_binary(1, scores * (i + 1) / 5, label)
    assert parts[0].merge(parts[1]).per_class() == whole.per_class()


def _fold(fold: int, accumulators: dict) -> FoldResult:
    inputs = SimpleNamespace(split=SimpleNamespace(fold=fold))
    return FoldResult(inputs, {}, {}, 0, {}, accumulators)  # type: ignore[arg-type]


def test_folds_and_ratios_share_each_resample() -> None:
    """The fold mean's replicate is the mean of the folds' replicates on the same draw, and a
    control scoring exactly like the model has the ratio 1 on every draw: [1, 1]."""
    rng = np.random.default_rng(0)
    results, model, base = [], {}, {}
    for fold in (0, 1):
        model[fold], base[fold] = IoUAccumulator([1]), IoUAccumulator([1])
        for image in IMAGES:
            label = rng.integers(0, 2, (5, 5))
            model[fold].update_binary(1, rng.random((5, 5)) < 0.6, label, image)
            base[fold].update_binary(1, np.ones((5, 5), bool), label, image)
        results.append(_fold(fold, {(MODEL, "binary"): model[fold],
                                    (ALL_FOREGROUND, "binary"): base[fold],
                                    (NAME_SHUFFLED, "binary"): model[fold]}))
    resampler = Resampler.draw(IMAGES, resamples=400, seed=1)
    found = image_intervals(results, resampler, 0.5)
    mean = (accumulator_replicates(model[0], resampler)["miou"]
            + accumulator_replicates(model[1], resampler)["miou"]) / 2
    low, high = resampler.interval(mean)
    assert found.mean[MODEL, "binary"]["miou"] == [round(low, 6), round(high, 6)]
    ratios = found.mean_ratios["binary"]["0.5"]
    assert ratios[NAME_SHUFFLED] == {"ratio": 1.0, "ci95": [1.0, 1.0]}
    points = [model[f].result().miou / base[f].result().miou for f in (0, 1)]
    assert found.fold_ratios[1]["binary"]["0.5"][ALL_FOREGROUND]["ratio"] == round(points[1], 6)
    low, high = ratios[ALL_FOREGROUND]["ci95"]
    assert low < ratios[ALL_FOREGROUND]["ratio"] < high
