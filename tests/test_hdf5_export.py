"""HDF5 export of a visual store: same arrays, per-image chunks, attributes, refusals."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import zarr

from pipeline.errors import StoreError
from pipeline.store.hdf5_export import export_visual_store_to_hdf5, read_hdf5_attrs


@pytest.mark.parametrize("compression", [None, "gzip", "lzf"])
def test_export_round_trip(tmp_path, make_stores, compression):
    stores = make_stores(tmp_path, num_images=10, shard_images=4, splits=("train",))
    source = stores.visual_paths["train"]
    out = export_visual_store_to_hdf5(source, tmp_path / "features.h5", compression=compression)
    group = zarr.open_group(str(source), mode="r")
    with h5py.File(out, "r") as f:
        for name in ("patch_tokens", "cls_token", "labels"):
            assert f[name].dtype == group[name].dtype
            assert f[name].chunks == (1, *group[name].shape[1:])
            assert f[name].compression == compression
            np.testing.assert_array_equal(f[name][:], group[name][:])
        assert [i.decode() for i in f["image_ids"][:]] == [str(i) for i in group["image_ids"][:]]
    attrs = read_hdf5_attrs(out)
    assert attrs["encoder"] == "dino_vits16" and attrs["complete"] is True
    assert attrs["grid_size"] == list(stores.grid)
    assert not (tmp_path / "features.h5.tmp").exists()


def test_export_refuses_incomplete_or_other_encoder(tmp_path, make_stores):
    stores = make_stores(tmp_path, num_images=4, splits=("train",))
    source = stores.visual_paths["train"]
    with pytest.raises(StoreError, match="another encoder"):
        export_visual_store_to_hdf5(source, tmp_path / "x.h5", expect={"encoder": "clip_vitb16"})
    zarr.open_group(str(source), mode="r+").attrs["complete"] = False
    with pytest.raises(StoreError, match="incomplete"):
        export_visual_store_to_hdf5(source, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
