"""Benchmark 10: the ``alone`` forward-pass form, (image, name) pairs per pass.

The generalized protocol, its calibration and the presence figures score every name on its own
(``pipeline.model.scoring.name_logits``): one forward pass of the fusion module per (image,
name) pair, run ``pairs_per_pass`` pairs at a time. The module is coco128's default
(params.yaml ``fit_coco128``: d, layers, heads; random-init weights, the same FLOPs and bytes as
trained ones) on coco128-sized patch grids (17 x 23 DINOv2 ViT-S/14 tokens) and 80 names. Each
chunk size is timed at 1 and 2 threads (the median of repeats, sizes interleaved); its logits
are compared, bit for bit, with those of 64 pairs per pass. A second table counts one pair's
floating-point operations (``torch.utils.flop_counter``; attention by hand, which the counter
does not see on CPU): where a pass's arithmetic goes, and how much of it does not depend on the
name (what computing it once per image could save at most).

Run: ``python -m bench.alone_pass [--quick]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

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


def counted_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations ``fn`` runs, as ``FlopCounterMode`` counts them (no gradients)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def attention_flops(queries: int, keys: int, dim: int) -> int:
    """q k^T and (weights) v over all heads: 2 matrix products of queries x keys x dim, 2 FLOPs
    per multiply-add."""
    return 4 * queries * keys * dim


def pass_flops(model: FusionModel) -> Table:
    """One (image, name) pair's FLOPs by part, and the name-independent part."""
    cells, dim = GRID[0] * GRID[1], model.config.dim
    tokens, text = torch.zeros(1, *GRID, VISUAL_DIM), torch.zeros(1, 1, TEXT_DIM)
    tokens_in = cells + 1  # the patches and the one name
    attention = len(model.blocks) * attention_flops(tokens_in, tokens_in, dim)
    total = counted_flops(lambda: model(tokens, text)) + attention
    decoder = counted_flops(lambda: model.decoder.cosine_logits(
        torch.zeros(1, dim, *GRID), torch.zeros(1, 1, model.config.embed_dim)))
    independent = (counted_flops(lambda: model.visual_in(tokens.reshape(1, cells, -1)))
                   + counted_flops(lambda: model.blocks[0].attn.qkv(torch.zeros(1, cells, dim)))
                   + attention_flops(cells, cells, dim))
    table = Table(f"FLOPs of one (image, name) pair: {GRID[0]} x {GRID[1]} tokens, "
                  f"d={dim}, {len(model.blocks)} layers", ["part", "MFLOP", "share of the pass"])
    for part, flops in (("whole pass", total),
                        ("transformer (projections, blocks, attention)", total - decoder),
                        ("conv upsampler and cosine head", decoder),
                        ("name-independent: the patches' input projection, the first layer's "
                         "patch q/k/v and patch-to-patch attention", independent)):
        table.add(part, round(flops / 1e6, 1), round(flops / total, 3))
    table.notes.append("The first layer's patch-to-patch attention is reusable across names only "
                       "by adding the name's key to each softmax afterwards (a rank-1 update; "
                       "the logits then differ in their last bits); every later operation "
                       "depends on the name.")
    return table


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
    return [table, pass_flops(model)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    for result in run(parser.parse_args().quick):
        print(result.render(), end="\n\n")
