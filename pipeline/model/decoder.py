"""The light conv upsampler on the fused patch grid (visual tokens only)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class UpStage(nn.Module):
    """3x3 conv -> InstanceNorm -> ReLU -> bilinear x2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = nn.InstanceNorm2d(out_channels, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.norm(self.conv(x)), inplace=True)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class ConvUpsampler(nn.Module):
    """(B, C, h, w) -> (B, out_channels, h * 2^S, w * 2^S): S up-stages, then a 1x1 conv.

    Channels shrink per stage (e.g. d/2, d/4, d/8): the last stages run at high resolution and
    dominate the cost on CPU.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        pairs = zip(widths, widths[1:], strict=False)
        self.stages = nn.Sequential(*(UpStage(a, b) for a, b in pairs))
        self.out = nn.Conv2d(widths[-1], out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.stages(x))

    def cosine_logits(self, x: Tensor, classes: Tensor) -> Tensor:
        """cosine(``out(stages(x))`` per pixel, ``classes`` (B, K, out_channels)) as (B, K, H, W).

        Exactly ``einsum(normalize(self(x)), normalize(classes))``, computed without the wide
        (out_channels) pixel map: with f the last stage's c-channel pixel feature and y = W f + b
        the 1x1 conv, y . t = f . (W^T t) + b . t and |y|^2 = f^T (W^T W) f + 2 (W^T b) . f + b . b,
        all at width c (e.g. 32 instead of 256) where the map is largest. Runs in float32 or wider.
        """
        features = self.stages(x)
        dtype = torch.promote_types(features.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            features = features.to(dtype)
            weight = self.out.weight.flatten(1).to(dtype)  # (E, c)
            bias = self.out.bias.to(dtype)  # (E,)
            classes = F.normalize(classes.to(dtype), dim=-1)
            dots = torch.einsum("bchw,bkc->bkhw", features, classes @ weight)
            dots = dots + (classes @ bias)[..., None, None]
            gram = weight.T @ weight  # (c, c)
            linear = (weight.T @ bias)[None, :, None, None]
            mixed = torch.einsum("dc,bchw->bdhw", gram, features)
            squared = (features * (mixed + 2 * linear)).sum(1)
            norm = (squared + bias @ bias).clamp_min(1e-24).sqrt()  # F.normalize's eps, squared
            return dots / norm.unsqueeze(1)
