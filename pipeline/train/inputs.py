"""Open and cross-check the cached stores a training run reads (and nothing else).

Train visual store + text store are required; the validation visual store is optional (missing:
no validation metric). Every store is checked for the encoder asked for, the dataset and split,
and against each other (same visual encoder weights, same class names).

With an image split (``config.image_split``: cross-validation, ``pipeline.data.image_splits``)
the run trains on the other splits' rows of the train store and validates on the held-out
images, read (view 0) from the validation store by their ids.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from pipeline.data.image_splits import ImageSplit, rows_of
from pipeline.data.splits import ZeroShotSplit, check_store_fold, get_split
from pipeline.errors import FusionerError, StoreError
from pipeline.model.checkpoint import IDENTITY_KEYS, TEXT_KEYS, VISUAL_KEYS, provenance
from pipeline.store import (
    CachedFeatureDataset,
    read_text_store,
    store_exists,
    text_store_path,
    visual_store_path,
)
from pipeline.text_tables.source import check_table_source
from pipeline.train.config import FitConfig
from pipeline.train.episodes import EpisodeDataset

log = logging.getLogger("fusioner.fit")


@dataclass
class TrainingInputs:
    """Episodes to train on (and to validate on), the text table and the run's provenance."""

    train: EpisodeDataset
    val: EpisodeDataset | None
    text_table: torch.Tensor  # (num_classes, D), row = dataset class id
    split: ZeroShotSplit
    class_names: list[str]
    visual_attrs: dict[str, Any]
    text_attrs: dict[str, Any]
    views: int = 0  # augmented views drawn from (views 0..this of each training image)
    image_split: dict[str, Any] | None = None  # ``ImageSplit.record`` of a cross-validation run

    @property
    def visual_dim(self) -> int:
        return int(self.visual_attrs["feature_dim"])

    @property
    def text_dim(self) -> int:
        return int(self.text_table.shape[1])

    def provenance_meta(self) -> dict[str, Any]:
        """The checkpoint ``meta`` fields that describe the data (not the model)."""
        return {
            "visual": provenance(self.visual_attrs, VISUAL_KEYS),
            "text": provenance(self.text_attrs, TEXT_KEYS),
            "dataset": self.split.dataset,
            "fold": self.split.fold,
            "seen": list(self.split.seen),
            "unseen": list(self.split.unseen),
            "background": self.split.background,
            "class_names": list(self.class_names),
            "views": self.visual_attrs.get("views"),  # the train store's view recipe, or None
            **({"image_split": self.image_split} if self.image_split else {}),
        }


def open_inputs(config: FitConfig) -> TrainingInputs:
    """Open the stores of ``config``; ``StoreError`` if missing, incomplete or mismatched."""
    train_path = visual_store_path(config.stores, config.visual, config.dataset,
                                   config.train_split)
    features = CachedFeatureDataset(train_path, cache_blocks=config.block_mix, expect={
        "encoder": config.visual, "dataset": config.dataset, "split": config.train_split})
    visual_attrs = dict(features.attrs)
    held_out = None
    if config.image_split is not None:
        held_out = ImageSplit.of(features.image_ids(), config.image_split, config.image_splits)
        features = features.subset(held_out.train_rows)
    text_path = text_store_path(config.stores, config.text, config.dataset)
    text = read_text_store(text_path, expect={"encoder": config.text, "dataset": config.dataset})
    check_table_source(text.attrs, text_path)
    names = [str(n) for n in visual_attrs.get("class_names", text.class_names)]
    if names != text.class_names:
        raise StoreError(f"{train_path}: class names {names} differ from the text store's "
                         f"{text.class_names} (re-extract one of them)")
    split = get_split(config.dataset, config.fold, names)
    check_store_fold(visual_attrs, config.fold, train_path)
    if max(split.seen + split.unseen) >= len(names):
        raise StoreError(f"{train_path}: {len(names)} classes, but fold {config.fold} of "
                         f"{config.dataset} uses ids up to {max(split.seen + split.unseen)}")
    if config.unseen_as == "background" and split.background is None:
        raise FusionerError(f"{config.dataset} has no background class: use --unseen-as ignore")
    try:
        train = EpisodeDataset(features, split, config.episode, config.unseen_as,  # type: ignore[arg-type]
                               config.negatives, config.seed, config.absent_rate)
    except ValueError as exc:
        raise FusionerError(str(exc)) from exc
    if len(train) == 0:
        raise StoreError(f"{train_path}: no image shows a seen class of fold {config.fold}")
    val = _open_val(config, split, visual_attrs, held_out)
    return TrainingInputs(train, val, text.embeddings, split, names, visual_attrs, text.attrs,
                          _views(config, train_path, features.views),
                          held_out.record(config.train_split) if held_out else None)


def _views(config: FitConfig, path: Any, stored: int) -> int:
    """How many augmented views to draw from: ``config.views`` (None: all ``stored``)."""
    if config.views is None:
        return stored
    if not 0 <= config.views <= stored:
        raise StoreError(f"{path}: holds {stored} augmented views per image, cannot draw from "
                         f"{config.views} (re-extract it with fusioner-extract --views "
                         f"{config.views})")
    return config.views


def _open_val(config: FitConfig, split: ZeroShotSplit, visual_attrs: dict[str, Any],
              held_out: ImageSplit | None = None) -> EpisodeDataset | None:
    """Validation episodes, or None when off or not extracted (an image split: its held-out
    images, found by id in the validation store).

    Same episode rule as training (``present``: the seen classes present in the image, as in the
    paper's protocol where the queried class is known to be there), unseen pixels ignored;
    ``single`` training validates on ``present`` (every present class, compared by argmax).
    """
    if not config.val_split:
        return None
    path = visual_store_path(config.stores, config.visual, config.dataset, config.val_split)
    if not store_exists(path):
        log.warning("%s: no validation store, validation metrics are skipped", path)
        return None
    same_encoder = {k: visual_attrs[k] for k in IDENTITY_KEYS if k in visual_attrs}
    features = CachedFeatureDataset(path, cache_blocks=1, expect={  # read in order
        **same_encoder, "dataset": config.dataset, "split": config.val_split})
    if held_out is not None:
        features = features.subset(rows_of(features.image_ids(), held_out.val_ids, path))
    episode = "present" if config.episode == "single" else config.episode
    val = EpisodeDataset(features, split, episode, "ignore")  # type: ignore[arg-type]
    if len(val) == 0:  # e.g. fold mosaics: their val images show unseen classes only
        log.warning("%s: no image shows a seen class, validation metrics are skipped", path)
        return None
    return val
