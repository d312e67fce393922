"""Segmentation metrics as HSNet accumulates them: mIoU over a fold's classes, and FB-IoU.

Everything is a confusion matrix over ``K`` evaluated classes plus one "none" row/column
(background, classes outside the fold, or "no class" predicted), accumulated over the whole
split; IoUs are ratios of the accumulated sums, never averages of per-image IoUs.

- Binary (episodic) mode, the paper's protocol: one image + one class ``c`` per episode;
  ``update_binary(c, pred_mask, label)`` compares the predicted mask with ``label == c``.
  Every other labelled pixel is "none" for that episode.
- Multi-class mode: ``update(pred, label)`` with a map of class ids (any value outside the
  fold's ids, e.g. ``NONE``, means "none"); ``prediction_map`` builds one from K score maps.

Pixels labelled 255 are ignored in both modes. A class never present nor predicted over the
split has no IoU (NaN) and is left out of the mean (HSNet would count it as 0; with HSNet's
episode lists every fold class has episodes, so the two agree there).
FB-IoU = mean(foreground IoU, background IoU), foreground summed over the fold's classes and
background = the "none" region, both accumulated over all episodes (HSNet's ``compute_iou``).

``RankingAccumulator`` adds a threshold-free view of binary episodes: per class, the AUROC of
its scores (do the class's pixels score above the other labelled pixels of its episodes?),
pooled over the split. 0.5 = chance, as the all-foreground baseline scores by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.data.base import IGNORE_INDEX

NONE = -1  # "no class" in prediction maps


@dataclass(frozen=True)
class IoUResult:
    """Per-class IoU (NaN = class never present nor predicted) and the summary scores in [0, 1]."""

    per_class: dict[int, float]
    miou: float
    fg_iou: float
    bg_iou: float
    fb_iou: float
    auroc: float = float("nan")  # mean per-class AUROC (binary mode, ``RankingAccumulator``)
    per_class_auroc: dict[int, float] = field(default_factory=dict)


class IoUAccumulator:
    """Accumulates intersections/unions of ``class_ids`` (dataset ids) over a whole split."""

    def __init__(self, class_ids: Sequence[int]) -> None:
        ids = [int(c) for c in class_ids]
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"class_ids must be non-empty and distinct, got {ids}")
        if any(c < 0 or c == IGNORE_INDEX for c in ids):
            raise ValueError(f"class ids must be >= 0 and not the ignore index: {ids}")
        self.class_ids: tuple[int, ...] = tuple(ids)
        self._index = {c: k for k, c in enumerate(ids)}
        size = len(ids) + 1
        self.confusion = np.zeros((size, size), dtype=np.int64)  # rows: truth, cols: prediction

    @property
    def none_index(self) -> int:
        """Row/column of the "none" region in ``confusion``."""
        return len(self.class_ids)

    def _to_index(self, values: np.ndarray, classes: Sequence[int]) -> np.ndarray:
        """Map dataset ids to confusion indices; anything not in ``classes`` -> none."""
        out = np.full(values.shape, self.none_index, dtype=np.int64)
        for c in classes:
            out[values == c] = self._index[c]
        return out

    def _accumulate(self, pred: np.ndarray, label: np.ndarray, classes: Sequence[int]) -> None:
        pred, label = np.asarray(pred), np.asarray(label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {pred.shape} != label shape {label.shape}")
        valid = label != IGNORE_INDEX
        truth = self._to_index(label[valid], classes)
        guess = self._to_index(pred[valid], classes)
        size = self.none_index + 1
        counts = np.bincount(truth * size + guess, minlength=size * size)
        self.confusion += counts.reshape(size, size)

    def update_binary(self, class_id: int, pred_mask: np.ndarray, label: np.ndarray) -> None:
        """One episode: boolean ``pred_mask`` for ``class_id`` against ``label == class_id``."""
        if class_id not in self._index:
            raise ValueError(f"class {class_id} is not one of the evaluated {self.class_ids}")
        pred = np.where(np.asarray(pred_mask, dtype=bool), class_id, NONE)
        self._accumulate(pred, label, (class_id,))

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Multi-class: ``pred`` holds dataset class ids, any other value means "none"."""
        self._accumulate(np.asarray(pred, dtype=np.int64), label, self.class_ids)

    def merge(self, other: IoUAccumulator) -> IoUAccumulator:
        """A new accumulator holding both (for parallel or sharded evaluation)."""
        if other.class_ids != self.class_ids:
            raise ValueError(f"cannot merge accumulators of {self.class_ids} and {other.class_ids}")
        merged = IoUAccumulator(self.class_ids)
        merged.confusion = self.confusion + other.confusion
        return merged

    __add__ = merge

    def result(self) -> IoUResult:
        """Per-class IoU, mIoU (mean over classes with a defined IoU), FG/BG/FB-IoU."""
        inter = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
        k = self.none_index
        per_class = {c: float(iou[i]) for i, c in enumerate(self.class_ids)}
        defined = iou[:k][~np.isnan(iou[:k])]
        miou = float(defined.mean()) if defined.size else float("nan")
        fg_union = union[:k].sum()
        fg_iou = float(inter[:k].sum() / fg_union) if fg_union > 0 else float("nan")
        bg_iou = float(iou[k])
        both = [x for x in (fg_iou, bg_iou) if not np.isnan(x)]
        fb_iou = float(np.mean(both)) if both else float("nan")
        return IoUResult(per_class, miou, fg_iou, bg_iou, fb_iou)


def prediction_map(
    scores: np.ndarray, class_ids: Sequence[int], threshold: float | np.ndarray = 0.5
) -> np.ndarray:
    """(K, H, W) per-class probabilities -> (H, W) map of class ids, ``NONE`` where no class
    reaches its threshold.

    ``threshold``: one probability for every class, or one per class (shape (K,) or (K, 1, 1),
    e.g. ``pipeline.thresholds.map_thresholds``). Each pixel takes the most probable of the
    classes that reach their threshold there.
    """
    scores = np.asarray(scores)
    if scores.ndim != 3 or scores.shape[0] != len(class_ids):
        raise ValueError(f"scores must be (K={len(class_ids)}, H, W), got {scores.shape}")
    limits = np.asarray(threshold, dtype=np.float64)
    if limits.ndim:
        limits = limits.reshape(len(class_ids), 1, 1)
    passing = scores >= limits
    best = np.where(passing, scores, -np.inf).argmax(axis=0)
    ids = np.asarray(class_ids, dtype=np.int64)[best]
    return np.where(passing.any(axis=0), ids, NONE)


class RankingAccumulator:
    """Per-class AUROC of binary-episode scores, from histograms of their logits (no pixel lists).

    ``update_binary(c, probs, label)``: the pixels of class ``c`` are positives, every other
    labelled pixel negative, 255 ignored. Logits are binned in ``bins`` steps over
    [-``limit``, ``limit``]; a tie (same bin) counts half, as in the Mann-Whitney statistic.
    """

    def __init__(self, class_ids: Sequence[int], bins: int = 6000, limit: float = 30.0) -> None:
        self.class_ids = tuple(int(c) for c in class_ids)
        self.edges = np.linspace(-limit, limit, bins + 1)[1:-1]
        self.limit = limit
        self.positive = {c: np.zeros(bins, np.int64) for c in self.class_ids}
        self.negative = {c: np.zeros(bins, np.int64) for c in self.class_ids}

    def update_binary(self, class_id: int, probs: np.ndarray, label: np.ndarray) -> None:
        if class_id not in self.positive:
            raise ValueError(f"class {class_id} is not one of {self.class_ids}")
        probs, label = np.asarray(probs, np.float64), np.asarray(label)
        if probs.shape != label.shape:
            raise ValueError(f"scores {probs.shape} and label {label.shape} differ in shape")
        valid = label != IGNORE_INDEX
        eps = np.exp(-self.limit)
        p = np.clip(probs[valid], eps, 1 - eps)
        bins = np.searchsorted(self.edges, np.log(p) - np.log1p(-p))
        truth = label[valid] == class_id
        self.positive[class_id] += np.bincount(bins[truth], minlength=self.edges.size + 1)
        self.negative[class_id] += np.bincount(bins[~truth], minlength=self.edges.size + 1)

    def per_class(self) -> dict[int, float]:
        """AUROC of each class (NaN without both positive and negative pixels)."""
        out = {}
        for c in self.class_ids:
            pos, neg = self.positive[c], self.negative[c]
            if not pos.sum() or not neg.sum():
                out[c] = float("nan")
                continue
            below = np.concatenate([[0], np.cumsum(neg)[:-1]])  # negatives in lower bins
            out[c] = float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))
        return out

    def mean(self) -> float:
        """Mean AUROC over classes with a defined value (NaN if none)."""
        defined = [v for v in self.per_class().values() if not np.isnan(v)]
        return float(np.mean(defined)) if defined else float("nan")
