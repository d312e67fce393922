"""Run a frozen encoder once over a dataset and write its features to the Zarr store."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

import pipeline
from pipeline.data.base import IGNORE_INDEX, SegmentationDataset
from pipeline.data.transforms import image_to_tensor, resize_label
from pipeline.data.views import ViewRecipe, make_view
from pipeline.encoders.templates import PROMPT_TEMPLATES
from pipeline.encoders.text import TextEncoder
from pipeline.encoders.visual import VisualEncoder
from pipeline.errors import BadInputError
from pipeline.store.layout import FORMAT_VERSION, identity
from pipeline.store.location import StoreLocation, open_group, store_exists
from pipeline.store.text import write_text_store
from pipeline.store.visual import DEFAULT_SHARD_IMAGES, VisualStoreWriter

log = logging.getLogger(__name__)


class _PreparedImages(Dataset):
    """Decode + resize samples (in DataLoader workers when asked); bad ones flagged, not raised.

    With a ``views`` recipe an item also holds its augmented views 1..count (``view_pixels``
    (V, 3, H, W), ``view_label`` (V, H, W)).
    """

    def __init__(self, dataset: SegmentationDataset, indices: list[int], size: tuple[int, int],
                 skip_bad: bool, views: ViewRecipe | None = None) -> None:
        self.dataset, self.indices, self.size, self.skip_bad = dataset, indices, size, skip_bad
        self.views = views if views is not None and views.count else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, Any]:
        index = self.indices[item]
        count = self.views.count if self.views else 0
        height, width = self.size
        try:
            sample = self.dataset[index]
        except BadInputError as exc:
            if not self.skip_bad:
                raise
            bad = {"pixels": torch.zeros(3, height, width), "ok": False, "error": str(exc),
                   "label": np.full(self.size, IGNORE_INDEX, np.uint8),
                   "image_id": self.dataset.image_id(index)}
            if count:
                bad["view_pixels"] = torch.zeros(count, 3, height, width)
                bad["view_label"] = np.full((count, *self.size), IGNORE_INDEX, np.uint8)
            return bad
        prepared = {"pixels": image_to_tensor(sample.image, self.size), "ok": True, "error": "",
                    "label": resize_label(sample.label, self.size), "image_id": sample.image_id}
        if self.views:
            views = [make_view(sample.image, sample.label, self.size, self.views, index, view)
                     for view in range(1, count + 1)]
            prepared["view_pixels"] = torch.stack([pixels for pixels, _ in views])
            prepared["view_label"] = np.stack([label for _, label in views])
        return prepared


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch = {
        "pixels": torch.stack([i["pixels"] for i in items]),
        "label": np.stack([i["label"] for i in items]),
        "image_id": [i["image_id"] for i in items],
        "ok": [i["ok"] for i in items],
        "error": [i["error"] for i in items],
    }
    if "view_pixels" in items[0]:
        batch["view_pixels"] = torch.stack([i["view_pixels"] for i in items])
        batch["view_label"] = np.stack([i["view_label"] for i in items])
    return batch


def visual_store_attrs(encoder: VisualEncoder, dataset: SegmentationDataset,
                       views: ViewRecipe | None = None) -> dict[str, Any]:
    """Root attributes of a visual store: encoder provenance + dataset identity + code version,
    and the ``views`` recipe when the store holds augmented views (a store without has none)."""
    attrs = {
        **encoder.provenance(),
        "dataset": dataset.name,
        "split": dataset.split,
        "class_names": list(dataset.class_names),
        "code_version": pipeline.__version__,
    }
    if views is not None and views.count:
        attrs["views"] = views.attrs()
    built_for_fold = getattr(dataset, "built_for_fold", None)  # fold mosaics: one fold only
    if built_for_fold is not None:
        attrs["built_for_fold"] = int(built_for_fold)
    return attrs


@dataclass
class EncodedShard:
    """One store shard's worth of encoder outputs, ready for ``write_shard(_data)``."""

    shard: int
    patch_tokens: np.ndarray
    cls_token: np.ndarray
    labels: np.ndarray
    image_ids: list[str]
    skipped: dict[str, str]
    forward_seconds: float
    views: dict[str, np.ndarray] | None = None  # item array -> (views, rows, ...), views 1..V

    def write_args(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, list[str],
                                  dict[str, np.ndarray] | None]:
        return (self.shard, self.patch_tokens, self.cls_token, self.labels, self.image_ids,
                self.views)


def shard_batches(shards: list[tuple[int, range]], batch_size: int) -> list[list[int]]:
    """Batches of dataset indices that never straddle a shard.

    Every extraction path (single process, distributed) batches a shard the same way, so the
    encoder sees the same batches and the stored features are identical bit for bit.
    """
    return [list(rows[i:i + batch_size]) for _, rows in shards
            for i in range(0, len(rows), batch_size)]


def encode_shards(
    dataset: SegmentationDataset,
    encoder: VisualEncoder,
    shards: list[tuple[int, range]],
    batch_size: int = 16,
    device: str = "cpu",
    num_workers: int = 0,
    skip_bad: bool = False,
    on_batch: Callable[[int], None] | None = None,
    views: ViewRecipe | None = None,
) -> Iterator[EncodedShard]:
    """Encode ``(shard, rows)`` blocks in order, yielding each shard once all its rows are done.

    ``encoder`` must already be on ``device`` in eval mode; ``on_batch(n)`` reports progress.
    With a ``views`` recipe each batch is encoded once plain (the same batches as without
    views, so view 0 is unchanged bit for bit), then once per augmented view.
    """
    batches = iter(_loader(dataset, shard_batches(shards, batch_size), encoder.image_size,
                           num_workers, skip_bad, views))
    count = views.count if views is not None else 0
    for shard, rows in shards:
        outputs: list[dict[str, Any]] = []
        forward_seconds = 0.0
        while sum(len(o["image_id"]) for o in outputs) < len(rows):
            batch = next(batches)
            tick = time.perf_counter()
            with torch.inference_mode():
                features = encoder(batch["pixels"].to(device))
                extra = [encoder(batch["view_pixels"][:, v].to(device)) for v in range(count)]
            forward_seconds += time.perf_counter() - tick
            outputs.append({**batch, **{k: v.float().cpu().numpy() for k, v in features.items()}})
            if count:
                outputs[-1]["views"] = {
                    "patch_tokens": np.stack([f["patch_tokens"].float().cpu().numpy()
                                              for f in extra]),
                    "cls_token": np.stack([f["cls_token"].float().cpu().numpy() for f in extra]),
                    "labels": batch["view_label"].transpose(1, 0, 2, 3)}
            if on_batch is not None:
                on_batch(len(batch["image_id"]))
        merged = {k: [x for o in outputs for x in o[k]] for k in ("image_id", "ok", "error")}
        skipped = {image_id: error for image_id, ok, error
                   in zip(merged["image_id"], merged["ok"], merged["error"], strict=True)
                   if not ok}
        yield EncodedShard(
            shard,
            np.concatenate([o["patch_tokens"] for o in outputs]),
            np.concatenate([o["cls_token"] for o in outputs]),
            np.concatenate([o["label"] for o in outputs]),
            merged["image_id"], skipped, forward_seconds,
            {name: np.concatenate([o["views"][name] for o in outputs], axis=1)
             for name in ("patch_tokens", "cls_token", "labels")} if count else None,
        )


def extract_visual(
    dataset: SegmentationDataset,
    encoder: VisualEncoder,
    store_path: StoreLocation,
    batch_size: int = 16,
    device: str = "cpu",
    shard_images: int = DEFAULT_SHARD_IMAGES,
    num_workers: int = 0,
    overwrite: bool = False,
    skip_bad: bool = False,
    views: ViewRecipe | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fill (or finish) the visual store of ``dataset``; returns a small report (``progress``:
    show a progress bar).

    Shards already written by an interrupted run are kept; a complete identical store is a no-op.
    ``views``: also store that many seeded augmented views per image (``pipeline.data.views``);
    resuming a store made with another recipe is refused.
    """
    writer = open_visual_writer(dataset, encoder, store_path, shard_images, overwrite, views)
    report: dict[str, Any] = {"store": str(store_path), "images": len(dataset), "encoded": 0,
                              "skipped": dict(writer.group.attrs.get("skipped", {}))}
    if writer.complete:
        log.info("%s is complete already: nothing to do", store_path)
        return report
    pending = [(shard, writer.shard_range(shard)) for shard in writer.pending_shards()]
    count = sum(len(rows) for _, rows in pending)
    log.info("extracting %d images (%d shards) of %s/%s with %s into %s", count,
             len(pending), dataset.name, dataset.split, encoder.slug, store_path)
    encoder = encoder.to(device).eval()
    started, forward_seconds = time.perf_counter(), 0.0
    with tqdm(total=count, unit="img", desc=f"extract {encoder.slug}",
              disable=not progress) as bar:

        def advance(n: int) -> None:
            bar.update(n)
            bar.set_postfix(img_s=f"{bar.n / max(time.perf_counter() - started, 1e-9):.1f}")

        for encoded in encode_shards(dataset, encoder, pending, batch_size, device, num_workers,
                                     skip_bad, advance, views):
            forward_seconds += encoded.forward_seconds
            writer.write_shard(*encoded.write_args())
            if encoded.skipped:
                report["skipped"].update(encoded.skipped)
                writer.group.attrs["skipped"] = report["skipped"]
    writer.finalize()
    finish_report(report, count, time.perf_counter() - started, forward_seconds)
    return report


def open_visual_writer(dataset: SegmentationDataset, encoder: VisualEncoder,
                       store_path: StoreLocation, shard_images: int, overwrite: bool,
                       views: ViewRecipe | None = None) -> VisualStoreWriter:
    """Create (or resume, after checking its settings and view recipe) the store of ``dataset``."""
    return VisualStoreWriter(
        store_path, visual_store_attrs(encoder, dataset, views), len(dataset), encoder.grid_size,
        encoder.feature_dim, encoder.image_size, shard_images=shard_images, overwrite=overwrite,
    )


def finish_report(report: dict[str, Any], count: int, elapsed: float,
                  forward_seconds: float) -> None:
    """Add throughput to ``report`` and log it (and any skipped samples)."""
    report.update(encoded=count, seconds=round(elapsed, 3),
                  images_per_s=round(count / max(elapsed, 1e-9), 2),
                  forward_images_per_s=round(count / max(forward_seconds, 1e-9), 2))
    log.info("encoded %d images in %.1fs: %.1f img/s overall, %.1f img/s encoder forward",
             count, elapsed, report["images_per_s"], report["forward_images_per_s"])
    if report["skipped"]:
        log.warning("skipped %d bad samples: %s", len(report["skipped"]), sorted(report["skipped"]))


def _loader(dataset: SegmentationDataset, batches: list[list[int]], size: tuple[int, int],
            num_workers: int, skip_bad: bool, views: ViewRecipe | None = None) -> DataLoader:
    """Decoded batches (``batches`` holds dataset indices), in DataLoader workers when asked."""
    flat = [index for batch in batches for index in batch]
    prepared = _PreparedImages(dataset, flat, size, skip_bad, views)
    positions, start = [], 0
    for batch in batches:
        positions.append(list(range(start, start + len(batch))))
        start += len(batch)
    extra = {"multiprocessing_context": "spawn"} if num_workers > 0 else {}
    return DataLoader(prepared, batch_sampler=positions, num_workers=num_workers,
                      collate_fn=_collate, **extra)


def text_store_attrs(encoder: TextEncoder, dataset_name: str, templates: tuple[str, ...],
                     class_names: list[str] | None = None) -> dict[str, Any]:
    """Root attributes of a text store (and what the encoder records for ``class_names``)."""
    return {**encoder.provenance(), **encoder.class_provenance(class_names or []),
            "dataset": dataset_name, "templates": list(templates),
            "code_version": pipeline.__version__}


def extract_text(
    class_names: list[str],
    encoder: TextEncoder,
    store_path: StoreLocation,
    dataset_name: str,
    templates: tuple[str, ...] = PROMPT_TEMPLATES,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Embed every class name (prompt-averaged) into the text store; identical store = no-op."""
    attrs = text_store_attrs(encoder, dataset_name, templates, class_names)
    wanted = {**attrs, "format_version": FORMAT_VERSION, "kind": "text",
              "num_classes": len(class_names)}
    if not overwrite and store_exists(store_path):
        group = open_group(store_path, mode="r")
        found = dict(group.attrs)
        same = found.get("complete") is True and identity(found) == identity(wanted)
        if same and [str(n) for n in group["class_names"][:]] == class_names:
            log.info("%s is complete already: nothing to do", store_path)
            return {"store": str(store_path), "classes": len(class_names), "encoded": 0}
    started = time.perf_counter()
    embeddings = encoder.encode_classes(class_names, templates).numpy()
    write_text_store(store_path, class_names, embeddings, attrs)
    log.info("embedded %d class names x %d prompts with %s in %.1fs", len(class_names),
             len(templates), encoder.slug, time.perf_counter() - started)
    return {"store": str(store_path), "classes": len(class_names), "encoded": len(class_names)}
