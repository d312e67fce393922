"""bench/vocabulary.py's generalized score: the calibrated rule per pixel, IoU over the classes
present, hIoU the harmonic mean of seen and unseen mIoU."""

from __future__ import annotations

import numpy as np
import pytest

from bench.vocabulary import scores


def test_gamma_moves_pixels_from_seen_to_unseen_names() -> None:
    meta = {"seen": [1, 2], "unseen": [3]}
    best = [(np.array([[2.0, 1.5, -1.0, 5.0]]), np.array([[1, 1, 2, 1]]),   # best seen: logit, id
             np.array([[1.0, 1.0, -2.0, 0.0]]), np.array([[3, 3, 3, 3]]))]  # best unseen
    labels = [np.array([[1, 3, 0, 255]])]  # seen 1, unseen 3, background, ignored
    plain = scores(best, labels, meta, [1, 2, 3], gamma=0.0)
    assert plain == {"seen": 0.5, "unseen": 0.0, "hiou": 0.0}  # the unseen pixel went to 1
    calibrated = scores(best, labels, meta, [1, 2, 3], gamma=1.0)
    assert calibrated == {"seen": 1.0, "unseen": 1.0, "hiou": 1.0}
    lowered = scores(best, labels, meta, [1, 2, 3], gamma=3.0)  # the seen pixel is lost too
    assert lowered["seen"] == 0.0 and lowered["unseen"] == pytest.approx(0.5)
