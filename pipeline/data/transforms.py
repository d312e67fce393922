"""Resizing images and label maps to the training resolution."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def image_to_tensor(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """RGB image -> (3, H, W) float tensor in [0, 1] at ``size`` = (H, W), bicubic."""
    height, width = size
    resized = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float() / 255.0


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 label map -> (H, W) by nearest neighbour (ids and 255 = ignore preserved)."""
    height, width = size
    if label.shape == (height, width):
        return label
    return np.asarray(Image.fromarray(label).resize((width, height), Image.Resampling.NEAREST))
