"""One training epoch and one seen-class validation pass over episode batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import Tensor, nn
from tqdm import tqdm

from pipeline.metrics import IoUAccumulator
from pipeline.model.loss import (
    MaskTargets,
    VocabularyTargets,
    mask_bce_terms,
    mask_dice_terms,
    predicted_classes,
    resize_labels,
)
from pipeline.train.distributed import Runtime, all_sum, global_mean
from pipeline.train.episodes import episode_text
from pipeline.train.schedule import set_schedule


@dataclass(frozen=True)
class Objective:
    """What a training step minimises: BCE + ``dice_weight`` x Dice, on text embeddings with
    Gaussian noise of relative size ``text_noise`` (training only; 0 = none).

    ``softmax`` (vocabulary episodes): the per-pixel softmax cross-entropy over [background,
    the episode's names] instead of BCE (``VocabularyTargets``; ``background`` = the dataset's
    background id, None if it has none), Dice then on the softmax probabilities.
    """

    dice_weight: float = 0.0
    text_noise: float = 0.0
    softmax: bool = False
    background: int | None = None

    def text(self, embeddings: Tensor, training: bool) -> Tensor:
        """``embeddings`` (B, K, D) plus noise of norm ~ ``text_noise`` x each row's norm."""
        if not training or self.text_noise <= 0:
            return embeddings
        norm = embeddings.norm(dim=-1, keepdim=True)
        scale = norm * self.text_noise / embeddings.shape[-1] ** 0.5
        return embeddings + torch.randn_like(embeddings) * scale


@dataclass
class EpochStats:
    """Loss and seen-class IoU of one pass (summed over ranks)."""

    loss: float
    miou: float
    images: int
    seconds: float
    step_losses: list[float] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def run_batch(model: nn.Module, batch: dict[str, Tensor], text_table: Tensor,
              runtime: Runtime, objective: Objective = Objective(),
              training: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, predicted class map, label) at the decoder's output resolution."""
    device = runtime.device
    class_ids = batch["class_ids"].to(device, non_blocking=True)
    text_mask = batch["text_mask"].to(device, non_blocking=True)
    tokens = batch["patch_tokens"].to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=runtime.autocast):
        text = objective.text(episode_text(text_table, class_ids), training)
        logits = model(tokens, text, text_mask)
    logits = logits.float()
    label = resize_labels(batch["label"].to(device, non_blocking=True), tuple(logits.shape[-2:]))
    if objective.softmax:
        vocabulary = VocabularyTargets.of(logits, label, class_ids, text_mask,
                                          objective.background)
        loss = global_mean(*vocabulary.cross_entropy_terms(logits), runtime)
        dice_terms = vocabulary.dice_terms
    else:
        targets = MaskTargets.of(logits, label, class_ids, text_mask)
        loss = global_mean(*mask_bce_terms(logits, targets), runtime)
        dice_terms = partial(mask_dice_terms, targets=targets)
    if objective.dice_weight:
        loss = loss + objective.dice_weight * global_mean(*dice_terms(logits), runtime)
    return loss, predicted_classes(logits.detach(), class_ids, text_mask), label


class _Tally:
    """Running loss and IoU confusion of a pass, reduced over ranks at the end."""

    def __init__(self, class_ids: Iterable[int]) -> None:
        self.iou = IoUAccumulator(tuple(class_ids))
        self.loss_sum = 0.0
        self.images = 0

    def add(self, loss: Tensor, pred: Tensor, label: Tensor) -> None:
        n = label.shape[0]
        self.loss_sum += float(loss) * n
        self.images += n
        self.iou.update(pred.cpu().numpy(), label.cpu().numpy())

    def finish(self, runtime: Runtime, started: float, steps: list[float]) -> EpochStats:
        totals = all_sum(torch.tensor([self.loss_sum, float(self.images)], dtype=torch.float64),
                         runtime)
        self.iou.confusion = all_sum(torch.from_numpy(self.iou.confusion), runtime).numpy()
        images = int(totals[1])
        return EpochStats(float(totals[0]) / max(images, 1), self.iou.result().miou, images,
                          time.perf_counter() - started, steps)


def train_epoch(model: nn.Module, loader: Iterable[dict[str, Tensor]],
                optimizer: torch.optim.Optimizer, text_table: Tensor, seen: Iterable[int],
                runtime: Runtime, first_step: int,
                schedule: Callable[[int], tuple[float, float]], desc: str = "train",
                progress: bool = True, objective: Objective = Objective()) -> EpochStats:
    """One pass with per-step lr/wd from ``schedule(step) -> (lr, wd)``."""
    model.train()
    tally, steps, started = _Tally(seen), [], time.perf_counter()
    bar = tqdm(loader, desc=desc, unit="step", leave=False, disable=not progress)
    for step, batch in enumerate(bar, start=first_step):
        set_schedule(optimizer, *schedule(step))
        loss, pred, label = run_batch(model, batch, text_table, runtime, objective, True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps.append(loss.item())
        tally.add(loss.detach(), pred, label)
        bar.set_postfix(loss=f"{steps[-1]:.4f}")
    return tally.finish(runtime, started, steps)


@torch.no_grad()
def validate(model: nn.Module, loader: Iterable[dict[str, Tensor]], text_table: Tensor,
             seen: Iterable[int], runtime: Runtime, progress: bool = True,
             objective: Objective = Objective()) -> EpochStats:
    """Seen-class loss and mIoU over validation episodes (multi-class argmax per image)."""
    model.eval()
    tally, started = _Tally(seen), time.perf_counter()
    for batch in tqdm(loader, desc="val", unit="step", leave=False, disable=not progress):
        tally.add(*run_batch(model, batch, text_table, runtime, objective))
    return tally.finish(runtime, started, [])
