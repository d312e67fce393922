"""Mask losses on per-class logits, ignoring label 255 and padded class slots: per-pixel binary
cross-entropy, and optionally the soft Dice loss per class slot (MaskFormer's BCE + Dice).

BCE alone, with most pixels negative, keeps the probability of an uncertain class (a name never
trained on) below 0.5 almost everywhere; Dice scores each mask as a whole, so a queried class
gets a region of its own size.

Vocabulary episodes (``fusioner-fit --episode vocabulary``) instead ask every pixel which of the
names wins it: a softmax cross-entropy over [background, the K names] with the background logit
fixed at 0 (``VocabularyTargets``). A name then wins a pixel when its logit is above 0 and above
every other name's: exactly the generalized rule at sigmoid 0.5 (``pipeline.model.scoring``).
Dice, if asked, scores each non-empty name mask on the softmax probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.data.base import IGNORE_INDEX


def resize_labels(label: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest resize of (B, H, W) integer labels to ``size`` (e.g. the decoder output size)."""
    if tuple(label.shape[-2:]) == tuple(size):
        return label
    resized = F.interpolate(label[:, None].float(), size=tuple(size), mode="nearest")
    return resized[:, 0].to(label.dtype)


@dataclass(frozen=True)
class MaskTargets:
    """What both mask losses compare against, built once per batch: ``target`` (B, K, H, W) =
    label == slot's class id, in the logits' dtype; ``labelled`` (B, 1, H, W) bool = label !=
    255; ``slots`` (B, K) bool = real class slots (padding slots carry no loss)."""

    target: Tensor
    labelled: Tensor
    slots: Tensor

    @classmethod
    def of(cls, logits: Tensor, label: Tensor, class_ids: Tensor,
           text_mask: Tensor | None = None) -> MaskTargets:
        """Targets of logits (B, K, H, W) for label (B, H, W) class ids with 255 = ignore
        (resized to the logits' size if needed), class_ids (B, K) the class each slot asks for,
        text_mask (B, K) True = real slot. Ignored pixels are never targets (255 is no id)."""
        label = resize_labels(label, tuple(logits.shape[-2:]))
        target = (label[:, None] == class_ids[:, :, None, None]).to(logits.dtype)
        slots = (torch.ones(class_ids.shape, dtype=torch.bool, device=logits.device)
                 if text_mask is None else text_mask.bool())
        return cls(target, (label != IGNORE_INDEX)[:, None], slots)


def mask_bce_loss(logits: Tensor, label: Tensor, class_ids: Tensor,
                  text_mask: Tensor | None = None) -> Tensor:
    """Mean BCE over every (class slot, labelled pixel) pair (arguments as ``MaskTargets.of``)."""
    total, count = mask_bce_terms(logits, MaskTargets.of(logits, label, class_ids, text_mask))
    return total / count.clamp(min=1.0)


def mask_bce_terms(logits: Tensor, targets: MaskTargets) -> tuple[Tensor, Tensor]:
    """(BCE summed over the labelled (real class slot, pixel) pairs, their count): the two terms
    of ``mask_bce_loss``, kept apart so DDP can normalise by the count of the whole global batch."""
    valid = targets.labelled.expand_as(targets.target) & targets.slots[:, :, None, None]
    losses = F.binary_cross_entropy_with_logits(logits, targets.target, reduction="none")
    weights = valid.to(losses.dtype)
    return (losses * weights).sum(), weights.sum()


def mask_dice_terms(logits: Tensor, targets: MaskTargets,
                    smooth: float = 1.0) -> tuple[Tensor, Tensor]:
    """(soft Dice loss summed over the real class slots with a non-empty mask, their count),
    over labelled pixels.

    Per slot: ``1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)`` with p = sigmoid(logit),
    t = (label == class id); ignored pixels (255) count in neither sum. Slots whose mask is empty
    (an absent class, or one a crop cut out) get BCE only, as MaskFormer scores Dice on matched
    masks only: Dice on an empty mask punishes any pixel at all, teaching "mark nothing".
    """
    return dice_terms(logits.sigmoid(), targets, smooth)


def dice_terms(probs: Tensor, targets: MaskTargets, smooth: float = 1.0) -> tuple[Tensor, Tensor]:
    """``mask_dice_terms`` on given per-slot probabilities (B, K, H, W): sigmoid or softmax."""
    target = targets.target
    probs = probs * targets.labelled.to(probs.dtype)
    inter = (probs * target).flatten(2).sum(-1)
    target_sizes = target.flatten(2).sum(-1)
    losses = 1 - (2 * inter + smooth) / (probs.flatten(2).sum(-1) + target_sizes + smooth)
    slots = targets.slots.to(losses.dtype) * (target_sizes > 0).to(losses.dtype)
    return (losses * slots).sum(), slots.sum()


@dataclass(frozen=True)
class VocabularyTargets:
    """What a vocabulary episode's softmax compares against: ``index`` (B, H, W) int64 = 0 for a
    background pixel, 1 + slot for a pixel of that slot's class, -1 for a pixel the softmax does
    not score (255, or a class no slot asks for that is not the background, e.g. any pixel of
    no seen class on a dataset without a background); ``masks``: the slots' masks over the
    scored pixels (for Dice)."""

    index: Tensor
    masks: MaskTargets

    @classmethod
    def of(cls, logits: Tensor, label: Tensor, class_ids: Tensor, text_mask: Tensor | None,
           background: int | None) -> VocabularyTargets:
        """Arguments as ``MaskTargets.of``; ``background`` the dataset's background id (None:
        it has none)."""
        masks = MaskTargets.of(logits, label, class_ids, text_mask)
        label = resize_labels(label, tuple(logits.shape[-2:]))
        owned = masks.target * masks.slots[:, :, None, None].to(masks.target.dtype)
        named = owned.sum(1) > 0
        slot = owned.argmax(1) + 1
        is_background = (label == background) if background is not None else torch.zeros_like(
            named)
        index = torch.where(named, slot, torch.where(is_background, 0, -1))
        scored = (index >= 0)[:, None]
        return cls(index, MaskTargets(masks.target, scored, masks.slots))

    def cross_entropy_terms(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """(softmax cross-entropy over [background, slots] summed over the scored pixels, their
        count): kept apart, as ``mask_bce_terms``, for DDP's global-batch mean."""
        losses = F.cross_entropy(with_background(logits, self.masks.slots), self.index,
                                 ignore_index=-1, reduction="sum")
        return losses, (self.index >= 0).sum().to(losses.dtype)

    def dice_terms(self, logits: Tensor, smooth: float = 1.0) -> tuple[Tensor, Tensor]:
        """``mask_dice_terms`` on the slots' softmax probabilities (non-empty masks only)."""
        probs = with_background(logits, self.masks.slots).softmax(dim=1)[:, 1:]
        return dice_terms(probs, self.masks, smooth)


def with_background(logits: Tensor, slots: Tensor | None = None) -> Tensor:
    """(B, 1 + K, H, W): a background logit fixed at 0, then the K slots' logits (padding slots,
    ``slots`` False, at -inf: they never win and take no probability)."""
    if slots is not None:
        logits = logits.masked_fill(~slots[:, :, None, None].bool(), float("-inf"))
    return torch.cat([logits.new_zeros(logits[:, :1].shape), logits], dim=1)


def predicted_classes(logits: Tensor, class_ids: Tensor, text_mask: Tensor | None = None,
                      none: int = -1) -> Tensor:
    """(B, H, W) class id of the most probable slot, ``none`` where no slot reaches p >= 0.5."""
    if text_mask is not None:
        logits = logits.masked_fill(~text_mask[:, :, None, None].bool(), float("-inf"))
    best, slot = logits.max(dim=1)
    ids = torch.gather(class_ids, 1, slot.flatten(1)).view_as(slot)
    return torch.where(best >= 0, ids, torch.full_like(ids, none))
