"""Shared benchmark helpers: timing (repeats + median), peak RSS, machine description, tables,
and the small CamVid stores every benchmark reads (extracted once with the pipeline's own code).

Stores are built with random-init encoder weights: the default pretrained weights are not
needed to time anything (same architecture = same FLOPs and bytes), but random-init features
compress a little differently from trained ones (see ``bench/RESULTS.md``).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
import yaml
import zarr

from pipeline.data import create_dataset
from pipeline.data.base import Sample, SegmentationDataset
from pipeline.encoders import create_text_encoder, create_visual_encoder
from pipeline.extract import extract_text, extract_visual
from pipeline.store import FORMAT_VERSION, text_store_path, visual_store_path
from pipeline.store.visual import DEFAULT_SHARD_IMAGES, StoreCodec, VisualStoreWriter

BENCH_CACHE = Path("cache/bench")  # git-ignored; stores here are reused between runs


def _pipeline_pair() -> tuple[str, str]:
    """The encoder pair ``dvc repro`` uses (params.yaml ``pair``): benchmarks time the default."""
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    pair = yaml.safe_load(params.read_text())["pair"]
    return pair["visual"], pair["text"]


VISUAL, TEXT = _pipeline_pair()
DATASET = "camvid"
MB = 1e6


@dataclass
class Table:
    """One result table: printed as Markdown so it can be pasted into ``RESULTS.md``."""

    title: str
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *row: Any) -> None:
        self.rows.append(list(row))

    def render(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.headers) + " |",
                 "|" + "---|" * len(self.headers)]
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines + ([""] + [f"- {n}" for n in self.notes] if self.notes else []))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - tick)
    return seconds


def device_name(device: str) -> str:
    """``CPU`` or the CUDA card's name, for table titles."""
    return torch.cuda.get_device_name() if device == "cuda" else "CPU"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> str:
    """``median [min-max]`` of a few timings, for the tables."""
    return f"{median(values):.3g} [{min(values):.3g}-{max(values):.3g}]"


def run_peak_rss(argv: Sequence[str], env: dict[str, str] | None = None,
                 interval: float = 0.05, log: Path | None = None) -> tuple[float, int, int]:
    """Run a command; (seconds, peak RSS of its largest process, peak RSS summed over its
    process tree), bytes. Sampled every ``interval`` s: per process the kernel's high-water
    mark (``VmHWM``, exact), for the tree the sum of current RSS (may miss a short spike).
    (``ru_maxrss`` of a child would include the parent's RSS at fork time.) Its stderr goes
    to a file (``log``, else a temporary one), never a pipe that a long log could fill.
    """
    tick = time.perf_counter()
    with open(log, "w+b") if log else tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(list(argv), env={**os.environ, **(env or {})},
                                stdout=subprocess.DEVNULL, stderr=errors)
        root = psutil.Process(proc.pid)
        largest = total = 0
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                total = max(total, sum(p.memory_info().rss for p in tree))
                largest = max(largest, *(_hwm(p.pid) for p in tree))
            except psutil.Error:
                pass  # a process ended between listing and reading
            time.sleep(interval)
        errors.seek(0)
        stderr = errors.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{stderr.decode()[-2000:]}")
    return time.perf_counter() - tick, largest, max(total, largest)


def _hwm(pid: int) -> int:
    """Peak RSS (``VmHWM``) of a live process, bytes; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                      .splitlines() if line.startswith("MemTotal"))
        ram = f"{mem_kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        ram = "unknown"
    return {
        "cpus (nproc)": str(os.cpu_count() if not hasattr(os, "sched_getaffinity")
                            else len(os.sched_getaffinity(0))),
        "cpu model": cpu,
        "ram": ram,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "torch": f"{torch.__version__} ({torch.get_num_threads()} threads)",
        "zarr / numpy": f"{zarr.__version__} / {np.__version__}",
    }


def machine_table() -> Table:
    table = Table("Machine", ["what", "value"])
    for key, value in machine().items():
        table.add(key, value)
    return table


class FirstImages(SegmentationDataset):
    """The first ``n`` samples of a dataset (same name and split, so stores look alike)."""

    def __init__(self, dataset: SegmentationDataset, n: int) -> None:
        if n > len(dataset):
            raise ValueError(f"{dataset.name}/{dataset.split} has {len(dataset)} images, not {n}")
        self.dataset, self.n = dataset, n
        self.name, self.split, self.class_names = dataset.name, dataset.split, dataset.class_names

    def __len__(self) -> int:
        return self.n

    def image_id(self, index: int) -> str:
        return self.dataset.image_id(index)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.dataset[index]


def camvid_subset(n: int, split: str = "train") -> FirstImages:
    return FirstImages(create_dataset(DATASET, split), n)


def camvid_subset_dir(n: int, root: Path = BENCH_CACHE) -> Path:
    """A CamVid-layout folder (symlinks) with the first ``n`` train images, for the CLIs."""
    source = FirstImages(create_dataset(DATASET, "train"), n)
    folder = root / f"camvid-n{n}"
    images, labels = folder / "train" / "images", folder / "train" / "labels"
    if not folder.exists():
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        camvid = Path(source.dataset.root)  # type: ignore[attr-defined]
        (folder / "classes.txt").symlink_to((camvid / "classes.txt").resolve())
        for i in range(n):
            stem = source.image_id(i)
            (images / f"{stem}.jpg").symlink_to((camvid / "train/images" / f"{stem}.jpg").resolve())
            (labels / f"{stem}.png").symlink_to((camvid / "train/labels" / f"{stem}.png").resolve())
    return folder


def ensure_stores(n_images: int, visual: str = VISUAL, text: str = TEXT,
                  root: Path = BENCH_CACHE) -> Path:
    """A cache dir holding the visual store of the first ``n_images`` CamVid train images and
    the CamVid text store; extracted once (a complete store is a no-op for the extractor)."""
    cache_dir = root / f"{visual.replace(':', '-')}-n{n_images}"
    store = visual_store_path(cache_dir, visual, DATASET, "train")
    if not _complete(store):
        encoder = create_visual_encoder(visual, random_init=True)
        extract_visual(camvid_subset(n_images), encoder, store, overwrite=_outdated(store))
    text_store = text_store_path(cache_dir, text, DATASET)
    if not _complete(text_store):
        names = create_dataset(DATASET, "train").class_names
        extract_text(names, create_text_encoder(text), text_store, DATASET)
    return cache_dir


def train_store(cache_dir: Path, visual: str = VISUAL) -> Path:
    return visual_store_path(cache_dir, visual, DATASET, "train")


def _complete(path: Path) -> bool:
    """A complete store of this format (an older one is extracted again)."""
    return (path.exists() and not _outdated(path)
            and zarr.open_group(str(path), mode="r").attrs.get("complete") is True)


def _outdated(path: Path) -> bool:
    return (path.exists() and zarr.open_group(str(path), mode="r").attrs.get("format_version")
            != FORMAT_VERSION)


def rewrite_store(src: Path, dst: Path, rows: Sequence[int], codec: StoreCodec | None = None,
                  shard_images: int = DEFAULT_SHARD_IMAGES) -> Path:
    """A new complete visual store holding ``rows`` of ``src`` (repeats allowed), written by the
    pipeline's own writer with another codec / shard size."""
    group = zarr.open_group(str(src), mode="r")
    attrs = {k: v for k, v in group.attrs.items() if k not in ("complete", "codec")}
    tokens = group["patch_tokens"]
    writer = VisualStoreWriter(dst, attrs, len(rows), tuple(tokens.shape[1:3]),
                               int(tokens.shape[3]), tuple(group["labels"].shape[1:]),
                               shard_images=shard_images, codec=codec or StoreCodec(),
                               overwrite=True)
    arrays = {k: np.asarray(group[k][:]) for k in ("patch_tokens", "cls_token", "labels",
                                                    "image_ids")}  # small stores: fine in RAM
    for shard in range(writer.num_shards):
        picked = np.asarray(rows)[list(writer.shard_range(shard))]
        ids = [str(i) for i in arrays["image_ids"][picked]]
        writer.write_shard_data(shard, arrays["patch_tokens"][picked],
                                arrays["cls_token"][picked], arrays["labels"][picked], ids)
        writer.mark_done([shard])
    writer.finalize()
    return dst


def dir_bytes(path: Path) -> int:
    """Bytes on disk of a file or every file under a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
