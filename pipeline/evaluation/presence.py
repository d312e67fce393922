"""Binary episodes of ABSENT names beside the paper's present-name ones: does a name that is not
in the image stay empty, and does the module's output tell a present name from an absent one?

Every (val image, unseen name) pair is a binary episode (the name alone on the image, as the
paper's protocol asks only for the present ones). Per pair:
- the presence score: the module's highest logit over the image, at the decoder's output
  resolution (before any resizing). Presence AUROC = the AUROC of that score, pairs whose name
  labels a pixel of the image against pairs whose name labels none, pooled over the fold's pairs
  (``sklearn.metrics.roc_auc_score``; 0.5 = chance, NaN without both kinds);
- for an absent pair, the painted share: the share of the image's labelled (not 255) pixels whose
  probability exceeds the threshold, at the paper's 0.5 and under the run's rule; the figure is
  the mean over the absent pairs.
Every pair is kept (``scores``, ``present``, ``painted``, keyed by (store row, class id)), so a
resampling of images can recompute both figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score
from torch import Tensor

from pipeline.gzsl import painted_share
from pipeline.model.fusion import upsample_logits
from pipeline.thresholds import Threshold, map_thresholds

Pair = tuple[int, int]  # (store row of the image, class id of the name)


@dataclass
class PresenceRecords:
    """Every (image, name) binary episode of one method on one fold."""

    scores: dict[Pair, float] = field(default_factory=dict)
    present: dict[Pair, bool] = field(default_factory=dict)
    painted: dict[Pair, dict[Threshold, float]] = field(default_factory=dict)  # absent pairs

    def add_image(self, image: int, logits: Tensor, class_ids: Sequence[int], label: np.ndarray,
                  rules: Iterable[Threshold]) -> None:
        """Record the episodes of ``class_ids`` on one image from their (K, h, w) logits at the
        decoder's resolution; ``label`` is the image's ground truth at the scoring size."""
        ids = [int(c) for c in class_ids]
        highest = logits.flatten(1).max(dim=1).values.tolist()
        labelled = set(np.unique(label).tolist())
        absent = [k for k, c in enumerate(ids) if c not in labelled]
        for k, c in enumerate(ids):
            self.scores[image, c] = float(highest[k])
            self.present[image, c] = c in labelled
        if not absent:
            return
        probs = upsample_logits(logits[absent][None], label.shape)[0].sigmoid().cpu().numpy()
        for rule in rules:
            limits = map_thresholds(probs, rule)
            for k, prob, limit in zip(absent, probs, limits, strict=True):
                self.painted.setdefault((image, ids[k]), {})[rule] = painted_share(prob > limit,
                                                                                   label)

    def pairs(self, images: Iterable[int] | None = None) -> list[Pair]:
        """The recorded pairs (of ``images`` only, in that order, repeats kept, if given)."""
        if images is None:
            return list(self.scores)
        by_image: dict[int, list[Pair]] = {}
        for pair in self.scores:
            by_image.setdefault(pair[0], []).append(pair)
        return [pair for image in images for pair in by_image.get(image, [])]

    def auroc(self, images: Iterable[int] | None = None) -> float:
        """Presence AUROC over the pairs (of ``images``); NaN without present and absent ones."""
        pairs = self.pairs(images)
        truth = [self.present[p] for p in pairs]
        if len(set(truth)) < 2:
            return float("nan")
        return float(roc_auc_score(truth, [self.scores[p] for p in pairs]))

    def absent_share(self, rule: Threshold, images: Iterable[int] | None = None) -> float:
        """Mean painted share of the absent pairs (of ``images``) under ``rule``; NaN if none."""
        shares = [self.painted[p][rule] for p in self.pairs(images) if p in self.painted]
        defined = [s for s in shares if s == s]
        return float(np.mean(defined)) if defined else float("nan")

    def merge(self, other: PresenceRecords) -> PresenceRecords:
        """A new record holding both (image splits of one fold: their pairs never overlap)."""
        if set(self.scores) & set(other.scores):
            raise ValueError("presence records of the same (image, name) pairs cannot be merged")
        return PresenceRecords({**self.scores, **other.scores}, {**self.present, **other.present},
                               {**self.painted, **other.painted})

    @property
    def absent_pairs(self) -> int:
        """How many recorded pairs have an absent name."""
        return len(self.painted)
