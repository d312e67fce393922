"""The on-disk embedding store (Zarr v3): visual features per split, text embeddings per dataset."""

from pipeline.store.dataset import CachedFeatureDataset, loader_kwargs
from pipeline.store.integrity import StoreDamage
from pipeline.store.layout import (
    DEFAULT_CACHE_DIR,
    FORMAT_VERSION,
    check_provenance,
    text_store_path,
    visual_store_path,
)
from pipeline.store.location import (
    RemoteLocation,
    StoreLocation,
    as_location,
    for_fold,
    is_url,
    store_exists,
)
from pipeline.store.lock import StoreLockedError, store_lock
from pipeline.store.text import TextEmbeddings, read_text_store, write_text_store
from pipeline.store.visual import VisualStoreWriter, open_visual_store

__all__ = [
    "DEFAULT_CACHE_DIR",
    "FORMAT_VERSION",
    "CachedFeatureDataset",
    "RemoteLocation",
    "StoreDamage",
    "StoreLocation",
    "StoreLockedError",
    "TextEmbeddings",
    "VisualStoreWriter",
    "as_location",
    "for_fold",
    "check_provenance",
    "is_url",
    "loader_kwargs",
    "open_visual_store",
    "read_text_store",
    "store_exists",
    "store_lock",
    "text_store_path",
    "visual_store_path",
    "write_text_store",
]
