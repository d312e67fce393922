"""Scoring many class names on the same images, and the generalized (every name against every
other) decision rule with SPNet's calibration.

Two forward-pass forms of the fusion module:
- ``alone``: each name is its own query (one text token next to the patches), as the binary
  protocol and single-name training episodes ask; a name's logits never depend on the others.
- ``joint``: all names in one pass (K text tokens next to the patches), the module's joint form:
  the names attend to each other, as vocabulary-softmax training episodes see them.

Decision (``generalized_prediction``): a name's logit minus ``gamma`` if it is a SEEN name
(SPNet's calibration: seen names are over-confident after training on them), then each pixel
takes the highest calibrated logit among the names whose calibrated probability exceeds the
threshold (0.5: logit > 0), else no name (``NONE``).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from pipeline.metrics import NONE
from pipeline.model.fusion import FusionModel

Form = Literal["alone", "joint"]
FORMS: tuple[str, ...] = get_args(Form)
# (image, name) pairs per forward pass in the ``alone`` form: 16 keeps a pass's decoder maps in the
# CPU's caches (a pair 1.6x faster than at 64 on two cores, the logits bit for bit the same;
# bench/RESULTS.md)
DEFAULT_PAIRS_PER_PASS = 16


@torch.no_grad()
def name_logits(model: FusionModel, patch_tokens: Tensor, text: Tensor, form: Form = "alone",
                pairs_per_pass: int = DEFAULT_PAIRS_PER_PASS) -> Tensor:
    """(B, K, H', W') float32 logits of every name in ``text`` (K, D) on every image of
    ``patch_tokens`` (B, h, w, C), at the decoder's resolution, in the given ``form``."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, not {form!r}")
    batch, count = patch_tokens.shape[0], text.shape[0]
    if form == "joint":
        return model(patch_tokens, text.unsqueeze(0).expand(batch, -1, -1)).float()
    pairs = torch.cartesian_prod(torch.arange(batch), torch.arange(count))  # image-major
    parts = []
    for start in range(0, len(pairs), max(1, pairs_per_pass)):
        chunk = pairs[start:start + pairs_per_pass].to(patch_tokens.device)
        parts.append(model(patch_tokens[chunk[:, 0]], text[chunk[:, 1]].unsqueeze(1)).float())
    logits = torch.cat(parts)[:, 0]
    return logits.reshape(batch, count, *logits.shape[-2:])


def calibrate(logits: Tensor | np.ndarray, seen: Tensor | np.ndarray,
              gamma: float) -> Tensor | np.ndarray:
    """``logits`` (..., K, H, W) with ``gamma`` subtracted from the SEEN names' (``seen``: (K,)
    bool)."""
    if isinstance(logits, Tensor):
        shift = torch.as_tensor(seen, dtype=logits.dtype, device=logits.device) * gamma
    else:
        shift = np.asarray(seen, dtype=np.float64) * gamma
    return logits - shift[:, None, None]


def generalized_prediction(logits: Tensor | np.ndarray, class_ids: np.ndarray | list[int],
                           seen: Tensor | np.ndarray, gamma: float = 0.0,
                           threshold: float = 0.5) -> np.ndarray:
    """(K, H, W) logits of names ``class_ids`` -> (H, W) int64 map of class ids, ``NONE`` where
    no calibrated probability exceeds ``threshold`` (see the module docstring)."""
    top, best = best_names(logits, seen, gamma)
    ids = np.asarray(class_ids, dtype=np.int64)[best]
    return np.where(top > threshold_logit(threshold), ids, NONE)


def best_names(logits: Tensor | np.ndarray, seen: Tensor | np.ndarray,
               gamma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) highest calibrated logit of the (K, H, W) ``logits`` and (H, W) the position of
    its name: the arg-max half of ``generalized_prediction`` (for names scored in chunks)."""
    scores = np.asarray(calibrate(_numpy(logits), _numpy(seen).astype(bool), gamma))
    best = scores.argmax(axis=0)
    return np.take_along_axis(scores, best[None], axis=0)[0], best


def threshold_logit(threshold: float) -> float:
    """The logit a probability ``threshold`` corresponds to (-inf at 0, +inf at 1): "probability
    > threshold" is "logit > threshold_logit(threshold)"."""
    if 0.0 < threshold < 1.0:
        return float(np.log(threshold / (1.0 - threshold)))
    return -np.inf if threshold <= 0.0 else np.inf


def _numpy(values: Tensor | np.ndarray) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)


VOCABULARY_EPISODE = "vocabulary"  # ``fusioner-fit --episode``: a softmax over all seen names


def joint_width(meta: dict) -> int:
    """How many names a training episode of the checkpoint asked in one pass (its fold's seen
    names; 0 if unknown): the most a ``joint`` pass holds (``name_groups``)."""
    return len(meta.get("seen", ()))


def name_groups(count: int, form: Form, joint_limit: int,
                pairs_per_pass: int = DEFAULT_PAIRS_PER_PASS) -> list[range]:
    """The names of each forward pass (for one image): ``alone``, ``pairs_per_pass`` at a time;
    ``joint``, the fewest passes of at most ``joint_limit`` names (0: all in one), of equal
    sizes (within one): a vocabulary larger than training ever asked at once is cut in chunks."""
    size = max(1, pairs_per_pass if form == "alone" else (joint_limit or count))
    passes = math.ceil(count / size)
    bounds = [round(i * count / passes) for i in range(passes + 1)] if form == "joint" else [
        min(i * size, count) for i in range(passes + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def trained_form(meta: dict) -> Form:
    """The form a checkpoint was trained in: ``joint`` after vocabulary episodes (all seen names
    in one pass), ``alone`` after one-name-at-a-time episodes (every other episode kind)."""
    return "joint" if meta.get("train", {}).get("episode") == VOCABULARY_EPISODE else "alone"
