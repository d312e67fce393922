"""The text store: class names and their embeddings (K, D) for one dataset and text encoder.

Every chunk carries a CRC-32C and the whole store is one shard with a digest
(``pipeline.store.integrity``), checked on every read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import zarr

from pipeline.store.integrity import (
    ShardChecker,
    checksummed,
    create_record_array,
    record_shards,
)
from pipeline.store.layout import (
    FORMAT_VERSION,
    check_shapes,
    open_complete_group,
    publish,
    scratch_path,
)
from pipeline.store.location import StoreLocation, as_location


@dataclass(frozen=True)
class TextEmbeddings:
    """Class names with their L2-normalised embeddings, and the store's attributes."""

    class_names: list[str]
    embeddings: torch.Tensor
    attrs: dict[str, Any]


def write_text_store(path: StoreLocation | str, class_names: list[str], embeddings: np.ndarray,
                     attrs: Mapping[str, Any]) -> StoreLocation:
    """Write the whole text store (small) and mark it complete last."""
    path = as_location(path)
    scratch = scratch_path(path)  # an interrupted write never leaves a half store at ``path``
    group = zarr.open_group(str(scratch), mode="w")
    group.attrs.put({**attrs, "format_version": FORMAT_VERSION, "kind": "text",
                     "num_classes": len(class_names), "complete": False})
    names = group.create_array("class_names", shape=(len(class_names),), dtype=str,
                               chunks=(len(class_names),), compressors=checksummed())
    names[:] = np.asarray(class_names, dtype=object)
    vectors = group.create_array("embeddings", shape=embeddings.shape, dtype="float32",
                                 chunks=embeddings.shape, compressors=checksummed())
    vectors[:] = embeddings.astype(np.float32)
    create_record_array(group, 1)
    record_shards(scratch, group, [0])
    group.attrs["complete"] = True
    publish(scratch, path)
    return path


def read_text_store(path: StoreLocation | str,
                    expect: Mapping[str, Any] | None = None) -> TextEmbeddings:
    """Read a complete text store; ``expect`` lists attributes it must have."""
    group = open_complete_group(path, "text", expect)
    count, dim = group.attrs.get("num_classes"), group.attrs.get("feature_dim")
    check_shapes(path, group, {"class_names": (count,), "embeddings": (count, dim)})
    checked = ShardChecker(as_location(path), group)
    return TextEmbeddings(
        class_names=[str(n) for n in checked.rows("class_names", 0, count)],
        embeddings=torch.from_numpy(np.asarray(checked.rows("embeddings", 0, count),
                                               dtype=np.float32)),
        attrs=dict(group.attrs),
    )
