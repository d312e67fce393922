"""What ``fusioner-evaluate`` writes: metrics.json, the per-class IoU table, qualitative overlays.

- ``metrics.json`` (``dvc metrics show``): headline scores, mean over the folds given, of the
  model and of the baselines side by side, then the same per fold; the binary blocks carry
  ``presence_auroc`` and ``absent_painted_share``, the ``gzsl`` block the generalized protocol
  (``pipeline.evaluation.open_report``). IoUs are FRACTIONS in [0, 1] (not percent); a score
  with no defined value is ``null``. With the image bootstrap (``resamples`` > 0): ``ci95``
  blocks shaped like the scores (``[low, high]`` per figure), ``ratios`` (the model over each
  baseline and control, with ``ci95``) and ``bootstrap`` (how; ``pipeline.evaluation.intervals``).
  A name-shuffled checkpoint's document says it is a control (``control``), as does
  ``controls`` for the name-shuffled method beside the model.
- ``per_class_iou.csv`` (``dvc plots show``, bar chart): one row per (fold, class, method) with
  ``class``, ``method`` (``<method>_<mode>``), ``iou`` and ``entry`` = "class | method", a key
  unique per bar.
- ``gzsl_curve.csv`` (``dvc plots show``): the generalized protocol's seen-unseen curve over
  gamma on val, one row per (fold, form, method, gamma) (``pipeline.evaluation.open_report``);
  the header alone when the run has no ``gzsl`` mode (the file is always a stage output).
- ``overlays/<image_id>.png``: image | ground truth (unseen classes) | prediction per protocol,
  with a legend; ``fold<k>_<image_id>.png`` when several folds are evaluated.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.data import create_dataset
from pipeline.data.base import IGNORE_INDEX, SegmentationDataset
from pipeline.evaluation.bootstrap import Resampler
from pipeline.evaluation.intervals import image_intervals
from pipeline.evaluation.labels import OriginalLabels
from pipeline.evaluation.open_report import (
    CURVE_FIELDS,
    binary_figures,
    curve_rows,
    document_extras,
    gzsl_protocol,
    mean_of,
    open_vocabulary_record,
)
from pipeline.evaluation.run import (
    ALL_FOREGROUND,
    MODEL,
    NAME_SHUFFLED,
    NAME_SHUFFLED_PAPER,
    PAPER_RULE,
    RANDOM_TEXT,
    RANDOM_TEXT_PAPER,
    SEEN_REFERENCE,
    FoldInputs,
    FoldResult,
    Mode,
    seen_name,
)
from pipeline.metrics import NONE, IoUResult, metric_number
from pipeline.thresholds import PAPER_THRESHOLD, Threshold, describe
from pipeline.visualize import add_legend, colorize, palette, side_by_side

UNITS = "fraction"  # every IoU in metrics.json and the CSV is in [0, 1]
CURVE_FILE = "gzsl_curve.csv"
NONE_COLOUR, IGNORE_COLOUR = (0, 0, 0), (128, 128, 128)


def protocol(mode: Mode, resolution: str, threshold: Threshold) -> str:
    """One line saying how ``mode`` was measured (the README has the long form)."""
    where = ("at each image's original mask resolution" if resolution == "original"
             else f"at the cached label resolution {resolution}")
    where += (", logits upsampled bilinearly from the decoder's output (paper: 224 sliding "
              "windows at the original resolution)")
    rule = describe(threshold)
    if mode == "binary":
        return ("paper/HSNet binary episodes: image + ONE unseen class name present in it per "
                f"forward pass, foreground = sigmoid > threshold {rule}; per-class IoU "
                f"accumulated over the split, mIoU over unseen classes, FB-IoU; {where}")
    return ("multi-class: ALL unseen class names at once, pixel = argmax of the classes whose "
            f"sigmoid >= threshold {rule}, else none; seen/background pixels = none; per-class "
            f"IoU accumulated over the split; {where}")


def summary(score: IoUResult) -> dict[str, float | None]:
    """The headline numbers of one accumulated result."""
    out = {"miou": metric_number(score.miou), "fb_iou": metric_number(score.fb_iou),
           "fg_iou": metric_number(score.fg_iou), "bg_iou": metric_number(score.bg_iou)}
    if score.auroc == score.auroc:  # defined (binary episodes only)
        out["auroc"] = metric_number(score.auroc)
    return out


def _scores_block(scores: Mapping[tuple[str, Mode], dict[str, Any]]) -> dict[str, Any]:
    """{mode: model scores, "fixed_threshold_0.5": {mode: ..., "baselines": {...}} (other rules
    only), "baselines": {method: {mode: scores}}, "seen_reference": {mode: ...,
    "fixed_threshold_0.5": {...}}}."""
    by_method: dict[str, dict[str, Any]] = {}
    for (method, mode), score in scores.items():
        by_method.setdefault(method, {})[mode] = score
    block: dict[str, Any] = dict(by_method.get(MODEL, {}))
    if PAPER_RULE in by_method:
        block[PAPER_RULE] = dict(by_method[PAPER_RULE])
        at_paper = {ALL_FOREGROUND: ALL_FOREGROUND, RANDOM_TEXT: RANDOM_TEXT_PAPER,
                    NAME_SHUFFLED: NAME_SHUFFLED_PAPER}  # the baselines at the paper's threshold
        if any(key != ALL_FOREGROUND and key in by_method for key in at_paper.values()):
            block[PAPER_RULE]["baselines"] = {name: by_method[key] for name, key in
                                              at_paper.items() if key in by_method}
    baselines = {name: by_method[name] for name in (ALL_FOREGROUND, RANDOM_TEXT, NAME_SHUFFLED)
                 if name in by_method}
    if baselines:
        block["baselines"] = baselines
    if SEEN_REFERENCE in by_method:
        block[SEEN_REFERENCE] = dict(by_method[SEEN_REFERENCE])
        if seen_name(PAPER_RULE) in by_method:
            block[SEEN_REFERENCE][PAPER_RULE] = by_method[seen_name(PAPER_RULE)]
    return block


MEAN_KEYS = ("miou", "fb_iou", "auroc", "presence_auroc", "absent_painted_share")


def summaries(result: FoldResult,
              threshold: Threshold = PAPER_THRESHOLD) -> dict[tuple[str, Mode], dict[str, Any]]:
    """Every (method, mode) summary of a fold, the binary ones with their presence figures."""
    out = {key: summary(s) for key, s in sorted(result.scores.items())}
    for key, figures in binary_figures(result, threshold).items():
        out.setdefault(key, {}).update(figures)
    return out


def fold_record(result: FoldResult, threshold: Threshold = PAPER_THRESHOLD) -> dict[str, Any]:
    """Per-fold metrics: what was evaluated, every (method, mode) summary and the
    open-vocabulary figures."""
    inputs = result.inputs
    extras = open_vocabulary_record(result)
    record = {
        "fold": inputs.split.fold,
        "checkpoint": str(inputs.checkpoint),
        "unseen_classes": [inputs.class_names[c] for c in inputs.split.unseen],
        "images": result.images,
        "episodes": {**result.episodes, **extras.pop("pairs", {})},
        **_scores_block(summaries(result, threshold)),
        **extras,
    }
    image_split = inputs.meta.get("image_split")
    if image_split:  # a cross-validation: which image splits this fold's figures pool
        record["image_splits"] = image_split["splits"]
        record["checkpoints"] = [str(c) for c in result.checkpoints or (inputs.checkpoint,)]
    binary = result.scores.get((MODEL, "binary"))
    if binary is not None:  # the model's threshold-free score per unseen class
        record["unseen_auroc"] = {inputs.class_names[c]: metric_number(v)
                                  for c, v in binary.per_class_auroc.items()}
    return record


CONTROL_NOTE = ("a control, not a result: the text vectors are attached to the wrong class "
                "names, at training and at evaluation")


TEST_ONLY_NOTE = ("a control, not a result: the text vectors are attached to the wrong class "
                  "names at evaluation (the checkpoint was trained on the real names)")


def control_labels(first: FoldInputs, results: Sequence[FoldResult]) -> dict[str, Any]:
    """``control`` when the checkpoints are name-shuffled controls, ``controls`` when the
    name-shuffled method is scored beside the model: every figure from them says so."""
    labels: dict[str, Any] = {}
    trained = first.meta["text"]
    text = {**trained, **first.text_store_control}  # the store read now, else the training's
    if text.get("control"):
        labels["control"] = {"kind": text["control"],
                             "note": CONTROL_NOTE if trained.get("control") else TEST_ONLY_NOTE,
                             "source": text.get("control_source"),
                             "seed": text.get("control_seed")}
    if any(key[0] == NAME_SHUFFLED for r in results for key in r.scores):
        labels["controls"] = {NAME_SHUFFLED: f"name-shuffled text: {CONTROL_NOTE}"}
    return labels


def metrics_document(results: Sequence[FoldResult], split: str,
                     threshold: Threshold = PAPER_THRESHOLD,
                     resampler: Resampler | None = None) -> dict[str, Any]:
    """metrics.json: the setting, mean-over-folds headline (miou, fb_iou), and each fold (with
    ``resampler``: their image-bootstrap intervals and ratios)."""
    first = results[0].inputs
    folds = {f"fold{r.inputs.split.fold}": fold_record(r, threshold) for r in results}
    intervals = None if resampler is None else image_intervals(results, resampler, threshold)
    if intervals is not None:
        for r in results:
            record = folds[f"fold{r.inputs.split.fold}"]
            record["ci95"] = _scores_block(intervals.per_fold[r.inputs.split.fold])
            record["ratios"] = intervals.fold_ratios[r.inputs.split.fold]
    each = [summaries(r, threshold) for r in results]
    mean = {key: {name: mean_of([s.get(key, {}).get(name) for s in each])
                  for name in MEAN_KEYS if name in score}
            for key, score in each[0].items()}
    modes = list(results[0].episodes)
    extras = document_extras(results)
    protocols = {mode: protocol(mode, first.resolution, threshold) for mode in modes}
    if "gzsl" in extras:
        protocols["gzsl"] = gzsl_protocol(first.resolution)
    return {
        **control_labels(first, results),
        "units": UNITS,
        "protocol": protocols,
        "threshold": threshold,
        "dataset": first.split.dataset,
        **({"trained_on": first.meta["dataset"]}
           if first.meta["dataset"] != first.split.dataset else {}),
        "split": split,
        "visual": first.meta["visual"]["encoder"],
        "text": first.meta["text"]["encoder"],
        "random_init": {side: bool(first.meta[side].get("random_init", False))
                        for side in ("visual", "text")},  # True: test weights, not a result
        "resolution": first.resolution,
        "folds": [r.inputs.split.fold for r in results],
        "unseen_classes": [name for record in folds.values()
                           for name in record["unseen_classes"]],
        **_scores_block(mean),
        **extras,
        **({} if intervals is None else {
            "ci95": _scores_block(intervals.mean), "ratios": intervals.mean_ratios,
            "bootstrap": resampler.describe()}),  # type: ignore[union-attr]
        "per_fold": folds,
    }


def per_class_rows(results: Sequence[FoldResult]) -> list[dict[str, Any]]:
    """Rows (fold, class, method, iou, entry) for the per-class bar chart."""
    rows = []
    for result in results:
        names = result.inputs.class_names
        for (method, mode), score in sorted(result.scores.items()):
            label = f"{method}_{mode}"
            for class_id, iou in score.per_class.items():
                rows.append({"fold": result.inputs.split.fold, "class": names[class_id],
                             "method": label, "iou": metric_number(iou),
                             "entry": f"{names[class_id]} | {label}"})
    return rows


def write_json(path: Path, value: Any) -> None:
    """Whole-file rewrite through a temporary name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]],
              fields: Sequence[str] = ("fold", "class", "method", "iou", "entry")) -> None:
    """Whole-file rewrite through a temporary name (``None`` -> empty cell)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def _panel(ids: np.ndarray, num_classes: int, ignore: np.ndarray | None = None) -> Image.Image:
    rgb = np.asarray(colorize(ids, num_classes)).copy()
    if ignore is not None:
        rgb[ignore] = IGNORE_COLOUR
    return Image.fromarray(rgb)


def render_overlay(image: Image.Image, label: np.ndarray, predictions: Mapping[str, np.ndarray],
                   unseen: Sequence[int], class_names: Sequence[str]) -> Image.Image:
    """image | ground truth restricted to ``unseen`` | one panel per prediction, with a legend."""
    height, width = label.shape
    truth = np.where(np.isin(label, list(unseen)), label, NONE)
    n = len(class_names)
    panels = [image.convert("RGB").resize((width, height)),
              _panel(truth, n, label == IGNORE_INDEX)]
    panels += [_panel(pred, n) for pred in predictions.values()]
    titles = ["image", "ground truth (unseen)", *predictions]
    colours = [tuple(int(v) for v in palette(n)[c]) for c in unseen]
    return add_legend(side_by_side(panels, titles),
                      [*(class_names[c] for c in unseen), "none", "ignore"],
                      [*colours, NONE_COLOUR, IGNORE_COLOUR])


PANEL_TITLES = {"binary": "binary (each class alone)", "multiclass": "multi-class (all unseen)"}


def source_dataset(folds: Sequence[FoldInputs], split: str, data_root: Path | str | None = None,
                   original: bool = False) -> tuple[SegmentationDataset, list[FoldInputs]]:
    """The dataset the folds' store was extracted from (for overlay images) and the folds, each
    with ``truth`` = its original masks when ``original``; one error if an image is missing."""
    dataset = create_dataset(folds[0].split.dataset, split, data_root)
    checked = []
    for fold in folds:
        truth = OriginalLabels(dataset, fold.features.store_image_ids(), str(fold.features.path))
        checked.append(replace(fold, truth=truth) if original else fold)
    return dataset, checked


def write_overlays(folder: Path, results: Sequence[FoldResult],
                   dataset: SegmentationDataset | None) -> list[Path]:
    """Overlay PNGs of the images each fold kept; stale PNGs in ``folder`` are removed first."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):
        stale.unlink()
    kept = [r for r in results if r.overlays]
    if not kept or dataset is None:
        return []
    index = {dataset.image_id(i): i for i in range(len(dataset))}
    written: list[Path] = []
    for result in kept:
        features, fold = result.inputs.features, result.inputs.split
        ids = features.store_image_ids()  # overlays are keyed by store row
        prefix = f"fold{fold.fold}_" if len(results) > 1 else ""
        for row, predictions in sorted(result.overlays.items()):
            truth = result.inputs.truth
            picture = render_overlay(dataset[index[ids[row]]].image,
                                     features.subset([row])[0]["label"].numpy()
                                     if truth is None
                                     else truth(row),
                                     {title: predictions[m] for m, title in PANEL_TITLES.items()
                                      if m in predictions},
                                     fold.unseen, result.inputs.class_names)
            path = folder / f"{prefix}{ids[row].replace(os.sep, '_')}.png"
            picture.save(path)
            written.append(path)
    return written


def write_outputs(results: Sequence[FoldResult], split: str, out_metrics: Path, out_plots: Path,
                  dataset: SegmentationDataset | None = None,
                  threshold: Threshold = PAPER_THRESHOLD,
                  resampler: Resampler | None = None) -> dict[str, Any]:
    """metrics.json, per_class_iou.csv, gzsl_curve.csv and overlays/ (from ``dataset``'s images,
    if given)."""
    overlays = write_overlays(out_plots / "overlays", results, dataset)
    document = metrics_document(results, split, threshold, resampler)
    write_csv(out_plots / "per_class_iou.csv", per_class_rows(results))
    write_csv(out_plots / CURVE_FILE, curve_rows(results), CURVE_FIELDS)  # header only: no gzsl
    write_json(out_metrics, document)
    return {"metrics": document, "overlays": overlays}
