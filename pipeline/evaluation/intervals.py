"""Bootstrap intervals of an evaluation, all on one ``Resampler`` of the evaluated images.

- per fold, every (method, mode): the intervals of its mIoU and FB-IoU;
- the mean over folds: on each replicate, the mean of the folds' figures (the folds share the
  replicate's images), then the interval of those means;
- ratios: the model's mIoU over each baseline's and control's under the same threshold rule (all
  foreground has none), per fold and for the means (mean model / mean baseline, as the README
  states its targets), each replicate's ratio from that replicate's two figures.

Every number comes back as a plain float rounded to 6 digits (``None``: undefined), keyed by
(method, mode) for ``pipeline.evaluation.report`` to shape like the scores.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.evaluation.bootstrap import Resampler
from pipeline.evaluation.run import (
    ALL_FOREGROUND,
    MODEL,
    NAME_SHUFFLED,
    NAME_SHUFFLED_PAPER,
    PAPER_RULE,
    RANDOM_TEXT,
    RANDOM_TEXT_PAPER,
    FoldResult,
    Mode,
)
from pipeline.metrics import IoUAccumulator, iou_summary
from pipeline.thresholds import PAPER_THRESHOLD, Threshold

FIGURES = ("miou", "fb_iou")
Key = tuple[str, Mode]


def _round(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 6)


def _span(resampler: Resampler, values: np.ndarray) -> list[float | None] | None:
    span = resampler.interval(values)
    return None if span is None else [_round(span[0]), _round(span[1])]


def _figures(counts: np.ndarray) -> dict[str, np.ndarray]:
    """mIoU and FB-IoU of (..., 3, K + 1) counts."""
    scores = iou_summary(counts)
    return {"miou": scores.miou, "fb_iou": scores.fb_iou}


def accumulator_replicates(acc: IoUAccumulator, resampler: Resampler) -> dict[str, np.ndarray]:
    """(B,) replicates of each figure of one accumulator (all NaN if it saw no image)."""
    if not acc.images:
        return {name: np.full(resampler.resamples, np.nan) for name in FIGURES}
    return _figures(resampler.sums(acc.images))


def _mean(rows: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the defined ones among ``rows`` (folds), element-wise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate no fold defines: NaN
        return np.nanmean(np.stack(rows), axis=0)


def ratio_rules(threshold: Threshold) -> dict[str, tuple[str, dict[str, str]]]:
    """Rule label -> (model key, {baseline or control name: its key under that rule})."""
    rules = {str(threshold): (MODEL, {ALL_FOREGROUND: ALL_FOREGROUND, RANDOM_TEXT: RANDOM_TEXT,
                                      NAME_SHUFFLED: NAME_SHUFFLED})}
    if threshold != PAPER_THRESHOLD:
        rules[PAPER_RULE] = (PAPER_RULE, {ALL_FOREGROUND: ALL_FOREGROUND,
                                          RANDOM_TEXT: RANDOM_TEXT_PAPER,
                                          NAME_SHUFFLED: NAME_SHUFFLED_PAPER})
    return rules


@dataclass
class Intervals:
    """Figure intervals per fold and for the mean, and the ratio blocks."""

    per_fold: dict[int, dict[Key, dict[str, Any]]]
    mean: dict[Key, dict[str, Any]]
    fold_ratios: dict[int, dict[str, Any]]
    mean_ratios: dict[str, Any]


def _ratios(points: Mapping[Key, float], replicates: Mapping[Key, np.ndarray],
            resampler: Resampler, threshold: Threshold) -> dict[str, Any]:
    """{mode: {rule: {name: {"ratio", "ci95"}}}} for every pair whose two figures exist."""
    block: dict[str, Any] = {}
    modes = sorted({mode for _, mode in points})
    for mode in modes:
        for rule, (model, bases) in ratio_rules(threshold).items():
            for name, base in bases.items():
                top, bottom = (model, mode), (base, mode)
                if top not in points or bottom not in points:
                    continue
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.divide(points[top], points[bottom])
                    spread = replicates[top] / replicates[bottom]
                block.setdefault(mode, {}).setdefault(rule, {})[name] = {
                    "ratio": _round(ratio), "ci95": _span(resampler, spread)}
    return block


def image_intervals(results: Sequence[FoldResult], resampler: Resampler,
                    threshold: Threshold = PAPER_THRESHOLD) -> Intervals:
    """Every interval and ratio of ``results`` (one per class fold) on ``resampler``."""
    per_fold: dict[int, dict[Key, dict[str, Any]]] = {}
    fold_ratios: dict[int, dict[str, Any]] = {}
    replicates: dict[int, dict[Key, dict[str, np.ndarray]]] = {}
    points: dict[int, dict[Key, dict[str, float]]] = {}
    for result in results:
        fold = result.inputs.split.fold
        replicates[fold] = {key: accumulator_replicates(acc, resampler)
                            for key, acc in result.accumulators.items()}
        points[fold] = {key: {n: float(v) for n, v in _figures(acc.counts()).items()}
                        for key, acc in result.accumulators.items()}
        per_fold[fold] = {key: {n: _span(resampler, reps[n]) for n in FIGURES}
                          for key, reps in sorted(replicates[fold].items())}
        fold_ratios[fold] = _ratios({k: v["miou"] for k, v in points[fold].items()},
                                    {k: v["miou"] for k, v in replicates[fold].items()},
                                    resampler, threshold)
    keys = sorted({key for reps in replicates.values() for key in reps})
    mean_reps = {key: {n: _mean([r[key][n] for r in replicates.values() if key in r])
                       for n in FIGURES} for key in keys}
    mean_points = {key: float(_mean([np.asarray(p[key]["miou"]) for p in points.values()
                                     if key in p])) for key in keys}
    mean = {key: {n: _span(resampler, mean_reps[key][n]) for n in FIGURES} for key in keys}
    mean_ratios = _ratios(mean_points, {k: v["miou"] for k, v in mean_reps.items()}, resampler,
                          threshold)
    return Intervals(per_fold, mean, fold_ratios, mean_ratios)
