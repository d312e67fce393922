"""Export a complete visual store to one HDF5 file, for users whose tools read HDF5.

Same arrays and dtypes as the Zarr store (``patch_tokens``, ``cls_token``, ``labels``,
``image_ids``), chunked one image per chunk (random access, like the training reads); root
attributes are copied with every value JSON-encoded (HDF5 attributes hold no nested lists/dicts).
The file is written to a temporary name and renamed, so it is rewritten whole or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.store.integrity import ShardChecker
from pipeline.store.layout import ITEM_ARRAYS
from pipeline.store.visual import open_visual_store


def export_visual_store_to_hdf5(zarr_path: Path | str, h5_path: Path | str,
                                compression: str | None = None,
                                compression_opts: int | None = None,
                                expect: Mapping[str, Any] | None = None) -> Path:
    """Copy the complete visual store at ``zarr_path`` into the HDF5 file ``h5_path``.

    Args:
        zarr_path: a complete visual store (incomplete or mismatched stores are refused).
        h5_path: the file to (re)write.
        compression: None (raw), ``"gzip"`` or ``"lzf"`` (h5py's built-in filters; compressed
            datasets also get the byte-shuffle filter).
        compression_opts: the gzip level (0-9); None = h5py's default.
        expect: attributes the store must have (as for ``open_visual_store``).
    """
    group = open_visual_store(zarr_path, expect)
    h5_path = Path(h5_path)
    h5_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = h5_path.with_name(h5_path.name + ".tmp")
    step, total = int(group.attrs.get("shard_images", 32)), int(group.attrs["num_images"])
    checked = ShardChecker(zarr_path, group)  # every chunk and shard checked as it is copied
    with h5py.File(tmp, "w") as out:
        for name in ITEM_ARRAYS:
            source = group[name]
            target = out.create_dataset(
                name, shape=source.shape, dtype=source.dtype, chunks=(1, *source.shape[1:]),
                compression=compression, compression_opts=compression_opts,
                shuffle=compression is not None)
            for start in range(0, source.shape[0], step):  # one store shard at a time
                target[start:start + step] = checked.rows(name, start,
                                                          min(start + step, total))
        ids = np.asarray([str(i) for i in checked.rows("image_ids", 0, total)], dtype=object)
        out.create_dataset("image_ids", data=ids, dtype=h5py.string_dtype())
        for key, value in group.attrs.items():
            out.attrs[key] = json.dumps(value)
    tmp.replace(h5_path)
    return h5_path


def read_hdf5_attrs(h5_path: Path | str) -> dict[str, Any]:
    """The store attributes an export carries (JSON-decoded)."""
    with h5py.File(h5_path, "r") as f:
        return {key: json.loads(value) for key, value in f.attrs.items()}
