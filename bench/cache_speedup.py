"""Benchmark 1: one training epoch from the Zarr cache vs the same epoch with the frozen encoder
run online on the images.

Both epochs run ``pipeline.train.loop.train_epoch`` on the same episodes (the cache's
``EpisodeDataset``), in the same shuffled order (``trainer.make_loader``'s seeded sampler), from
the same initial fusion weights, batch size, device and DataLoader workers. The cached epoch
reads patch tokens from the store; the online epoch decodes each image and its label map,
resizes them as extraction does, and runs the frozen encoder (random-init weights, same
architecture and FLOPs as the pretrained ones) under ``no_grad`` before every step.

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

from bench.common import TEXT, VISUAL, Table, camvid_subset, ensure_stores, median, spread
from pipeline.data.base import SegmentationDataset
from pipeline.data.splits import training_view
from pipeline.data.transforms import image_to_tensor, resize_label
from pipeline.encoders import create_visual_encoder
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
    """Wrap a pixel loader: every batch's pixels go through the frozen encoder first."""

    def __init__(self, loader: DataLoader, encoder: VisualEncoder) -> None:
        self.loader, self.encoder, self.sampler = loader, encoder, loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for batch in self.loader:
            with torch.no_grad():
                tokens = self.encoder(batch["patch_tokens"])["patch_tokens"].float()
            yield {**batch, "patch_tokens": tokens}


def online_loader(episodes: EpisodeDataset, images: SegmentationDataset, encoder: VisualEncoder,
                  batch_size: int, runtime: Runtime, seed: int, workers: int) -> EncodeOnline:
    """Same sampler as ``make_loader`` (same order), pixels decoded instead of tokens read."""
    dataset = OnlineEpisodes(episodes, images, encoder.image_size)
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
    return EncodeOnline(DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                   collate_fn=collate_pixels, **loader_kwargs(workers)), encoder)


def check_same_tokens(cached: Iterable[dict[str, Tensor]],
                      online: Iterable[dict[str, Tensor]]) -> float:
    """Max |cached - online| token difference on the first batch (f16 rounding only)."""
    first_cached, first_online = next(iter(cached)), next(iter(online))
    assert torch.equal(first_cached["index"], first_online["index"]), "different episode order"
    return float((first_cached["patch_tokens"] - first_online["patch_tokens"]).abs().max())


def run(quick: bool = False, workers: int = 0, visual: str = VISUAL) -> list[Table]:
    """Epochs from the cache (``workers``, and 2 DataLoader workers unless quick) vs online
    (``workers`` decoding images)."""
    n_images, repeats = (32, 2) if quick else (64, 3)
    config = FitConfig(visual=visual, text=TEXT, cache_dir=ensure_stores(n_images, visual),
                       val_split=None, device="cpu", progress=False, num_workers=workers)
    inputs = open_inputs(config)
    runtime = Runtime(torch.device("cpu"))
    torch.manual_seed(config.seed)
    model = build_model(config.model_config(inputs.visual_dim, inputs.text_dim))
    initial = copy.deepcopy(model.state_dict())
    encoder = create_visual_encoder(visual, random_init=True).eval()
    cached = make_loader(inputs.train, config.batch_size, runtime, config.seed, True, workers)
    more = {} if quick or workers == 2 else {
        "Zarr cache, 2 workers": make_loader(inputs.train, config.batch_size, runtime,
                                             config.seed, True, 2)}
    online = online_loader(inputs.train, camvid_subset(n_images), encoder, config.batch_size,
                           runtime, config.seed, workers)
    token_gap = check_same_tokens(cached, online)

    def epoch(loader: Any) -> float:
        model.load_state_dict(initial)
        optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)
        torch.manual_seed(config.seed)
        stats = train_epoch(model, loader, optimizer, inputs.text_table, inputs.split.seen,
                            runtime, 0, lambda _: (config.lr, config.weight_decay),
                            progress=False)
        return stats.seconds

    loaders = {f"Zarr cache, {workers} workers": cached, **more, "online encoder": online}
    for loader in loaders.values():
        if loader is not online:
            epoch(loader)  # warm-up (page cache, allocator, persistent workers)
    times: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits every row
        for name, loader in loaders.items():
            times[name].append(epoch(loader))
    base = times[f"Zarr cache, {workers} workers"]
    episodes = len(inputs.train)
    table = Table(
        f"Cache speed-up: one fit epoch, {visual}, {episodes} episodes ({n_images} CamVid "
        f"images), batch {config.batch_size}, CPU",
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
    args = parser.parse_args()
    for table in run(args.quick, args.workers, args.visual):
        print(table.render(), end="\n\n")


if __name__ == "__main__":
    main()
