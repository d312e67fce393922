"""The absent-name figures (``pipeline.evaluation.presence``) as functions of image weights, for
the image bootstrap of ``pipeline.evaluation.bootstrap``.

- absent painted share: per image, (the sum of its absent pairs' painted shares, their count);
  a resample's figure is the ratio of the two sums, the mean over the absent pairs it drew (an
  image drawn twice counts twice);
- presence AUROC: the Mann-Whitney statistic with every (image, name) pair weighted by its
  image's count in the resample, ties one half: the AUROC of the pairs the resample drew (all
  weights 1: ``sklearn.metrics.roc_auc_score`` of the pairs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.errors import FusionerError
from pipeline.evaluation.bootstrap import Figure, Resampler
from pipeline.evaluation.open_report import presence_entries
from pipeline.evaluation.presence import PresenceRecords
from pipeline.evaluation.run import FoldResult, Mode
from pipeline.thresholds import Threshold


def undefined(weights: np.ndarray) -> np.ndarray:
    """A figure with no value on any sample."""
    return np.full(len(weights), np.nan)


def absent_share_figure(records: PresenceRecords, rule: Threshold, image_ids: Sequence[str],
                        resampler: Resampler) -> Figure:
    """The mean painted share of the absent pairs under ``rule``; ``image_ids``: the id of each
    store row the records are keyed by."""
    sums: dict[str, np.ndarray] = {}
    for (row, _), shares in records.painted.items():
        share = shares[rule]
        if share == share:  # NaN: an image with no labelled pixel
            sums.setdefault(image_ids[row], np.zeros(2))[:] += (share, 1.0)
    if not sums:
        return undefined
    summed = resampler.summed(sums)

    def share(weights: np.ndarray) -> np.ndarray:
        total = summed(weights)
        with np.errstate(divide="ignore", invalid="ignore"):
            return total[:, 0] / total[:, 1]

    return share


def auroc_figure(records: PresenceRecords, image_ids: Sequence[str],
                 resampler: Resampler) -> Figure:
    """Presence AUROC of the pairs (their highest logit, present vs absent names), weighted by
    the resample's image counts; NaN on a sample without both kinds."""
    pairs = records.pairs()
    if not pairs:
        return undefined
    index = {image: i for i, image in enumerate(resampler.images)}
    unknown = {image_ids[row] for row, _ in pairs} - set(index)
    if unknown:
        raise FusionerError(f"presence pairs of image '{sorted(unknown)[0]}', not one of the "
                            "resampled images")
    scores = np.array([records.scores[p] for p in pairs])
    order = np.argsort(scores, kind="stable")
    present = np.array([records.present[p] for p in pairs])[order]
    column = np.array([index[image_ids[row]] for row, _ in pairs])[order]
    ties = np.flatnonzero(np.r_[True, np.diff(scores[order]) != 0])  # first pair of each score

    def auroc(weights: np.ndarray) -> np.ndarray:
        counts = weights[:, column].astype(np.float64)  # (m, pairs), ascending score
        pos = np.add.reduceat(np.where(present, counts, 0.0), ties, axis=1)
        neg = np.add.reduceat(np.where(present, 0.0, counts), ties, axis=1)
        below = np.cumsum(neg, axis=1) - neg  # absent weight strictly below each score
        wins = (pos * (below + 0.5 * neg)).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return wins / (pos.sum(axis=1) * neg.sum(axis=1))

    return auroc


def presence_figures(result: FoldResult, resampler: Resampler,
                     threshold: Threshold) -> dict[tuple[str, Mode], dict[str, Figure]]:
    """(method, "binary") -> its presence figures, as ``open_report.binary_figures`` reports
    them, as functions of the image weights."""
    entries = presence_entries(result, threshold)
    if not entries:
        return {}
    ids = result.inputs.features.store_image_ids()  # the records are keyed by store row
    return {key: {**({"presence_auroc": auroc_figure(records, ids, resampler)}
                     if with_auroc else {}),
                  "absent_painted_share": absent_share_figure(records, rule, ids, resampler)}
            for key, records, rule, with_auroc in entries}
