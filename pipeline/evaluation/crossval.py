"""Cross-validated evaluation: checkpoints of image splits scored on their held-out images, the
name-shuffled control beside each, and one pooled result per class fold.

- A checkpoint trained on an image split (``meta["image_split"]``) is scored on its held-out
  images only, found by id in the evaluated store (``--split all`` for coco128's CV).
- Several checkpoints of one class fold are pooled: they must be image splits 0..K-1 of the same
  K, held-out images disjoint and together every image of the store they were cut from (else one
  error line). Pooling merges their accumulators (per-image records included), so the fold's
  figures are those of all its episodes, as if one model had scored every image.
- Every class fold must score the same images (the image bootstrap resamples images shared by
  the folds).
- ``--control-checkpoint``: a checkpoint trained on a name-shuffled text store
  (``shuffled:<encoder>``) for each (class fold, image split) of the real ones; it scores the same
  episodes in the same pass, as the method ``name_shuffled`` (``FoldInputs.controls``), so every
  image's contribution is paired with the real model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import reduce
from pathlib import Path

import torch

from pipeline.data.image_splits import held_out_ids, rows_of
from pipeline.errors import FusionerError
from pipeline.evaluation.open_vocabulary import OpenVocabularyResult
from pipeline.evaluation.run import (
    NAME_SHUFFLED,
    NAME_SHUFFLED_PAPER,
    FoldInputs,
    FoldResult,
    Method,
    check_same_setting,
    open_fold,
    scores_of,
)
from pipeline.model.checkpoint import visual_expect
from pipeline.names import NAME_SHUFFLED_CONTROL
from pipeline.store import StoreLocation
from pipeline.thresholds import PAPER_THRESHOLD, Threshold

CHECKPOINT_FILE = "checkpoint.pt"


def expand_checkpoints(paths: Sequence[Path]) -> list[Path]:
    """Each path, a folder standing for every ``checkpoint.pt`` below it (sorted)."""
    found: list[Path] = []
    for path in paths:
        if Path(path).is_dir():
            inside = sorted(Path(path).rglob(CHECKPOINT_FILE))
            if not inside:
                raise FusionerError(f"{path}: no {CHECKPOINT_FILE} below this folder")
            found += inside
        else:
            found.append(Path(path))
    return found


def held_out(inputs: FoldInputs) -> FoldInputs:
    """``inputs`` reading only the held-out images of its checkpoint's image split (if any)."""
    ids = held_out_ids(inputs.meta)
    if ids is None:
        return inputs
    rows = rows_of(inputs.features.image_ids(), ids, inputs.features.path)
    return replace(inputs, features=inputs.features.subset(rows))


def _split_of(inputs: FoldInputs) -> str | None:
    """The held-out set's digest (None: not an image split)."""
    record = inputs.meta.get("image_split")
    return record["val_digest"] if record else None


def _label(inputs: FoldInputs) -> str:
    record = inputs.meta.get("image_split")
    split = f"image split {record['split']} of {record['splits']}, " if record else ""
    return f"{split}fold {inputs.split.fold}"


def _open(checkpoints: Sequence[Path], cache_dir: StoreLocation | str, split: str,
          device: str | torch.device, dataset: str | None) -> list[FoldInputs]:
    folds: list[FoldInputs] = []
    for checkpoint in expand_checkpoints(checkpoints):
        inputs = held_out(open_fold(checkpoint, cache_dir, split, device, dataset))
        same_split = [f for f in folds if _split_of(f) == _split_of(inputs)]
        check_same_setting(folds[0] if folds else inputs, inputs, same_split)
        folds.append(inputs)
    return folds


def check_pooling(folds: Sequence[FoldInputs]) -> None:
    """One error line unless each class fold's checkpoints are disjoint image splits covering
    their store and every class fold scores the same images."""
    by_fold: dict[int, list[FoldInputs]] = {}
    for inputs in folds:
        by_fold.setdefault(inputs.split.fold, []).append(inputs)
    scored: dict[int, set[str]] = {}
    for fold, group in by_fold.items():
        ids = [i for inputs in group for i in inputs.features.image_ids()]
        scored[fold] = set(ids)
        if len(group) == 1:
            continue
        records = [inputs.meta["image_split"] for inputs in group]
        counts = {(r["splits"], r["images"]) for r in records}
        if len(counts) > 1:
            raise FusionerError(f"fold {fold}: its checkpoints come from different image "
                                f"splittings (splits, images: {sorted(counts)})")
        (splits, images), = counts
        missing = sorted(set(range(splits)) - {r["split"] for r in records})
        if len(ids) != len(scored[fold]):
            raise FusionerError(f"fold {fold}: the held-out images of its image splits overlap")
        if missing or len(ids) != images:
            raise FusionerError(f"fold {fold}: image split(s) {missing} of {splits} missing: "
                                f"{len(ids)} of {images} images would be scored (a pooled "
                                "evaluation scores every image once)")
    first = min(scored)
    for fold, images in scored.items():
        if images != scored[first]:
            raise FusionerError(f"fold {fold} scores {len(images)} images, fold {first} "
                                f"{len(scored[first])} others: every class fold must score the "
                                "same images (they are resampled together)")


def _control_methods(control: FoldInputs, threshold: Threshold) -> tuple[Method, ...]:
    methods = [Method(NAME_SHUFFLED, control.text_table, model=control.model)]
    if threshold != PAPER_THRESHOLD:
        methods.append(Method(NAME_SHUFFLED_PAPER, control.text_table, threshold=PAPER_THRESHOLD,
                              model=control.model))
    return tuple(methods)


def attach_controls(folds: Sequence[FoldInputs], controls: Sequence[FoldInputs],
                    threshold: Threshold) -> list[FoldInputs]:
    """Each real checkpoint with its name-shuffled control (same class fold and held-out
    images, same visual features, the shuffled copy of its text encoder); one error line for
    a control that is none, pairs with nothing or twice, or a checkpoint left without one."""
    paired: dict[tuple[int, str | None], FoldInputs] = {}
    for control in controls:
        text = control.meta["text"]
        if text.get("control") != NAME_SHUFFLED_CONTROL:
            raise FusionerError(f"{control.checkpoint}: not a name-shuffled control (train it "
                                "with --text shuffled:<encoder>)")
        key = (control.split.fold, _split_of(control))
        real = [f for f in folds if (f.split.fold, _split_of(f)) == key]
        if not real:
            raise FusionerError(f"{control.checkpoint}: no --checkpoint of {_label(control)} "
                                "to pair this control with")
        if key in paired:
            raise FusionerError(f"{control.checkpoint}: a second control of {_label(control)}")
        if (visual_expect(control.meta) != visual_expect(real[0].meta)
                or text.get("control_source") != real[0].meta["text"]["encoder"]):
            raise FusionerError(f"{control.checkpoint}: a control of another encoder pair than "
                                f"{real[0].checkpoint}'s")
        paired[key] = control
    if not paired:
        return list(folds)
    alone = [f for f in folds if (f.split.fold, _split_of(f)) not in paired]
    if alone:
        raise FusionerError(f"{alone[0].checkpoint}: no --control-checkpoint of "
                            f"{_label(alone[0])} (a paired control is needed for every one)")
    return [replace(f, controls=_control_methods(paired[f.split.fold, _split_of(f)], threshold))
            for f in folds]


def open_evaluation(checkpoints: Sequence[Path], controls: Sequence[Path],
                    cache_dir: StoreLocation | str, split: str, device: str | torch.device,
                    dataset: str | None = None,
                    threshold: Threshold = PAPER_THRESHOLD) -> list[FoldInputs]:
    """Every checkpoint (files or folders) opened on its held-out images, checked for pooling,
    with its control attached; nothing is evaluated before all of them are opened."""
    folds = _open(checkpoints, cache_dir, split, device, dataset)
    check_pooling(folds)
    if not controls:
        return folds
    return attach_controls(folds, _open(controls, cache_dir, split, device, dataset), threshold)


def pooled(folds: Sequence[FoldInputs]) -> bool:
    """Whether some class fold is scored by several checkpoints (image splits, pooled)."""
    return len({f.split.fold for f in folds}) < len(folds)


def refuse_pooled_gzsl(folds: Sequence[FoldInputs]) -> None:
    """One error line: the generalized protocol calibrates each checkpoint on its own train
    images, so image splits are not pooled under it (yet)."""
    if pooled(folds):
        raise FusionerError("--mode gzsl does not pool image splits (each split's checkpoint has "
                            "its own calibration): evaluate one image split's checkpoints at a "
                            "time under gzsl, or pool them under --mode binary")


def _merge_open_vocabulary(results: Sequence[FoldResult]) -> OpenVocabularyResult | None:
    """The image splits' presence records of one class fold merged (no gzsl: refused first)."""
    found = [r.open_vocabulary for r in results if r.open_vocabulary is not None]
    if not found:
        return None
    presence = {method: reduce(lambda a, b: a.merge(b), [f.presence[method] for f in found])
                for method in found[0].presence}
    return OpenVocabularyResult({}, {}, presence, sum(f.images for f in found))


def _merge(results: Sequence[FoldResult]) -> FoldResult:
    """One class fold's results of several image splits as one."""
    first = results[0]
    accumulators = {key: reduce(lambda a, b: a.merge(b), [r.accumulators[key] for r in results])
                    for key in first.accumulators}
    rankings = {name: reduce(lambda a, b: a.merge(b), [r.rankings[name] for r in results])
                for name in first.rankings}
    rows = sorted(row for r in results for row in r.inputs.features.indices)
    inputs = replace(first.inputs, features=first.inputs.features.subset(rows))
    episodes = {mode: sum(r.episodes[mode] for r in results) for mode in first.episodes}
    overlays = {row: kept for r in results for row, kept in r.overlays.items()}
    return FoldResult(inputs, scores_of(accumulators, rankings), episodes,
                      sum(r.images for r in results), overlays, accumulators, rankings,
                      tuple(r.inputs.checkpoint for r in results), _merge_open_vocabulary(results))


def pool(results: Sequence[FoldResult]) -> list[FoldResult]:
    """One result per class fold (in the order given): the image splits of a fold merged."""
    by_fold: dict[int, list[FoldResult]] = {}
    for result in results:
        by_fold.setdefault(result.inputs.split.fold, []).append(result)
    return [group[0] if len(group) == 1 else _merge(group) for group in by_fold.values()]


def evaluated_images(results: Sequence[FoldResult]) -> list[str]:
    """The ids of every image scored (the bootstrap's resampling units)."""
    return sorted({i for r in results for i in r.inputs.features.image_ids()})


def record_bytes(results: Sequence[FoldResult]) -> int:
    """Bytes held by the per-image records of every accumulator (what the bootstrap costs)."""
    return sum(counts.nbytes for r in results for acc in r.accumulators.values()
               for counts in acc.images.values())


def overlays_per_split(num_overlays: int, folds: Sequence[FoldInputs]) -> int:
    """Overlays per checkpoint so that a pooled class fold draws about ``num_overlays``."""
    per_fold = max(sum(f.split.fold == g.split.fold for g in folds) for f in folds)
    return -(-num_overlays // per_fold) if num_overlays else 0
