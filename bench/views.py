"""Benchmark 6: what augmented views (``fusioner-extract --views N``) cost, measured in one run.

For each N the same CamVid train images are extracted into a fresh store with N seeded views
(random resized crop + flip, the default recipe) by ``pipeline.extract.extract_visual``, with
the pipeline's default visual encoder (random-init weights: same FLOPs and bytes). Reported:
store bytes on disk, extraction seconds (decode, N crops, N + 1 forward passes, writes) and
both relative to N = 0 (repeats interleaved, medians; ratios are medians of per-repeat ratios),
and the bytes one fit epoch reads from the store under the per-shard view draw
(``pipeline.train.views``), summed over the chunk files of the views it picks.

Run: ``python -m bench.views [--quick]``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import zarr

from bench.common import BENCH_CACHE, MB, VISUAL, Table, camvid_subset, dir_bytes, median, spread
from pipeline.data.views import ViewRecipe
from pipeline.encoders import create_visual_encoder
from pipeline.extract import extract_visual
from pipeline.store.layout import ITEM_ARRAYS, VIEW_PREFIX, view_count
from pipeline.train.views import drawn_view


def epoch_read_bytes(store: Path, epoch: int, seed: int = 0) -> int:
    """Bytes of the chunk files one fit epoch reads: per shard, the view ``drawn_view`` picks."""
    group = zarr.open_group(str(store), mode="r")
    views = view_count(group.attrs)
    shards = -(-int(group.attrs["num_images"]) // int(group.attrs["shard_images"]))
    total = 0
    for shard in range(shards):
        view = drawn_view(seed, epoch, shard, views) if views else 0
        for name in ITEM_ARRAYS:
            folder = (store / name / "c" / str(shard) if view == 0
                      else store / (VIEW_PREFIX + name) / "c" / str(view - 1) / str(shard))
            total += dir_bytes(folder)
    return total


def run(quick: bool = False, work: Path = BENCH_CACHE / "views") -> list[Table]:
    n_images, counts, repeats = (16, (0, 1, 2), 1) if quick else (40, (0, 1, 2, 4), 2)
    logging.getLogger("pipeline.extract").setLevel(logging.WARNING)
    dataset = camvid_subset(n_images)
    encoder = create_visual_encoder(VISUAL, random_init=True).eval()
    seconds: dict[int, list[float]] = {count: [] for count in counts}
    sizes, reads = {}, {}
    for _ in range(repeats):  # interleaved: each repeat measures every N once
        for count in counts:
            store = work / f"views{count}.zarr"
            recipe = ViewRecipe(count) if count else None
            report = extract_visual(dataset, encoder, store, overwrite=True, views=recipe)
            seconds[count].append(report["seconds"])
            sizes[count] = dir_bytes(store)
            reads[count] = median([epoch_read_bytes(store, e) for e in range(count + 1)])
    shutil.rmtree(work, ignore_errors=True)
    height, width = encoder.image_size
    table = Table(
        f"Augmented views: store size and extraction time vs N ({VISUAL}, {height}x{width}, "
        f"{n_images} CamVid train images, median of {repeats})",
        ["views N", "store MB", "store / N=0", "extraction s", "extraction / N=0",
         "MB read per fit epoch"],
        notes=["store: the visual store on disk (default codec); view arrays are view-major, "
               "one file per view and shard",
               "extraction s: median [min-max]; ratio: median of per-repeat ratios",
               "MB read per fit epoch: median over the epochs of one view cycle (N + 1 epochs) "
               "of the chunk files the per-shard view draw reads"])
    for count in counts:
        ratios = [s / b for s, b in zip(seconds[count], seconds[counts[0]], strict=True)]
        table.add(count, sizes[count] / MB, sizes[count] / sizes[counts[0]],
                  spread(seconds[count]), median(ratios), reads[count] / MB)
    return [table]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and view counts")
    for table in run(parser.parse_args().quick):
        print(table.render(), end="\n\n")


if __name__ == "__main__":
    main()
