"""Benchmark 3: extraction throughput vs the bare encoder forward on the same batches.

"Extraction" is ``pipeline.extract.extract_visual`` end to end into a fresh store (JPEG/PNG
decoding, resizing, the forward pass, f16 cast, compression and shard writes). "Bare forward"
runs the same encoder on the same batches (``shard_batches``), pixels already decoded in RAM.
Extraction's own report also times its forward calls (``forward_images_per_s``); both ratios
are shown. Encoder weights are random-init (same architecture, same FLOPs as the real ones).

Run: ``python -m bench.extraction [--quick]``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import torch

from bench.common import BENCH_CACHE, VISUAL, Table, camvid_subset, median, spread
from pipeline.data.transforms import image_to_tensor
from pipeline.encoders import create_visual_encoder
from pipeline.encoders.visual import VisualEncoder
from pipeline.extract import extract_visual, shard_batches
from pipeline.store.visual import DEFAULT_SHARD_IMAGES


def bare_forward_seconds(encoder: VisualEncoder, pixels: torch.Tensor, batch_size: int) -> float:
    """Seconds of the encoder alone over ``pixels`` in extraction's batches."""
    shards = [(s, range(start, min(start + DEFAULT_SHARD_IMAGES, len(pixels))))
              for s, start in enumerate(range(0, len(pixels), DEFAULT_SHARD_IMAGES))]
    seconds = 0.0
    for batch in shard_batches(shards, batch_size):
        with torch.inference_mode():
            tick = time.perf_counter()
            encoder(pixels[batch[0]:batch[-1] + 1])
            seconds += time.perf_counter() - tick
    return seconds


def run(quick: bool = False, work: Path = BENCH_CACHE / "extraction") -> list[Table]:
    n_images, repeats = (32, 2) if quick else (48, 3)
    configs = [(16, 0), (16, 2)] if quick else [(16, 0), (16, 2), (8, 0), (32, 0)]
    logging.getLogger("pipeline.extract").setLevel(logging.WARNING)
    dataset = camvid_subset(n_images)
    encoder = create_visual_encoder(VISUAL, random_init=True).eval()
    pixels = torch.stack([image_to_tensor(dataset[i].image, encoder.image_size)
                          for i in range(n_images)])
    with torch.inference_mode():
        encoder(pixels[:2])  # warm-up
    results: dict[tuple[int, int], dict[str, list[float]]] = {
        c: {"bare": [], "extract": [], "in_run": []} for c in configs}
    for _ in range(repeats):  # interleaved: each repeat measures every config once
        for batch_size, workers in configs:
            result = results[batch_size, workers]
            result["bare"].append(n_images / bare_forward_seconds(encoder, pixels, batch_size))
            store = work / f"b{batch_size}-w{workers}.zarr"
            report = extract_visual(dataset, encoder, store, batch_size=batch_size,
                                    num_workers=workers, overwrite=True)
            result["extract"].append(report["images_per_s"])
            result["in_run"].append(report["forward_images_per_s"])
    shutil.rmtree(work, ignore_errors=True)
    table = Table(
        f"Extraction vs bare encoder forward ({VISUAL}, {encoder.image_size[0]}x"
        f"{encoder.image_size[1]}, {n_images} CamVid images, median of {repeats})",
        ["batch", "decode workers", "bare forward img/s", "extraction img/s",
         "extraction / bare", "forward img/s inside extraction", "extraction / own forward"],
        notes=["img/s cells: median [min-max]; ratios: median of per-repeat ratios",
               "extraction includes spawning decode workers (a fixed ~seconds cost that a "
               "full split amortises)"])
    for (batch_size, workers), r in results.items():
        table.add(batch_size, workers, spread(r["bare"]), spread(r["extract"]),
                  median([e / b for e, b in zip(r["extract"], r["bare"], strict=True)]),
                  spread(r["in_run"]),
                  median([e / f for e, f in zip(r["extract"], r["in_run"], strict=True)]))
    return [table]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, repeats, configs")
    for table in run(parser.parse_args().quick):
        print(table.render(), end="\n\n")


if __name__ == "__main__":
    main()
