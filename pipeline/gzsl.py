"""Generalized zero-shot segmentation scores: every pixel against every name, seen AND unseen.

As the zero-shot segmentation papers report them (ZS3Net, SPNet, ZegFormer, ZegCLIP): per-class
IoU accumulated over the whole split over ALL names (HSNet-style confusion, ``IoUAccumulator``;
background, never queried as a name, is the "none" region), then
- seen / unseen mIoU: the mean IoU over the seen / unseen names with a defined IoU (a name never
  in the split's labels but predicted somewhere has IoU 0 and counts; one neither labelled nor
  predicted has none and is left out);
- hIoU = 2 S U / (S + U), their harmonic mean (0 when both are 0).

The prediction is ``pipeline.model.scoring.generalized_prediction`` (SPNet's calibration: seen
logits lowered by gamma, argmax among the names whose probability exceeds the threshold, else
none). ``TopNames`` keeps, per pixel, only the best seen and the best unseen name, which is all
that rule looks at for any gamma: ``TopNames.prediction`` is the rule's map, and ``GammaSweep``
scores every gamma of a grid in one pass over the pixels (a pixel predicts its best seen name
below one breakpoint in gamma, its best unseen name or none from there on).

The seen-unseen curve over gamma (Chao et al. 2016) is summarised by ``ausuc``; ``choose_gamma``
takes the gamma of highest hIoU on a grid (on images other than the scored ones).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pipeline.data.base import IGNORE_INDEX
from pipeline.metrics import NONE, IoUAccumulator
from pipeline.model.scoring import threshold_logit
from pipeline.thresholds import PAPER_THRESHOLD

GAMMA_STEP = 0.25  # logit units between two gammas of the grid


@dataclass(frozen=True)
class TopNames:
    """Per pixel of one image: the highest seen and unseen logits and their names' positions in
    ``class_ids`` (-inf and position 0 where a side has no name)."""

    seen_logit: np.ndarray  # (H, W) float64
    seen_pos: np.ndarray  # (H, W) int64
    unseen_logit: np.ndarray
    unseen_pos: np.ndarray
    class_ids: np.ndarray  # (K,) int64, the scored names

    @classmethod
    def from_logits(cls, logits: Tensor, class_ids: Sequence[int],
                    seen: Sequence[bool]) -> TopNames:
        """From (K, H, W) logits of the names ``class_ids`` (``seen``: which are seen)."""
        mask = torch.as_tensor(list(seen), dtype=torch.bool, device=logits.device)
        if mask.numel() != logits.shape[0] or not mask.numel():
            raise ValueError(f"need one seen flag per name: {mask.numel()} for "
                             f"{logits.shape[0]} names")
        sides = []
        for side in (mask, ~mask):
            if bool(side.any()):
                value, where = logits[side].max(dim=0)  # the first maximum, as argmax
                pos = torch.nonzero(side).flatten()[where]
                sides += [value.double().cpu().numpy(), pos.cpu().numpy()]
            else:
                shape = tuple(logits.shape[1:])
                sides += [np.full(shape, -np.inf), np.zeros(shape, dtype=np.int64)]
        return cls(*sides, np.asarray(class_ids, dtype=np.int64))

    def seen_first(self, gamma: float) -> np.ndarray:
        """Where the calibrated best seen name outranks the best unseen one (ties: the earlier
        name, as argmax)."""
        seen = self.seen_logit - gamma
        return (seen > self.unseen_logit) | ((seen == self.unseen_logit)
                                             & (self.seen_pos < self.unseen_pos))

    def prediction(self, gamma: float, threshold: float = PAPER_THRESHOLD) -> np.ndarray:
        """(H, W) class ids, ``NONE`` where no calibrated probability exceeds ``threshold``."""
        limit = threshold_logit(threshold)
        first = self.seen_first(gamma)
        seen = first & (self.seen_logit - gamma > limit)
        unseen = ~first & (self.unseen_logit > limit)
        return np.where(seen, self.class_ids[self.seen_pos],
                        np.where(unseen, self.class_ids[self.unseen_pos], NONE))


def _positions(label: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
    """Label values -> positions in ``class_ids`` (``len(class_ids)`` = none)."""
    lookup = np.full(max(256, int(class_ids.max()) + 1, int(label.max(initial=0)) + 1),
                     len(class_ids), dtype=np.int64)
    lookup[class_ids] = np.arange(len(class_ids))
    return lookup[label.astype(np.int64)]


class GammaSweep:
    """Per-name intersections and predicted / labelled pixel counts of the generalized prediction
    at every gamma of ``grid``, accumulated over images."""

    def __init__(self, class_ids: Sequence[int], grid: Sequence[float],
                 threshold: float = PAPER_THRESHOLD) -> None:
        self.class_ids = np.asarray(class_ids, dtype=np.int64)
        self.grid = np.asarray(grid, dtype=np.float64)
        if not self.class_ids.size or not self.grid.size or np.any(np.diff(self.grid) <= 0):
            raise ValueError("need names and a strictly increasing gamma grid")
        self.limit = threshold_logit(threshold)
        shape = (2, self.grid.size + 1, self.class_ids.size + 1)  # (predicted, hit) per index
        self.low = np.zeros(shape, dtype=np.int64)  # the seen name, below the breakpoint
        self.high = np.zeros(shape, dtype=np.int64)  # the unseen name or none, from it on
        self.truth = np.zeros(self.class_ids.size + 1, dtype=np.int64)

    def update(self, top: TopNames, label: np.ndarray) -> None:
        """Add one image (``top`` and ``label`` of the same (H, W); 255 ignored)."""
        label = np.asarray(label)
        if label.shape != top.seen_logit.shape:
            raise ValueError(f"label {label.shape} and scores {top.seen_logit.shape} differ")
        valid = label != IGNORE_INDEX
        truth = _positions(label[valid], self.class_ids)
        seen, unseen = top.seen_logit[valid], top.unseen_logit[valid]
        seen_pos, unseen_pos = top.seen_pos[valid], top.unseen_pos[valid]
        over = unseen > self.limit
        breakpoint = seen - np.maximum(unseen, self.limit)  # seen wins for gamma below it
        tie_to_seen = over & (seen_pos < unseen_pos)  # ... and at it, on a tie
        index = np.where(tie_to_seen, np.searchsorted(self.grid, breakpoint, "right"),
                         np.searchsorted(self.grid, breakpoint, "left"))
        none = self.class_ids.size
        self._add(self.low, index, seen_pos, truth)
        self._add(self.high, index, np.where(over, unseen_pos, none), truth)
        self.truth += np.bincount(truth, minlength=none + 1)

    @staticmethod
    def _add(counts: np.ndarray, index: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> None:
        width = counts.shape[2]
        flat = index * width + pred
        size = counts.shape[1] * width
        counts[0] += np.bincount(flat, minlength=size).reshape(counts.shape[1:])
        counts[1] += np.bincount(flat[pred == truth], minlength=size).reshape(counts.shape[1:])

    def ious(self) -> np.ndarray:
        """(G, K) IoU of every name at every gamma (NaN: neither labelled nor predicted)."""
        below = np.cumsum(self.low[:, ::-1], axis=1)[:, ::-1][:, 1:]  # breakpoint index > j
        above = np.cumsum(self.high, axis=1)[:, :-1]  # breakpoint index <= j
        predicted, hit = below + above
        k = self.class_ids.size
        union = predicted[:, :k] + self.truth[None, :k] - hit[:, :k]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, hit[:, :k] / np.maximum(union, 1), np.nan)

    def curve(self, seen_ids: Iterable[int]) -> dict[str, np.ndarray]:
        """``gamma``, ``seen_miou``, ``unseen_miou``, ``hiou`` at every gamma of the grid."""
        seen, unseen, hiou = split_means(self.ious(), self.class_ids, seen_ids)
        return {"gamma": self.grid.copy(), "seen_miou": seen, "unseen_miou": unseen,
                "hiou": hiou}


def split_means(ious: np.ndarray, class_ids: Sequence[int],
                seen_ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seen mIoU, unseen mIoU, hIoU) of (..., K) IoUs of ``class_ids``, NaN IoUs left out
    (every name not in ``seen_ids`` is unseen)."""
    seen = np.isin(np.asarray(class_ids), list(seen_ids))
    means = []
    for side in (seen, ~seen):
        values = np.asarray(ious, dtype=np.float64)[..., side]
        count = (~np.isnan(values)).sum(-1)
        total = np.nansum(values, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    return means[0], means[1], harmonic_mean(means[0], means[1])


def harmonic_mean(seen: np.ndarray | float, unseen: np.ndarray | float) -> np.ndarray:
    """hIoU = 2 S U / (S + U); 0 where both are 0, NaN where either is NaN."""
    seen, unseen = np.asarray(seen, dtype=np.float64), np.asarray(unseen, dtype=np.float64)
    total = seen + unseen
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * seen * unseen / np.where(total > 0, total, 1),
                        np.where(np.isnan(total), np.nan, 0.0))


def gamma_grid(temperature: float, step: float = GAMMA_STEP) -> np.ndarray:
    """Multiples of ``step`` covering [-2/T, 2/T]: a cosine head's logits lie in [-1/T, 1/T], so
    beyond that range no gamma changes any prediction (the curve reaches both of its ends)."""
    count = math.ceil(2.0 / temperature / step)
    return step * np.arange(-count, count + 1, dtype=np.float64)


def choose_gamma(grid: Sequence[float], hiou: Sequence[float]) -> float:
    """The gamma of highest hIoU; among equals the smallest |gamma|, then the positive one; 0
    when no hIoU is defined (no calibration without unseen labels)."""
    grid, hiou = np.asarray(grid, dtype=np.float64), np.asarray(hiou, dtype=np.float64)
    if not np.any(~np.isnan(hiou)):
        return 0.0
    best = grid[hiou == np.nanmax(hiou)]
    return float(max(best, key=lambda g: (-abs(g), g)))


def ausuc(unseen: Sequence[float], seen: Sequence[float]) -> float:
    """Area under the seen-unseen curve (Chao et al. 2016): unseen mIoU on x, seen on y, over the
    upper envelope of the curve's points (the best seen mIoU at unseen >= x), trapezoids between
    its corners, extended flat to x = 0; NaN without a point where both are defined."""
    unseen, seen = np.asarray(unseen, dtype=np.float64), np.asarray(seen, dtype=np.float64)
    keep = ~(np.isnan(unseen) | np.isnan(seen))
    unseen, seen = unseen[keep], seen[keep]
    if not unseen.size:
        return float("nan")
    corners, best = [], -np.inf
    for i in np.lexsort((-seen, -unseen)):  # unseen descending, seen descending among equals
        if seen[i] > best:
            corners.append(i)
            best = seen[i]
    x, y = unseen[corners][::-1], seen[corners][::-1]
    return float(np.trapezoid(np.concatenate([[y[0]], y]), np.concatenate([[0.0], x])))


class PerImageIoU:
    """One ``IoUAccumulator`` per image (keyed by store row) and their sum: the split's scores
    and each image's contribution (its confusion), e.g. to resample images."""

    def __init__(self, class_ids: Sequence[int]) -> None:
        self.class_ids = tuple(int(c) for c in class_ids)
        self.images: dict[int, IoUAccumulator] = {}

    def update(self, image: int, pred: np.ndarray, label: np.ndarray) -> None:
        """Add ``pred`` (class ids, anything else none) against ``label`` of store row ``image``."""
        self.images.setdefault(image, IoUAccumulator(self.class_ids)).update(pred, label)

    def total(self, images: Iterable[int] | None = None) -> IoUAccumulator:
        """The sum over ``images`` (default: all, each once; a repeated row counts again)."""
        out = IoUAccumulator(self.class_ids)
        for image in self.images if images is None else images:
            out.confusion += self.images[image].confusion
        return out


def painted_share(mask: np.ndarray, label: np.ndarray) -> float:
    """Share of the image's labelled (not 255) pixels inside ``mask`` (NaN if none labelled)."""
    valid = np.asarray(label) != IGNORE_INDEX
    return float(np.asarray(mask, dtype=bool)[valid].mean()) if valid.any() else float("nan")
