"""Benchmark 4: store bytes per image per encoder (raw f16 vs on disk), and peak RSS of the stages.

Bytes: each visual encoder (random-init weights) is run over the same CamVid images into a
fresh store with the default codec, as one full shard; per-array bytes on disk / images vs the
raw f16 bytes (a store's last, partial shard adds its padding on top: see ``StoreCodec``).
Random-init features compress a little differently from trained ones; re-run with real weights
(``$FUSIONER_WEIGHTS``) for the final figures.

Peak RSS: the real CLIs (``fusioner-extract``, ``fusioner-fit``, ``fusioner-evaluate`` when it
exists) in a child process each, on a CamVid subset; RSS = the largest single process of the
command's tree (``os.wait4``), DataLoader workers included as their own processes.

Run: ``python -m bench.storage [--quick]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import zarr

from bench.common import (
    BENCH_CACHE,
    MB,
    TEXT,
    VISUAL,
    Table,
    camvid_subset,
    camvid_subset_dir,
    dir_bytes,
    run_peak_rss,
)
from pipeline.encoders import create_visual_encoder
from pipeline.extract import extract_visual
from pipeline.store.layout import ITEM_ARRAYS
from pipeline.store.visual import StoreCodec

ENCODERS = ("dino_vits16", "dinov2_vits14", "dino_vitb16", "clip_vitb16")
CAMVID_IMAGES = 367 + 101  # train + val: what a full CamVid cache holds per encoder


def bytes_table(n_images: int, encoders: tuple[str, ...], work: Path) -> Table:
    codec = StoreCodec()
    table = Table(
        f"Store bytes per image ({n_images} CamVid images, default codec {codec.label()}, "
        "random-init weights)",
        ["encoder", "grid x C", "patch_tokens raw kB", "on disk kB", "ratio",
         "labels raw kB", "on disk kB ", "whole store kB/img", "full CamVid MB"])
    dataset = camvid_subset(n_images)
    for name in encoders:
        encoder = create_visual_encoder(name, random_init=True)
        store = work / f"{name}.zarr"
        # one full shard: per-image bytes without the padding of a partial last chunk
        extract_visual(dataset, encoder, store, overwrite=True, shard_images=n_images)
        group = zarr.open_group(str(store), mode="r")
        raw = {a: np.prod(group[a].shape[1:]) * group[a].dtype.itemsize for a in ITEM_ARRAYS}
        disk = {a: dir_bytes(store / a) / n_images for a in ITEM_ARRAYS}
        per_image = dir_bytes(store) / n_images
        h, w = encoder.grid_size
        table.add(name, f"{h}x{w}x{encoder.feature_dim}", raw["patch_tokens"] / 1e3,
                  disk["patch_tokens"] / 1e3, raw["patch_tokens"] / disk["patch_tokens"],
                  raw["labels"] / 1e3, disk["labels"] / 1e3, per_image / 1e3,
                  per_image * CAMVID_IMAGES / MB)
    return table


def rss_table(n_images: int, work: Path) -> Table:
    """Peak RSS of each stage's CLI on the first ``n_images`` CamVid train images."""
    data = camvid_subset_dir(n_images)
    cache = work / "cache"
    bin_dir = Path(sys.executable).parent
    commands = {
        "fusioner-extract (workers 0)": [
            "fusioner-extract", "--backbone", VISUAL, "--text-encoder", TEXT, "--random-init",
            "--split", "train", "--data-root", str(data), "--cache-dir", str(cache),
            "--device", "cpu", "--overwrite"],
        "fusioner-extract (workers 2)": [
            "fusioner-extract", "--backbone", VISUAL, "--random-init", "--split", "train",
            "--data-root", str(data), "--cache-dir", str(cache), "--device", "cpu",
            "--num-workers", "2", "--overwrite"],
        "fusioner-fit (1 epoch, workers 0)": [
            "fusioner-fit", "--visual", VISUAL, "--text", TEXT, "--cache-dir", str(cache),
            "--val-split", "", "--epochs", "1", "--out", str(work / "fit"), "--device", "cpu",
            "--no-progress"],
        "fusioner-fit (1 epoch, workers 2)": [
            "fusioner-fit", "--visual", VISUAL, "--text", TEXT, "--cache-dir", str(cache),
            "--val-split", "", "--epochs", "1", "--out", str(work / "fit"), "--device", "cpu",
            "--no-progress", "--num-workers", "2"],
        "fusioner-evaluate (train split, workers 0)": [
            "fusioner-evaluate", "--checkpoint", str(work / "fit" / "checkpoint.pt"),
            "--cache-dir", str(cache), "--split", "train", "--data-root", str(data),
            "--out-metrics", str(work / "metrics.json"), "--out-plots", str(work / "plots"),
            "--device", "cpu", "--no-progress"],
    }
    table = Table(f"Peak RSS per stage ({n_images} CamVid train images, {VISUAL}/{TEXT})",
                  ["command", "seconds", "peak RSS MB (largest process)",
                   "peak RSS MB (process tree)"],
                  notes=["largest process: kernel high-water mark (VmHWM); tree: the sum of "
                         "the command's processes (spawn DataLoader workers included), "
                         "sampled every 50 ms"])
    if importlib.util.find_spec("stages.evaluate") is None:
        del commands["fusioner-evaluate (train split, workers 0)"]
        table.notes.append("fusioner-evaluate: not measured (stages/evaluate.py not written yet)")
    for label, argv in commands.items():
        seconds, largest, tree = run_peak_rss([str(bin_dir / argv[0]), *argv[1:]])
        table.add(label, seconds, largest / MB, tree / MB)
    return table


def run(quick: bool = False, work: Path = BENCH_CACHE / "storage") -> list[Table]:
    logging.getLogger("pipeline.extract").setLevel(logging.WARNING)
    shutil.rmtree(work, ignore_errors=True)
    encoders = ENCODERS[:2] if quick else ENCODERS
    tables = [bytes_table(4 if quick else 8, encoders, work), rss_table(32 if quick else 64, work)]
    shutil.rmtree(work, ignore_errors=True)
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and encoders")
    for table in run(parser.parse_args().quick):
        print(table.render(), end="\n\n")


if __name__ == "__main__":
    main()
