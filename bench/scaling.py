"""Benchmark 5: how fit time per epoch and store size grow with the dataset size (x1, x2, x4)
and with the number of classes per episode.

Dataset size: stores of the first N CamVid train images (written from one extraction with the
pipeline's writer), each trained for one epoch by ``pipeline.train.fit`` (the code behind
``fusioner-fit``). Classes per episode: the real episode rules (``present`` vs ``all`` seen
classes) through ``fit``, then a sweep of K class slots per image through ``train_epoch`` on the
same cached tokens (slots beyond the dataset's classes are all-negative masks: same cost).

Run: ``python -m bench.scaling [--quick]``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

import torch

from bench.common import (
    BENCH_CACHE,
    DATASET,
    MB,
    TEXT,
    VISUAL,
    Table,
    dir_bytes,
    ensure_stores,
    median,
    rewrite_store,
    spread,
    timed,
    train_store,
)
from pipeline.model import build_model
from pipeline.store import CachedFeatureDataset, text_store_path
from pipeline.train import FitConfig, fit
from pipeline.train.distributed import Runtime
from pipeline.train.loop import train_epoch
from pipeline.train.schedule import param_groups

K_SWEEP = (1, 2, 4, 8, 16, 32, 64)


def sized_cache(source_cache: Path, n_images: int, work: Path) -> Path:
    """A cache dir with the first ``n_images`` of the source store and its text store."""
    cache_dir = work / f"n{n_images}"
    rewrite_store(train_store(source_cache), train_store(cache_dir), range(n_images))
    text = text_store_path(source_cache, TEXT, DATASET)
    shutil.copytree(text, text_store_path(cache_dir, TEXT, DATASET), dirs_exist_ok=True)
    return cache_dir


def fit_epoch(cache_dir: Path, out: Path, episode: str = "present") -> tuple[float, int]:
    """(epoch seconds, episodes) of one ``fit`` epoch (no validation)."""
    config = FitConfig(visual=VISUAL, text=TEXT, cache_dir=cache_dir, val_split=None, epochs=1,
                       out=out, device="cpu", progress=False, episode=episode)
    record = fit(config)["history"][0]
    return float(record["seconds"]), round(record["images_per_s"] * record["seconds"])


def size_table(sizes: tuple[int, ...], work: Path, repeats: int) -> tuple[Table, Path]:
    source = ensure_stores(max(sizes))
    caches = {n: sized_cache(source, n, work) for n in sizes}
    runs: dict[int, list[float]] = {n: [] for n in sizes}
    episodes = {}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(repeats):
            for n in sizes:
                seconds, episodes[n] = fit_epoch(caches[n], Path(out))
                runs[n].append(seconds)
    base = sizes[0]
    table = Table(f"Scaling with dataset size (fit epoch, batch 8, {VISUAL} store)",
                  ["images", "x", "episodes", "epoch s", "s / x1", "store MB", "MB / x1"],
                  notes=[f"epoch s: median [min-max] of {repeats}; store = visual store on "
                         "disk (default codec)"])
    for n in sizes:
        table.add(n, n // base, episodes[n], spread(runs[n]), median(runs[n]) / median(runs[base]),
                  dir_bytes(train_store(caches[n])) / MB,
                  dir_bytes(train_store(caches[n])) / dir_bytes(train_store(caches[base])))
    return table, caches[base]


def episode_rule_table(cache_dir: Path, repeats: int) -> Table:
    table = Table("Classes per episode: the episode rule (fit epoch)",
                  ["episode rule", "epoch s", "vs present"],
                  notes=["present: the seen classes in the image (paper); all: every seen class "
                         "(8 on CamVid fold 0)"])
    runs: dict[str, list[float]] = {"present": [], "all": []}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(repeats):
            for rule in runs:
                runs[rule].append(fit_epoch(cache_dir, Path(out), rule)[0])
    for rule, seconds in runs.items():
        table.add(rule, spread(seconds), median(seconds) / median(runs["present"]))
    return table


def k_sweep_table(cache_dir: Path, ks: tuple[int, ...], repeats: int, batches: int = 3,
                  batch_size: int = 8) -> Table:
    """Train-step time vs K class slots per image (same tokens, same model)."""
    features = CachedFeatureDataset(train_store(cache_dir))
    items = [features[i % len(features)] for i in range(batches * batch_size)]
    config = FitConfig(visual=VISUAL, text=TEXT)
    torch.manual_seed(0)
    text_dim = 384
    table_rows = torch.nn.functional.normalize(torch.randn(max(ks), text_dim), dim=-1)
    model = build_model(config.model_config(int(features.attrs["feature_dim"]), text_dim))
    runtime = Runtime(torch.device("cpu"))
    result = Table(f"Classes per episode: train step time vs K ({batches} batches of "
                   f"{batch_size}, default fusion model)", ["K", "ms / image", "vs K=1"])
    base = 0.0
    for k in ks:
        loader = []
        for b in range(batches):
            chunk = items[b * batch_size:(b + 1) * batch_size]
            ids = torch.arange(k).expand(len(chunk), k)
            loader.append({"patch_tokens": torch.stack([i["patch_tokens"] for i in chunk]),
                           "label": torch.stack([i["label"] for i in chunk]),
                           "class_ids": ids.clone(), "text_mask": torch.ones(len(chunk), k,
                                                                             dtype=torch.bool)})
        optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4)
        seconds = median(timed(lambda ld=loader, opt=optimizer, k=k: train_epoch(
            model, ld, opt, table_rows, range(k), runtime, 0, lambda _: (1e-4, 0.01),
            progress=False), repeats))
        per_image = seconds / (batches * batch_size) * 1e3
        base = base or per_image
        result.add(k, per_image, per_image / base)
    return result


def run(quick: bool = False, work: Path = BENCH_CACHE / "scaling") -> list[Table]:
    logging.getLogger("fusioner.fit").setLevel(logging.WARNING)
    sizes, repeats = ((16, 32, 64), 1) if quick else ((32, 64, 128), 2)
    shutil.rmtree(work, ignore_errors=True)
    table, smallest = size_table(sizes, work, repeats)
    ks = K_SWEEP[::2] if quick else K_SWEEP
    return [table, episode_rule_table(smallest, repeats), k_sweep_table(smallest, ks, repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    for table in run(parser.parse_args().quick):
        print(table.render(), end="\n\n")


if __name__ == "__main__":
    main()
