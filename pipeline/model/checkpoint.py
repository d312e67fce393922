"""The fusion checkpoint: weights plus everything needed to rebuild and to trust the model.

``checkpoint.pt`` = ``{"format", "model": state_dict, "meta": {...}}`` with plain python values
and tensors only (loads with ``torch.load(weights_only=True)``). ``meta`` holds:
``model_config`` (``FusionConfig.to_dict()``), ``visual`` / ``text`` provenance of the stores it
was trained from (including where their weights came from: ``weights_source``, ``hub_id``,
``hub_revision``; for a precomputed text table its files' sha256, model and prompt),
``dataset``, ``fold``, ``seen``, ``unseen``, ``class_names``, ``train`` (the training options)
and ``metrics`` (final training metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import BadInputError, FusionerError, first_line
from pipeline.model.fusion import FusionModel, build_model
from pipeline.store.layout import SOURCE_KEYS, check_provenance
from pipeline.text_tables.source import TABLE_KEYS

CHECKPOINT_FORMAT = "fusioner-fusion/1"
# What a control text store records (``pipeline.encoders.controls``): kept in the checkpoint's
# ``meta["text"]`` so that everything scored from it can say it is a control.
CONTROL_KEYS = ("control", "control_seed", "control_source", "control_permutation")
# Store attributes that identify an encoder: a checkpoint only runs on features that match them.
# ``SOURCE_KEYS`` (where the weights came from: option/env/package/hub, the hub repo id and
# commit) are recorded beside the sha256 but not compared: the sha256 identifies the weights.
VISUAL_KEYS = ("encoder", "library_id", "weights_sha256", "random_init", "image_size",
               "patch_size", "grid_size", "feature_dim", *SOURCE_KEYS)
TEXT_KEYS = ("encoder", "library_id", "weights_sha256", "random_init", "feature_dim",
             *SOURCE_KEYS, *TABLE_KEYS,  # a precomputed table's files, model and prompt
             *CONTROL_KEYS)  # a control's kind, seed and source
IDENTITY_KEYS = ("encoder", "library_id", "weights_sha256", "random_init", "feature_dim")


def provenance(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The ``keys`` of a store's attributes (those present), for a checkpoint's ``meta``."""
    return {k: attrs[k] for k in keys if k in attrs}


def save_fusion_checkpoint(path: Path | str, model: FusionModel, meta: Mapping[str, Any]) -> Path:
    """Write weights + meta atomically (a crash never leaves a half-written checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "meta": dict(meta)}
    atomic_save(payload, path)
    return path


def atomic_save(payload: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file, then rename over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(dict(payload), tmp)
    tmp.replace(path)


def load_fusion_checkpoint(path: Path | str,
                           map_location: str | torch.device = "cpu") -> tuple[FusionModel, dict]:
    """(model in eval mode, meta) from ``checkpoint.pt`` (or a ``last.pt``: same keys)."""
    path = Path(path)
    if not path.exists():
        raise FusionerError(f"{path}: no such checkpoint (run fusioner-fit first)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is one message
        reason = first_line(exc)
        raise BadInputError(f"{path}: not a readable fusion checkpoint ({reason})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise BadInputError(f"{path}: not a fusion checkpoint of format {CHECKPOINT_FORMAT}")
    try:
        meta = payload["meta"]
        model = build_model(meta["model_config"])
        model.load_state_dict(payload["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise BadInputError(f"{path}: damaged fusion checkpoint ({first_line(exc)})") from exc
    return model.to(map_location).eval(), meta


def visual_expect(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``expect=`` for a visual store the checkpoint may run on (same encoder and weights)."""
    return {k: meta["visual"][k] for k in IDENTITY_KEYS if k in meta["visual"]}


def text_expect(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``expect=`` for a text store the checkpoint may run on (same encoder and weights)."""
    return {k: meta["text"][k] for k in IDENTITY_KEYS if k in meta["text"]}


def check_checkpoint_provenance(meta: Mapping[str, Any],
                                visual_attrs: Mapping[str, Any] | None = None,
                                text_attrs: Mapping[str, Any] | None = None,
                                where: Path | str = "features") -> None:
    """Raise ``StoreError`` if store attributes come from another encoder than the checkpoint's.

    Pass the ``attrs`` of a visual store and/or of a text store (or an encoder's provenance
    dict with the same keys).
    """
    if visual_attrs is not None:
        check_provenance(Path(where), visual_attrs, visual_expect(meta))
    if text_attrs is not None:
        check_provenance(Path(where), text_attrs, text_expect(meta))
