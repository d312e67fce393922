"""The same guarantees on an object store (moto's S3 server on 127.0.0.1): damaged objects stop
fit with one line, ``fusioner-store verify`` names the shard, ``--repair`` restores the objects
byte for byte; the writer lock is a conditional PUT (``If-None-Match: *``), a dead local
holder's lock is taken over, another host's is refused until ``fusioner-store unlock``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.data import create_dataset
from pipeline.encoders import create_visual_encoder
from pipeline.extract import extract_visual
from pipeline.store import as_location
from pipeline.store.lock import StoreLockedError, lock_path, store_lock
from stages import fit
from stages.extract import main as extract_main
from stages.store import main as store_main
from tests.helpers import TINY_FIT, make_mini_camvid
from tests.s3_server import BUCKET, S3Endpoint, moto_s3_env
from tests.store_faults import (
    EXTRACT,
    Damage,
    Objects,
    extract_cache,
    flip,
    text_store,
    visual_store,
)
from tests.tally import TALLY, expect_one_line_error, invoke, nothing_lost

CACHE = f"s3://{BUCKET}/faults/cache"
FIT = ["--visual", "dino_vits16", "--text", "minilm_l6", "--seed", "0", *TINY_FIT[:1], "1",
       *TINY_FIT[2:]]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Endpoint]:
    with moto_s3_env() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mini_camvid(tmp_path_factory.mktemp("data") / "camvid", per_split=5)


@pytest.fixture(scope="module")
def cache(s3: S3Endpoint, camvid: Path) -> str:
    extract_cache(camvid, CACHE)
    return CACHE


def _objects(url: str) -> Objects:
    fs, root = as_location(url).filesystem()  # type: ignore[union-attr]
    return Objects(root, fs)


def _snapshot(url: str) -> dict[str, bytes]:
    objects = _objects(url)
    objects.fs.invalidate_cache()  # type: ignore[union-attr]
    keys = objects.fs.find(objects.root)  # type: ignore[union-attr]
    return {key: bytes(objects.fs.cat_file(key)) for key in keys}  # type: ignore[union-attr]


CASES: dict[str, tuple[str, Damage, str, str]] = {
    "flipped-patch-tokens": ("train", lambda s, _: flip(s, "patch_tokens/c/0/0/0/0"),
                             "patch_tokens", "shard 0"),
    "deleted-cls-token": ("train", lambda s, _: s.delete("cls_token/c/2/0"), "cls_token",
                          "shard 2"),
    "chunk-from-the-val-store": ("train", lambda s, other: s.write(
        "labels/c/1/0/0", other.read("labels/c/1/0/0")), "labels", "shard 1"),
    "text-row": ("text", lambda s, _: flip(s, "embeddings/c/0/0", at=0.6), "embeddings",
                 "shard 0"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damage_on_s3_is_named_and_repaired(cache: str, camvid: Path, tmp_path: Path,
                                            case: str) -> None:
    split, damage, array, shard = CASES[case]
    store = text_store(cache) if split == "text" else visual_store(cache, split)
    clean = _snapshot(store)
    damage(_objects(store), _objects(visual_store(cache, "val")))
    out = tmp_path / "run"
    out.mkdir()
    with nothing_lost(out):
        code, stderr = invoke(fit.main, [*FIT, "--cache-dir", cache, "--out", out])
        expect_one_line_error(code, stderr, store, f"array {array}, {shard}")

    runner = CliRunner()
    found = runner.invoke(store_main, ["verify", cache])
    expect_one_line_error(found.exit_code, found.stderr, store)
    assert any(line.startswith(store) and line.split()[1:3] == [array, shard.split()[1]]
               for line in found.stdout.splitlines()), found.stdout
    repaired = runner.invoke(store_main, ["verify", "--repair", "--data-root", str(camvid),
                                          "--device", "cpu", "--no-progress", cache])
    assert repaired.exit_code == 0, repaired.stderr
    assert _snapshot(store) == clean, "the repaired store differs from the clean extraction"
    TALLY["damaged stores repaired"] += 1


def test_the_object_store_lock(cache: str, camvid: Path) -> None:
    store = visual_store(cache, "val")
    folder, key = str(lock_path(as_location(store))).rsplit("/", 1)
    objects = _objects(folder)
    encoder = create_visual_encoder("dino_vits16", random_init=True, image_size=(64, 80))
    dataset = create_dataset("camvid", "val", camvid)

    with store_lock(store):  # held here: a writer in another thread is refused, naming us
        assert json.loads(objects.read(key))["host"] == socket.gethostname()
        refused: list[BaseException] = []
        thread = threading.Thread(target=lambda: _try(refused, lambda: extract_visual(
            dataset, encoder, as_location(store), batch_size=2, shard_images=2,
            overwrite=True, progress=False)))
        thread.start()
        thread.join(120)
        assert refused and isinstance(refused[0], StoreLockedError), refused
        assert f"host {socket.gethostname()}" in str(refused[0])
    with pytest.raises(FileNotFoundError):  # released: the lock object is gone
        objects.read(key)

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    holder = {"host": socket.gethostname(), "pid": int(dead.stdout), "started": "2026-01-01"}
    objects.write(key, json.dumps(holder).encode())  # a writer of this host that died
    extract = [*EXTRACT, "--split", "val", "--data-root", str(camvid), "--cache-dir", cache]
    result = CliRunner().invoke(extract_main, extract)
    assert result.exit_code == 0, result.stderr  # taken over

    objects.write(key, json.dumps({**holder, "host": "elsewhere"}).encode())
    result = CliRunner().invoke(extract_main, extract)
    expect_one_line_error(result.exit_code, result.stderr, store, "host elsewhere",
                          f"fusioner-store unlock {store}")
    unlocked = CliRunner().invoke(store_main, ["unlock", store])
    assert unlocked.exit_code == 0 and "host elsewhere" in unlocked.stdout
    with pytest.raises(FileNotFoundError):
        objects.read(key)


def _try(errors: list[BaseException], work) -> None:
    try:
        work()
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)
