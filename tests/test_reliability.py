"""Reliability: every hostile input gets one clear line and damages nothing; killed work resumes
to exactly the uninterrupted result; store round-trips hold for any shape (hypothesis).

What was tried and found is printed at the end of the run (``tests/tally.py``); ``make fuzz``
raises the number of kills and hypothesis examples (``FUSIONER_FUZZ=1``).
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pipeline.errors import StoreError
from pipeline.store import (
    CachedFeatureDataset,
    VisualStoreWriter,
    read_text_store,
    write_text_store,
)
from stages import evaluate, extract, fit
from tests.helpers import make_mini_camvid
from tests.tally import TALLY, expect_one_line_error, nothing_lost

ROOT = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("FUSIONER_FUZZ_KILLS", 10 if os.environ.get("FUSIONER_FUZZ") else 2))
CLASSES = ("background", "cat", "dog")
TINY_FIT = ["--epochs", "4", "--batch-size", "4", "--dim", "32", "--layers", "1", "--heads", "2",
            "--embed-dim", "16", "--decoder-channels", "16,8,8", "--no-progress"]
EXTRACT = ["--backbone", "dino_vits16", "--random-init", "--dataset", "folder",
           "--image-size", "32x32", "--shard-images", "2", "--batch-size", "2", "--device", "cpu"]


def _invoke(command, args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(command, [str(a) for a in args])
    return result.exit_code, result.stderr


# ---- hostile files, through fusioner-extract on a user's folder dataset ---------------------

def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` RGB and holds no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def _folder(root: Path, split: str, count: int = 3) -> Path:
    """``root/split/{images,masks}`` with ``count`` random 40x48 RGB images and 3-class masks."""
    rng = np.random.default_rng(len(split))
    for kind in ("images", "masks"):
        (root / split / kind).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
            root / split / "images" / f"s{i}.png")
        Image.fromarray(rng.integers(0, 3, (40, 48), dtype=np.uint8)).save(
            root / split / "masks" / f"s{i}.png")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    return root


def _image(base: Path) -> Path:
    return base / "images" / "s1.png"


def _mask(base: Path) -> Path:
    return base / "masks" / "s1.png"


def _replace_image(base: Path, data: bytes, suffix: str = ".png") -> None:
    _image(base).unlink()
    (base / "images" / f"s1{suffix}").write_bytes(data)


def _save_image(base: Path, image: Image.Image, suffix: str) -> None:
    _image(base).unlink()
    image.save(base / "images" / f"s1{suffix}")


# per-sample faults: an error naming the file, or with --skip-bad a listed, ignored sample
SAMPLE_FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated-jpeg": (lambda b: _replace_image(b, _jpeg_bytes()[:300], ".jpg"), "unreadable"),
    "truncated-png": (lambda b: _image(b).write_bytes(_image(b).read_bytes()[:100]), "unreadable"),
    "zero-bytes": (lambda b: _image(b).write_bytes(b""), "unreadable"),
    "zero-size": (lambda b: _image(b).write_bytes(_png_header(0, 48)), "unreadable"),
    "decompression-bomb": (lambda b: _image(b).write_bytes(_png_header(30000, 30000)),
                           "decompression bomb"),
    "text-as-image": (lambda b: _image(b).write_text("<html>not an image</html>"), "unreadable"),
    "mask-size-mismatch": (lambda b: Image.new("L", (20, 20)).save(_mask(b)), "mask size"),
    "label-out-of-range": (lambda b: Image.new("L", (48, 40), 7).save(_mask(b)), "out of range"),
    "rgb-mask": (lambda b: Image.new("RGB", (48, 40)).save(_mask(b)), "single-channel"),
    "truncated-mask": (lambda b: _mask(b).write_bytes(_mask(b).read_bytes()[:60]), "unreadable"),
}
# dataset-level faults: no sample can be skipped, the run stops before writing anything
DATASET_FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing-mask": (lambda b: _mask(b).unlink(), "images without masks"),
    "empty-class-list": (lambda b: (b.parent / "classes.txt").write_text("\n\n"), "no class names"),
    "duplicate-class-names": (lambda b: (b.parent / "classes.txt").write_text("cat\ndog\ncat\n"),
                              "duplicate class names"),
    "class-list-not-utf8": (lambda b: (b.parent / "classes.txt").write_bytes(b"caf\xe9\n\xff\xfe"),
                            "cannot read class names"),
}
# odd but valid inputs: decoded to 8-bit RGB and extracted like any other image
ACCEPTED: dict[str, Callable[[Path], None]] = {
    "cmyk-jpeg": lambda b: _save_image(b, Image.open(_image(b)).convert("CMYK"), ".jpg"),
    "16-bit-png": lambda b: _save_image(
        b, Image.fromarray(np.arange(40 * 48, dtype=np.uint16).reshape(40, 48) * 30), ".png"),
    "palette-png": lambda b: _save_image(b, Image.open(_image(b)).convert("P"), ".png"),
    "grey-png": lambda b: _save_image(b, Image.open(_image(b)).convert("L"), ".png"),
    "rgba-png": lambda b: _save_image(b, Image.open(_image(b)).convert("RGBA"), ".png"),
    "unicode-class-names": lambda b: (b.parent / "classes.txt").write_text(
        "fond\nchat café\n猫と犬\n", encoding="utf-8"),
}


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), (200, 10, 10)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture()
def folder_with_val_store(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(data root, cache, val store): a complete val store exists before the hostile run."""
    root = _folder(_folder(tmp_path / "data", "train"), "val")
    cache = tmp_path / "cache"
    code, stderr = _invoke(extract.main, [*EXTRACT, "--split", "val", "--data-root", root,
                                          "--cache-dir", cache])
    assert code == 0, stderr
    return root, cache, cache / "visual" / "dino_vits16" / "folder-val.zarr"


def _extract_train(root: Path, cache: Path, *extra: str) -> tuple[int, str]:
    return _invoke(extract.main, [*EXTRACT, "--split", "train", "--data-root", root,
                                  "--cache-dir", cache, *extra])


@pytest.mark.parametrize("fault", sorted(SAMPLE_FAULTS))
def test_hostile_sample_is_one_line_then_skippable(folder_with_val_store, fault: str,
                                                  tmp_path: Path) -> None:
    root, cache, val_store = folder_with_val_store
    corrupt, reason = SAMPLE_FAULTS[fault]
    corrupt(root / "train")
    train_store = cache / "visual" / "dino_vits16" / "folder-train.zarr"
    with nothing_lost(val_store, root):
        code, stderr = _extract_train(root, cache)
        expect_one_line_error(code, stderr, "s1.", reason)
    with pytest.raises(StoreError, match="incomplete|no such store"):
        CachedFeatureDataset(train_store)  # never passed off as complete
    report = tmp_path / "report.json"
    with nothing_lost(val_store, root):
        code, stderr = _extract_train(root, cache, "--skip-bad", "--report", str(report))
    assert code == 0, stderr
    skipped = {k: v for r in json.loads(report.read_text()) for k, v in r["skipped"].items()}
    assert list(skipped) == ["s1"] and reason in skipped["s1"]
    store = CachedFeatureDataset(train_store)
    assert store.image_ids() == ["s0", "s1", "s2"]
    assert (store[1]["label"] == 255).all() and not (store[0]["label"] == 255).all()


@pytest.mark.parametrize("fault", sorted(DATASET_FAULTS))
def test_hostile_dataset_is_one_line_and_writes_nothing(folder_with_val_store, fault: str) -> None:
    root, cache, val_store = folder_with_val_store
    corrupt, reason = DATASET_FAULTS[fault]
    corrupt(root / "train")
    for extra in ([], ["--skip-bad"]):
        with nothing_lost(val_store, root):
            code, stderr = _extract_train(root, cache, *extra)
            expect_one_line_error(code, stderr, reason)
    assert not (cache / "visual" / "dino_vits16" / "folder-train.zarr").exists()


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_odd_but_valid_inputs_are_extracted(folder_with_val_store, case: str) -> None:
    root, cache, _ = folder_with_val_store
    ACCEPTED[case](root / "train")
    code, stderr = _extract_train(root, cache)
    assert code == 0, stderr
    store = CachedFeatureDataset(cache / "visual" / "dino_vits16" / "folder-train.zarr")
    assert len(store) == 3 and not store.attrs.get("skipped")
    assert torch.isfinite(store[1]["patch_tokens"]).all()
    names = [n for n in (root / "classes.txt").read_text("utf-8").splitlines() if n.strip()]
    assert store.attrs["class_names"] == names


# ---- tampered stores, foreign or damaged checkpoints, wrong-typed params ---------------------

def _zarr_json(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())


def _tamper_json(path: Path, edit: Callable[[dict], None]) -> None:
    meta = _zarr_json(path)
    edit(meta)
    (path / "zarr.json").write_text(json.dumps(meta))


def _first_shard(array_dir: Path) -> Path:
    return next(p for p in sorted((array_dir / "c").rglob("*")) if p.is_file())


STORE_TAMPERS: dict[str, tuple[Callable[[Path], None], str]] = {
    "num-images-attribute": (lambda s: _tamper_json(
        s, lambda m: m["attributes"].update(num_images=9)), "shape"),
    "array-shape": (lambda s: _tamper_json(
        s / "patch_tokens", lambda m: m.update(shape=[7, *m["shape"][1:]])), "shape"),
    "encoder-attribute": (lambda s: _tamper_json(
        s, lambda m: m["attributes"].update(encoder="clip_vitb16")), "another encoder"),
    "format-version": (lambda s: _tamper_json(
        s, lambda m: m["attributes"].update(format_version=99)), "store format"),
    "garbage-metadata": (lambda s: (s / "zarr.json").write_text("{not json"), "not a readable"),
    "missing-array": (lambda s: __import__("shutil").rmtree(s / "cls_token"), "cls_token"),
    "truncated-shard": (lambda s: _first_shard(s / "patch_tokens").write_bytes(b"\0" * 10),
                        "damaged"),
    "text-embedding-shape": (lambda s: _tamper_json(
        s.parents[2] / "text" / "minilm_l6" / "camvid.zarr" / "embeddings",
        lambda m: m.update(shape=[5, m["shape"][1]])), "embeddings"),
}


@pytest.mark.parametrize("tamper", sorted(STORE_TAMPERS))
def test_hostile_store_is_refused_by_fit(make_stores, tmp_path: Path, tamper: str) -> None:
    stores = make_stores(tmp_path, num_images=8)
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"an earlier run's checkpoint")
    edit, reason = STORE_TAMPERS[tamper]
    edit(stores.visual_paths["train"])
    args = ["--visual", stores.visual, "--text", stores.text, "--cache-dir", stores.cache_dir,
            "--out", out, *TINY_FIT]
    with nothing_lost(out):
        code, stderr = _invoke(fit.main, args)
        expect_one_line_error(code, stderr, reason)


class _Exploit:
    """A pickle that would create a file when unpickled without ``weights_only``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _exploit_bytes(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": 1, "x": _Exploit(marker)}, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[object, Path]:
    """Tiny stores and a checkpoint fitted on them."""
    from tests.conftest import make_stores

    tmp = tmp_path_factory.mktemp("trained")
    stores = make_stores(tmp, num_images=8)
    out = tmp / "run"
    code, stderr = _invoke(fit.main, ["--visual", stores.visual, "--text", stores.text,
                                      "--cache-dir", stores.cache_dir, "--out", out,
                                      *TINY_FIT[:1], "1", *TINY_FIT[2:]])
    assert code == 0, stderr
    return stores, out / "checkpoint.pt"


def _edited_checkpoint(source: Path, edit: Callable[[dict], None]) -> bytes:
    payload = torch.load(source, weights_only=True)
    edit(payload)
    target = source.with_name("edited.pt")
    torch.save(payload, target)
    return target.read_bytes()


UNREADABLE = "not a readable fusion checkpoint"
CHECKPOINT_FAULTS: dict[str, tuple[Callable[[Path, Path], bytes], str]] = {
    "truncated": (lambda src, _: src.read_bytes()[:2000], UNREADABLE),
    "text-file": (lambda *_: b"hello", UNREADABLE),
    "pickle-exploit": (lambda _, marker: _exploit_bytes(marker), UNREADABLE),
    "other-encoder-pair": (lambda src, _: _edited_checkpoint(
        src, lambda p: p["meta"]["visual"].update(weights_sha256="f" * 64)), "weights_sha256"),
    "config-does-not-match-weights": (lambda src, _: _edited_checkpoint(
        src, lambda p: p["meta"]["model_config"].update(dim=64)), "damaged fusion checkpoint"),
    "no-meta": (lambda src, _: _edited_checkpoint(src, lambda p: p.pop("meta")),
                "damaged fusion checkpoint"),
}


@pytest.mark.parametrize("fault", sorted(CHECKPOINT_FAULTS))
def test_hostile_checkpoint_is_refused_by_evaluate(trained, tmp_path: Path, fault: str) -> None:
    stores, good = trained
    marker = tmp_path / "pwned"
    bad = tmp_path / "checkpoint.pt"
    make, reason = CHECKPOINT_FAULTS[fault]
    bad.write_bytes(make(good, marker))
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"earlier": 1}')
    with nothing_lost(metrics, good):
        code, stderr = _invoke(evaluate.main, [
            "--checkpoint", bad, "--cache-dir", stores.cache_dir, "--out-metrics", metrics,
            "--out-plots", tmp_path / "plots", "--device", "cpu", "--no-progress"])
        expect_one_line_error(code, stderr, reason)
    assert not marker.exists() and not (tmp_path / "plots").exists()


WRONG_TYPES = [
    (fit.main, ["--visual", "v", "--text", "t", "--epochs", "twelve"], "--epochs"),
    (fit.main, ["--visual", "v", "--text", "t", "--lr", "fast"], "--lr"),
    (fit.main, ["--visual", "v", "--text", "t", "--layers", "1.5"], "--layers"),
    (fit.main, ["--visual", "v", "--text", "t", "--device", "tpu"], "--device"),
    (fit.main, ["--visual", "v", "--text", "t", "--decoder-channels", "a,b"], "--decoder-channels"),
    (evaluate.main, ["--threshold", "high"], "--threshold"),
    (extract.main, ["--backbone", "dino_vits16", "--batch-size", "[16]"], "--batch-size"),
    (extract.main, ["--backbone", "dino_vits16", "--image-size", "big"], "--image-size"),
]


@pytest.mark.parametrize(("command", "args", "option"), WRONG_TYPES,
                         ids=[f"{c.name}{o}" for c, _, o in WRONG_TYPES])
def test_wrong_typed_params_are_one_line(command, args: list[str], option: str) -> None:
    """dvc.yaml passes params.yaml values as options: a wrong type is named by its option."""
    code, stderr = _invoke(command, args)
    assert code == 2
    expect_one_line_error(code, stderr, option)


# ---- killed work: SIGKILL at random points, resume, compare with an uninterrupted run ---------

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


def test_killed_extraction_resumes_to_the_same_store(tmp_path: Path) -> None:
    data = make_mini_camvid(tmp_path / "camvid", per_split=6)
    args = ["--backbone", "dino_vits16", "--random-init", "--split", "train", "--data-root", data,
            "--image-size", "64x80", "--shard-images", "1", "--batch-size", "1", "--device", "cpu"]
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
    for name in ("patch_tokens", "cls_token", "labels", "image_ids", "shard_done"):
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
    want = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    got = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)


# ---- property-based: any shapes, shard sizes, write orders and names round-trip -------------

names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)


@given(num=st.integers(1, 9), shard=st.integers(1, 4), grid=st.tuples(st.integers(1, 3),
       st.integers(1, 3)), dim=st.integers(1, 6), seed=st.integers(0, 2**16),
       ids=st.lists(names, min_size=9, max_size=9, unique=True), data=st.data())
def test_property_visual_store_round_trip(tmp_path_factory, num: int, shard: int,
                                          grid: tuple[int, int], dim: int, seed: int,
                                          ids: list[str], data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    tokens = (rng.normal(size=(num, *grid, dim)) * 100).astype(np.float16)
    labels = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(num, 5, 6))
    path = tmp_path_factory.mktemp("prop") / "store.zarr"
    writer = VisualStoreWriter(path, {"grid_size": list(grid), "feature_dim": dim}, num, grid,
                               dim, (5, 6), shard_images=shard)
    for s in data.draw(st.permutations(writer.pending_shards())):  # any write order
        rows = writer.shard_range(s)
        writer.write_shard(s, tokens[rows.start:rows.stop], tokens[rows.start:rows.stop, 0, 0],
                           labels[rows.start:rows.stop], ids[rows.start:rows.stop])
    writer.finalize()
    store = CachedFeatureDataset(path)
    assert store.image_ids() == ids[:num]
    for i in range(num):
        item = store[i]
        assert np.array_equal(item["patch_tokens"].numpy(), tokens[i].astype(np.float32))
        assert np.array_equal(item["cls_token"].numpy(), tokens[i, 0, 0].astype(np.float32))
        assert np.array_equal(item["label"].numpy(), labels[i])


@given(class_names=st.lists(names, min_size=1, max_size=8, unique=True), dim=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_property_text_store_round_trip(tmp_path_factory, class_names: list[str], dim: int,
                                        seed: int) -> None:
    vectors = np.random.default_rng(seed).normal(size=(len(class_names), dim)).astype(np.float32)
    path = tmp_path_factory.mktemp("prop") / "text.zarr"
    write_text_store(path, class_names, vectors, {"feature_dim": dim})
    back = read_text_store(path)
    assert back.class_names == class_names
    assert np.array_equal(back.embeddings.numpy(), vectors)
