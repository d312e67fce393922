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

Per-image records (for the image bootstrap, ``pipeline.evaluation.bootstrap``): an update given
an ``image`` key also adds its counts to ``images[image]``, a (3, K + 1) array of intersections,
true and predicted pixels per class (the "none" column last), which is all ``iou_summary``
needs. The split's figures are those of the summed counts, so a resample of images is scored by
summing its images' counts; about 24 (K + 1) bytes per image and accumulator.

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


def metric_number(value: float | None) -> float | None:
    """``value`` rounded to 6 decimals for a metrics file; None (JSON null) when it is None,
    NaN or infinite."""
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), 6)


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


@dataclass(frozen=True)
class IoUSummary:
    """Per-class IoU (..., K) and the summary scores (...) of counts with any leading axes."""

    iou: np.ndarray
    miou: np.ndarray
    fg_iou: np.ndarray
    bg_iou: np.ndarray
    fb_iou: np.ndarray


def iou_summary(counts: np.ndarray) -> IoUSummary:
    """IoUs of (..., 3, K + 1) counts (intersection, truth, prediction; "none" last), each
    leading index on its own (e.g. one bootstrap replicate per row): mIoU over the classes with
    a defined IoU, FG-IoU over the K classes pooled, BG-IoU = "none"'s, FB-IoU their mean."""
    counts = np.asarray(counts, dtype=np.float64)
    inter, truth, pred = counts[..., 0, :], counts[..., 1, :], counts[..., 2, :]
    union = truth + pred - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
        fg_union = union[..., :-1].sum(-1)
        fg = np.where(fg_union > 0, inter[..., :-1].sum(-1) / np.maximum(fg_union, 1), np.nan)
        defined = ~np.isnan(iou[..., :-1])
        miou = np.where(defined.any(-1), np.nansum(iou[..., :-1], -1) / defined.sum(-1), np.nan)
        bg = iou[..., -1]
        pair = np.stack([fg, bg])  # FB-IoU: the mean of those of FG and BG that are defined
        known = (~np.isnan(pair)).sum(0)
        fb = np.where(known > 0, np.nan_to_num(pair).sum(0) / np.maximum(known, 1), np.nan)
    return IoUSummary(iou[..., :-1], miou, fg, bg, fb)


class IoUAccumulator:
    """Accumulates intersections/unions of ``class_ids`` (dataset ids) over a whole split, and
    (updates given an ``image`` key) the counts of each image."""

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
        self.images: dict[str, np.ndarray] = {}  # image key -> its (3, K + 1) counts

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

    def _accumulate(self, pred: np.ndarray, label: np.ndarray, classes: Sequence[int],
                    image: str | None) -> None:
        pred, label = np.asarray(pred), np.asarray(label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {pred.shape} != label shape {label.shape}")
        valid = label != IGNORE_INDEX
        truth = self._to_index(label[valid], classes)
        guess = self._to_index(pred[valid], classes)
        size = self.none_index + 1
        confusion = np.bincount(truth * size + guess, minlength=size * size).reshape(size, size)
        self.confusion += confusion
        if image is not None:
            counts = self.images.setdefault(image, np.zeros((3, size), dtype=np.int64))
            counts += as_counts(confusion)

    def update_binary(self, class_id: int, pred_mask: np.ndarray, label: np.ndarray,
                      image: str | None = None) -> None:
        """One episode: boolean ``pred_mask`` for ``class_id`` against ``label == class_id``
        (``image``: also counted as that image's)."""
        if class_id not in self._index:
            raise ValueError(f"class {class_id} is not one of the evaluated {self.class_ids}")
        pred = np.where(np.asarray(pred_mask, dtype=bool), class_id, NONE)
        self._accumulate(pred, label, (class_id,), image)

    def update(self, pred: np.ndarray, label: np.ndarray, image: str | None = None) -> None:
        """Multi-class: ``pred`` holds dataset class ids, any other value means "none"."""
        self._accumulate(np.asarray(pred, dtype=np.int64), label, self.class_ids, image)

    def merge(self, other: IoUAccumulator) -> IoUAccumulator:
        """A new accumulator holding both (for parallel or sharded evaluation, or the image
        splits of a cross-validation); an image in both has its counts summed."""
        if other.class_ids != self.class_ids:
            raise ValueError(f"cannot merge accumulators of {self.class_ids} and {other.class_ids}")
        merged = IoUAccumulator(self.class_ids)
        merged.confusion = self.confusion + other.confusion
        merged.images = {key: counts.copy() for key, counts in self.images.items()}
        for key, counts in other.images.items():
            merged.images[key] = merged.images[key] + counts if key in merged.images else counts
        return merged

    __add__ = merge

    def counts(self) -> np.ndarray:
        """The split's (3, K + 1) counts: intersection, truth and prediction per class."""
        return as_counts(self.confusion)

    def result(self) -> IoUResult:
        """Per-class IoU, mIoU (mean over classes with a defined IoU), FG/BG/FB-IoU."""
        scores = iou_summary(self.counts())
        per_class = {c: float(scores.iou[i]) for i, c in enumerate(self.class_ids)}
        return IoUResult(per_class, float(scores.miou), float(scores.fg_iou),
                         float(scores.bg_iou), float(scores.fb_iou))


def as_counts(confusion: np.ndarray) -> np.ndarray:
    """(3, K + 1) intersection (diagonal), truth (row sums) and prediction (column sums)."""
    return np.stack([np.diag(confusion), confusion.sum(1), confusion.sum(0)])


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

    def merge(self, other: RankingAccumulator) -> RankingAccumulator:
        """A new accumulator holding both (the image splits of a cross-validation)."""
        if (other.class_ids, other.limit, other.edges.size) != (
                self.class_ids, self.limit, self.edges.size):
            raise ValueError(f"cannot merge rankings of {self.class_ids} and {other.class_ids}")
        merged = RankingAccumulator(self.class_ids, self.edges.size + 1, self.limit)
        for c in self.class_ids:
            merged.positive[c] = self.positive[c] + other.positive[c]
            merged.negative[c] = self.negative[c] + other.negative[c]
        return merged

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
