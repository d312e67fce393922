"""The generalized protocol's metric code on hand-made maps: seen/unseen mIoU, hIoU, the gamma
sweep against the decision rule, AUSUC, the gamma choice, presence records."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.evaluation.presence import PresenceRecords
from pipeline.gzsl import (
    GammaSweep,
    PerImageIoU,
    TopNames,
    ausuc,
    choose_gamma,
    gamma_grid,
    harmonic_mean,
    painted_share,
    split_means,
)
from pipeline.metrics import NONE, IoUAccumulator
from pipeline.model.scoring import generalized_prediction

NAMES = [1, 2, 3, 4]  # 0 = background (never a name), 255 = ignore
SEEN = [True, True, False, False]  # 1, 2 seen; 3, 4 unseen


def _logits_of(pred: np.ndarray, names: list[int] = NAMES) -> torch.Tensor:
    """(K, H, W) logits whose generalized prediction at gamma 0 is ``pred``: +5 for the
    predicted name, -5 elsewhere (NONE: every name -5)."""
    return torch.from_numpy(np.stack([np.where(pred == c, 5.0, -5.0) for c in names]))


def test_hand_made_maps_give_known_seen_unseen_and_hiou() -> None:
    label = np.array([[0, 0, 1, 1],
                      [0, 0, 1, 1],
                      [3, 3, 2, 2],
                      [3, 3, 255, 255]])
    pred = np.array([[1, 1, 1, 1],      # name 1: 4 labelled, 2 more predicted -> 4/6
                     [4, NONE, 1, 1],   # name 4 never labelled but predicted once -> 0
                     [3, 3, 2, 2],      # name 2: 2 of 2 -> 1 (ignored pixels do not count)
                     [3, NONE, 2, 2]])  # name 3: 4 labelled, 3 found -> 3/4
    top = TopNames.from_logits(_logits_of(pred), NAMES, SEEN)
    assert np.array_equal(top.prediction(0.0), pred)
    images = PerImageIoU(NAMES)
    images.update(7, top.prediction(0.0), label)
    per_class = images.total().result().per_class
    assert per_class == pytest.approx({1: 4 / 6, 2: 1.0, 3: 3 / 4, 4: 0.0})
    seen, unseen, hiou = split_means(np.array([per_class[c] for c in NAMES]), NAMES, [1, 2])
    assert float(seen) == pytest.approx((4 / 6 + 1) / 2)
    assert float(unseen) == pytest.approx((3 / 4 + 0) / 2)
    s, u = (4 / 6 + 1) / 2, 3 / 8
    assert float(hiou) == pytest.approx(2 * s * u / (s + u))
    sweep = GammaSweep(NAMES, [-1.0, 0.0, 1.0])  # the sweep at gamma 0 is the same split score
    sweep.update(top, label)
    assert sweep.ious()[1] == pytest.approx(np.array([4 / 6, 1.0, 3 / 4, 0.0]))
    assert painted_share(pred == 4, label) == pytest.approx(1 / 14)  # 14 labelled pixels


def test_a_name_neither_labelled_nor_predicted_is_left_out() -> None:
    label = np.array([[1, 3]])
    pred = np.array([[1, 3]])
    top = TopNames.from_logits(_logits_of(pred), NAMES, SEEN)
    sweep = GammaSweep(NAMES, [0.0])
    sweep.update(top, label)
    ious = sweep.ious()[0]
    assert ious[0] == 1.0 and ious[2] == 1.0
    assert math.isnan(ious[1]) and math.isnan(ious[3])
    curve = sweep.curve([1, 2])
    assert curve["seen_miou"][0] == 1.0 and curve["unseen_miou"][0] == 1.0
    assert curve["hiou"][0] == 1.0


def test_gamma_moves_pixels_from_seen_to_unseen_names() -> None:
    """One pixel per case: (seen logit, unseen logit) = (3, 2): seen below gamma 1, unseen above;
    (3, -2): seen below gamma 3, then none (the unseen name stays under 0.5)."""
    logits = torch.tensor([[[3.0, 3.0]], [[-9.0, -9.0]], [[2.0, -2.0]], [[-9.0, -9.0]]])
    top = TopNames.from_logits(logits, NAMES, SEEN)
    expected = {0.5: [1, 1], 1.5: [3, 1], 3.5: [3, NONE], -50.0: [1, 1]}
    for gamma, row in expected.items():
        assert top.prediction(gamma).tolist() == [row]
    label = np.array([[3, 1]])
    sweep = GammaSweep(NAMES, sorted(expected))
    sweep.update(top, label)
    curve = sweep.curve([1, 2])
    # gamma -50: both pixels name 1 (IoU 1/2), name 3 missed (0) -> seen 1/2, unseen 0, hIoU 0
    # gamma 1.5: both right -> 1, 1; gamma 3.5: name 1 lost (0), name 3 right (1)
    assert curve["seen_miou"].tolist() == pytest.approx([0.5, 0.5, 1.0, 0.0])
    assert curve["unseen_miou"].tolist() == pytest.approx([0.0, 0.0, 1.0, 1.0])
    assert curve["hiou"].tolist() == pytest.approx([0.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("integers", [False, True])
def test_sweep_scores_every_gamma_as_the_decision_rule_does(integers: bool) -> None:
    """Random logits (integer ones make ties at the breakpoints, settled as argmax settles them):
    the sweep's IoUs at each gamma are an ``IoUAccumulator`` fed ``generalized_prediction``."""
    rng = np.random.default_rng(3)
    names, seen = [1, 2, 3, 5, 6, 7, 9], np.array([1, 0, 1, 1, 0, 0, 1], dtype=bool)
    grid = np.arange(-6, 6.5, 0.5)
    sweep = GammaSweep(names, grid)
    accumulators = [IoUAccumulator(names) for _ in grid]
    for _ in range(3):
        logits = rng.normal(0, 3, size=(len(names), 9, 11)).astype(np.float32)
        if integers:
            logits = np.round(logits)
        label = rng.choice([0, 1, 2, 3, 5, 6, 7, 9, 255], size=(9, 11))
        top = TopNames.from_logits(torch.from_numpy(logits), names, seen.tolist())
        sweep.update(top, label)
        for gamma, accumulator in zip(grid, accumulators, strict=True):
            rule = generalized_prediction(logits, names, seen, gamma)
            assert np.array_equal(top.prediction(gamma), rule)
            accumulator.update(rule, label)
    expected = np.array([[a.result().per_class[c] for c in names] for a in accumulators])
    np.testing.assert_allclose(sweep.ious(), expected, equal_nan=True)


def test_no_seen_or_no_unseen_names() -> None:
    logits = torch.tensor([[[2.0, -1.0]], [[1.0, 3.0]]])
    only_unseen = TopNames.from_logits(logits, [1, 2], [False, False])
    assert only_unseen.prediction(10.0).tolist() == [[1, 2]]
    only_seen = TopNames.from_logits(logits, [1, 2], [True, True])
    assert only_seen.prediction(0.0).tolist() == [[1, 2]]
    assert only_seen.prediction(2.5).tolist() == [[NONE, 2]]


def test_harmonic_mean_and_gamma_grid() -> None:
    assert float(harmonic_mean(0.5, 0.25)) == pytest.approx(2 * 0.125 / 0.75)
    assert float(harmonic_mean(0.0, 0.0)) == 0.0
    assert math.isnan(float(harmonic_mean(math.nan, 0.3)))
    grid = gamma_grid(0.07)
    assert 0.0 in grid and np.allclose(np.diff(grid), 0.25)
    assert grid[0] <= -2 / 0.07 < grid[1] and grid[-2] < 2 / 0.07 <= grid[-1]


def test_choose_gamma_takes_the_highest_hiou_then_the_smallest_shift() -> None:
    grid = [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
    assert choose_gamma(grid, [0.1, 0.2, 0.1, 0.3, 0.3, 0.2]) == 0.5
    assert choose_gamma(grid, [0.1, 0.3, 0.1, 0.3, 0.2, 0.0]) == 0.5  # |-0.5| = |0.5|: positive
    assert choose_gamma(grid, [0.0] * 6) == 0.0
    assert choose_gamma(grid, [math.nan] * 6) == 0.0  # no unseen labels: no calibration
    assert choose_gamma(grid, [math.nan, 0.1, math.nan, 0.0, 0.2, math.nan]) == 1.0


def test_ausuc_is_the_area_under_the_upper_envelope() -> None:
    # corners (0, .6), (.2, .5), (.4, 0); (.1, .1) is below the envelope: 0.11 + 0.05
    assert ausuc([0.0, 0.1, 0.2, 0.4], [0.6, 0.1, 0.5, 0.0]) == pytest.approx(0.16)
    # a curve starting at unseen 0.1 is extended flat to 0: 0.1 * 0.4 + 0.2 * 0.2
    assert ausuc([0.3, 0.1], [0.0, 0.4]) == pytest.approx(0.08)
    assert ausuc([0.0, 0.0], [0.7, 0.2]) == 0.0  # never any unseen pixel: no area
    assert math.isnan(ausuc([math.nan], [0.5]))


def test_presence_records_score_present_against_absent_pairs() -> None:
    label = np.zeros((4, 4), dtype=np.int64)
    label[:2, :2] = 3
    label[3, 3] = 255
    records = PresenceRecords()
    logits = torch.full((3, 2, 2), -4.0)
    logits[0, 0, 0] = 2.0  # name 3, present: highest logit 2
    logits[1, 0, 0] = 1.0  # name 4, absent: highest 1, one of 4 decoder cells over 0.5
    logits[2, 1, 1] = 3.0  # name 5, absent: highest 3
    records.add_image(0, logits, [3, 4, 5], label, [0.5])
    assert records.scores == {(0, 3): 2.0, (0, 4): 1.0, (0, 5): 3.0}
    assert records.present == {(0, 3): True, (0, 4): False, (0, 5): False}
    assert records.absent_pairs == 2
    assert records.auroc() == 0.5  # the present name ranks between the two absent ones
    share = records.painted[0, 4][0.5]
    resized = torch.nn.functional.interpolate(logits[None, 1:2], size=(4, 4), mode="bilinear",
                                              align_corners=False)[0, 0].numpy()
    assert share == pytest.approx(((resized > 0) & (label != 255)).sum() / 15)
    other = torch.full((3, 2, 2), -6.0)
    other[0] = 0.0  # image 1 shows name 3 (highest logit 0); names 4 and 5 score -6
    records.add_image(1, other, [3, 4, 5], np.full((4, 4), 3), [0.5])
    assert records.auroc([1]) == 1.0
    # present 2 beats 1, -6, -6 (not 3); present 0 beats -6, -6 (not 1, 3): 5 of 8 pairs
    assert records.auroc() == pytest.approx(5 / 8)
    assert math.isnan(records.auroc([]))
    assert records.absent_share(0.5, [1]) == 0.0
    assert records.absent_share(0.5) == pytest.approx((share + records.painted[0, 5][0.5]
                                                       + 0.0 + 0.0) / 4)
