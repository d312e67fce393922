"""Visual extraction as a dask.distributed job: one task per block of store shards.

The client creates (or resumes) the store, submits one task per contiguous block of pending
shards, and is the only writer of the ``shard_done`` flags and of the root attributes. Each task
builds the encoder once per worker process (cached), opens the store itself (never shipped open)
and writes the arrays of its own shards only - every array's chunks/shards are aligned to the
store's shards, so no two writers ever touch one file. A task that raises is re-run by dask
(``retries``); a task on a worker that dies is re-scheduled by dask itself. The store is marked
complete after the last block is done. Batches are shard-aligned (``encode_shards``), as in the
single-process path, so the features are identical bit for bit on the same hardware.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from pipeline.data.base import SegmentationDataset
from pipeline.data.views import ViewRecipe
from pipeline.encoders.visual import VisualEncoder
from pipeline.errors import FusionerError
from pipeline.extract import begin_extraction, encode_shards, finish_report
from pipeline.store.layout import identity
from pipeline.store.location import RemoteLocation, StoreLocation
from pipeline.store.lock import store_lock
from pipeline.store.visual import DEFAULT_SHARD_IMAGES, VisualStoreWriter
from pipeline.train.distributed import cpu_cores

log = logging.getLogger(__name__)

_ENCODERS: dict[tuple[Any, ...], VisualEncoder] = {}  # per worker process
_ENCODERS_LOCK = threading.Lock()


@dataclass(frozen=True)
class EncoderRecipe:
    """How a worker rebuilds the client's encoder (weights are read from a path, never shipped)."""

    name: str
    weights: str | None
    random_init: bool
    image_size: tuple[int, int]
    provenance: dict[str, Any] = field(hash=False, compare=False)

    @classmethod
    def of(cls, encoder: VisualEncoder) -> EncoderRecipe:
        weights = None if encoder.weights_path is None else str(encoder.weights_path)
        return cls(encoder.slug, weights, encoder.random_init, tuple(encoder.image_size),
                   encoder.provenance())

    def build(self, device: str) -> VisualEncoder:
        """The encoder on ``device``, built once per process; refuses other weights than the
        client's (e.g. another file at the same path on this machine)."""
        from pipeline.encoders import create_visual_encoder

        key = (self.name, self.weights, self.random_init, self.image_size, device)
        with _ENCODERS_LOCK:
            if key not in _ENCODERS:
                encoder = create_visual_encoder(self.name, self.weights, self.random_init,
                                                self.image_size)
                found = encoder.provenance()
                if identity(found) != identity(self.provenance):
                    sha = "weights_sha256"
                    raise FusionerError(
                        f"worker built {self.name} with other weights/settings than the client "
                        f"({found.get(sha)} != {self.provenance.get(sha)}); "
                        "give every machine the same weights file"
                    )
                _ENCODERS[key] = encoder.to(device).eval()
            return _ENCODERS[key]


@dataclass(frozen=True)
class BlockJob:
    """What every task shares: the store, the encoder recipe and the batching settings."""

    store: str | RemoteLocation  # a resolved local path, or a URL with its storage options
    encoder: EncoderRecipe
    batch_size: int
    device: str
    skip_bad: bool
    torch_threads: int | None
    views: ViewRecipe | None = None


@dataclass(frozen=True)
class BlockResult:
    """What a task reports back to the client (which marks the shards done)."""

    shards: list[int]
    images: int
    skipped: dict[str, str]
    forward_seconds: float


def encode_block(job: BlockJob, dataset: SegmentationDataset, shards: list[int]) -> BlockResult:
    """Task body: encode the images of ``shards`` and write their arrays (not their done flags)."""
    torch.set_num_threads(job.torch_threads or _default_threads())
    device = job.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = job.encoder.build(device)
    writer = VisualStoreWriter.reopen(job.store)
    ranges = [(shard, writer.shard_range(shard)) for shard in shards]
    skipped: dict[str, str] = {}
    forward_seconds = 0.0
    for encoded in encode_shards(dataset, encoder, ranges, job.batch_size, device, 0,
                                 job.skip_bad, views=job.views):
        writer.write_shard_data(*encoded.write_args())
        skipped.update(encoded.skipped)
        forward_seconds += encoded.forward_seconds
    return BlockResult(list(shards), sum(len(r) for _, r in ranges), skipped, forward_seconds)


def _default_threads() -> int:
    """This worker's share of the machine's cores (one per concurrent task slot)."""
    from distributed import get_worker

    return max(1, cpu_cores() // max(1, get_worker().state.nthreads))


def _provide(dataset: SegmentationDataset) -> SegmentationDataset:
    """Identity task: the dataset enters the graph once (and is recomputed if its worker dies)."""
    return dataset


def shard_blocks(shards: list[int], shards_per_task: int) -> list[list[int]]:
    """Split pending shards into contiguous blocks of at most ``shards_per_task``."""
    blocks: list[list[int]] = []
    for shard in shards:
        if blocks and len(blocks[-1]) < shards_per_task and blocks[-1][-1] == shard - 1:
            blocks[-1].append(shard)
        else:
            blocks.append([shard])
    return blocks


def extract_visual_distributed(
    client: Any,
    dataset: SegmentationDataset,
    encoder: VisualEncoder,
    store_path: StoreLocation,
    batch_size: int = 16,
    device: str = "auto",
    shard_images: int = DEFAULT_SHARD_IMAGES,
    shards_per_task: int = 1,
    overwrite: bool = False,
    skip_bad: bool = False,
    retries: int = 2,
    torch_threads: int | None = None,
    views: ViewRecipe | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fill (or finish) the visual store of ``dataset`` on the dask cluster of ``client``.

    Same store and report as ``extract_visual``. ``store_path``, the dataset's files and the
    weights must be reachable under the same paths from every worker (a shared filesystem, or
    an object-store URL: its storage options travel with the tasks).
    ``device`` is resolved on each worker (``auto``: its GPU if any). ``torch_threads`` per task
    defaults to the worker's cores divided by its task slots. ``views``: as in
    ``extract_visual`` (each view is a pure function of the recipe and image, not of the worker).
    """
    from distributed import as_completed

    with store_lock(store_path):  # the client writes flags and attributes: it holds the lock
        writer, report = begin_extraction(dataset, encoder, store_path, shard_images,
                                          overwrite, views, batch_size)
        if writer.complete:
            return report
        blocks = shard_blocks(writer.pending_shards(), shards_per_task)
        count = sum(len(writer.shard_range(s)) for block in blocks for s in block)
        log.info("extracting %d images (%d tasks) of %s/%s with %s into %s on %s", count,
                 len(blocks), dataset.name, dataset.split, encoder.slug, store_path,
                 client.scheduler.address)
        store = store_path if isinstance(store_path, RemoteLocation) else str(
            Path(store_path).resolve())
        job = BlockJob(store, EncoderRecipe.of(encoder), batch_size, device, skip_bad,
                       torch_threads, views)
        run = uuid.uuid4().hex[:8]
        data = client.submit(_provide, dataset, key=f"fusioner-dataset-{run}")
        futures = [
            client.submit(encode_block, job, data, block, retries=retries,
                          key=f"fusioner-encode-{run}-{block[0]:06d}")
            for block in blocks
        ]
        started, forward_seconds = time.perf_counter(), 0.0
        try:
            with tqdm(total=count, unit="img", desc=f"extract {encoder.slug} (dask)",
                      disable=not progress) as bar:
                for _, result in as_completed(futures, with_results=True):
                    writer.mark_done(result.shards)
                    forward_seconds += result.forward_seconds
                    bar.update(result.images)
                    if result.skipped:
                        report["skipped"].update(result.skipped)
                        writer.group.attrs["skipped"] = report["skipped"]
        finally:
            client.cancel([*futures, data])
        writer.finalize()
        finish_report(report, count, time.perf_counter() - started, forward_seconds)
    return report


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A client of the cluster at ``scheduler`` (address or scheduler JSON file), or of a
    ``LocalCluster`` of ``workers`` single-threaded processes on this machine."""
    from distributed import Client, LocalCluster

    if scheduler:
        target = {"scheduler_file": scheduler} if Path(scheduler).is_file() else {
            "address": scheduler}
        with Client(**target) as client:
            yield client
        return
    if not workers or workers < 1:
        raise FusionerError("give --scheduler ADDRESS or --workers N (N >= 1)")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        log.info("started a LocalCluster of %d workers at %s (dashboard %s)", workers,
                 cluster.scheduler_address, client.dashboard_link)
        yield client


def local_torch_threads(workers: int) -> int:
    """Torch threads per task when ``workers`` single-threaded workers share this machine."""
    return max(1, cpu_cores() // workers)

