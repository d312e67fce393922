"""Repair a damaged store by re-extracting only its damaged shards, the way it was made.

Everything comes from the store's own attributes: the encoder (slug, ``random_init``, input
size; the weights are looked up as ``fusioner-extract`` does and must have the recorded sha256),
the dataset and split, the shard size, the ``views`` recipe and the batch size (``extraction``).
The damaged shards are flagged pending (the store incomplete first, so no reader takes it
meanwhile) and the extraction's resume path writes them again - identical bytes, as a clean
extraction on the same machine writes. A text store is one shard: it is rewritten whole.
All of it happens under the store's writer lock.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.data import create_dataset
from pipeline.data.views import ViewRecipe
from pipeline.encoders import create_text_encoder, create_visual_encoder
from pipeline.errors import StoreError
from pipeline.extract import extract_text, extract_visual
from pipeline.store.layout import view_count
from pipeline.store.location import StoreLocation, as_location, open_group
from pipeline.store.lock import store_lock
from pipeline.store.verify import RESUME, SHARDS, Finding
from pipeline.store.visual import VisualStoreWriter

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16  # fusioner-extract's; for stores that did not record theirs
TEXT_NAMES_SPLIT = "train"  # the split whose class names a text store holds (as extraction)


def repair_store(path: StoreLocation | str, findings: list[Finding],
                 data_root: Path | None = None, weights: Path | None = None,
                 text_weights: Path | None = None, device: str = "cpu", num_workers: int = 0,
                 progress: bool = True) -> None:
    """Re-extract what ``findings`` (``verify_store``'s, for this store) say is damaged;
    ``StoreError`` if a finding cannot be repaired in place (older format, unreadable root)."""
    path = as_location(path)
    fatal = [f for f in findings if f.fix not in (SHARDS, RESUME)]
    if fatal:
        raise StoreError(f"{path}: cannot be repaired in place ({fatal[0].problem}); "
                         + ("upgrade it first with: fusioner-store upgrade " + str(path)
                            if fatal[0].fix == "upgrade" else
                            "re-extract it with fusioner-extract --overwrite"))
    with store_lock(path):
        attrs = dict(open_group(path, mode="r").attrs)
        if attrs.get("kind") == "text":
            _repair_text(path, attrs, data_root, text_weights)
            return
        damaged = [f for f in findings if f.fix == SHARDS]
        if damaged:
            every = any(f.shard is None for f in damaged)
            shards = None if every else sorted({f.shard for f in damaged if f.shard is not None})
            log.info("%s: re-extracting %s", path,
                     "every shard" if shards is None else f"shard(s) {shards}")
            VisualStoreWriter.reopen(path).mark_pending(shards)
        _repair_visual(path, attrs, data_root, weights, device, num_workers, progress)


def _repair_visual(path: StoreLocation, attrs: dict[str, Any], data_root: Path | None,
                   weights: Path | None, device: str, num_workers: int, progress: bool) -> None:
    """Resume the extraction of the store's pending shards with its recorded settings."""
    dataset = create_dataset(attrs["dataset"], attrs["split"], data_root)
    encoder = create_visual_encoder(attrs["encoder"], weights, bool(attrs.get("random_init")),
                                    tuple(attrs["image_size"]))
    recipe = ViewRecipe.from_attrs(attrs["views"]) if view_count(attrs) else None
    extract_visual(dataset, encoder, path,
                   batch_size=int((attrs.get("extraction") or {}).get("batch_size",
                                                                      DEFAULT_BATCH_SIZE)),
                   device=device, shard_images=int(attrs["shard_images"]),
                   num_workers=num_workers, skip_bad=bool(attrs.get("skipped")), views=recipe,
                   progress=progress)


def _repair_text(path: StoreLocation, attrs: dict[str, Any], data_root: Path | None,
                 text_weights: Path | None) -> None:
    """Rewrite the whole text store: the dataset's class names, the recorded encoder and
    prompt templates."""
    names = list(create_dataset(attrs["dataset"], TEXT_NAMES_SPLIT, data_root).class_names)
    encoder = create_text_encoder(attrs["encoder"], text_weights, bool(attrs.get("random_init")))
    extract_text(names, encoder, path, attrs["dataset"], tuple(attrs["templates"]),
                 overwrite=True)
