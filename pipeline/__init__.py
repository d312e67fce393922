"""Fusioner: open-vocabulary segmentation from frozen encoders and a small trained fusion module."""

from pipeline import _compat  # noqa: F401  (must run before timm/open_clip import torchvision)

__version__ = "0.1.0"
