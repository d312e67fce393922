"""The absent-name figures under the image bootstrap: on every weight 1 they are the reported
figures (sklearn's AUROC, the mean painted share), and a resample's weights count an image as
often as it was drawn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.errors import FusionerError
from pipeline.evaluation.bootstrap import Resampler
from pipeline.evaluation.presence import PresenceRecords
from pipeline.evaluation.presence_intervals import absent_share_figure, auroc_figure

IMAGES = [f"im{i:02d}" for i in range(12)]  # store row r holds image IMAGES[r]
NAMES = (3, 7, 9)


def _records(seed: int = 0) -> PresenceRecords:
    """Every (image, name) pair of IMAGES x NAMES, scores rounded to force ties."""
    rng = np.random.default_rng(seed)
    records = PresenceRecords()
    for row in range(len(IMAGES)):
        for name in NAMES:
            present = bool(rng.random() < 0.4)
            records.scores[row, name] = round(float(rng.normal(present, 1.0)), 1)
            records.present[row, name] = present
            if not present:
                records.painted[row, name] = {0.5: float(rng.random())}
    return records


def _repeated(records: PresenceRecords, counts: np.ndarray) -> PresenceRecords:
    """The records of a resample written out: image r's pairs ``counts[r]`` times."""
    out = PresenceRecords()
    copy = 0
    for row, count in enumerate(counts):
        for _ in range(int(count)):
            copy += 1
            for name in NAMES:
                pair, key = (row, name), (copy, name)
                out.scores[key], out.present[key] = records.scores[pair], records.present[pair]
                if pair in records.painted:
                    out.painted[key] = records.painted[pair]
    return out


def test_all_weights_one_give_the_reported_figures() -> None:
    records = _records()
    resampler = Resampler.draw(IMAGES, resamples=50)
    pairs = records.pairs()
    expected = roc_auc_score([records.present[p] for p in pairs],
                             [records.scores[p] for p in pairs])
    assert resampler.point(auroc_figure(records, IMAGES, resampler)) == pytest.approx(expected)
    assert resampler.point(absent_share_figure(records, 0.5, IMAGES, resampler)) == \
        pytest.approx(records.absent_share(0.5))


def test_a_resample_counts_each_image_as_often_as_drawn() -> None:
    records = _records(seed=3)
    resampler = Resampler.draw(IMAGES, resamples=50)
    auroc = auroc_figure(records, IMAGES, resampler)
    share = absent_share_figure(records, 0.5, IMAGES, resampler)
    rng = np.random.default_rng(1)
    weights = np.stack([np.bincount(rng.integers(0, len(IMAGES), len(IMAGES)),
                                    minlength=len(IMAGES)) for _ in range(5)])
    for row, counts in enumerate(weights):
        drawn = _repeated(records, counts)
        assert auroc(weights)[row] == pytest.approx(drawn.auroc())
        assert share(weights)[row] == pytest.approx(drawn.absent_share(0.5))  # floats kept


def test_a_sample_without_both_kinds_is_undefined_and_strangers_are_refused() -> None:
    records = _records()
    resampler = Resampler.draw(IMAGES, resamples=50)
    absent_only = next(r for r in range(len(IMAGES))
                       if not any(records.present[r, n] for n in NAMES))
    weights = np.zeros((1, len(IMAGES)), dtype=np.int64)
    weights[0, absent_only] = 3
    assert np.isnan(auroc_figure(records, IMAGES, resampler)(weights)[0])
    with pytest.raises(FusionerError, match="not one of the resampled images"):
        auroc_figure(records, IMAGES, Resampler.draw(IMAGES[1:], resamples=50))
