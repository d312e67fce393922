"""Benchmark 10: the ``alone`` forward-pass form, (image, name) pairs per pass.

The generalized protocol, its calibration and the presence figures score every name on its own
(``pipeline.model.scoring.name_logits``): one forward pass of the fusion module per (image,
name) pair, run ``pairs_per_pass`` pairs at a time. The module is coco128's default
(params.yaml ``fit_coco128``: d, layers, heads; random-init weights, the same FLOPs and bytes as
trained ones) on coco128-sized patch grids (17 x 23 DINOv2 ViT-S/14 tokens) and 80 names. Each
chunk size is timed at 1 and 2 threads (the median of repeats, sizes interleaved); its logits
are compared, bit for bit, with those of 64 pairs per pass.

Run: ``python -m bench.alone_pass [--quick]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from bench.common import Table, median
from pipeline.model.fusion import FusionConfig, FusionModel
from pipeline.model.scoring import DEFAULT_PAIRS_PER_PASS, name_logits

GRID = (17, 23)  # coco128's patch grid at the store's resolution (DINOv2 ViT-S/14)
VISUAL_DIM = TEXT_DIM = 384
NAMES = 80
CHUNKS = (64, 32, 16, 8)


def coco128_model() -> FusionModel:
    """A random-init fusion module of params.yaml's coco128 size."""
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    fit = params["fit_coco128"]
    torch.manual_seed(0)
    return FusionModel(FusionConfig(visual_dim=VISUAL_DIM, text_dim=TEXT_DIM, dim=fit["dim"],
                                    layers=fit["layers"], heads=fit["heads"])).eval()


def run(quick: bool = False) -> list[Table]:
    """ms per (image, name) pair by chunk size and thread count."""
    model = coco128_model()
    images, repeats = (2, 2) if quick else (4, 3)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(images, *GRID, VISUAL_DIM, generator=generator)
    text = torch.randn(NAMES, TEXT_DIM, generator=generator)
    table = Table(f"Alone form: {images} images x {NAMES} names, d={model.config.dim}, "
                  f"{model.config.layers} layers",
                  ["pairs per pass", "threads", "ms per pair", "vs 64 pairs", "logits vs 64"])
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            times: dict[int, list[float]] = {chunk: [] for chunk in CHUNKS}
            logits: dict[int, torch.Tensor] = {}
            for _ in range(repeats):
                for chunk in CHUNKS:
                    started = time.perf_counter()
                    logits[chunk] = name_logits(model, tokens, text, "alone", chunk)
                    times[chunk].append((time.perf_counter() - started) / (images * NAMES))
            same = {chunk: torch.equal(logits[chunk], logits[CHUNKS[0]]) for chunk in CHUNKS}
            base = median(times[CHUNKS[0]])
            for chunk in CHUNKS:
                label = f"{chunk} (default)" if chunk == DEFAULT_PAIRS_PER_PASS else str(chunk)
                table.add(label, threads, round(1000 * median(times[chunk]), 1),
                          round(base / median(times[chunk]), 2),
                          "identical" if same[chunk] else "differs")
    finally:
        torch.set_num_threads(before)
    table.notes.append("Smaller chunks keep each pass's decoder maps (16 channels at 8x the "
                       "patch grid, per pair) in the CPU's caches.")
    return [table]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    for result in run(parser.parse_args().quick):
        print(result.render(), end="\n\n")
