"""Per-step schedules: linear warm-up, then cosine from ``start`` to ``end`` (lr and weight decay).

Schedules are pure functions of the global step, so resuming needs only the step count.
"""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, start: float,
                  end: float) -> float:
    """Linear warm-up to ``start`` over ``warmup_steps``, then cosine to ``end`` (last step)."""
    if warmup_steps > 0 and step < warmup_steps:
        return start * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps - 1, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def set_schedule(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    """Apply this step's lr to every group and weight decay to the decayed groups only."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if group["weight_decay"] > 0:
            group["weight_decay"] = weight_decay


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices/kernels decayed; biases, norms and embeddings not."""
    decay, keep = [], []
    for _, param in sorted(model.named_parameters()):
        if param.requires_grad:
            (keep if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": keep, "weight_decay": 0.0}]
