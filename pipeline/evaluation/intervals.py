"""Bootstrap intervals of an evaluation, all on one ``Resampler`` of the evaluated images.

- per fold, every (method, mode): the intervals of its mIoU and FB-IoU, and of the binary
  blocks' absent-name figures (presence AUROC, absent painted share;
  ``pipeline.evaluation.presence_intervals``);
- the mean over folds: on each replicate (and jackknife sample), the mean of the folds'
  figures (the folds share the sample's images), then the interval of those means;
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

from pipeline.evaluation.bootstrap import Figure, Resampler
from pipeline.evaluation.presence_intervals import presence_figures, undefined
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
from pipeline.metrics import IoUAccumulator, iou_summary, metric_number
from pipeline.thresholds import PAPER_THRESHOLD, Threshold

FIGURES = ("miou", "fb_iou")
Key = tuple[str, Mode]


def _span(resampler: Resampler, figure: Figure) -> list[float | None] | None:
    span = resampler.interval(figure)
    return None if span is None else [metric_number(span[0]), metric_number(span[1])]


def accumulator_figures(acc: IoUAccumulator, resampler: Resampler) -> dict[str, Figure]:
    """mIoU and FB-IoU of one accumulator as functions of the image weights (undefined if it
    saw no image)."""
    if not acc.images:
        return {name: undefined for name in FIGURES}
    summed = resampler.summed(acc.images)
    return {"miou": lambda weights: iou_summary(summed(weights)).miou,
            "fb_iou": lambda weights: iou_summary(summed(weights)).fb_iou}


def fold_figures(result: FoldResult, resampler: Resampler,
                 threshold: Threshold) -> dict[Key, dict[str, Figure]]:
    """Every figure of one fold: its accumulators' and the binary blocks' presence figures."""
    figures = {key: accumulator_figures(acc, resampler)
               for key, acc in sorted(result.accumulators.items())}
    for key, extra in presence_figures(result, resampler, threshold).items():
        figures.setdefault(key, {}).update(extra)
    return figures


def _mean(figures: Sequence[Figure]) -> Figure:
    """The element-wise mean of the defined ones among the folds' ``figures``."""

    def mean(weights: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a sample no fold defines: NaN
            return np.nanmean(np.stack([figure(weights) for figure in figures]), axis=0)

    return mean


def _ratio(top: Figure, bottom: Figure) -> Figure:
    def ratio(weights: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return top(weights) / bottom(weights)

    return ratio


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


def _ratios(miou: Mapping[Key, Figure], resampler: Resampler,
            threshold: Threshold) -> dict[str, Any]:
    """{mode: {rule: {name: {"ratio", "ci95"}}}} for every pair whose two figures exist."""
    block: dict[str, Any] = {}
    for mode in sorted({mode for _, mode in miou}):
        for rule, (model, bases) in ratio_rules(threshold).items():
            for name, base in bases.items():
                top, bottom = (model, mode), (base, mode)
                if top in miou and bottom in miou:
                    ratio = _ratio(miou[top], miou[bottom])
                    block.setdefault(mode, {}).setdefault(rule, {})[name] = {
                        "ratio": metric_number(resampler.point(ratio)),
                        "ci95": _span(resampler, ratio)}
    return block


def image_intervals(results: Sequence[FoldResult], resampler: Resampler,
                    threshold: Threshold = PAPER_THRESHOLD) -> Intervals:
    """Every interval and ratio of ``results`` (one per class fold) on ``resampler``."""
    figures = {r.inputs.split.fold: fold_figures(r, resampler, threshold) for r in results}
    per_fold = {fold: {key: {name: _span(resampler, f) for name, f in pair.items()}
                       for key, pair in keyed.items()} for fold, keyed in figures.items()}
    fold_ratios = {fold: _ratios(_mious(keyed), resampler, threshold)
                   for fold, keyed in figures.items()}
    keys = sorted({key for keyed in figures.values() for key in keyed})
    means = {key: {name: _mean([keyed[key][name] for keyed in figures.values()
                                if name in keyed.get(key, {})])
                   for name in dict.fromkeys(n for keyed in figures.values()
                                             for n in keyed.get(key, {}))}
             for key in keys}
    mean = {key: {name: _span(resampler, f) for name, f in pair.items()}
            for key, pair in means.items()}
    return Intervals(per_fold, mean, fold_ratios, _ratios(_mious(means), resampler, threshold))


def _mious(figures: Mapping[Key, Mapping[str, Figure]]) -> dict[Key, Figure]:
    return {key: pair["miou"] for key, pair in figures.items() if "miou" in pair}
