"""Zero-shot splits: which classes a fold trains on (seen) and holds out entirely (unseen)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.errors import UnknownNameError


@dataclass(frozen=True)
class ZeroShotSplit:
    """Class ids (into the dataset's ``class_names``) seen in training and held out."""

    dataset: str
    fold: int
    seen: tuple[int, ...]
    unseen: tuple[int, ...]


_SPLITS: dict[str, Callable[[int], ZeroShotSplit]] = {}


def register_split(dataset: str) -> Callable[[Callable[[int], ZeroShotSplit]], Callable]:
    """Register the fold function of a dataset."""

    def wrap(fn: Callable[[int], ZeroShotSplit]) -> Callable[[int], ZeroShotSplit]:
        _SPLITS[dataset] = fn
        return fn

    return wrap


def get_split(dataset: str, fold: int) -> ZeroShotSplit:
    """The seen/unseen classes of ``fold`` for ``dataset``."""
    if dataset not in _SPLITS:
        raise UnknownNameError(f"no zero-shot split for dataset '{dataset}'; known: {sorted(_SPLITS)}")
    return _SPLITS[dataset](fold)


# CamVid ids: 0 sky, 1 building, 2 pole, 3 road, 4 sidewalk, 5 tree, 6 sign symbol, 7 fence,
# 8 car, 9 pedestrian, 10 bicyclist. Fold 0 is the documented default (small "thing" classes
# unseen); folds 1-2 rotate other classes out, as PASCAL-5i rotates its folds.
CAMVID_UNSEEN = {0: (2, 9, 10), 1: (6, 7, 8), 2: (1, 4, 5)}


@register_split("camvid")
def camvid_split(fold: int) -> ZeroShotSplit:
    """CamVid folds: 11 classes, 3 unseen per fold."""
    if fold not in CAMVID_UNSEEN:
        raise UnknownNameError(f"camvid has folds {sorted(CAMVID_UNSEEN)}, not {fold}")
    unseen = CAMVID_UNSEEN[fold]
    seen = tuple(c for c in range(11) if c not in unseen)
    return ZeroShotSplit("camvid", fold, seen, unseen)
