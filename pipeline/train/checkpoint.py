"""``last.pt``: the fusion checkpoint plus what resuming needs (optimizer, step, epoch, RNG, log).

It has the same ``format``/``model``/``meta`` keys as ``checkpoint.pt``, so
``load_fusion_checkpoint`` also reads it. Written at the end of every epoch, atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import FusionerError, first_line
from pipeline.model.checkpoint import CHECKPOINT_FORMAT, atomic_save

# meta entries that must be equal to resume (the training options and the data they read).
RESUME_KEYS = ("model_config", "visual", "text", "dataset", "fold", "seen", "unseen", "train",
               "views", "image_split")


def rng_state() -> dict[str, Any]:
    """Torch CPU (and CUDA) generator states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        meta: Mapping[str, Any], epoch: int, step: int,
                        history: list[dict[str, Any]]) -> None:
    """Everything to continue after ``epoch`` completed epochs (``step`` optimizer steps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "meta": dict(meta),
                 "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
                 "rng": rng_state(), "history": list(history)}, path)


def load_training_state(path: Path, meta: Mapping[str, Any], model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model/optimizer/RNG from ``path``; ``{"epoch", "step", "history"}``.

    ``FusionerError`` if it was made by another configuration or from other stores.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise FusionerError(f"{path}: unreadable training state ({first_line(exc)}); "
                            "delete it to restart") from exc
    if (not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT
            or "optimizer" not in state):
        raise FusionerError(f"{path}: not a training state; delete it to restart")
    wrong = [k for k in RESUME_KEYS if state["meta"].get(k) != meta.get(k)]
    if wrong:
        raise FusionerError(f"{path}: cannot resume, it was trained with other {', '.join(wrong)} "
                            f"(use another --out, or drop --resume to start over)")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return {"epoch": int(state["epoch"]), "step": int(state["step"]),
            "history": list(state["history"])}
