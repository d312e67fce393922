"""Benchmark 1: one training epoch from the Zarr cache vs the same epoch with the frozen encoder
run online on the images.

Both epochs run ``pipeline.train.loop.train_epoch`` on the same episodes (the cache's
``EpisodeDataset``), in the same shuffled order (``trainer.make_loader``'s seeded sampler), from
the same initial fusion weights, batch size, device and DataLoader workers. The cached epoch
reads patch tokens from the store; the online epoch decodes each image and its label map,
resizes them as extraction does, and runs the frozen encoder (random-init weights, same
architecture and FLOPs as the pretrained ones) under ``no_grad`` before every step. The
"visual + text" row also re-encodes each batch's class names under every prompt template with
the frozen text encoder, as the paper's official code does for every sample (deduplicated per
batch here, which favours the online path).

Run: ``python -m bench.cache_speedup [--quick]``.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from bench.common import (
    TEXT,
    VISUAL,
    Table,
    camvid_subset,
    device_name,
    ensure_stores,
    median,
    spread,
)
from pipeline.data.base import SegmentationDataset
from pipeline.data.splits import training_view
from pipeline.data.transforms import image_to_tensor, resize_label
from pipeline.encoders import create_text_encoder, create_visual_encoder
from pipeline.encoders.text import TextEncoder
from pipeline.encoders.visual import VisualEncoder
from pipeline.model import build_model
from pipeline.store import loader_kwargs
from pipeline.train import EpisodeDataset, FitConfig, collate_episodes, open_inputs
from pipeline.train.distributed import Runtime
from pipeline.train.loop import train_epoch
from pipeline.train.schedule import param_groups
from pipeline.train.trainer import make_loader


class OnlineEpisodes(Dataset):
    """The cache's episodes, but each item decoded from the image (pixels, not tokens)."""

    def __init__(self, episodes: EpisodeDataset, images: SegmentationDataset,
                 size: tuple[int, int]) -> None:
        self.episodes, self.images, self.size = episodes, images, size

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, item: int) -> dict[str, Any]:
        features = self.episodes.features
        index = features.indices[self.episodes.positions[item]]
        sample = self.images[index]
        label = resize_label(sample.label, self.size)
        _, safe = training_view(label, self.episodes.split, self.episodes.unseen_as)
        return {"pixels": image_to_tensor(sample.image, self.size),
                "label": torch.from_numpy(safe.astype(np.int64)),
                "class_ids": torch.tensor(self.episodes.class_ids[item], dtype=torch.int64),
                "index": index}


def collate_pixels(items: list[dict[str, Any]]) -> dict[str, Tensor]:
    """``collate_episodes`` with pixels in the token slot (the encoder fills it in later)."""
    return collate_episodes([{**item, "patch_tokens": item["pixels"]} for item in items])


class EncodeOnline:
    """Wrap a pixel loader: every batch's pixels go through the frozen encoder first.

    With ``text`` (encoder, class names), the batch's class embeddings are recomputed too and
    written into ``text_table`` (a copy of the cached table) before the step reads it.
    """

    def __init__(self, loader: DataLoader, encoder: VisualEncoder, text_table: Tensor,
                 text: tuple[TextEncoder, list[str]] | None = None) -> None:
        self.loader, self.encoder, self.sampler = loader, encoder, loader.sampler
        self.text_table, self.text = text_table.clone(), text
        self.device = next(encoder.parameters()).device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for batch in self.loader:
            with torch.no_grad():
                pixels = batch["patch_tokens"].to(self.device, non_blocking=True)
                tokens = self.encoder(pixels)["patch_tokens"].float()
            if self.text is not None:
                encoder, names = self.text
                ids = [int(i) for i in batch["class_ids"].unique() if i >= 0]
                fresh = encoder.encode_classes([names[i] for i in ids])
                self.text_table[ids] = fresh.to(self.text_table)
            yield {**batch, "patch_tokens": tokens}


def online_loader(episodes: EpisodeDataset, images: SegmentationDataset, encoder: VisualEncoder,
                  batch_size: int, seed: int, workers: int, text_table: Tensor,
                  text: tuple[TextEncoder, list[str]] | None = None) -> EncodeOnline:
    """Same sampler as ``make_loader`` (same order), pixels decoded instead of tokens read."""
    dataset = OnlineEpisodes(episodes, images, encoder.image_size)
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                        collate_fn=collate_pixels, **loader_kwargs(workers))
    return EncodeOnline(loader, encoder, text_table, text)


def check_same_tokens(cached: Iterable[dict[str, Tensor]],
                      online: Iterable[dict[str, Tensor]]) -> float:
    """Max |cached - online| token difference on the first batch (f16 rounding only)."""
    first_cached, first_online = next(iter(cached)), next(iter(online))
    assert torch.equal(first_cached["index"], first_online["index"]), "different episode order"
    gap = first_cached["patch_tokens"].cpu() - first_online["patch_tokens"].cpu()
    return float(gap.abs().max())


def run(quick: bool = False, workers: int = 0, visual: str = VISUAL,
        device: str = "cpu") -> list[Table]:
    """Epochs from the cache (``workers``, and 2 DataLoader workers unless quick) vs online
    (``workers`` decoding images; the visual encoder alone, then both encoders)."""
    n_images, repeats = (32, 2) if quick else (64, 3)
    config = FitConfig(visual=visual, text=TEXT, cache_dir=ensure_stores(n_images, visual),
                       val_split=None, device=device, progress=False, num_workers=workers)
    inputs = open_inputs(config)
    runtime = Runtime(torch.device(device))
    torch.manual_seed(config.seed)
    model = build_model(config.model_config(inputs.visual_dim, inputs.text_dim)).to(device)
    initial = copy.deepcopy(model.state_dict())
    encoder = create_visual_encoder(visual, random_init=True).eval().to(device)
    text_encoder = create_text_encoder(TEXT, random_init=True).eval().to(device)
    text_table = inputs.text_table.to(device)
    cached = make_loader(inputs.train, config.batch_size, runtime, config.seed, True, workers)
    more = {} if quick or workers == 2 else {
        "Zarr cache, 2 workers": make_loader(inputs.train, config.batch_size, runtime,
                                             config.seed, True, 2)}
    images = camvid_subset(n_images)
    online = online_loader(inputs.train, images, encoder, config.batch_size, config.seed,
                           workers, text_table)
    online_both = online_loader(inputs.train, images, encoder, config.batch_size, config.seed,
                                workers, text_table, (text_encoder, inputs.class_names))
    token_gap = check_same_tokens(cached, online)

    def epoch(loader: Any) -> float:
        model.load_state_dict(initial)
        optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)
        torch.manual_seed(config.seed)
        table = getattr(loader, "text_table", text_table)
        stats = train_epoch(model, loader, optimizer, table, inputs.split.seen,
                            runtime, 0, lambda _: (config.lr, config.weight_decay),
                            progress=False)
        if device == "cuda":
            torch.cuda.synchronize()
        return stats.seconds

    loaders = {f"Zarr cache, {workers} workers": cached, **more,
               "online visual encoder": online, "online visual + text encoders": online_both}
    for loader in loaders.values():
        if loader not in (online, online_both):
            epoch(loader)  # warm-up (page cache, allocator, persistent workers, CUDA kernels)
    times: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits every row
        for name, loader in loaders.items():
            times[name].append(epoch(loader))
    base = times[f"Zarr cache, {workers} workers"]
    episodes = len(inputs.train)
    table = Table(
        f"Cache speed-up: one fit epoch, {visual}, {episodes} episodes ({n_images} CamVid "
        f"images), batch {config.batch_size}, {device_name(device)}",
        ["epoch from", "seconds", "episodes/s", "time / cache"],
        notes=[f"seconds: median [min-max] of {repeats} interleaved repeats; ratio: median of "
               "per-repeat ratios",
               f"fusion model: the FitConfig default (dim {config.dim}, {config.layers} layers); "
               f"encoder {visual} random-init at {encoder.image_size[0]}x{encoder.image_size[1]}",
               f"same inputs: first batch tokens online vs cache differ by {token_gap:.2g} "
               "(float16 storage)"])
    for name, seconds in times.items():
        ratios = [t / c for t, c in zip(seconds, base, strict=True)]
        table.add(name, spread(seconds), episodes / median(seconds), median(ratios))
    return [table]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (both paths)")
    parser.add_argument("--visual", default=VISUAL, help="visual encoder slug (random-init)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    for table in run(args.quick, args.workers, args.visual, args.device):
        print(table.render(), end="\n\n")


if __name__ == "__main__":
    main()
