"""Fusioner: open-vocabulary segmentation from frozen encoders and a small trained fusion module."""

from pipeline import _compat  # noqa: F401  (must run before timm/open_clip import torchvision)

__version__ = "0.1.0"

_LAZY = {"segment", "load_segmenter", "Segmenter", "SegmentationResult"}


def __getattr__(name: str) -> object:
    """``pipeline.segment`` & co. import the segmentation stack (encoders, torch) on first use."""
    if name in _LAZY:
        from pipeline import segmentation

        return getattr(segmentation, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
