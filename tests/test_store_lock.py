"""One writer at a time: two real extractions into one store (the second refused with one line
naming the holder), a writer killed while holding the lock (taken over, the store finished
identical to a clean one), and readers that never wait for a writer.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.data import create_dataset
from pipeline.encoders import create_visual_encoder
from pipeline.extract import extract_visual
from pipeline.store import CachedFeatureDataset
from pipeline.store.lock import lock_path, store_lock
from stages.extract import main as extract_main
from tests.helpers import HookedDataset, make_mini_camvid
from tests.store_faults import EXTRACT, visual_store
from tests.tally import TALLY, digest, expect_one_line_error

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"batch_size": 2, "shard_images": 2, "progress": False}


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mini_camvid(tmp_path_factory.mktemp("data") / "camvid", per_split=5)


@pytest.fixture(scope="module")
def reference(camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The val store as one uninterrupted, unopposed extraction writes it."""
    cache = tmp_path_factory.mktemp("reference") / "cache"
    _extract(camvid, cache)
    return Path(visual_store(cache, "val"))


def _extract(camvid: Path, cache: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(extract_main, [*EXTRACT, "--split", "val", "--data-root",
                                               str(camvid), "--cache-dir", str(cache), *extra])
    return result.exit_code, result.stderr


class _Paused(HookedDataset):
    """The val split, but reading image ``at`` waits for ``go`` (the writer holds its lock)."""

    def __init__(self, dataset, at: int, reached: threading.Event, go: threading.Event) -> None:
        super().__init__(dataset)
        self.at, self.reached, self.go = at, reached, go

    def before(self, index: int) -> None:
        if index == self.at:
            self.reached.set()
            assert self.go.wait(300)


def test_a_second_writer_is_refused_naming_the_holder(camvid: Path, reference: Path,
                                                      tmp_path: Path) -> None:
    """Writer A (this process) is mid-extraction when writer B, another process, starts on the
    same store with --overwrite and another image size: B exits 1 naming A, touches nothing;
    A finishes a store identical to an unopposed extraction."""
    cache = tmp_path / "cache"
    store = Path(visual_store(cache, "val"))
    reached, go = threading.Event(), threading.Event()
    dataset = _Paused(create_dataset("camvid", "val", camvid), 3, reached, go)
    encoder = create_visual_encoder("dino_vits16", random_init=True, image_size=(64, 80))
    errors: list[BaseException] = []

    def writer_a() -> None:
        try:
            extract_visual(dataset, encoder, store, **SETTINGS)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=writer_a)
    thread.start()
    try:
        assert reached.wait(120), "writer A never reached its pause"
        before = digest(store)
        args = [*EXTRACT, "--split", "val", "--data-root", camvid, "--cache-dir", cache,
                "--overwrite", "--image-size", "96x112"]
        second = subprocess.run([sys.executable, "-m", "stages.extract", *map(str, args)],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
        line = expect_one_line_error(second.returncode, second.stderr, str(store),
                                     "another writer holds the store lock",
                                     f"host {socket.gethostname()}", f"pid {os.getpid()}")
        assert "since 20" in line  # the holder's start time
        assert digest(store) == before, "the refused writer changed the store"
    finally:
        go.set()
        thread.join(300)
    assert not errors, errors
    assert digest(store) == digest(reference)


def test_readers_never_wait_for_the_writer_lock(tmp_path: Path, make_stores) -> None:
    stores = make_stores(tmp_path)
    path = stores.visual_paths["val"]
    with store_lock(path):
        started = time.perf_counter()
        assert len(CachedFeatureDataset(path)) == 8
        assert time.perf_counter() - started < 30
        with store_lock(path):  # re-entrant in the holding thread
            pass
        assert lock_path(path).read_text()  # still held, still naming the holder
    assert lock_path(path).read_text() == ""  # released: no stale holder left behind


_KILLED_WRITER = """
import sys, time
from pipeline.data import create_dataset
from pipeline.encoders import create_visual_encoder
from pipeline.extract import extract_visual

class Stalls:
    def __init__(self, dataset):
        self.dataset, self.name, self.split = dataset, dataset.name, dataset.split
        self.class_names = dataset.class_names
    def __len__(self):
        return len(self.dataset)
    def image_id(self, index):
        return self.dataset.image_id(index)
    def __getitem__(self, index):
        if index == 2:  # shard 0 is written: stall while holding the lock, until killed
            print("holding", flush=True)
            time.sleep(600)
        return self.dataset[index]

encoder = create_visual_encoder("dino_vits16", random_init=True, image_size=(64, 80))
extract_visual(Stalls(create_dataset("camvid", "val", sys.argv[1])), encoder, sys.argv[2],
               batch_size=2, shard_images=2, progress=False)
"""


def test_a_writer_killed_holding_the_lock_is_taken_over(camvid: Path, reference: Path,
                                                        tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    store = Path(visual_store(cache, "val"))
    writer = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(camvid), str(store)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "holding"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    TALLY["kills survived"] += 1
    assert f'"pid": {writer.pid}' in lock_path(store).read_text()  # the dead holder's name
    with caplog.at_level(logging.WARNING, logger="pipeline.store.lock"):
        code, stderr = _extract(camvid, cache)
    assert code == 0, stderr
    assert f"pid {writer.pid}" in caplog.text and "gone" in caplog.text
    assert digest(store) == digest(reference)
    assert lock_path(store).read_text() == ""

