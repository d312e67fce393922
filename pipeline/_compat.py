"""Make the PyPI torchvision wheel importable next to the CPU-only torch wheel.

PyPI's torchvision 0.28 is built against CUDA torch; its C extension cannot load with the CPU
build of torch 2.13, and torchvision then fails at import because it registers fake kernels for
``torchvision::nms``/``qnms`` without checking that the operators exist. We only use the Python
parts of torchvision (transforms, through timm and open_clip), so when the operators are missing we
declare their schemas (no kernels): importing works, and calling ``nms`` would still fail loudly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library: torch.library.Library | None = None


def _operator_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name).default  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


def _load_torchvision_extension(package: Path) -> bool:
    """Load torchvision's C extension (it defines the operators); False if it cannot load here."""
    for library in sorted(package.glob("_C*.so")):
        try:
            torch.ops.load_library(str(library))
        except (OSError, RuntimeError):
            return False
        return True
    return False


def declare_missing_torchvision_ops() -> None:
    """Declare torchvision operator schemas that its unloadable C extension would have defined."""
    global _library
    spec = importlib.util.find_spec("torchvision")
    if _library is not None or spec is None or spec.origin is None:
        return
    missing = [name for name in _SCHEMAS if not _operator_exists(name)]
    if missing and _load_torchvision_extension(Path(spec.origin).parent):
        missing = [name for name in _SCHEMAS if not _operator_exists(name)]  # a matching build
    if not missing:
        return
    _library = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        _library.define(_SCHEMAS[name])


declare_missing_torchvision_ops()
