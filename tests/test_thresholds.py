"""Foreground rules: parsing, the adaptive threshold by hand, per-class thresholds in label maps."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import BadInputError
from pipeline.metrics import NONE, prediction_map
from pipeline.thresholds import ADAPTIVE, describe, map_thresholds, parse_threshold


def test_parse_threshold_accepts_adaptive_and_probabilities_only() -> None:
    assert parse_threshold("adaptive") == ADAPTIVE == parse_threshold(" Adaptive ")
    assert parse_threshold("0.3") == 0.3 and parse_threshold(1) == 1.0
    for bad in ("high", "", "1.5", "-0.1", "nan"):
        with pytest.raises(BadInputError, match="threshold"):
            parse_threshold(bad)
    with pytest.raises(BadInputError, match="threshold"):  # the API path refuses them too
        map_thresholds(np.zeros((2, 2)), "adaptve")


def test_adaptive_threshold_by_hand() -> None:
    # one map: eight pixels at 0.1 and two at 0.35 -> mean 0.15, std 0.1, mean + 2 std = 0.35
    low = np.array([[0.1] * 5, [0.1, 0.1, 0.1, 0.35, 0.35]])
    assert map_thresholds(low, ADAPTIVE) == pytest.approx(np.full((1, 1), 0.35))
    # a confident map: mean + 2 std is above 0.5, so the paper's 0.5 is kept
    sure = np.array([[0.0, 0.0, 1.0, 1.0]])
    assert map_thresholds(sure, ADAPTIVE).item() == 0.5
    flat = np.full((3, 3), 0.2)  # nothing singled out: 0.5, so no pixel passes
    assert map_thresholds(flat, ADAPTIVE).item() == 0.5
    stacked = map_thresholds(np.stack([low, low * 0 + 0.2]), ADAPTIVE)
    assert stacked.shape == (2, 1, 1) and stacked[:, 0, 0] == pytest.approx([0.35, 0.5])
    assert map_thresholds(np.stack([low, low]), 0.25).ravel().tolist() == [0.25, 0.25]
    assert "mean + 2 std" in describe(ADAPTIVE) and describe(0.5) == "0.5"


def test_prediction_map_with_per_class_thresholds() -> None:
    scores = np.array([[[0.4, 0.4, 0.1]],    # class 5: reaches its 0.3 threshold twice
                       [[0.45, 0.2, 0.2]]])  # class 7: higher at pixel 0 but below its 0.6
    limits = np.array([0.3, 0.6])
    assert prediction_map(scores, (5, 7), limits).tolist() == [[5, 5, NONE]]
    assert prediction_map(scores, (5, 7), limits.reshape(2, 1, 1)).tolist() == [[5, 5, NONE]]
    # equal thresholds: the argmax of all classes, kept where it reaches the threshold
    assert prediction_map(scores, (5, 7), 0.42).tolist() == [[7, NONE, NONE]]
