"""Typed names competing with a vocabulary's other names (``fusioner-segment --vocabulary``).

A user's names are in the generalized setting: the name they type competes with everything else
in the picture. With a vocabulary (``pipeline.vocabularies``: COCO, LVIS, Objects365, Open
Images, or a names file), every pixel is scored against the typed names AND the vocabulary's
other names, by the generalized rule (``pipeline.model.scoring``): the names the checkpoint
trained on (its seen names, matched by ``match_key``) have their logits lowered by the
checkpoint's calibration ``gamma``; a pixel takes the name with the highest calibrated logit if
its calibrated probability exceeds the threshold (0.5), else no name. Pixels won by a name that
was not typed are "(none)", as are pixels no name wins. A typed name the vocabulary lacks is
added to it (logged with the closest names: a typo then competes with the intended name).

A checkpoint without ``meta["calibration"]`` (trained before calibration existed) is scored with
gamma 0, and a warning says so. Forward form: the one the checkpoint was trained in
(``trained_form``). ``alone``: each name its own query, ``pairs_per_pass`` names per forward
pass. ``joint``: names are scored together in passes of at most as many names as a training
episode asked at once (the fold's seen names), a larger vocabulary split into equal chunks
(COCO's 80 names after 60 seen: two passes of 40). The vocabulary's embeddings come from the
checkpoint's own text encoder, cached (``pipeline.vocabulary_text``).

Memory stays bounded for large vocabularies: each window's patch tokens are computed once,
names are scored a chunk at a time at the image's size, and only the running best name per pixel
(and the typed names' probabilities) is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from pipeline.errors import BadInputError, UnknownNameError
from pipeline.metrics import NONE
from pipeline.model.checkpoint import text_expect
from pipeline.model.scoring import (
    DEFAULT_PAIRS_PER_PASS,
    best_names,
    calibrate,
    joint_width,
    name_groups,
    name_logits,
    threshold_logit,
    trained_form,
)
from pipeline.segmentation.core import (
    NO_CLASS,
    Mode,
    SegmentationResult,
    check_class_names,
    merge_windows,
)
from pipeline.segmentation.fusion import Segmenter
from pipeline.store import StoreLocation
from pipeline.thresholds import PAPER_THRESHOLD, Threshold
from pipeline.vocabularies import find_name
from pipeline.vocabulary_text import (
    VocabularyTable,
    checkpoint_seen_names,
    seen_mask,
    vocabulary_table,
)

log = logging.getLogger("fusioner.segment")
IMAGE_SCORES = 2**25  # names x pixels scored at once at the image's size (128 MiB of float32)


@dataclass(frozen=True)
class Calibration:
    """The generalized rule's settings of a checkpoint: ``gamma`` subtracted from seen names'
    logits, the probability ``threshold``; ``stored``: False when the meta had none."""

    gamma: float
    threshold: float
    stored: bool


def checkpoint_calibration(meta: Mapping[str, Any], where: object = "checkpoint") -> Calibration:
    """``meta["calibration"]`` (fusioner-fit's, chosen on the train images), else gamma 0 with
    a warning."""
    stored = meta.get("calibration")
    if not stored:
        log.warning("%s has no calibration (meta['calibration']): its seen names are not "
                    "lowered (gamma 0) and may win pixels of other names; a fusioner-fit that "
                    "calibrates stores one", where)
        return Calibration(0.0, PAPER_THRESHOLD, False)
    form = stored.get("form", trained_form(meta))
    if form != trained_form(meta):
        log.warning("%s: calibrated in the %s form, scored in the %s form it was trained in",
                    where, form, trained_form(meta))
    return Calibration(float(stored["gamma"]), float(stored.get("threshold", PAPER_THRESHOLD)),
                       True)


@dataclass(frozen=True)
class Competition:
    """Every name scored for a request: ``names`` with their (K, D) ``text`` and ``seen`` mask;
    ``typed[i]``: the position in ``names`` of the i-th typed name (``typed_names[i]``, as
    typed); ``added``: typed names the vocabulary lacked (appended to it); the checkpoint's
    ``calibration``."""

    vocabulary: str
    names: list[str]
    text: torch.Tensor
    seen: np.ndarray
    typed_names: list[str]
    typed: list[int]
    added: list[str]
    calibration: Calibration


def check_vocabulary_options(method: str, background: str, threshold: Threshold) -> None:
    """Refuse, in one line, what does not combine with a vocabulary."""
    if method != "fusion":
        raise BadInputError("--vocabulary needs --method fusion (a checkpoint and its "
                            "calibration)")
    if background != "threshold":
        raise BadInputError("--background prompt does not combine with --vocabulary: the "
                            "vocabulary's other names take the pixels of no typed name")
    if not isinstance(threshold, float):
        raise BadInputError("--threshold adaptive does not combine with --vocabulary: the "
                            "generalized rule takes one probability (default 0.5)")


def load_table(segmenter: Segmenter, vocabulary: str | Path,
               cache_dir: StoreLocation | str) -> VocabularyTable:
    """``vocabulary`` embedded by the segmenter's own text encoder, from the cache if there."""
    return vocabulary_table(vocabulary, segmenter.text_encoder, cache_dir,
                            text_expect(segmenter.meta))


def plan_competition(segmenter: Segmenter, classes: str | Sequence[str],
                     table: VocabularyTable) -> Competition:
    """The typed ``classes`` placed among ``table``'s names (one-line error if two typed names
    are the same vocabulary name)."""
    typed = check_class_names(classes)
    where = f"vocabulary '{table.vocabulary.name}'"
    names, positions, added = list(table.names), [], []
    for name in typed:
        try:
            position = find_name(name, table.names, where)
        except UnknownNameError as exc:
            log.warning("%s: '%s' is added to it", exc, name)
            position = len(names)
            names.append(name)
            added.append(name)
        if position in positions:
            other = typed[positions.index(position)]
            raise BadInputError(f"'{other}' and '{name}' are the same name of {where} "
                                f"('{names[position]}'): type it once")
        positions.append(position)
    text = table.embeddings.to(segmenter.device)
    if added:
        text = torch.cat([text, segmenter.encode_text(added).to(text)])
    seen = seen_mask(names, checkpoint_seen_names(segmenter.meta))
    calibration = checkpoint_calibration(segmenter.meta, segmenter.where)
    return Competition(table.vocabulary.name, names, text, seen, typed, positions, added,
                       calibration)


def chunk_groups(groups: list[range], limit: int) -> list[list[range]]:
    """Consecutive passes gathered into chunks of at most ``limit`` names (at least one pass)."""
    chunks: list[list[range]] = [[]]
    for group in groups:
        if chunks[-1] and sum(map(len, chunks[-1])) + len(group) > limit:
            chunks.append([])
        chunks[-1].append(group)
    return chunks


@torch.inference_mode()
def segment_in_vocabulary(segmenter: Segmenter, image: Image.Image, plan: Competition,
                          threshold: float | None = None, mode: Mode = "resize",
                          progress: bool = False,
                          pairs_per_pass: int = DEFAULT_PAIRS_PER_PASS) -> SegmentationResult:
    """Segment ``image`` into ``plan``'s typed names, every other name competing (module
    docstring). ``probs``: the typed names' calibrated probabilities; ``others``: the share of
    pixels each untyped name won (they are "(none)" in ``label``)."""
    calibration = plan.calibration
    limit = threshold_logit(calibration.threshold if threshold is None else threshold)
    form = trained_form(segmenter.meta)
    image = image.convert("RGB")
    size = (image.height, image.width)
    work, windows = segmenter.windows(image, mode)
    tokens = [(window, segmenter.patch_tokens(window.pixels)) for window in windows]
    groups = name_groups(len(plan.names), form, joint_width(segmenter.meta), pairs_per_pass)
    best = torch.full(size, -torch.inf)
    owner = torch.zeros(size, dtype=torch.int64)
    probs = torch.zeros(len(plan.typed), *size)
    bar = tqdm(total=len(groups) * len(tokens), desc=f"{len(plan.names)} names", unit="pass",
               leave=False, disable=not progress)
    for chunk in chunk_groups(groups, max(1, IMAGE_SCORES // (size[0] * size[1]))):
        ids = range(chunk[0].start, chunk[-1].stop)

        def window_logits(patch_tokens: torch.Tensor, chunk: list[range] = chunk) -> torch.Tensor:
            parts = []
            for group in chunk:
                parts.append(name_logits(segmenter.model, patch_tokens,
                                         plan.text[group.start:group.stop], form, pairs_per_pass))
                bar.update()
            return torch.cat(parts, dim=1)

        logits = merge_windows(((w, window_logits(t)) for w, t in tokens), work, size)[0].cpu()
        seen = plan.seen[ids.start:ids.stop]
        top, where = (torch.from_numpy(a) for a in best_names(logits, seen, calibration.gamma))
        better = top > best
        best = torch.where(better, top, best)
        owner = torch.where(better, where + ids.start, owner)
        for slot, position in enumerate(plan.typed):
            if position in ids:
                local = position - ids.start
                probs[slot] = calibrate(logits[local:local + 1], seen[local:local + 1],
                                        calibration.gamma)[0].sigmoid()
    bar.close()
    return _result(image, plan, np.where(best.numpy() > limit, owner.numpy(), NONE), probs)


def _result(image: Image.Image, plan: Competition, winner: np.ndarray,
            probs: torch.Tensor) -> SegmentationResult:
    """The label map of the typed names (others' pixels "(none)") and the others' shares."""
    lookup = np.full(len(plan.names) + 1, NO_CLASS, dtype=np.uint8)  # the last entry: NONE
    lookup[plan.typed] = np.arange(len(plan.typed), dtype=np.uint8)
    label = lookup[winner]
    counts = np.bincount(winner[winner != NONE].ravel(), minlength=len(plan.names))
    others = {plan.names[i]: counts[i] / winner.size for i in np.argsort(-counts, kind="stable")
              if counts[i] and i not in plan.typed}
    return SegmentationResult(image, label, probs.numpy(), plan.typed_names, "fusion", others,
                              plan.vocabulary)
