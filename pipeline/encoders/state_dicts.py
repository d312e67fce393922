"""Reading checkpoints safely (safetensors or ``torch.load(weights_only=True)``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from pipeline.errors import FusionerError

_NESTED_KEYS = ("state_dict", "model", "teacher", "module")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file; nested ``{"state_dict": ...}``-style wrappers unwrapped."""
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is one message
        raise FusionerError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from exc
    while isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in _NESTED_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict):
        raise FusionerError(f"{path}: checkpoint holds no state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def strip_prefixes(
    state: dict[str, torch.Tensor], prefixes: Iterable[str]
) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes such as ``module.`` or ``module.base_encoder.`` from keys."""
    ordered = sorted({*prefixes, "module."}, key=len, reverse=True)
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in ordered:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        cleaned[key] = value
    return cleaned
