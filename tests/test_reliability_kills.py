"""Reliability of interrupted work: extraction and fit killed with SIGKILL at random points,
then rerun, end bit-identical to an uninterrupted run, and no reader accepts an incomplete store
meanwhile.

``make fuzz`` raises the number of kills (``FUSIONER_FUZZ_KILLS``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from pipeline.errors import StoreError
from pipeline.store import (
    CachedFeatureDataset,
)
from tests.helpers import TINY_FIT, make_mini_camvid, same_weights
from tests.tally import TALLY

ROOT = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("FUSIONER_FUZZ_KILLS", 10 if os.environ.get("FUSIONER_FUZZ") else 2))


def _spawn(module: str, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()``; False if it finished first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    proc.wait()
    return False


def _done_shards(store: Path) -> int:
    try:
        return int(zarr.open_group(str(store), mode="r")["shard_done"][:].sum())
    except Exception:  # noqa: BLE001 - not created yet, or being created
        return -1


@pytest.mark.parametrize("views", [0, 2])
def test_killed_extraction_resumes_to_the_same_store(tmp_path: Path, views: int) -> None:
    data = make_mini_camvid(tmp_path / "camvid", per_split=6)
    args = ["--backbone", "dino_vits16", "--random-init", "--split", "train", "--data-root", data,
            "--image-size", "64x80", "--shard-images", "1", "--batch-size", "1", "--device", "cpu",
            "--views", views]
    reference = tmp_path / "reference"
    assert subprocess.run([sys.executable, "-m", "stages.extract", *map(str, args),
                           "--cache-dir", str(reference)], cwd=ROOT).returncode == 0
    cache = tmp_path / "killed"
    store = cache / "visual" / "dino_vits16" / "camvid-train.zarr"
    rng = np.random.default_rng(int(os.environ.get("FUSIONER_FUZZ_SEED", 0)))
    for _ in range(KILLS):
        target = int(rng.integers(-1, 6))  # -1: as soon as the store (or its scratch) appears
        ready = ((lambda: store.exists() or store.with_name(store.name + ".creating").exists())
                 if target < 0 else (lambda t=target: _done_shards(store) >= t))
        if _kill_when(_spawn("stages.extract", [*args, "--cache-dir", cache]), ready):
            TALLY["kills survived"] += 1
            if not (store.exists() and zarr.open_group(str(store)).attrs.get("complete")):
                with pytest.raises(StoreError):
                    CachedFeatureDataset(store)
    finished = _spawn("stages.extract", [*args, "--cache-dir", cache])
    assert finished.wait() == 0, finished.stderr.read()[-2000:]
    want = zarr.open_group(str(reference / "visual" / "dino_vits16" / "camvid-train.zarr"),
                           mode="r")
    got = zarr.open_group(str(store), mode="r")
    views_arrays = ("view_patch_tokens", "view_cls_token", "view_labels") if views else ()
    for name in ("patch_tokens", "cls_token", "labels", "image_ids", "shard_done", "shard_digest",
                 *views_arrays):
        assert np.array_equal(want[name][:], got[name][:]), name
    assert dict(want.attrs) == dict(got.attrs)


def _epoch_saved(last: Path) -> int:
    try:
        return int(torch.load(last, weights_only=True)["epoch"]) if last.exists() else 0
    except Exception:  # noqa: BLE001 - never partial (atomic rename), but be safe
        return 0


def test_killed_fit_resumes_to_the_same_weights(make_stores, tmp_path: Path) -> None:
    stores = make_stores(tmp_path, num_images=16)
    base = ["--visual", stores.visual, "--text", stores.text, "--cache-dir", stores.cache_dir,
            *TINY_FIT]
    full = _spawn("stages.fit", [*base, "--out", tmp_path / "full"])
    assert full.wait() == 0, full.stderr.read()[-2000:]
    out = tmp_path / "killed"
    rng = np.random.default_rng(int(os.environ.get("FUSIONER_FUZZ_SEED", 0)))
    for _ in range(KILLS):
        target = int(rng.integers(0, 4))  # 0: before the first epoch ends
        ready = ((lambda: (out / "fit.log").exists() or out.exists()) if target == 0
                 else (lambda t=target: _epoch_saved(out / "last.pt") >= t))
        if _kill_when(_spawn("stages.fit", [*base, "--out", out, "--resume"]), ready):
            TALLY["kills survived"] += 1
    resumed = _spawn("stages.fit", [*base, "--out", out, "--resume"])
    assert resumed.wait() == 0, resumed.stderr.read()[-2000:]
    assert same_weights(tmp_path / "full", out)
