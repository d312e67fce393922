"""The light conv upsampler on the fused patch grid (visual tokens only)."""

from __future__ import annotations

from collections.abc import Sequence

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
