"""Reliability of what the stages read back: tampered or damaged stores are refused by fit,
foreign, damaged or malicious checkpoints by evaluate (``torch.load(weights_only=True)``): one
``error:`` line each, and nothing already written changes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from stages import evaluate, fit
from tests.helpers import TINY_FIT
from tests.tally import expect_one_line_error, invoke, nothing_lost


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
    "missing-array": (lambda s: shutil.rmtree(s / "cls_token"), "cls_token"),
    "truncated-shard": (lambda s: _first_shard(s / "patch_tokens").write_bytes(b"\0" * 10),
                        "damaged"),
    "deleted-shard": (lambda s: _first_shard(s / "patch_tokens").unlink(), "missing"),
    "text-embedding-shape": (lambda s: _tamper_json(
        s.parents[2] / "text" / "minilm_l6" / "camvid.zarr" / "embeddings",
        lambda m: m.update(shape=[5, m["shape"][1]])), "embeddings"),
    "missing-text-embeddings": (lambda s: shutil.rmtree(
        s.parents[2] / "text" / "minilm_l6" / "camvid.zarr" / "embeddings"), "embeddings"),
    "labels-rows": (lambda s: _tamper_json(
        s / "labels", lambda m: m.update(shape=[7, *m["shape"][1:]])), "labels"),
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
        code, stderr = invoke(fit.main, args)
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
    code, stderr = invoke(fit.main, ["--visual", stores.visual, "--text", stores.text,
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
        code, stderr = invoke(evaluate.main, [
            "--checkpoint", bad, "--cache-dir", stores.cache_dir, "--out-metrics", metrics,
            "--out-plots", tmp_path / "plots", "--device", "cpu", "--no-progress"])
        expect_one_line_error(code, stderr, reason)
    assert not marker.exists() and not (tmp_path / "plots").exists()
