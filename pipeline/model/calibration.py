"""A checkpoint's calibration for the generalized protocol: SPNet's gamma, chosen on TRAIN images.

Every name of the dataset (seen and unseen; background is the "none" region) is scored on the
train store's plain images (view 0; all of them, or ``images`` of them evenly spaced in store
order, ``calibration_rows``) in the checkpoint's form (``scoring.trained_form``), at the
store's label size; the unseen classes' pixels are labelled there (training only ignores them),
so seen AND unseen mIoU can be measured without touching the val images. ``gamma`` is the one of
``pipeline.gzsl.gamma_grid`` (steps of 0.25 logits over [-2/T, 2/T]) with the highest hIoU at
the 0.5 rule (``pipeline.gzsl.choose_gamma``: ties to the smallest |gamma|).

``fusioner-fit`` stores it as ``meta["calibration"]``; ``fusioner-evaluate`` computes it the same
way for a checkpoint without one (or for another form), in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.data.sampling import evenly_spaced
from pipeline.data.splits import ZeroShotSplit
from pipeline.gzsl import GAMMA_STEP, GammaSweep, TopNames, choose_gamma, gamma_grid
from pipeline.metrics import metric_number
from pipeline.model.fusion import FusionModel, upsample_logits
from pipeline.model.scoring import Form, name_logits
from pipeline.store.dataset import CachedFeatureDataset
from pipeline.thresholds import PAPER_THRESHOLD

log = logging.getLogger("fusioner.calibration")

CRITERION = ("highest hIoU (2SU/(S+U) of seen and unseen mIoU, every name against every other, "
             "at probability 0.5) on the grid; ties: the smallest |gamma|, then the positive one")


def scored_names(split: ZeroShotSplit) -> tuple[list[int], list[bool]]:
    """The names the generalized protocol scores (seen and unseen, by class id; never the
    background) and which of them are seen."""
    names = sorted({*split.seen, *split.unseen})
    return names, [c in set(split.seen) for c in names]


def calibration_rows(count: int, images: int = 0) -> list[int]:
    """Positions of the images calibration reads among ``count``: ``images`` of them evenly
    spaced, the first and the last included; all when ``images`` is 0 or at least ``count``."""
    return evenly_spaced(count, images or count)


@torch.no_grad()
def calibrate_on_store(model: FusionModel, features: CachedFeatureDataset, split: ZeroShotSplit,
                       text_table: Tensor, form: Form, batch_size: int = 16,
                       progress: bool = False, images: int = 0) -> dict[str, Any]:
    """The calibration record of ``model`` on the plain images of ``features`` (a train store;
    ``images``: that many of them, ``calibration_rows``)."""
    model = model.eval()
    device = next(model.parameters()).device
    names, seen = scored_names(split)
    table = text_table.to(device)[names]
    grid = gamma_grid(model.config.temperature)
    sweep = GammaSweep(names, grid, PAPER_THRESHOLD)
    reader = features.with_block_cache(1)  # in store order, shard by shard
    total = len(reader)
    rows = calibration_rows(total, images)
    if len(rows) < total:
        reader = reader.subset([reader.indices[p] for p in rows])
    loader = DataLoader(reader, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc=f"calibrate ({form})", unit="step", leave=False,
                      disable=not progress):
        logits = name_logits(model, batch["patch_tokens"].to(device), table, form)
        for row, label in enumerate(batch["label"].numpy()):
            scores = upsample_logits(logits[row:row + 1], label.shape)[0]
            sweep.update(TopNames.from_logits(scores, names, seen), label)
    curve = sweep.curve(split.seen)
    gamma = choose_gamma(grid, curve["hiou"])
    at = int(abs(grid - gamma).argmin())
    size = "x".join(str(n) for n in reader[0]["label"].shape) if len(reader) else "-"
    log.info("calibration (%s form) on %d %s images: gamma %.2f, train hIoU %.4f (seen %.4f, "
             "unseen %.4f)", form, len(reader), features.attrs.get("split"), gamma,
             curve["hiou"][at], curve["seen_miou"][at], curve["unseen_miou"][at])
    return {
        "gamma": float(gamma),
        "form": form,
        "threshold": PAPER_THRESHOLD,
        "chosen_on": (f"{features.attrs.get('dataset')}/{features.attrs.get('split')} store, "
                      f"plain images (view 0): {len(reader)}"
                      f"{'' if len(reader) == total else f' of {total} (evenly spaced)'} images "
                      f"at the label size {size}"),
        "criterion": CRITERION,
        "grid": {"start": float(grid[0]), "stop": float(grid[-1]), "step": GAMMA_STEP},
        "images": len(reader),
        **{key: metric_number(curve[key][at]) for key in ("seen_miou", "unseen_miou", "hiou")},
        "curve": {key: [metric_number(v) for v in values] for key, values in curve.items()},
    }


def stored_calibration(meta: Mapping[str, Any], form: str) -> dict[str, Any] | None:
    """``meta["calibration"]`` if it was made for ``form``, else None."""
    calibration = meta.get("calibration")
    if isinstance(calibration, Mapping) and calibration.get("form") == form:
        return dict(calibration)
    return None
