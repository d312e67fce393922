"""``fit``: train the fusion module from cached stores only, resumably, on CPU, GPU or torchrun.

Outputs under ``config.out`` (rank 0 only, each rewritten whole):
- ``checkpoint.pt``: final weights + meta (``pipeline.model.load_fusion_checkpoint``), with
  ``meta["calibration"]`` (``calibrate``, default): the generalized protocol's gamma, chosen on
  the train store's plain images in the form the model was trained in
  (``pipeline.model.calibration``);
- ``last.pt``: training state after the latest epoch (``--resume`` continues from it);
- ``train_log.json``: one record per epoch (``dvc plots``): epoch, loss, train_miou,
  val_loss/val_seen_miou (if a validation store exists, on the epochs ``val_every`` picks: every
  N-th and the last), lr, images_per_s, seconds;
- ``train_metrics.json``: the last epoch's record plus ``first_train_miou`` (``dvc metrics``).

Augmented views: with a train store holding views, each epoch reads one view of every image,
chosen per store shard from (``seed``, epoch, shard) (``pipeline.train.views``); validation reads
view 0.

Determinism: the model is initialised from ``seed``; every epoch reseeds torch from
(seed, epoch, rank) and shuffles with the sampler's ``set_epoch`` (block-shuffled shards,
``pipeline.store.blocks``, or images), so a resumed run
repeats the uninterrupted one exactly on CPU. Checkpoints are per epoch (no mid-epoch resume).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from pipeline.model.calibration import calibrate_on_store
from pipeline.model.checkpoint import save_fusion_checkpoint
from pipeline.model.fusion import build_model
from pipeline.model.scoring import VOCABULARY_EPISODE, trained_form
from pipeline.store import loader_kwargs
from pipeline.store.blocks import BlockShuffleSampler
from pipeline.train.checkpoint import load_training_state, save_training_state
from pipeline.train.config import FitConfig
from pipeline.train.distributed import Runtime, setup_runtime, teardown
from pipeline.train.episodes import EpisodeDataset, collate_episodes
from pipeline.train.inputs import open_inputs
from pipeline.train.loop import EpochStats, Objective, train_epoch, validate
from pipeline.train.schedule import param_groups, warmup_cosine
from pipeline.train.views import ViewSampler

log = logging.getLogger("fusioner.fit")


def fit(config: FitConfig) -> dict[str, Any]:
    """Train; returns ``{"history": per-epoch records, "step_losses": this call's losses}``."""
    runtime = setup_runtime(config.device)
    try:
        return _fit(config, runtime)
    finally:
        teardown(runtime)


def make_loader(dataset: EpisodeDataset, batch_size: int, runtime: Runtime, seed: int,
                shuffle: bool, num_workers: int, block_mix: int = 0,
                views: int = 0) -> DataLoader:
    """Batches of episodes; the sampler shards them over ranks (one rank: all of them).

    ``shuffle`` with ``block_mix`` > 0: block-shuffled order (``BlockShuffleSampler``), for a
    dataset whose store reader caches ``block_mix`` shards; else image-level shuffling.
    ``views`` > 0: each epoch reads one of views 0..``views`` of every image (``ViewSampler``,
    which also hands the epoch to the episodes, for their per-epoch draws).
    """
    sampler: Sampler
    if shuffle and block_mix > 0:
        sampler = BlockShuffleSampler(dataset.blocks(), block_mix, seed, runtime.rank,
                                      runtime.world_size)
    else:
        sampler = DistributedSampler(dataset, num_replicas=runtime.world_size,
                                     rank=runtime.rank, shuffle=shuffle, seed=seed)
    if views > 0 or dataset.needs_epoch:
        sampler = ViewSampler(sampler, dataset.blocks(), views, seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                      collate_fn=collate_episodes, pin_memory=runtime.device.type == "cuda",
                      **loader_kwargs(num_workers))


def _fit(config: FitConfig, runtime: Runtime) -> dict[str, Any]:
    inputs = open_inputs(config)
    torch.manual_seed(config.seed)
    model = build_model(config.model_config(inputs.visual_dim, inputs.text_dim)).to(runtime.device)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr,
                                  betas=(0.9, 0.999))
    meta = {"model_config": model.config.to_dict(), **inputs.provenance_meta(),
            "train": config.record()}
    out = Path(config.out)
    start_epoch, step, history = 0, 0, []
    if config.resume and (out / "last.pt").exists():
        state = load_training_state(out / "last.pt", meta, model, optimizer)
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        log.info("resuming %s after epoch %d (step %d)", out / "last.pt", start_epoch, step)
    elif config.resume:
        log.info("no %s yet: starting from scratch", out / "last.pt")
    net = DistributedDataParallel(model) if runtime.distributed else model
    train_loader = make_loader(inputs.train, config.batch_size, runtime, config.seed, True,
                               config.num_workers, config.block_mix, inputs.views)
    val_loader = None if inputs.val is None else make_loader(
        inputs.val, config.batch_size, runtime, config.seed, False, config.num_workers)
    table = inputs.text_table.to(runtime.device)
    total = len(train_loader) * config.epochs
    warmup = round(config.warmup_epochs * len(train_loader))
    wd_end = config.weight_decay if config.weight_decay_end is None else config.weight_decay_end

    def schedule(at: int) -> tuple[float, float]:
        return (warmup_cosine(at, total, warmup, config.lr, config.min_lr),
                warmup_cosine(at, total, 0, config.weight_decay, wd_end))

    if runtime.is_main:
        log.info("training %d episodes (%d steps/epoch) on %s x%d, %d parameters",
                 len(inputs.train), len(train_loader), runtime.device, runtime.world_size,
                 sum(p.numel() for p in model.parameters()))
    objective = Objective(config.dice_weight, config.text_noise,
                          config.episode == VOCABULARY_EPISODE, inputs.split.background)
    step_losses: list[float] = []
    show = config.progress and runtime.is_main
    for epoch in range(start_epoch, config.epochs):
        train_loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
        torch.manual_seed(config.seed * 1_000_003 + epoch * 1_009 + runtime.rank)
        stats = train_epoch(net, train_loader, optimizer, table, inputs.split.seen, runtime,
                            step, schedule, f"epoch {epoch + 1}/{config.epochs}", show, objective)
        step += len(train_loader)
        step_losses += stats.step_losses
        val = None
        if val_loader is not None and _validates(epoch, config.epochs, config.val_every):
            val = validate(net, val_loader, table, inputs.split.seen, runtime, show, objective)
        history.append(_record(epoch, stats, val, schedule(step - 1)[0]))
        if runtime.is_main:
            _log_epoch(history[-1], config.epochs)
            save_training_state(out / "last.pt", model, optimizer, meta, epoch + 1, step, history)
            _write_json(out / "train_log.json", history)
    if runtime.is_main:
        metrics = _summary(history)
        extra = {"calibration": calibrate_on_store(
            model, inputs.train.features, inputs.split, table, trained_form(meta),
            config.batch_size, show, config.calibration_images)} if config.calibrate else {}
        save_fusion_checkpoint(out / "checkpoint.pt", model, {**meta, "metrics": metrics, **extra})
        _write_json(out / "train_metrics.json", metrics)
    return {"history": history, "step_losses": step_losses}


def _validates(epoch: int, epochs: int, every: int) -> bool:
    """Validate after epoch index ``epoch`` (0-based): every ``every``-th epoch and the last."""
    return (epoch + 1) % every == 0 or epoch + 1 == epochs


def _record(epoch: int, stats: EpochStats, val: EpochStats | None, lr: float) -> dict[str, Any]:
    record = {"epoch": epoch + 1, "loss": stats.loss, "train_miou": stats.miou, "lr": lr,
              "images_per_s": stats.images_per_s, "seconds": stats.seconds}
    if val is not None:
        record.update(val_loss=val.loss, val_seen_miou=val.miou)
    return record


def _log_epoch(record: dict[str, Any], epochs: int) -> None:
    val = (f", val loss {record['val_loss']:.4f} val seen mIoU {record['val_seen_miou']:.3f}"
           if "val_loss" in record else "")
    log.info("epoch %d/%d: loss %.4f, train seen mIoU %.3f%s, %.1f images/s (%.1fs)",
             record["epoch"], epochs, record["loss"], record["train_miou"], val,
             record["images_per_s"], record["seconds"])


def _summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    if not history:
        return {}
    return {**history[-1], "first_train_miou": history[0]["train_miou"],
            "total_seconds": sum(r["seconds"] for r in history)}


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(value), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


def _finite(value: Any) -> Any:
    """NaN (a metric without any class to score) -> null: strict JSON for DVC."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
