"""The embedding store on a real S3-compatible endpoint (moto's server on 127.0.0.1, with IAM
authentication on): dask extraction with 2 workers, a killed extraction resumed, DDP fit and
evaluation reading from it, one-line errors for bad credentials, and ``dvc push``/``pull``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from pipeline.data import create_dataset
from pipeline.encoders import create_visual_encoder
from pipeline.errors import StoreError
from pipeline.extract import extract_visual
from pipeline.store import CachedFeatureDataset, as_location, read_text_store, visual_store_path
from stages.evaluate import main as evaluate_main
from stages.extract import main as extract_main
from stages.fit import main as fit_main
from tests.helpers import TINY_FIT, make_mini_camvid
from tests.s3_server import BUCKET, S3Endpoint, moto_s3_env

ROOT = Path(__file__).resolve().parents[1]
ARRAYS = ("patch_tokens", "cls_token", "labels", "image_ids", "shard_done", "shard_digest")
ENCODE = ["--backbone", "dino_vits16", "--random-init", "--image-size", "64x80",
          "--device", "cpu", "--shard-images", "1", "--batch-size", "1"]
SHARDS = {"shard_images": 1, "batch_size": 1}  # 6 shards of one image


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Endpoint]:
    """The endpoint, with this process's environment pointing at it (inherited by subprocesses
    and dask workers)."""
    with moto_s3_env() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mini_camvid(tmp_path_factory.mktemp("data") / "camvid", per_split=6)


@pytest.fixture(scope="module")
def reference(camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process local store every S3 store must equal bit for bit."""
    path = tmp_path_factory.mktemp("reference") / "camvid-train.zarr"
    encoder = create_visual_encoder("dino_vits16", random_init=True, image_size=(64, 80))
    extract_visual(create_dataset("camvid", "train", camvid), encoder, path, **SHARDS)
    return path


def _assert_same_store(expected: Path, found: object) -> None:
    a, b = zarr.open_group(str(expected), mode="r"), _open(found)
    for name in ARRAYS:
        assert np.array_equal(a[name][:], b[name][:]), name
    assert dict(a.attrs) == dict(b.attrs)


def _open(url: object) -> zarr.Group:
    return zarr.open_group(str(url), mode="r", storage_options={})


@pytest.fixture(scope="module")
def s3_cache(s3: S3Endpoint, camvid: Path) -> str:
    """Visual (train, val) and text stores extracted into S3 by a 2-worker LocalCluster."""
    cache = f"s3://{BUCKET}/cache"
    result = CliRunner().invoke(extract_main, [
        *ENCODE, "--text-encoder", "minilm_l6", "--split", "train", "--split", "val",
        "--data-root", str(camvid), "--cache-dir", cache, "--workers", "2"])
    assert result.exit_code == 0, result.output
    return cache


def test_dask_extraction_into_s3_equals_the_local_store(s3_cache: str, camvid: Path,
                                                        reference: Path, tmp_path: Path) -> None:
    store = visual_store_path(s3_cache, "dino_vits16", "camvid", "train")
    assert str(store).startswith("s3://")
    _assert_same_store(reference, store)
    assert _open(store).attrs["complete"] is True
    assert len(CachedFeatureDataset(store)) == 6
    text = read_text_store(as_location(s3_cache) / "text" / "minilm_l6" / "camvid.zarr")
    assert len(text.class_names) == 11
    report = tmp_path / "report.json"
    again = CliRunner().invoke(extract_main, [  # a complete store: nothing to do
        *ENCODE, "--split", "train", "--data-root", str(camvid), "--cache-dir", s3_cache,
        "--report", str(report)])
    assert again.exit_code == 0, again.output
    assert json.loads(report.read_text())[0]["encoded"] == 0


def _done_shards(store: object) -> int:
    try:
        return int(_open(store)["shard_done"][:].sum())
    except Exception:  # noqa: BLE001 - not created yet
        return -1


def test_killed_extraction_into_s3_resumes(s3: S3Endpoint, camvid: Path, reference: Path,
                                           tmp_path: Path) -> None:
    cache = f"s3://{BUCKET}/killed"
    store = visual_store_path(cache, "dino_vits16", "camvid", "train")
    args = [*ENCODE, "--split", "train", "--data-root", str(camvid), "--cache-dir", cache]
    proc = subprocess.Popen([sys.executable, "-m", "stages.extract", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and _done_shards(store) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _done_shards(store)
    assert 2 <= done < 6, f"the kill came too late ({done} shards done)"
    with pytest.raises(StoreError, match="incomplete"):
        CachedFeatureDataset(store)
    report = tmp_path / "report.json"
    resumed = subprocess.run([sys.executable, "-m", "stages.extract", *args, "--report",
                              str(report)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(report.read_text())[0]["encoded"] == 6 - done  # resumed, not restarted
    _assert_same_store(reference, store)


@pytest.fixture(scope="module")
def fitted(s3: S3Endpoint, s3_cache: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``torchrun`` with 2 DDP ranks, each reading the S3 stores; the endpoint is given with
    ``--storage-option`` (not the environment) here."""
    out = tmp_path_factory.mktemp("fit") / "run"
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "stages.fit", "--visual", "dino_vits16", "--text", "minilm_l6",
         "--cache-dir", s3_cache, "--storage-option", f"endpoint_url={s3.url}",
         "--out", str(out), "--device", "cpu", *TINY_FIT],
        cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=240)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "on cpu x2" in ddp.stderr  # really two ranks
    assert s3.secret not in ddp.stderr
    return out


def test_fit_and_evaluate_read_the_s3_cache(s3: S3Endpoint, s3_cache: str, fitted: Path,
                                           tmp_path: Path) -> None:
    log = json.loads((fitted / "train_log.json").read_text())
    assert len(log) == 4 and all(np.isfinite(e["loss"]) for e in log)
    metrics = tmp_path / "metrics.json"
    result = CliRunner().invoke(evaluate_main, [
        "--checkpoint", str(fitted / "checkpoint.pt"), "--cache-dir", s3_cache,
        "--split", "val", "--out-metrics", str(metrics), "--out-plots", str(tmp_path / "plots"),
        "--num-overlays", "0", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    scores = json.loads(metrics.read_text())
    assert 0.0 <= scores["binary"]["miou"] <= 1.0
    # no credential reached a store, a log, a checkpoint or a metrics file
    secrets = (s3.secret.encode(), s3.env["AWS_ACCESS_KEY_ID"].encode())
    fs, _ = as_location(s3_cache).filesystem()  # type: ignore[union-attr]
    for key in fs.find(BUCKET):
        body = fs.cat_file(key)
        assert not any(secret in body for secret in secrets), key
    for file in [*fitted.rglob("*"), *tmp_path.rglob("*")]:
        if file.is_file():
            assert not any(secret in file.read_bytes() for secret in secrets), file


def _one_line_error(module: str, args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == done.stderr.strip().splitlines()[-1]
    return errors[0]


def test_wrong_or_missing_credentials_give_one_line(s3: S3Endpoint, s3_cache: str,
                                                    fitted: Path) -> None:
    wrong = CliRunner().invoke(fit_main, [  # a credential given as storage options, wrong
        "--visual", "dino_vits16", "--text", "minilm_l6", "--cache-dir", s3_cache,
        "--storage-option", f"key={s3.env['AWS_ACCESS_KEY_ID']}",
        "--storage-option", "secret=not-the-secret", "--out", "/nonexistent", *TINY_FIT])
    assert wrong.exit_code == 1
    lines = wrong.output.strip().splitlines()
    assert lines[-1].startswith("error:") and "access denied" in lines[-1]
    assert s3_cache in lines[-1] and "not-the-secret" not in wrong.output
    missing = {k: v for k, v in os.environ.items()
               if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    line = _one_line_error("stages.evaluate", ["--checkpoint", str(fitted / "checkpoint.pt"),
                                               "--cache-dir", s3_cache, "--num-overlays", "0",
                                               "--out-metrics", "/nonexistent/m.json"], missing)
    assert "access denied" in line or "credentials" in line.lower()


def _sh(repo: Path, *args: str) -> str:
    done = subprocess.run(list(args), cwd=repo, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{args}: {done.stdout[-1500:]} {done.stderr[-1500:]}"
    return done.stdout


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*"))
            if f.is_file()}


def test_dvc_push_and_pull_round_trip_the_stores(s3: S3Endpoint, make_stores,
                                                 tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    stores = make_stores(repo)
    dvc = [sys.executable, "-m", "dvc"]
    _sh(repo, "git", "init", "-q")
    _sh(repo, *dvc, "init", "-q")
    (repo / ".dvc" / "config").write_text(  # = dvc remote add -d / modify endpointurl
        f"[core]\n    analytics = false\n    remote = store\n['remote \"store\"']\n"
        f"    url = s3://{BUCKET}/dvc\n    endpointurl = {s3.url}\n")
    _sh(repo, *dvc, "add", "-q", "cache")
    before = _tree(repo / "cache")
    _sh(repo, *dvc, "push", "-q")
    shutil.rmtree(repo / "cache")
    shutil.rmtree(repo / ".dvc" / "cache")
    _sh(repo, *dvc, "pull", "-q")
    assert _tree(repo / "cache") == before
    assert len(CachedFeatureDataset(stores.visual_paths["train"])) == 8
    config = (repo / ".dvc" / "config").read_text()
    assert s3.secret not in config and s3.env["AWS_ACCESS_KEY_ID"] not in config
