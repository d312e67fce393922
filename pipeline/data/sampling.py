"""Evenly spaced picks among a list of images (calibration subsets, overlay images)."""

from __future__ import annotations

import numpy as np


def evenly_spaced(total: int, wanted: int) -> list[int]:
    """Positions of ``wanted`` items evenly spread over ``range(total)``, the first and the last
    included (rounded to the nearest position); all of them when ``wanted >= total``, none when
    ``wanted <= 0``."""
    if wanted >= total:
        return list(range(total))
    if wanted <= 0:
        return []
    return np.linspace(0, total - 1, wanted).round().astype(int).tolist()
