"""The open-vocabulary part of ``fusioner-evaluate``'s outputs (``pipeline.evaluation.report``
writes them): metrics blocks with numbers only at their leaves, and the seen-unseen curve CSV.

- binary figures, merged into the binary blocks: ``presence_auroc`` (threshold-free) and
  ``absent_painted_share`` (under the block's rule), for the model and the random-text baseline;
- ``gzsl.<form>``: ``seen_miou``, ``unseen_miou``, ``hiou``, ``gamma``, ``ausuc``,
  ``absent_painted_share``, ``uncalibrated.{seen_miou, unseen_miou, hiou}`` (gamma 0) and
  ``controls.random_text.{...}`` (the same figures with random text for every name);
- ``gzsl_curve.csv``: fold, form, method, gamma, seen_miou, unseen_miou, hiou (val, every gamma).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.evaluation.presence import PresenceRecords
from pipeline.evaluation.run import (
    MODEL,
    PAPER_RULE,
    RANDOM_TEXT,
    RANDOM_TEXT_PAPER,
    FoldResult,
    Mode,
)
from pipeline.metrics import metric_number
from pipeline.model.scoring import trained_form
from pipeline.thresholds import PAPER_THRESHOLD, Threshold

CURVE_FIELDS = ["fold", "form", "method", "gamma", "seen_miou", "unseen_miou", "hiou"]
CONTROLS = "controls"


def gzsl_protocol(resolution: str) -> str:
    """One line saying how the generalized protocol was measured (docs/open-vocabulary.md)."""
    where = ("each image's original mask resolution" if resolution == "original"
             else f"the cached label resolution {resolution}")
    return ("generalized (GZSL): every pixel against ALL the dataset's names, seen and unseen "
            "(background = none); seen names' logits lowered by the checkpoint's gamma (chosen "
            "on TRAIN images: highest hIoU), pixel = the highest name with probability > 0.5, "
            "else none; per-class IoU accumulated over the split; seen / unseen mIoU, hIoU = "
            f"2SU/(S+U); AUSUC over the val curve; at {where}")


PresenceEntry = tuple[tuple[str, Mode], PresenceRecords, Threshold, bool]


def presence_entries(result: FoldResult, threshold: Threshold) -> list[PresenceEntry]:
    """((method, "binary"), records, rule, with AUROC) of each binary block the presence figures
    go in: the model and random text under ``threshold``, and their paper-rule blocks' painted
    share when ``threshold`` is another rule."""
    found = result.open_vocabulary
    if found is None:
        return []
    entries: list[PresenceEntry] = []
    for method, paper in ((MODEL, PAPER_RULE), (RANDOM_TEXT, RANDOM_TEXT_PAPER)):
        records = found.presence.get(method)
        if records is None:
            continue
        entries.append(((method, "binary"), records, threshold, True))
        if threshold != PAPER_THRESHOLD:
            entries.append(((paper, "binary"), records, PAPER_THRESHOLD, False))
    return entries


def binary_figures(result: FoldResult,
                   threshold: Threshold) -> dict[tuple[str, Mode], dict[str, float | None]]:
    """(method, "binary") -> the presence figures to merge into that summary."""
    return {key: {**({"presence_auroc": metric_number(records.auroc())} if with_auroc else {}),
                  "absent_painted_share": metric_number(records.absent_share(rule))}
            for key, records, rule, with_auroc in presence_entries(result, threshold)}


def mean_of(values: Sequence[float | None]) -> float | None:
    """The mean of the defined values, rounded (None if none is defined)."""
    defined = [v for v in values if v is not None]
    return metric_number(np.mean(defined)) if defined else None


def _numbers(tree: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _numbers(v) if isinstance(v, Mapping) else metric_number(v) for k, v in tree.items()}


def gzsl_block(result: FoldResult) -> dict[str, Any]:
    """{form: the model's figures, plus ``controls``: {method: figures}} of one fold."""
    found = result.open_vocabulary
    if found is None:
        return {}
    block: dict[str, Any] = {}
    for (method, form), gzsl in found.gzsl.items():
        figures = _numbers(gzsl.figures())
        if method == MODEL:
            block.setdefault(form, {}).update(figures)
        else:
            block.setdefault(form, {}).setdefault(CONTROLS, {})[method] = figures
    return block


def mean_tree(trees: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The leaf-wise mean of nested blocks (undefined leaves left out; none defined: null)."""
    keys = list(dict.fromkeys(k for tree in trees for k in tree))
    out: dict[str, Any] = {}
    for key in keys:
        values = [tree[key] for tree in trees if key in tree]
        if any(isinstance(v, Mapping) for v in values):
            out[key] = mean_tree([v for v in values if isinstance(v, Mapping)])
        else:
            out[key] = mean_of(values)
    return out


def open_vocabulary_record(result: FoldResult) -> dict[str, Any]:
    """Per-fold extras: the gzsl block, the calibration used per form (with its source), and
    the pair counts."""
    found = result.open_vocabulary
    if found is None:
        return {}
    record: dict[str, Any] = {}
    if found.gzsl:
        record["gzsl"] = gzsl_block(result)
        record["calibration"] = {
            form: {key: c.get(key) for key in ("gamma", "source", "chosen_on", "criterion",
                                                "hiou", "seen_miou", "unseen_miou")}
            for form, c in found.calibrations.items()}
    pairs = {}
    if MODEL in found.presence:
        pairs["binary_absent"] = found.presence[MODEL].absent_pairs
    gzsl = [g for (method, _), g in found.gzsl.items() if method == MODEL]
    if gzsl:
        pairs["gzsl_images"] = found.images
        pairs["gzsl_absent"] = len(gzsl[0].absent)
    return {**record, "pairs": pairs} if pairs else record


def curve_rows(results: Sequence[FoldResult]) -> list[dict[str, Any]]:
    """The val seen-unseen curve of every (fold, form, method), one row per gamma."""
    rows = []
    for result in results:
        found = result.open_vocabulary
        if found is None:
            continue
        for (method, form), gzsl in found.gzsl.items():
            curve = gzsl.sweep.curve(gzsl.seen)
            for at, gamma in enumerate(curve["gamma"]):
                rows.append({"fold": result.inputs.split.fold, "form": form, "method": method,
                             "gamma": float(gamma),
                             **{key: metric_number(curve[key][at])
                                for key in ("seen_miou", "unseen_miou", "hiou")}})
    return rows


def document_extras(results: Sequence[FoldResult]) -> dict[str, Any]:
    """Top-level keys: ``trained_form`` and the mean ``gzsl`` (a control run's label is
    ``pipeline.evaluation.report.control_labels``')."""
    first = results[0].inputs
    extras: dict[str, Any] = {}
    blocks = [gzsl_block(r) for r in results]
    if any(blocks):
        extras["trained_form"] = trained_form(first.meta)
        extras["gzsl"] = mean_tree(blocks)
    return extras
