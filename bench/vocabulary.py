"""Measuring issue 36's sections 3-4: every name against every other (generalized, GZSL) on a
dataset's cached stores, and absent names typed with a vocabulary on its real images.

PROVISIONAL where noted: until ``fusioner-fit`` stores a calibration and ``fusioner-evaluate
--mode gzsl`` scores the generalized protocol (another branch of issue 36), this module holds
the minimal versions the measurements need, to be replaced by them.

- ``calibrate`` (provisional): gamma chosen on the TRAIN store (view 0, cached labels): the
  value on a grid (0 to 14 in steps of 0.25; logits are cosine / 0.07, within +-14.3) that
  maximises the train hIoU of the rule below; writes a copy of the checkpoint whose
  ``meta["calibration"]`` holds it, for ``fusioner-segment --vocabulary`` to read.
- ``gzsl``: every pixel of the val store (cached labels) scored against ALL the dataset's names
  (background excluded) in the form the checkpoint trained in, by the generalized rule at 0.5
  with the checkpoint's gamma; seen mIoU and unseen mIoU (means over the classes present in the
  split's labels; background pixels count as "no name"), hIoU their harmonic mean. Control:
  random text (the unseen names' embeddings replaced by seeded random unit vectors).
- ``absent``: each val image segmented (``pipeline.segmentation.vocabulary``, the command's
  code, at the image's own size) with every vocabulary name typed; for each name absent from
  the image's labels, the share of the image it paints (= typed alone: typed names do not
  change the competition).

Run: ``python -m bench.vocabulary {calibrate,gzsl,absent} --help``.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.data import create_dataset
from pipeline.evaluation.run import random_text_table
from pipeline.metrics import IoUAccumulator
from pipeline.model import load_fusion_checkpoint, save_fusion_checkpoint, upsample_logits
from pipeline.model.scoring import (
    joint_width,
    name_groups,
    name_logits,
    threshold_logit,
    trained_form,
)
from pipeline.segmentation import load_segmenter
from pipeline.segmentation.vocabulary import load_table, plan_competition, segment_in_vocabulary
from pipeline.store import CachedFeatureDataset, read_text_store, text_store_path, visual_store_path
from pipeline.vocabularies import match_key

GAMMAS = np.arange(0.0, 14.0 + 1e-9, 0.25)


def _tables(meta: dict, cache_dir: Path) -> tuple[torch.Tensor, list[int]]:
    """The dataset's text table and the ids scored (every class but the background)."""
    text = read_text_store(text_store_path(cache_dir, meta["text"]["encoder"], meta["dataset"]))
    ids = [c for c in range(len(meta["class_names"])) if c != meta.get("background")]
    return text.embeddings, ids


def _best(model, meta: dict, tokens: torch.Tensor, text: torch.Tensor, ids: Sequence[int],
          size: tuple[int, int]) -> Iterator[tuple[np.ndarray, ...]]:
    """Per image: (best seen logit, its id, best unseen logit, its id) at ``size``."""
    form = trained_form(meta)
    groups = name_groups(len(ids), form, joint_width(meta))
    logits = torch.cat([name_logits(model, tokens, text[[ids[i] for i in g]], form)
                        for g in groups], dim=1)
    logits = upsample_logits(logits, size)
    seen = torch.tensor([c in set(meta["seen"]) for c in ids])
    for image in logits:
        parts = []
        for mask in (seen, ~seen):
            top, where = image[mask].max(dim=0)
            parts += [top.numpy(), np.asarray(ids)[mask.numpy()][where.numpy()]]
        yield tuple(parts)


def _scored(checkpoint: Path, cache_dir: Path, split: str, text_table: torch.Tensor | None = None,
            ) -> tuple[list[tuple[np.ndarray, ...]], list[np.ndarray], dict, list[int]]:
    """Best seen/unseen per pixel of every image of ``split``, its labels, meta, ids."""
    model, meta = load_fusion_checkpoint(checkpoint)
    text, ids = _tables(meta, cache_dir)
    text = text if text_table is None else text_table
    store = CachedFeatureDataset(visual_store_path(cache_dir, meta["visual"]["encoder"],
                                                   meta["dataset"], split), cache_blocks=1)
    best, labels = [], []
    for start in range(0, len(store), 8):
        items = [store[(i, 0)] for i in range(start, min(start + 8, len(store)))]
        tokens = torch.stack([item["patch_tokens"] for item in items]).float()
        label = np.stack([item["label"].numpy() for item in items])
        best += list(_best(model, meta, tokens, text, ids, label.shape[-2:]))
        labels += list(label)
    return best, labels, meta, ids


def scores(best: list[tuple[np.ndarray, ...]], labels: list[np.ndarray], meta: dict,
           ids: list[int], gamma: float) -> dict[str, float]:
    """Seen mIoU, unseen mIoU and hIoU of the generalized rule at 0.5 with ``gamma``."""
    accumulator = IoUAccumulator(ids)
    lookup = np.full(256, accumulator.none_index, dtype=np.int64)
    lookup[ids] = np.arange(len(ids))
    size = accumulator.none_index + 1
    for (seen_top, seen_id, unseen_top, unseen_id), label in zip(best, labels, strict=True):
        shifted = seen_top - gamma
        top = np.maximum(shifted, unseen_top)
        pred = np.where(shifted >= unseen_top, seen_id, unseen_id)
        pred = np.where(top > threshold_logit(0.5), lookup[pred], accumulator.none_index)
        valid = label != 255
        truth = lookup[label[valid].astype(np.int64)]
        accumulator.confusion += np.bincount(truth * size + pred[valid],
                                             minlength=size * size).reshape(size, size)
    per_class = accumulator.result().per_class
    present = accumulator.confusion[:-1].sum(1) > 0
    out = {}
    for part in ("seen", "unseen"):
        chosen = [per_class[c] for k, c in enumerate(ids) if present[k] and c in meta[part]]
        out[part] = float(np.mean(chosen)) if chosen else float("nan")
    total = out["seen"] + out["unseen"]
    out["hiou"] = 2 * out["seen"] * out["unseen"] / total if total > 0 else 0.0
    return out


def calibrate(checkpoint: Path, cache_dir: Path, out: Path, split: str = "train") -> float:
    """PROVISIONAL: gamma maximising the train hIoU; a copy of the checkpoint holding it."""
    best, labels, meta, ids = _scored(checkpoint, cache_dir, split)
    hious = [scores(best, labels, meta, ids, g)["hiou"] for g in GAMMAS]
    gamma = float(GAMMAS[int(np.argmax(hious))])
    model, meta = load_fusion_checkpoint(checkpoint)
    meta = copy.deepcopy(meta)
    meta["calibration"] = {"gamma": gamma, "form": trained_form(meta), "threshold": 0.5,
                           "chosen_on": split, "train_hiou": float(max(hious)),
                           "provisional": "bench/vocabulary.py calibrate"}
    save_fusion_checkpoint(out, model, meta)
    print(f"{checkpoint}: gamma {gamma} ({trained_form(meta)} form), train hIoU "
          f"{max(hious):.4f} (gamma 0: {hious[0]:.4f}) -> {out}")
    return gamma


def gzsl(checkpoints: Sequence[Path], cache_dir: Path, split: str = "val") -> None:
    """A Markdown table: per checkpoint, seen/unseen/hIoU at its gamma, and random text."""
    print("| checkpoint | form | gamma | seen | unseen | hIoU | random text: seen | unseen | "
          "hIoU |\n|---|---|---|---|---|---|---|---|---|")
    for checkpoint in checkpoints:
        _, meta = load_fusion_checkpoint(checkpoint)
        gamma = float(meta.get("calibration", {}).get("gamma", 0.0))
        best, labels, meta, ids = _scored(checkpoint, cache_dir, split)
        model_scores = scores(best, labels, meta, ids, gamma)
        text, _ = _tables(meta, cache_dir)
        random = random_text_table(text, meta["unseen"], 0)
        rbest, rlabels, _, _ = _scored(checkpoint, cache_dir, split, random)
        control = scores(rbest, rlabels, meta, ids, gamma)
        print(f"| {checkpoint} | {trained_form(meta)} | {gamma} | " + " | ".join(
            f"{v:.4f}" for v in (*model_scores.values(), *control.values())) + " |")


def absent(checkpoint: Path, cache_dir: Path, vocabulary: str, data_root: Path | None,
           split: str = "val", device: str = "cpu") -> None:
    """Per (val image, vocabulary name absent from it): the share of the image it paints."""
    segmenter = load_segmenter("fusion", checkpoint, device=device)
    table = load_table(segmenter, vocabulary, cache_dir)  # type: ignore[arg-type]
    plan = plan_competition(segmenter, list(table.names), table)  # type: ignore[arg-type]
    dataset = create_dataset(segmenter.meta["dataset"], split, data_root)  # type: ignore[attr-defined]
    by_key = {match_key(n): c for c, n in enumerate(dataset.class_names)}
    shares, worst = [], (0.0, "", "")
    for index in range(len(dataset)):
        sample = dataset[index]
        present = set(np.unique(sample.label).tolist())
        result = segment_in_vocabulary(segmenter, sample.image, plan)  # type: ignore[arg-type]
        painted = result.fractions()
        for name in table.names:
            if by_key.get(match_key(name)) not in present:
                shares.append(painted[name])
                worst = max(worst, (painted[name], name, dataset.image_id(index)))
    values = np.asarray(shares)
    print(f"{checkpoint}: {len(values)} (image, absent name) pairs: mean {values.mean():.5f}, "
          f"max {values.max():.4f} ({worst[1]} on {worst[2]}), over 1%: "
          f"{int((values > 0.01).sum())}, any pixel: {int((values > 0).sum())}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("calibrate", help="PROVISIONAL gamma on train, into a copy")
    one.add_argument("checkpoint", type=Path)
    one.add_argument("--out", type=Path, required=True)
    score = commands.add_parser("gzsl", help="seen/unseen/hIoU of checkpoints on val")
    score.add_argument("checkpoints", type=Path, nargs="+")
    scan = commands.add_parser("absent", help="shares painted by absent vocabulary names")
    scan.add_argument("checkpoint", type=Path)
    scan.add_argument("--vocabulary", default="coco")
    scan.add_argument("--data-root", type=Path, default=None)
    for command in (one, score, scan):
        command.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        calibrate(args.checkpoint, args.cache_dir, args.out)
    elif args.command == "gzsl":
        gzsl(args.checkpoints, args.cache_dir)
    else:
        absent(args.checkpoint, args.cache_dir, args.vocabulary, args.data_root)


if __name__ == "__main__":
    main()
