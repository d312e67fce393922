"""Ground truth at each image's own mask resolution, as published scores are computed.

The store keeps label maps at the training resolution (cheap to iterate on); published numbers
upsample the logits to each image's original mask instead. ``OriginalLabels`` reads those masks
from the dataset, row-aligned with a visual store.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.data.base import SegmentationDataset
from pipeline.errors import BadInputError


class OriginalLabels:
    """Store row -> that image's label map as the dataset gives it (original size)."""

    def __init__(self, dataset: SegmentationDataset, image_ids: Sequence[str], where: str) -> None:
        index = {dataset.image_id(i): i for i in range(len(dataset))}
        missing = [i for i in image_ids if i not in index]
        if missing:
            raise BadInputError(f"image '{missing[0]}' of {where} is not in "
                                f"{dataset.name}/{dataset.split} (wrong --data-root?)")
        self.dataset = dataset
        self.rows = [index[i] for i in image_ids]

    def __call__(self, row: int) -> np.ndarray:
        return self.dataset[self.rows[row]].label
