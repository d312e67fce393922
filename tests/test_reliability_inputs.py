"""Reliability of inputs: every corrupt or hostile file, class list or option value gets one
clear ``error:`` line naming the file and reason, a non-zero exit, and changes nothing already
written; ``--skip-bad`` skips a bad sample and reports it; odd but valid images are decoded.

Counts are printed at the end of the run (``tests/tally.py``).
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.errors import StoreError
from pipeline.store import (
    CachedFeatureDataset,
)
from stages import evaluate, extract, fit
from tests.tally import expect_one_line_error, invoke, nothing_lost

CLASSES = ("background", "cat", "dog")
EXTRACT = ["--backbone", "dino_vits16", "--random-init", "--dataset", "folder",
           "--image-size", "32x32", "--shard-images", "2", "--batch-size", "2", "--device", "cpu"]


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
    code, stderr = invoke(extract.main, [*EXTRACT, "--split", "val", "--data-root", root,
                                          "--cache-dir", cache])
    assert code == 0, stderr
    return root, cache, cache / "visual" / "dino_vits16" / "folder-val.zarr"


def _extract_train(root: Path, cache: Path, *extra: str) -> tuple[int, str]:
    return invoke(extract.main, [*EXTRACT, "--split", "train", "--data-root", root,
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


# ---- wrong-typed option values (params.yaml reaches the stages as options) ---------------------

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
    code, stderr = invoke(command, args)
    assert code == 2
    expect_one_line_error(code, stderr, option)
