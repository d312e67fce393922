"""The image bootstrap: seeded and reproducible, exact on hand-made cases, paired across
figures, and per-image records that add up to the split's accumulator."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from pipeline.errors import FusionerError
from pipeline.evaluation.bootstrap import Figure, Resampler
from pipeline.evaluation.intervals import accumulator_figures, image_intervals
from pipeline.evaluation.run import ALL_FOREGROUND, MODEL, NAME_SHUFFLED, FoldResult
from pipeline.metrics import IoUAccumulator, RankingAccumulator, iou_summary

IMAGES = [f"im{i:03d}" for i in range(40)]


def _mean_of(values: np.ndarray) -> Figure:
    """A plain mean as a bootstrap figure: contributions (value, 1), summed, divided."""
    summed = Resampler.draw(IMAGES).summed(
        {image: np.array([v, 1]) for image, v in zip(IMAGES, values, strict=True)})
    return lambda weights: summed(weights)[:, 0] / summed(weights)[:, 1]


def test_a_mean_resamples_as_scipy_resamples_the_values() -> None:
    """A mean written as summed contributions gives what ``scipy.stats.bootstrap`` gives on
    the raw values with the same seed: the same replicates (numpy's draw of image indices),
    the same BCa interval."""
    values = np.random.default_rng(5).integers(-1000, 1000, len(IMAGES))
    resampler = Resampler.draw(IMAGES, resamples=500, seed=11)
    figure = _mean_of(values)
    picks = np.random.default_rng(11).integers(0, len(IMAGES), size=(500, len(IMAGES)))
    assert np.allclose(resampler.run(figure).bootstrap_distribution, values[picks].mean(1))
    direct = stats.bootstrap((values,), np.mean, n_resamples=500, method="BCa",
                             rng=np.random.default_rng(11))
    low, high = resampler.interval(figure)
    assert (low, high) == pytest.approx(tuple(direct.confidence_interval), abs=1e-9)
    assert resampler.point(figure) == pytest.approx(values.mean())
    assert low < values.mean() < high


def test_seeded_and_reproducible_bit_for_bit() -> None:
    figure = _mean_of(np.arange(len(IMAGES)) % 7)
    first = Resampler.draw(IMAGES[::-1], resamples=300, seed=3)  # order of images: irrelevant
    again = Resampler.draw(IMAGES, resamples=300, seed=3)
    other = Resampler.draw(IMAGES, resamples=300, seed=4)
    assert first == again
    assert first.interval(figure) == again.interval(figure) != other.interval(figure)
    assert np.array_equal(first.run(figure).bootstrap_distribution,
                          again.run(figure).bootstrap_distribution)


def test_identical_images_collapse_the_interval_to_the_point() -> None:
    acc = IoUAccumulator([1, 2])
    label = np.array([[0, 1, 1], [2, 2, 0]])
    pred = np.array([[1, 1, 0], [2, 0, 0]])
    for image in IMAGES[:10]:
        acc.update(pred, label, image)
    point = acc.result()
    resampler = Resampler.draw(IMAGES[:10], 200, seed=0)
    figures = accumulator_figures(acc, resampler)
    assert resampler.interval(figures["miou"]) == (point.miou, point.miou)
    assert resampler.interval(figures["fb_iou"]) == (point.fb_iou, point.fb_iou)
    assert resampler.point(figures["miou"]) == point.miou


def test_images_without_a_contribution_still_count_as_draws() -> None:
    """An evaluated image with no episode adds nothing to a figure but takes a draw: the sums
    of a 2-image contribution over 4 images vary; unknown images are refused."""
    resampler = Resampler.draw(["a", "b", "c", "d"], resamples=100, seed=0)
    summed = resampler.summed({"a": np.array([1]), "b": np.array([1])})
    assert summed(np.array([[2, 0, 1, 1], [0, 1, 3, 0]])).tolist() == [[2], [1]]
    replicates = resampler.run(lambda w: summed(w)[:, 0].astype(float)).bootstrap_distribution
    assert set(np.unique(replicates)) <= {0, 1, 2, 3, 4} and len(np.unique(replicates)) > 1
    with pytest.raises(FusionerError, match="not one of the resampled"):
        resampler.summed({"z": np.array([1])})
    with pytest.raises(FusionerError):
        Resampler.draw(["a"], resamples=10)


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
    folds = [accumulator_figures(model[f], resampler)["miou"] for f in (0, 1)]
    low, high = resampler.interval(lambda w: (folds[0](w) + folds[1](w)) / 2)
    assert found.mean[MODEL, "binary"]["miou"] == [round(low, 6), round(high, 6)]
    ratios = found.mean_ratios["binary"]["0.5"]
    assert ratios[NAME_SHUFFLED] == {"ratio": 1.0, "ci95": [1.0, 1.0]}
    points = [model[f].result().miou / base[f].result().miou for f in (0, 1)]
    assert found.fold_ratios[1]["binary"]["0.5"][ALL_FOREGROUND]["ratio"] == round(points[1], 6)
    low, high = ratios[ALL_FOREGROUND]["ci95"]
    assert low < ratios[ALL_FOREGROUND]["ratio"] < high
