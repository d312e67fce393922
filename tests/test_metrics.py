"""IoU accumulation (HSNet's protocol) and binary-episode AUROC: hand-computed cases and
properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.metrics import (
    NONE,
    IoUAccumulator,
    RankingAccumulator,
    metric_number,
    prediction_map,
)


def test_binary_episodes_hand_computed() -> None:
    acc = IoUAccumulator([1, 2, 3])
    label = np.array([[1, 1, 0, 255], [1, 0, 0, 0]], dtype=np.uint8)
    pred = np.array([[1, 0, 1, 1], [1, 1, 0, 0]], dtype=bool)
    acc.update_binary(1, pred, label)
    # fg: gt 3, pred 4 (the ignore pixel does not count), inter 2 -> 2/5; bg: 2/5
    first = acc.result()
    assert first.per_class[1] == pytest.approx(0.4)
    assert first.bg_iou == pytest.approx(0.4) and first.fb_iou == pytest.approx(0.4)
    acc.update_binary(2, np.array([[1, 1], [0, 0]]), np.array([[2, 2], [0, 0]], np.uint8))
    result = acc.result()
    assert result.per_class[2] == 1.0
    assert math.isnan(result.per_class[3])  # no episode: left out of the mean
    assert result.miou == pytest.approx(0.7)
    assert result.fg_iou == pytest.approx(4 / 7)
    assert result.bg_iou == pytest.approx(4 / 7)
    assert result.fb_iou == pytest.approx(4 / 7)


def test_binary_episode_other_classes_are_background() -> None:
    acc = IoUAccumulator([1, 3])
    label = np.array([[1, 3], [3, 0]], dtype=np.uint8)
    acc.update_binary(1, np.array([[1, 1], [0, 0]], bool), label)
    result = acc.result()
    assert result.per_class[1] == pytest.approx(0.5)
    assert math.isnan(result.per_class[3])  # class 3's pixels were "none" in a class-1 episode
    assert result.bg_iou == pytest.approx(2 / 3)


def test_multiclass_hand_computed() -> None:
    acc = IoUAccumulator([1, 2])
    label = np.array([[1, 1, 2], [0, 3, 255]], dtype=np.uint8)
    pred = np.array([[1, 2, 2], [NONE, 2, 1]])
    acc.update(pred, label)
    result = acc.result()
    assert result.per_class == {1: pytest.approx(0.5), 2: pytest.approx(1 / 3)}
    assert result.miou == pytest.approx(5 / 12)
    assert result.fg_iou == pytest.approx(0.4)
    assert result.bg_iou == pytest.approx(0.5)
    assert result.fb_iou == pytest.approx(0.45)


def test_absent_class_predicted_scores_zero() -> None:
    acc = IoUAccumulator([1, 2])
    acc.update(np.array([[1, 2]]), np.array([[1, 1]], np.uint8))
    result = acc.result()
    assert result.per_class == {1: 0.5, 2: 0.0}
    assert result.miou == pytest.approx(0.25)
    assert math.isnan(result.bg_iou)  # no "none" pixel anywhere: FB-IoU is the fg IoU alone
    assert result.fb_iou == pytest.approx(result.fg_iou)


def test_all_ignored_gives_nan_not_error() -> None:
    acc = IoUAccumulator([4])
    acc.update(np.array([[4, 4]]), np.full((1, 2), 255, np.uint8))
    result = acc.result()
    assert math.isnan(result.miou) and math.isnan(result.fb_iou)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        IoUAccumulator([])
    with pytest.raises(ValueError):
        IoUAccumulator([1, 1])
    with pytest.raises(ValueError):
        IoUAccumulator([255])
    acc = IoUAccumulator([1])
    with pytest.raises(ValueError, match="shape"):
        acc.update(np.zeros((2, 2)), np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="not one of"):
        acc.update_binary(2, np.zeros((1, 1), bool), np.zeros((1, 1), np.uint8))
    with pytest.raises(ValueError, match="merge"):
        acc.merge(IoUAccumulator([2]))


def test_prediction_map() -> None:
    scores = np.array([[[0.9, 0.2, 0.6, 0.1]], [[0.1, 0.7, 0.8, 0.2]]])
    assert prediction_map(scores, (5, 7)).tolist() == [[5, 7, 7, NONE]]
    assert prediction_map(scores, (5, 7), threshold=0.85).tolist() == [[5, NONE, NONE, NONE]]
    with pytest.raises(ValueError):
        prediction_map(scores, (5,))


CLASSES = (1, 2, 3)
labels = arrays(np.uint8, (4, 5), elements=st.sampled_from([0, 1, 2, 3, 4, 255]))
preds = arrays(np.int64, (4, 5), elements=st.sampled_from([NONE, 0, 1, 2, 3, 4]))


@given(label=labels)
def test_perfect_prediction_scores_one(label: np.ndarray) -> None:
    acc = IoUAccumulator(CLASSES)
    acc.update(label.astype(np.int64), label)
    result = acc.result()
    present = {c for c in CLASSES if (label == c).any()}
    for c in CLASSES:
        assert result.per_class[c] == 1.0 if c in present else math.isnan(result.per_class[c])
    if present:
        assert result.miou == 1.0 and result.fb_iou == 1.0


@given(pairs=st.lists(st.tuples(preds, labels), min_size=1, max_size=5), data=st.data())
def test_bounds_and_order_invariance(pairs: list, data: st.DataObject) -> None:
    forward = IoUAccumulator(CLASSES)
    for pred, label in pairs:
        forward.update(pred, label)
    order = data.draw(st.permutations(range(len(pairs))))
    halves = IoUAccumulator(CLASSES), IoUAccumulator(CLASSES)
    for n, i in enumerate(order):
        halves[n % 2].update(*pairs[i])
    assert np.array_equal((halves[0] + halves[1]).confusion, forward.confusion)
    result = forward.result()
    for value in [*result.per_class.values(), result.miou, result.fg_iou, result.fb_iou]:
        assert math.isnan(value) or 0.0 <= value <= 1.0


@given(label=labels, mask=arrays(bool, (4, 5)), class_id=st.sampled_from(CLASSES),
       noise=preds)
def test_binary_is_multiclass_with_one_class(label: np.ndarray, mask: np.ndarray, class_id: int,
                                             noise: np.ndarray) -> None:
    binary = IoUAccumulator(CLASSES)
    binary.update_binary(class_id, mask, label)
    single = IoUAccumulator((class_id,))
    single.update(np.where(mask, class_id, NONE), label)
    assert binary.result().per_class[class_id] == pytest.approx(
        single.result().per_class[class_id], nan_ok=True)
    # predictions on ignored pixels never matter
    moved = np.where(label == 255, noise, np.where(mask, class_id, NONE))
    again = IoUAccumulator((class_id,))
    again.update(moved, label)
    assert np.array_equal(again.confusion, single.confusion)


def test_auroc_hand_computed_with_ties_and_ignore() -> None:
    ranking = RankingAccumulator([3, 4])
    # positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of 4 pairs ordered -> 0.75
    ranking.update_binary(3, np.array([[0.1, 0.4], [0.35, 0.8]]), np.array([[0, 4], [3, 3]]))
    # a second episode of class 3: positive 0.9, negative 0.9 (a tie, counts half), 255 ignored
    ranking.update_binary(3, np.array([[0.9, 0.9, 0.0]]), np.array([[3, 1, 255]]))
    # pairs: positives (0.35, 0.8, 0.9) x negatives (0.1, 0.4, 0.9) -> 1+0 + 1+1 + 1+1+0.5 = 5.5
    assert ranking.per_class()[3] == pytest.approx(5.5 / 9)
    assert math.isnan(ranking.per_class()[4])  # never queried: no AUROC
    assert ranking.mean() == pytest.approx(5.5 / 9)
    constant = RankingAccumulator([3])
    constant.update_binary(3, np.full((2, 2), 0.7), np.array([[0, 3], [3, 1]]))
    assert constant.per_class()[3] == 0.5  # all foreground: chance by construction
    with pytest.raises(ValueError):
        constant.update_binary(5, np.zeros((2, 2)), np.zeros((2, 2), np.uint8))


@given(label=labels, logits=arrays(np.float64, (4, 5), elements=st.floats(-8, 8)))
def test_auroc_is_the_mann_whitney_statistic(label: np.ndarray, logits: np.ndarray) -> None:
    logits = np.round(logits, 1)  # well inside one histogram bin each: exact up to ties
    ranking = RankingAccumulator([2])
    ranking.update_binary(2, 1 / (1 + np.exp(-logits)), label)
    valid = label != 255
    pos, neg = logits[valid & (label == 2)], logits[valid & (label != 2)]
    if not pos.size or not neg.size:
        assert math.isnan(ranking.per_class()[2])
        return
    pairs = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    assert ranking.per_class()[2] == pytest.approx(pairs / (pos.size * neg.size))


def test_metric_number_rounds_finite_values_and_nulls_the_rest() -> None:
    assert metric_number(np.float32(0.1234567891)) == 0.123457
    assert metric_number(1) == 1.0 and isinstance(metric_number(1), float)
    for undefined in (None, float("nan"), np.float32("nan"), float("inf"), -np.inf):
        assert metric_number(undefined) is None
