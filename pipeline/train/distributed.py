"""Single process or ``torchrun`` DDP, chosen from the environment (no code change needed).

Under ``torchrun`` (``WORLD_SIZE`` > 1) one process per GPU (NCCL) or per CPU worker (gloo);
only rank 0 writes files, metrics are summed over ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pipeline.errors import FusionerError


@dataclass(frozen=True)
class Runtime:
    """Where this process runs and which rank it is."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def autocast(self) -> bool:
        """bf16 autocast on CUDA; full fp32 on CPU (deterministic)."""
        return self.device.type == "cuda"


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; an unavailable ``cuda`` is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise FusionerError("--device cuda asked for, but no CUDA device is available")
    return device


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def setup_runtime(device: str = "auto") -> Runtime:
    """Pick the device (``auto``: CUDA if present) and join the process group under torchrun."""
    device = resolve_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Runtime(torch.device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    run_on = torch.device("cuda", local_rank) if device == "cuda" else torch.device("cpu")
    return Runtime(run_on, dist.get_rank(), dist.get_world_size())


def all_sum(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Sum over ranks (identity in a single process)."""
    if runtime.distributed:
        tensor = tensor.to(runtime.device)
        dist.all_reduce(tensor)
    return tensor.cpu()


def global_mean(total: torch.Tensor, count: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """``total / count`` over the whole global batch (all ranks' terms summed).

    Under DDP the value is the global mean on every rank, and the gradient is that of
    ``total * world_size / global_count``: DDP's average over ranks then equals the gradient
    of the one-process loss on the same global batch (a per-rank mean would weight ranks by
    their own label counts).
    """
    if not runtime.distributed:
        return total / count.clamp(min=1.0)
    terms = torch.stack([total.detach(), count.detach().to(total.dtype)])
    dist.all_reduce(terms)
    denominator = terms[1].clamp(min=1.0)
    local = total * runtime.world_size / denominator
    return local + (terms[0] / denominator - local).detach()


def teardown(runtime: Runtime) -> None:
    """Leave the process group (after the last collective)."""
    if runtime.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
