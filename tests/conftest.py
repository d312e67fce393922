"""Shared fixtures: tiny feature stores written directly (no encoder), learnable by construction.

``make_stores(tmp_path, ...)`` writes ``<tmp>/cache`` with a visual store per split and a text
store, carrying the provenance attributes extraction writes. Every image is a Voronoi layout of
a few classes on the patch grid; a patch token is its class's prototype plus noise, and the label
map is that layout upsampled (nearest) to the label size, with a few pixels set to 255. So the
labels are predictable from the tokens and a fusion model can learn them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from pipeline.store import VisualStoreWriter, text_store_path, visual_store_path, write_text_store
from tests.tally import TALLY

# property tests: a quick profile for the suite, a long one for `make fuzz` (FUSIONER_FUZZ=1)
settings.register_profile("suite", max_examples=40, deadline=None)
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUSIONER_FUZZ_EXAMPLES", 500)),
                          deadline=None)
settings.load_profile("fuzz" if os.environ.get("FUSIONER_FUZZ") else "suite")

CAMVID_CLASSES = ("sky", "building", "pole", "road", "sidewalk", "tree", "sign symbol", "fence",
                  "car", "pedestrian", "bicyclist")


@dataclass(frozen=True)
class TinyStores:
    """Where ``make_stores`` wrote what (pass ``cache_dir``/``visual``/``text`` to stages)."""

    cache_dir: Path
    dataset: str
    visual: str
    text: str
    class_names: tuple[str, ...]
    grid: tuple[int, int]
    label_size: tuple[int, int]
    visual_paths: dict[str, Path] = field(default_factory=dict)  # split -> store
    text_path: Path | None = None


def _layouts(rng: np.random.Generator, num: int, grid: tuple[int, int],
             num_classes: int) -> np.ndarray:
    """(num, h, w) class ids: nearest of 2-4 random seeds, each with a random class."""
    h, w = grid
    yy, xx = np.mgrid[:h, :w]
    out = np.empty((num, h, w), dtype=np.uint8)
    for i in range(num):
        seeds = rng.integers(2, 5)
        centres = rng.uniform((0, 0), (h, w), size=(seeds, 2))
        classes = rng.choice(num_classes, size=seeds, replace=False)
        dist = (yy[None] - centres[:, :1, None]) ** 2 + (xx[None] - centres[:, 1:, None]) ** 2
        out[i] = classes[dist.argmin(0)]
    return out


def make_stores(tmp_path: Path, num_images: int | Mapping[str, int] = 8,
                grid: tuple[int, int] = (4, 5), dim: int = 16,
                classes: Sequence[str] = CAMVID_CLASSES, *,
                text_dim: int = 12, label_size: tuple[int, int] | None = None,
                dataset: str = "camvid", visual: str = "dino_vits16", text: str = "minilm_l6",
                splits: Sequence[str] = ("train", "val"), shard_images: int = 4,
                noise: float = 0.3, seed: int = 0, views: int = 0,
                view_seed: int = 0) -> TinyStores:
    """Write tiny visual stores (one per split) and a text store under ``tmp_path/cache``.

    ``num_images``: per split, or a ``{split: count}`` mapping. ``views`` > 0: the train store
    also holds that many augmented views (view v: the image mirrored when v is odd, fresh
    noise), under a ``views`` recipe attribute with ``view_seed``.
    """
    rng = np.random.default_rng(seed)
    h, w = grid
    label_size = label_size or (h * 8, w * 8)
    names = tuple(classes)
    cache = tmp_path / "cache"
    prototypes = rng.normal(size=(len(names), dim)).astype(np.float32)
    image_size = [h * 16, w * 16]
    visual_attrs = {"encoder": visual, "library_id": f"test:{visual}", "weights_sha256": "0" * 64,
                    "random_init": True, "image_size": image_size, "patch_size": 16,
                    "grid_size": [h, w], "feature_dim": dim, "dataset": dataset,
                    "class_names": list(names)}
    paths = {}
    for split in splits:
        count = num_images[split] if isinstance(num_images, Mapping) else num_images
        layout = _layouts(rng, count, grid, len(names))
        tokens = prototypes[layout] + noise * rng.normal(size=(count, h, w, dim))
        rows = np.linspace(0, h, label_size[0], endpoint=False).astype(int)
        cols = np.linspace(0, w, label_size[1], endpoint=False).astype(int)
        labels = layout[:, rows][:, :, cols].copy()
        labels[rng.random(labels.shape) < 0.02] = 255
        path = visual_store_path(cache, visual, dataset, split)
        extra = views if split == "train" else 0
        recipe = {"views": {"count": extra, "seed": view_seed, "ops": ["mirror odd views"]}}
        writer = VisualStoreWriter(path, {**visual_attrs, "split": split,
                                          **(recipe if extra else {})},
                                   count, grid, dim, label_size, shard_images=shard_images)
        view_tokens = np.stack([
            (tokens[:, :, ::-1] if v % 2 else tokens) + noise * rng.normal(size=tokens.shape)
            for v in range(1, extra + 1)]) if extra else None
        view_labels = np.stack([labels[:, :, ::-1] if v % 2 else labels
                                for v in range(1, extra + 1)]) if extra else None
        for shard in writer.pending_shards():
            r = writer.shard_range(shard)
            block = slice(r.start, r.stop)
            shard_views = None if view_tokens is None else {
                "patch_tokens": view_tokens[:, block],
                "cls_token": view_tokens[:, block].mean((2, 3)),
                "labels": view_labels[:, block]}
            writer.write_shard(shard, tokens[block], tokens[block].mean((1, 2)), labels[block],
                               [f"{split}_{i:03d}" for i in r], shard_views)
        writer.finalize()
        paths[split] = path
    embeddings = rng.normal(size=(len(names), text_dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    text_path = write_text_store(
        text_store_path(cache, text, dataset), list(names), embeddings,
        {"encoder": text, "library_id": f"test:{text}", "weights_sha256": "1" * 64,
         "random_init": True, "feature_dim": text_dim, "dataset": dataset,
         "templates": ["a photo of a {}."]})
    return TinyStores(cache, dataset, visual, text, names, (h, w), tuple(label_size), paths,
                      text_path)


def pytest_configure(config: pytest.Config) -> None:
    """No test reaches the network or this machine's hub cache: huggingface_hub (imported later,
    by the test modules) sees an empty hub cache, offline. Subprocesses inherit both."""
    cache = tempfile.mkdtemp(prefix="fusioner-hub-cache-")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_CACHE"] = cache
    config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))


@pytest.fixture(name="make_stores")
def make_stores_fixture() -> Callable[..., TinyStores]:
    """The ``make_stores`` factory: ``make_stores(tmp_path, num_images=..., grid=..., ...)``."""
    return make_stores


@pytest.fixture
def tiny_stores(tmp_path: Path) -> TinyStores:
    """8 images per split, grid 4x5, 16-d tokens, 32x40 labels, CamVid's 11 class names."""
    return make_stores(tmp_path)


def pytest_terminal_summary(terminalreporter) -> None:
    """Print what the reliability tests tried and found (crashes and data lost must be 0)."""
    if TALLY:
        counts = ", ".join(f"{key}: {TALLY[key]}" for key in
                           ("bad inputs tried", "crashes", "data lost", "kills survived",
                            "damaged stores repaired"))
        terminalreporter.write_line(f"reliability: {counts}")
