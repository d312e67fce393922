"""Zero-shot splits: which classes a fold trains on (seen) and holds out entirely (unseen).

Class ids index the dataset's ``class_names``. Datasets with a background (PASCAL, COCO,
FSS-1000, Mosaic-4, folders whose ``classes.txt`` names "background") give it an id of its
own, ``ZeroShotSplit.background``: it is in neither ``seen`` nor ``unseen``, is never queried
as a class name, and its pixels are negatives for every class.

``training_view`` is THE one place that decides what a training image may show: unseen-class
pixels become ignore (default) or background, so no unseen class reaches a training episode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pipeline.data.base import IGNORE_INDEX
from pipeline.errors import StoreError, UnknownNameError

BACKGROUND = "background"  # the class name that marks a dataset's background id


@dataclass(frozen=True)
class ZeroShotSplit:
    """Class ids (into the dataset's ``class_names``) seen in training and held out."""

    dataset: str
    fold: int
    seen: tuple[int, ...]
    unseen: tuple[int, ...]
    background: int | None = None


_SPLITS: dict[str, Callable[[int], ZeroShotSplit]] = {}
INTERLEAVED_FOLDS = 4
_INTERLEAVED: set[str] = set()  # datasets whose folds interleave over their own class list


def register_split(dataset: str) -> Callable[[Callable[[int], ZeroShotSplit]], Callable]:
    """Register the fold function of a dataset."""

    def wrap(fn: Callable[[int], ZeroShotSplit]) -> Callable[[int], ZeroShotSplit]:
        _SPLITS[dataset] = fn
        return fn

    return wrap


def register_interleaved_split(dataset: str) -> None:
    """Give ``dataset`` the folds of ``interleaved_split`` over its own class names."""
    _INTERLEAVED.add(dataset)


def get_split(dataset: str, fold: int,
              class_names: Sequence[str] | None = None) -> ZeroShotSplit:
    """The seen/unseen classes of ``fold`` for ``dataset``: a fixed-vocabulary dataset's
    registered folds, or (given its ``class_names``) an interleaved-fold dataset's."""
    if dataset in _SPLITS:
        return _SPLITS[dataset](fold)
    if dataset in _INTERLEAVED and class_names is not None:
        return interleaved_split(dataset, class_names, fold)
    raise UnknownNameError(f"no zero-shot split for dataset '{dataset}'; known: "
                           f"{sorted(_SPLITS | dict.fromkeys(_INTERLEAVED))} (folder "
                           "vocabularies: split_for(dataset, fold))")


def split_for(dataset: object, fold: int) -> ZeroShotSplit:
    """The split of a dataset object: its own ``zero_shot_split`` (vocabulary read from disk:
    FSS-1000, Mosaic-4, folders), else the registered fold of ``dataset.name``."""
    own = getattr(dataset, "zero_shot_split", None)
    if callable(own):
        return own(fold)
    return get_split(dataset.name, fold)  # type: ignore[attr-defined]


def background_id(class_names: Sequence[str]) -> int | None:
    """The id of the class named "background", if the dataset has one."""
    return list(class_names).index(BACKGROUND) if BACKGROUND in class_names else None


def training_classes(split: ZeroShotSplit) -> tuple[int, ...]:
    """Class ids a training episode may query: the seen ones (never unseen, never background)."""
    return split.seen


def present_classes(label: np.ndarray, classes: Sequence[int]) -> tuple[int, ...]:
    """Those of ``classes`` with at least one pixel in ``label`` (sorted)."""
    present = set(np.unique(label).tolist())
    return tuple(sorted(c for c in classes if c in present))


def evaluation_episodes(label: np.ndarray, split: ZeroShotSplit) -> tuple[int, ...]:
    """Unseen classes present in ``label``: one binary evaluation episode each (HSNet)."""
    return present_classes(label, split.unseen)


def training_view(
    label: np.ndarray, split: ZeroShotSplit, unseen_as: Literal["ignore", "background"] = "ignore"
) -> tuple[tuple[int, ...], np.ndarray]:
    """(present seen class ids, label map safe to train on) for one training image.

    Unseen-class pixels become 255 (``"ignore"``, default: no gradient at all, strict
    zero-shot) or the background id (``"background"``: HSNet/LSeg-style binary masks where
    unseen objects count as negatives; needs a split with a background). Seen, background and
    ignore pixels are kept. An empty tuple means the image has no training episode: skip it.
    """
    if unseen_as == "ignore":
        fill = IGNORE_INDEX
    elif unseen_as == "background":
        if split.background is None:
            raise ValueError(f"{split.dataset} has no background id; use unseen_as='ignore'")
        fill = split.background
    else:
        raise ValueError(f"unseen_as must be 'ignore' or 'background', not {unseen_as!r}")
    lookup = np.arange(256, dtype=np.uint8)
    lookup[list(split.unseen)] = fill
    safe = lookup[np.asarray(label, dtype=np.uint8)]
    return present_classes(safe, split.seen), safe


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


def _check_fold(dataset: str, fold: int, folds: int = 4) -> None:
    if fold not in range(folds):
        raise UnknownNameError(f"{dataset} has folds 0..{folds - 1}, not {fold}")


@register_split("pascal")
def pascal_split(fold: int) -> ZeroShotSplit:
    """PASCAL-5i (HSNet): ids 1..20 in VOC order, fold i unseen = 5i+1..5i+5; 0 = background."""
    _check_fold("pascal", fold)
    unseen = tuple(range(5 * fold + 1, 5 * fold + 6))
    seen = tuple(c for c in range(1, 21) if c not in unseen)
    return ZeroShotSplit("pascal", fold, seen, unseen, background=0)


@register_split("coco")
def coco_split(fold: int) -> ZeroShotSplit:
    """COCO-20i (HSNet): ids 1..80, fold i unseen = {4k + i + 1 : k = 0..19}; 0 = background."""
    _check_fold("coco", fold)
    unseen = tuple(4 * k + fold + 1 for k in range(20))
    seen = tuple(c for c in range(1, 81) if c not in unseen)
    return ZeroShotSplit("coco", fold, seen, unseen, background=0)


def interleaved_split(dataset: str, class_names: Sequence[str], fold: int,
                      folds: int = INTERLEAVED_FOLDS) -> ZeroShotSplit:
    """COCO-20i's rule over any vocabulary: the k-th class other than background (k = 0, 1, ...)
    is unseen in fold k mod ``folds``; background is neither seen nor unseen."""
    _check_fold(dataset, fold, folds)
    bg = background_id(class_names)
    classes = [c for c in range(len(class_names)) if c != bg]
    unseen = tuple(c for k, c in enumerate(classes) if k % folds == fold)
    seen = tuple(c for c in classes if c not in unseen)
    return ZeroShotSplit(dataset, fold, seen, unseen, background=bg)


def all_unseen_split(dataset: str, class_names: Sequence[str], fold: int = 0) -> ZeroShotSplit:
    """Evaluation-only vocabulary: every class except background is unseen (fold 0 only)."""
    if fold != 0:
        raise UnknownNameError(f"{dataset} has a single fold 0, not {fold}")
    bg = background_id(class_names)
    unseen = tuple(c for c in range(len(class_names)) if c != bg)
    return ZeroShotSplit(dataset, 0, (), unseen, background=bg)


def check_store_fold(attrs: Mapping[str, Any], fold: int, where: object) -> None:
    """Refuse a store of images built for one fold (``built_for_fold``: fold mosaics) when
    another ``fold`` is trained or evaluated on it."""
    built = attrs.get("built_for_fold")
    if built is not None and int(built) != fold:
        raise StoreError(f"{where}: its images were built for fold {built}, not fold {fold} "
                         f"(build and extract fold {fold}'s mosaics into their own --cache-dir)")
