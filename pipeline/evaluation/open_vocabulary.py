"""The open-vocabulary figures of ``fusioner-evaluate``, beside the paper's binary protocol.

- ``gzsl`` (the generalized protocol, as zero-shot segmentation papers report): every pixel of
  every val image against ALL the dataset's names, seen and unseen (background, never queried,
  is "none"), in a forward-pass form (``alone``: each name its own query; ``joint``: all names in
  one pass; ``pipeline.model.scoring``). Pixels follow ``generalized_prediction`` at 0.5 with the
  checkpoint's gamma (``pipeline.model.calibration``, chosen on TRAIN images; computed here, and
  logged, for a checkpoint without one). Per-class IoU accumulates over the split
  (``pipeline.gzsl``): seen mIoU, unseen mIoU, hIoU; the seen-unseen curve over every gamma of
  the grid on val (plot and AUSUC only: gamma is never chosen there); and, for every unseen name
  ABSENT from an image, the share of the image it paints.
- ``presence`` (with the binary mode): every (val image, unseen name) binary episode, present or
  absent (``pipeline.evaluation.presence``).
Controls through the same code: ``random_text``, every scored name's text row replaced by a
seeded random unit vector (the binary baseline's rows for the binary figures); a checkpoint
trained on a name-shuffled text store is evaluated unchanged and labelled by the report.
Per-image records: each image's confusion (``PerImageIoU``), each (image, absent name) painted
share, each (image, name) presence score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.errors import BadInputError, FusionerError
from pipeline.evaluation.presence import PresenceRecords
from pipeline.evaluation.run import MODEL, RANDOM_TEXT, FoldInputs, FoldResult, random_text_table
from pipeline.gzsl import GammaSweep, PerImageIoU, TopNames, ausuc, gamma_grid, painted_share
from pipeline.gzsl import split_means as gzsl_means
from pipeline.model.calibration import calibrate_on_store, scored_names, stored_calibration
from pipeline.model.checkpoint import visual_expect
from pipeline.model.fusion import upsample_logits
from pipeline.model.scoring import FORMS, name_logits, trained_form
from pipeline.store import (
    CachedFeatureDataset,
    StoreLocation,
    as_location,
    for_fold,
    loader_kwargs,
    store_exists,
    visual_store_path,
)
from pipeline.thresholds import PAPER_THRESHOLD, Threshold

log = logging.getLogger("fusioner.evaluate")

FORM_CHOICES = (*FORMS, "both", "auto")  # auto: the form the checkpoint was trained in
PROTOCOLS = ("binary", "multiclass", "gzsl")
MODE_ALIASES = {"both": ("binary", "multiclass"), "all": PROTOCOLS}


def parse_modes(value: str) -> tuple[str, ...]:
    """``--mode``: protocols separated by commas (``both`` = binary,multiclass; ``all``);
    ``BadInputError`` for anything else."""
    modes: list[str] = []
    for part in (p.strip().lower() for p in value.split(",")):
        found = MODE_ALIASES.get(part, (part,) if part in PROTOCOLS else None)
        if found is None:
            raise BadInputError(f"--mode takes {', '.join(PROTOCOLS)} (comma-separated) or "
                                f"{' / '.join(MODE_ALIASES)}, not {value!r}")
        modes += [m for m in found if m not in modes]
    return tuple(modes)


def scored_forms(meta: dict[str, Any], choice: str) -> list[str]:
    """The forms ``--form`` asks for on a checkpoint of ``meta``."""
    if choice not in FORM_CHOICES:
        raise FusionerError(f"--form must be one of {FORM_CHOICES}, not {choice!r}")
    return {"auto": [trained_form(meta)], "both": list(FORMS)}.get(choice, [choice])


def train_store(inputs: FoldInputs, cache_dir: StoreLocation | str) -> CachedFeatureDataset:
    """The visual store the checkpoint was trained on (its plain images are calibrated on)."""
    meta = inputs.meta
    split = meta.get("train", {}).get("train_split", "train")
    path = visual_store_path(for_fold(as_location(cache_dir), int(meta["fold"])),
                             meta["visual"]["encoder"], meta["dataset"], split)
    if not store_exists(path):
        raise FusionerError(f"{inputs.checkpoint}: no calibration in the checkpoint and no train "
                            f"store {path} to choose it on (extract it, or refit)")
    return CachedFeatureDataset(path, expect={**visual_expect(meta), "dataset": meta["dataset"],
                                              "split": split})


def resolve_calibrations(inputs: FoldInputs, forms: Sequence[str],
                         cache_dir: StoreLocation | str, batch_size: int = 16,
                         progress: bool = False) -> dict[str, dict[str, Any]]:
    """Form -> the calibration to score it with: the checkpoint's, else chosen now on its train
    store exactly as ``fusioner-fit`` would (logged; ``source`` says which)."""
    out = {}
    for form in forms:
        stored = stored_calibration(inputs.meta, form)
        if stored is not None:
            out[form] = {**stored, "source": "checkpoint"}
            continue
        features = train_store(inputs, cache_dir)
        log.warning("%s: no %s-form calibration in the checkpoint: choosing gamma now on its "
                    "train images, as fusioner-fit does", inputs.checkpoint, form)
        out[form] = {**calibrate_on_store(inputs.model, features, inputs.split,
                                          inputs.text_table, form,  # type: ignore[arg-type]
                                          batch_size, progress),
                     "source": "fusioner-evaluate (the checkpoint has none)"}
    return out


@dataclass
class GeneralizedResult:
    """One (method, form) of the generalized protocol on one fold."""

    gamma: float
    names: list[int]
    seen: tuple[int, ...]
    unseen: tuple[int, ...]
    sweep: GammaSweep
    images: PerImageIoU
    absent: dict[tuple[int, int], float] = field(default_factory=dict)  # (row, name) -> share

    def update(self, image: int, top: TopNames, label: np.ndarray) -> None:
        """Score one image: the curve, the prediction at ``gamma``, its absent unseen names."""
        self.sweep.update(top, label)
        pred = top.prediction(self.gamma, PAPER_THRESHOLD)
        self.images.update(image, pred, label)
        labelled = set(np.unique(label).tolist())
        for c in self.unseen:
            if c not in labelled:
                self.absent[image, c] = painted_share(pred == c, label)

    def figures(self) -> dict[str, Any]:
        """seen/unseen mIoU, hIoU at gamma; gamma; AUSUC; the absent-name painted share; the
        same three IoU figures uncalibrated (gamma 0)."""
        per_class = self.images.total().result().per_class
        ious = np.array([per_class[c] for c in self.names])
        seen, unseen, hiou = gzsl_means(ious, self.names, self.seen)
        curve = self.sweep.curve(self.seen)
        zero = int(np.abs(curve["gamma"]).argmin())
        shares = [s for s in self.absent.values() if s == s]
        return {"seen_miou": float(seen), "unseen_miou": float(unseen), "hiou": float(hiou),
                "gamma": self.gamma, "ausuc": ausuc(curve["unseen_miou"], curve["seen_miou"]),
                "absent_painted_share": float(np.mean(shares)) if shares else float("nan"),
                "uncalibrated": {key: float(curve[key][zero])
                                 for key in ("seen_miou", "unseen_miou", "hiou")}}


@dataclass
class OpenVocabularyResult:
    """The generalized protocol's results by (method, form), the presence records by method and
    the calibrations used, of one fold."""

    calibrations: dict[str, dict[str, Any]]
    gzsl: dict[tuple[str, str], GeneralizedResult]
    presence: dict[str, PresenceRecords]
    images: int = 0


@torch.no_grad()
def evaluate_open_vocabulary(inputs: FoldInputs, calibrations: dict[str, dict[str, Any]], *,
                             presence: bool, baselines: bool = True, seed: int = 0,
                             threshold: Threshold = PAPER_THRESHOLD, batch_size: int = 16,
                             num_workers: int = 0, progress: bool = True
                             ) -> OpenVocabularyResult:
    """One pass over the split: the generalized protocol in every form of ``calibrations`` and
    (``presence``) every (image, unseen name) binary episode; random text beside the model."""
    model = inputs.model.eval()
    device = next(model.parameters()).device
    names, seen_flags = scored_names(inputs.split)
    unseen = list(inputs.split.unseen)
    grid = gamma_grid(model.config.temperature)
    gzsl_tables = {MODEL: inputs.text_table[names]}
    presence_tables = {MODEL: inputs.text_table[unseen]} if presence else {}
    if baselines:
        gzsl_tables[RANDOM_TEXT] = random_text_table(inputs.text_table, names, seed)[names]
        if presence:  # the binary random-text baseline's table
            presence_tables[RANDOM_TEXT] = random_text_table(inputs.text_table, unseen,
                                                             seed)[unseen]
    out = OpenVocabularyResult(calibrations, {
        (method, form): GeneralizedResult(float(calibration["gamma"]), names, inputs.split.seen,
                                          inputs.split.unseen, GammaSweep(names, grid),
                                          PerImageIoU(names))
        for form, calibration in calibrations.items() for method in gzsl_tables},
        {method: PresenceRecords() for method in presence_tables})
    rules = list(dict.fromkeys([threshold, PAPER_THRESHOLD]))
    unseen_rows = [names.index(c) for c in unseen]
    loader = DataLoader(inputs.features, batch_size=batch_size, shuffle=False,
                        **loader_kwargs(num_workers))
    for batch in tqdm(loader, desc=f"open vocabulary fold {inputs.split.fold}", unit="step",
                      leave=False, disable=not progress):
        tokens = batch["patch_tokens"].to(device)
        positions = batch["index"].tolist()
        labels = (list(batch["label"].numpy()) if inputs.truth is None
                  else [inputs.truth(p) for p in positions])
        out.images += len(positions)
        alone: dict[str, torch.Tensor] = {}
        for (method, form), result in out.gzsl.items():
            logits = name_logits(model, tokens, gzsl_tables[method], form)  # type: ignore[arg-type]
            if form == "alone":
                alone[method] = logits
            for row, label in enumerate(labels):
                scores = upsample_logits(logits[row:row + 1], label.shape)[0]
                result.update(positions[row], TopNames.from_logits(scores, names, seen_flags),
                              label)
        for method, records in out.presence.items():
            logits = (alone[MODEL][:, unseen_rows] if method == MODEL and MODEL in alone
                      else name_logits(model, tokens, presence_tables[method], "alone"))
            for row, label in enumerate(labels):
                records.add_image(positions[row], logits[row], unseen, label, rules)
    return out


def run_open_vocabulary(results: Sequence[FoldResult],
                        calibrations: Sequence[dict[str, dict[str, Any]]], *, presence: bool,
                        **options: Any) -> None:
    """Attach each fold's ``OpenVocabularyResult`` (``options``: ``evaluate_open_vocabulary``'s)."""
    for result, calibration in zip(results, calibrations, strict=True):
        if not calibration and not presence:
            continue
        found = evaluate_open_vocabulary(result.inputs, calibration, presence=presence,
                                         **options)
        for (method, form), gzsl in found.gzsl.items():
            figures = gzsl.figures()
            log.info("fold %d gzsl %s %s: gamma %.2f seen mIoU %.4f unseen mIoU %.4f hIoU %.4f "
                     "AUSUC %.4f", result.inputs.split.fold, form, method, figures["gamma"],
                     figures["seen_miou"], figures["unseen_miou"], figures["hiou"],
                     figures["ausuc"])
        result.open_vocabulary = found
