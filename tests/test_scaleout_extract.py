"""Extraction on dask.distributed: equal to the single-process store, even when tasks fail."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from pipeline.data import create_dataset
from pipeline.data.base import Sample, SegmentationDataset
from pipeline.data.views import ViewRecipe
from pipeline.encoders import create_visual_encoder
from pipeline.errors import StoreError
from pipeline.extract import extract_visual, shard_batches
from pipeline.scaleout.extract import (
    dask_client,
    extract_visual_distributed,
    local_torch_threads,
    shard_blocks,
)
from pipeline.store import CachedFeatureDataset
from stages.extract import main
from tests.helpers import make_mini_camvid

ARRAYS = ("patch_tokens", "cls_token", "labels", "image_ids", "shard_done", "shard_digest")
SIZE = (64, 80)
SETTINGS = {"batch_size": 2, "shard_images": 3}  # 7 images: shards of 3, 3, 1


class FailOnce(SegmentationDataset):
    """Wraps a dataset; the first read of ``index`` (per ``flag`` file) raises or kills the
    worker process, as a flaky disk or a lost machine would. Later attempts succeed."""

    def __init__(self, dataset: SegmentationDataset, index: int, flag: Path, kill: bool = False):
        self.dataset, self.index, self.flag, self.kill = dataset, index, flag, kill
        self.name, self.split, self.class_names = dataset.name, dataset.split, dataset.class_names

    def __len__(self) -> int:
        return len(self.dataset)

    def image_id(self, index: int) -> str:
        return self.dataset.image_id(index)

    def __getitem__(self, index: int) -> Sample:
        if index == self.index and not self.flag.exists():
            self.flag.touch()
            if self.kill:
                os._exit(1)
            raise RuntimeError(f"flaky read of image {index}")
        return self.dataset[index]


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mini_camvid(tmp_path_factory.mktemp("data") / "camvid", per_split=7)


@pytest.fixture(scope="module")
def reference(camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process store everything below must equal."""
    path = tmp_path_factory.mktemp("ref") / "camvid-train.zarr"
    encoder = create_visual_encoder("dino_vits16", random_init=True, image_size=SIZE)
    extract_visual(create_dataset("camvid", "train", camvid), encoder, path, **SETTINGS)
    return path


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with dask_client(workers=2) as client:
        yield client


def _assert_equal_stores(expected: Path, found: Path, arrays: tuple[str, ...] = ARRAYS) -> None:
    a, b = zarr.open_group(str(expected), mode="r"), zarr.open_group(str(found), mode="r")
    for name in arrays:
        assert np.array_equal(a[name][:], b[name][:]), name
    assert dict(a.attrs) == dict(b.attrs)
    assert b.attrs["complete"] is True


def _run(client: object, dataset: SegmentationDataset, path: Path, retries: int,
         views: ViewRecipe | None = None) -> dict:
    encoder = create_visual_encoder("dino_vits16", random_init=True, image_size=SIZE)
    return extract_visual_distributed(client, dataset, encoder, path, device="cpu",
                                      retries=retries, torch_threads=local_torch_threads(2),
                                      views=views, **SETTINGS)


def test_blocks_and_batches_follow_shards() -> None:
    assert shard_blocks([0, 1, 2, 4, 5], 2) == [[0, 1], [2], [4, 5]]
    assert shard_batches([(0, range(0, 3)), (1, range(3, 5))], 2) == [[0, 1], [2], [3, 4]]


def test_two_workers_equal_single_process(client, camvid: Path, reference: Path,
                                          tmp_path: Path) -> None:
    path = tmp_path / "dist.zarr"
    report = _run(client, create_dataset("camvid", "train", camvid), path, retries=0)
    assert report["encoded"] == 7
    _assert_equal_stores(reference, path)
    CachedFeatureDataset(path)  # readers accept it
    again = _run(client, create_dataset("camvid", "train", camvid), path, retries=0)
    assert again["encoded"] == 0  # complete store: no-op


def test_views_on_two_workers_equal_single_process(client, camvid: Path,
                                                   tmp_path: Path) -> None:
    recipe = ViewRecipe(2, seed=3, jitter=0.2)
    single, dist = tmp_path / "single.zarr", tmp_path / "dist.zarr"
    encoder = create_visual_encoder("dino_vits16", random_init=True, image_size=SIZE)
    extract_visual(create_dataset("camvid", "train", camvid), encoder, single, views=recipe,
                   **SETTINGS)
    assert _run(client, create_dataset("camvid", "train", camvid), dist, 0, recipe)["encoded"] == 7
    _assert_equal_stores(single, dist, (*ARRAYS, "view_patch_tokens", "view_cls_token",
                                        "view_labels"))
    assert CachedFeatureDataset(dist).views == 2


def test_task_failing_once_is_retried(client, camvid: Path, reference: Path,
                                      tmp_path: Path) -> None:
    flaky = FailOnce(create_dataset("camvid", "train", camvid), 4, tmp_path / "failed")
    path = tmp_path / "dist.zarr"
    assert _run(client, flaky, path, retries=1)["encoded"] == 7
    assert (tmp_path / "failed").exists()
    _assert_equal_stores(reference, path)


def test_failure_without_retries_leaves_a_resumable_store(client, camvid: Path, reference: Path,
                                                          tmp_path: Path) -> None:
    flaky = FailOnce(create_dataset("camvid", "train", camvid), 4, tmp_path / "failed")
    path = tmp_path / "dist.zarr"
    with pytest.raises(RuntimeError, match="flaky read"):
        _run(client, flaky, path, retries=0)
    with pytest.raises(StoreError, match="incomplete"):
        CachedFeatureDataset(path)
    assert not zarr.open_group(str(path), mode="r")["shard_done"][1]
    report = _run(client, flaky, path, retries=0)  # the flag is set: this run succeeds
    assert report["encoded"] >= 3  # shard 1 is redone; shards 0/2 only if they were not done
    _assert_equal_stores(reference, path)


def test_killed_worker_is_replaced_and_its_block_rerun(client, camvid: Path, reference: Path,
                                                      tmp_path: Path) -> None:
    doomed = FailOnce(create_dataset("camvid", "train", camvid), 3, tmp_path / "killed", kill=True)
    path = tmp_path / "dist.zarr"
    before = set(client.scheduler_info()["workers"])
    assert _run(client, doomed, path, retries=0)["encoded"] == 7
    assert (tmp_path / "killed").exists()
    assert before - set(client.scheduler_info()["workers"])  # one worker did die
    _assert_equal_stores(reference, path)


def test_cli_workers_option(camvid: Path, reference: Path, tmp_path: Path) -> None:
    args = ["--backbone", "dino_vits16", "--random-init", "--split", "train", "--data-root",
            str(camvid), "--cache-dir", str(tmp_path), "--image-size", "64x80",
            "--batch-size", "2", "--shard-images", "3", "--workers", "2", "--device", "cpu"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    _assert_equal_stores(reference, tmp_path / "visual" / "dino_vits16" / "camvid-train.zarr")
