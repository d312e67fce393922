"""Training episodes: one cached image + the SEEN class names it is trained against.

Rules (the zero-shot contract, tested by scanning every episode of a split):
- Label maps go through ``pipeline.data.splits.training_view`` first: pixels of unseen classes
  become 255 (``unseen_as="ignore"``, default: no gradient, the strict zero-shot setting) or
  the dataset's background id (``"background"``, HSNet-style negatives; needs a background).
- ``classes="present"`` (default, the paper): the episode asks for the seen classes present in
  the image. ``"all"``: every seen class, absent ones giving all-negative masks (more negatives
  for BCE; also how the seen-class validation mIoU is measured). ``"single"``: ONE of the seen
  classes present, redrawn every epoch from (seed, epoch, image), as the binary evaluation asks
  (one name per image): the other objects in the image are that name's negatives.
  ``"vocabulary"``: every seen class in one pass, as ``"all"``, but trained with a per-pixel
  softmax over [background, the seen names] (``pipeline.model.loss.VocabularyTargets``): each
  pixel's target is its seen class or the background; unseen pixels stay ignored (255), and on
  a dataset without a background the pixels of no seen class are ignored too.
  ``absent_rate`` = P > 0 (``"single"`` only): a share P of those draws asks instead for one
  seen class ABSENT from the image (an all-negative mask): a name alone with nothing to show
  gets no pixels, as a random or wrong name should at evaluation.
- ``negatives`` = K > 0: each episode also asks for K seen classes ABSENT from the image
  (all-negative masks), redrawn every epoch from (seed, epoch, image): the module learns that a
  name with nothing to show gets an empty mask, rather than marking whatever object is there.
  Needs the epoch (as ``"single"`` does): the training sampler yields ``(item, view, epoch)``.
- An unseen class id never appears, neither as a queried class nor as a positive pixel.
  Images without any seen pixel have no episode and are skipped.

Augmented views (a store made with ``--views``): ``dataset[(item, view)]`` is the episode of
view ``view`` of the image; it asks for the classes planned on the plain image (view 0). A crop
can only drop classes, so a class cropped out of a view is an all-negative query there, as
absent classes are under ``classes="all"``. ``pipeline.train.views`` picks the view per epoch.

Episodes carry class ids; text embeddings are looked up by id in the training loop (one
(num_classes, D) table), so workers never ship text around.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pipeline.data.splits import ZeroShotSplit, training_view
from pipeline.model.scoring import VOCABULARY_EPISODE
from pipeline.store.dataset import CachedFeatureDataset

EpisodeClasses = Literal["present", "all", "single", "vocabulary"]
EPISODE_CLASSES: tuple[str, ...] = get_args(EpisodeClasses)
UnseenAs = Literal["ignore", "background"]


class EpisodeDataset(Dataset):
    """Items: ``{"patch_tokens": (h,w,C), "label": (H,W) int64, "class_ids": (K,), "index",
    "view"}``; ``dataset[item]`` reads view 0, ``dataset[(item, view)]`` that view."""

    def __init__(self, features: CachedFeatureDataset, split: ZeroShotSplit,
                 classes: EpisodeClasses = "present", unseen_as: UnseenAs = "ignore",
                 negatives: int = 0, seed: int = 0, absent_rate: float = 0.0) -> None:
        if classes not in EPISODE_CLASSES:
            raise ValueError(f"classes must be one of {EPISODE_CLASSES}, not {classes!r}")
        if negatives < 0:
            raise ValueError(f"negatives must be >= 0, not {negatives}")
        if not 0 <= absent_rate < 1 or (absent_rate and classes != "single"):
            raise ValueError(f"--absent-rate needs --episode single and a value in [0, 1), "
                             f"not {absent_rate} with {classes} episodes (--negatives adds "
                             "absent classes to the other episode kinds)")
        self.features = features
        self.split = split
        self.unseen_as = unseen_as
        every = classes in ("all", VOCABULARY_EPISODE)  # every seen class: no draws
        self.negatives = 0 if every else negatives  # "all" has every absent one already
        self.single = classes == "single"
        self.absent_rate = absent_rate
        self.seed = seed
        self.positions: list[int] = []  # item position in ``features``
        self.class_ids: list[tuple[int, ...]] = []
        for position, label in enumerate(features.labels()):
            present, _ = training_view(label, split, unseen_as)
            if present:
                self.positions.append(position)
                self.class_ids.append(tuple(split.seen) if every else present)

    def __len__(self) -> int:
        return len(self.positions)

    def blocks(self) -> list[int]:
        """The store shard of every episode (for ``BlockShuffleSampler``)."""
        return [self.features.block_of(position) for position in self.positions]

    @property
    def views(self) -> int:
        """Augmented views per image in the store (0: the plain images only)."""
        return self.features.views

    @property
    def needs_epoch(self) -> bool:
        """Whether episodes are redrawn per epoch (the sampler must hand the epoch over)."""
        return self.single or self.negatives > 0

    def queried_class(self, item: int, epoch: int) -> tuple[int]:
        """The one seen class image ``item`` is asked for in ``epoch``: a present one, or with
        probability ``absent_rate`` an absent one."""
        rng = np.random.default_rng([self.seed % 2**64, epoch, self.positions[item], 1])
        if self.absent_rate and rng.random() < self.absent_rate:
            absent = self._absent_seen(item)
            if absent:
                return (int(rng.choice(absent)),)
        return (int(rng.choice(self.class_ids[item])),)

    def absent_classes(self, item: int, epoch: int) -> tuple[int, ...]:
        """The ``negatives`` seen classes absent from image ``item`` queried in ``epoch``."""
        absent = self._absent_seen(item)
        rng = np.random.default_rng([self.seed % 2**64, epoch, self.positions[item]])
        count = min(self.negatives, len(absent))
        return tuple(sorted(int(c) for c in rng.choice(absent, size=count, replace=False)))

    def _absent_seen(self, item: int) -> list[int]:
        """The seen classes absent from image ``item`` (in the split's order)."""
        present = set(self.class_ids[item])
        return [c for c in self.split.seen if c not in present]

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, Any]:
        """``item``, ``(item, view)`` or ``(item, view, epoch)`` (negatives need the epoch)."""
        item, view, *epoch = key if isinstance(key, tuple) else (key, 0)
        sample = self.features[(self.positions[item], view)]
        _, safe = training_view(sample["label"].numpy(), self.split, self.unseen_as)
        class_ids = self.class_ids[item]
        if self.single:
            class_ids = self.queried_class(item, epoch[0] if epoch else 0)
        if self.negatives and epoch:
            class_ids = class_ids + self.absent_classes(item, epoch[0])
        return {
            "patch_tokens": sample["patch_tokens"],
            "label": torch.from_numpy(safe.astype(np.int64)),
            "class_ids": torch.tensor(class_ids, dtype=torch.int64),
            "index": sample["index"],
            "view": view,
        }


def collate_episodes(items: list[dict[str, Any]]) -> dict[str, Tensor]:
    """Stack a batch; pad ``class_ids`` to the largest K with -1 and add ``text_mask`` (B, K)."""
    k = max(len(item["class_ids"]) for item in items)
    class_ids = torch.full((len(items), k), -1, dtype=torch.int64)
    for row, item in enumerate(items):
        class_ids[row, : len(item["class_ids"])] = item["class_ids"]
    return {
        "patch_tokens": torch.stack([item["patch_tokens"] for item in items]),
        "label": torch.stack([item["label"] for item in items]),
        "class_ids": class_ids,
        "text_mask": class_ids >= 0,
        "index": torch.tensor([item["index"] for item in items], dtype=torch.int64),
        "view": torch.tensor([item.get("view", 0) for item in items], dtype=torch.int64),
    }


def episode_text(table: Tensor, class_ids: Tensor) -> Tensor:
    """(B, K, D) text embeddings of padded ``class_ids`` (padding slots get row 0, masked later)."""
    return table[class_ids.clamp(min=0)]
