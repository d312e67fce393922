"""Stores at fsspec URLs (``memory://`` here, in-process): publishing without rename, resume,
refusals, and the ``--cache-dir``/``--storage-option`` plumbing. The S3 endpoint tests are in
``test_object_store.py``."""

from __future__ import annotations

import pickle
import uuid

import click
import fsspec
import numpy as np
import pytest

from pipeline.errors import StoreError
from pipeline.store import (
    CachedFeatureDataset,
    RemoteLocation,
    VisualStoreWriter,
    as_location,
    read_text_store,
    store_exists,
    visual_store_path,
    write_text_store,
)
from pipeline.store.location import relative_keys
from stages._cli import parse_storage_options

ATTRS = {"encoder": "dino_vits16", "grid_size": [2, 3], "feature_dim": 4, "dataset": "camvid",
         "split": "train"}


@pytest.fixture
def cache() -> RemoteLocation:
    location = as_location(f"memory://tests/{uuid.uuid4().hex}")
    assert isinstance(location, RemoteLocation)
    return location


def _writer(path: RemoteLocation, overwrite: bool = False, **attrs: object) -> VisualStoreWriter:
    return VisualStoreWriter(path, {**ATTRS, **attrs}, 5, (2, 3), 4, (4, 6), shard_images=2,
                             overwrite=overwrite)


def _fill(writer: VisualStoreWriter, shards: list[int] | None = None) -> None:
    for shard in writer.pending_shards() if shards is None else shards:
        rows = writer.shard_range(shard)
        n = len(rows)
        writer.write_shard(shard, np.full((n, 2, 3, 4), shard + 1.0), np.ones((n, 4)),
                           np.zeros((n, 4, 6), np.uint8), [f"img{i}" for i in rows])


def test_a_url_store_round_trips_and_resumes(cache: RemoteLocation) -> None:
    path = visual_store_path(cache, "dino_vits16", "camvid", "train")
    assert isinstance(path, RemoteLocation) and str(path).startswith("memory://")
    writer = _writer(path)
    _fill(writer, [0])
    with pytest.raises(StoreError, match="incomplete"):
        CachedFeatureDataset(path)
    resumed = _writer(path)  # a second run: same settings, resumes at the missing shards
    assert resumed.pending_shards() == [1, 2]
    _fill(resumed)
    resumed.finalize()
    data = CachedFeatureDataset(path, cache_blocks=2)
    assert len(data) == 5
    assert float(data[4]["patch_tokens"][0, 0, 0]) == 3.0  # shard 2's value
    with pytest.raises(StoreError, match="another encoder"):
        CachedFeatureDataset(path, expect={"encoder": "clip_vitb16"})
    with pytest.raises(StoreError, match="other settings"):
        _writer(path, encoder="clip_vitb16")


def test_the_root_is_uploaded_last_and_removed_first(cache: RemoteLocation,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fs = fsspec.filesystem("memory")
    puts: list[str] = []
    removed: list[str] = []
    pipe, rm = type(fs).pipe_file, type(fs).rm

    def recording_pipe(self, path, value, *args, **kwargs):
        puts.append(path)
        return pipe(self, path, value, *args, **kwargs)

    def recording_rm(self, path, *args, **kwargs):
        removed.append(path)
        return rm(self, path, *args, **kwargs)

    monkeypatch.setattr(type(fs), "pipe_file", recording_pipe)
    monkeypatch.setattr(type(fs), "rm", recording_rm)
    path = cache / "a.zarr"
    _writer(path)
    assert puts[-1].endswith("a.zarr/zarr.json") and len(puts) > 5
    assert sum(p.endswith("a.zarr/zarr.json") for p in puts) == 1
    _writer(path, encoder="clip_vitb16", overwrite=True)  # replace it
    assert removed[0].endswith("a.zarr/zarr.json")  # a reader never sees a half-deleted store
    text = write_text_store(cache / "t.zarr", ["a", "b"], np.eye(2, dtype=np.float32),
                            {"feature_dim": 2})
    assert puts[-1].endswith("t.zarr/zarr.json")
    assert read_text_store(text).class_names == ["a", "b"]  # written complete in one go


def test_a_killed_upload_leaves_no_store_and_is_cleared(cache: RemoteLocation,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fs = fsspec.filesystem("memory")
    pipe = type(fs).pipe_file

    def dies_at_root(self, path, value, *args, **kwargs):
        if path.endswith("a.zarr/zarr.json"):
            raise KeyboardInterrupt  # the process dies before the root is written
        return pipe(self, path, value, *args, **kwargs)

    monkeypatch.setattr(type(fs), "pipe_file", dies_at_root)
    path = cache / "a.zarr"
    with pytest.raises(KeyboardInterrupt):
        _writer(path)
    assert relative_keys(path) and not store_exists(path)  # arrays' objects, no root
    with pytest.raises(StoreError, match="no such store"):
        CachedFeatureDataset(path)
    monkeypatch.setattr(type(fs), "pipe_file", pipe)
    fs.pipe_file(f"{path.filesystem()[1]}/patch_tokens/c/9/0/0/0", b"stale")
    writer = _writer(path)  # the next run clears the leftovers and creates the store
    assert "patch_tokens/c/9/0/0/0" not in relative_keys(path)
    assert writer.pending_shards() == [0, 1, 2]


def test_objects_that_are_not_a_store_are_refused(cache: RemoteLocation) -> None:
    path = cache / "a.zarr"
    fs, base = path.filesystem()
    fs.pipe_file(f"{base}/notes.txt", b"someone else's")
    with pytest.raises(StoreError, match="not a fusioner store"):
        _writer(path)
    assert relative_keys(path) == ["notes.txt"]  # untouched


def test_storage_options_stay_out_of_text() -> None:
    location = as_location("s3://bucket/cache/", {"key": "AKIA-SECRET-ID", "secret": "s3cr3t"})
    assert isinstance(location, RemoteLocation)
    child = location / "visual"
    for text in (str(child), repr(child), f"{child}"):
        assert "s3cr3t" not in text and "AKIA" not in text
    assert str(child) == "s3://bucket/cache/visual"
    assert pickle.loads(pickle.dumps(child)).storage_options["secret"] == "s3cr3t"  # to workers
    assert as_location("cache") == as_location("file://cache")  # local paths stay Paths


def test_storage_option_parsing() -> None:
    assert parse_storage_options(("endpoint_url=http://127.0.0.1:9000", "anon=false",
                                  "config_kwargs={connect_timeout: 5}")) == {
        "endpoint_url": "http://127.0.0.1:9000", "anon": False,
        "config_kwargs": {"connect_timeout": 5}}
    with pytest.raises(click.BadParameter):
        parse_storage_options(("endpoint_url",))
