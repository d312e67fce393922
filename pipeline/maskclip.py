"""MaskCLIP, the training-free baseline (Zhou et al., ECCV 2022): dense CLIP features.

CLIP's image tower pools patch tokens through the last block's attention. MaskCLIP skips the
query-key attention of that block: each patch's value projection (of its ln_1-normalised input)
goes through ``out_proj``, then ``ln_post`` and ``proj``, landing every patch in CLIP's joint
image-text space (we keep no residual and no MLP of the last block, the ClearCLIP reading).
Pixels are scored by cosine with CLIP's prompt-averaged class embeddings, scaled by CLIP's
trained logit scale (100) and soft-maxed over the classes asked for.

It needs the OpenAI CLIP ViT-B/16 weights (local, or from the Hugging Face hub).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.encoders import create_text_encoder, create_visual_encoder
from pipeline.encoders.visual import OpenClipVisualEncoder
from pipeline.errors import FusionerError, MissingWeightsError
from pipeline.segmentation.core import DenseSegmenter

CLIP_VISUAL = "clip_vitb16"
CLIP_TEXT = "clip_vitb16_text"
LOGIT_SCALE = 100.0  # exp(logit_scale) of the trained OpenAI CLIP models
NEEDS_WEIGHTS = (
    "--method maskclip needs the OpenAI CLIP ViT-B/16 checkpoint (open_clip 'ViT-B-16', "
    "pretrained 'openai'): from the hub cache, or at "
    "$FUSIONER_WEIGHTS/clip_vitb16.{safetensors,pth,pt,bin}, or pass --weights PATH"
)


def dense_clip_features(visual: nn.Module, normalised: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, 3, H, W) CLIP-normalised pixels -> (B, h, w, D) patch embeddings in the joint space."""
    x = visual._embeds(normalised)
    blocks = visual.transformer.resblocks
    if not visual.transformer.batch_first:
        raise FusionerError("MaskCLIP needs a batch-first open_clip transformer")
    for block in blocks[:-1]:
        x = block(x)
    last = blocks[-1]
    attn = last.attn
    if not isinstance(attn, nn.MultiheadAttention):
        raise FusionerError(f"MaskCLIP needs nn.MultiheadAttention, got {type(attn).__name__}")
    width = x.shape[-1]
    value = F.linear(last.ln_1(x), attn.in_proj_weight[2 * width:],
                     attn.in_proj_bias[2 * width:] if attn.in_proj_bias is not None else None)
    x = visual.ln_post(last.ls_1(attn.out_proj(value)))
    if visual.proj is not None:
        x = x @ visual.proj
    grid = (normalised.shape[2] // stride, normalised.shape[3] // stride)
    patches = x[:, 1:]  # one class token, no registers in CLIP towers
    return patches.reshape(x.shape[0], grid[0], grid[1], -1)


class MaskClipSegmenter(DenseSegmenter):
    """CLIP ViT-B/16 image and text towers, no training; scores = cosine x 100, softmax."""

    method = "maskclip"

    def __init__(self, weights: Path | str | None = None, text_weights: Path | str | None = None,
                 random_init: bool = False, image_size: tuple[int, int] | None = None,
                 device: str | torch.device = "cpu") -> None:
        super().__init__()
        try:
            visual = create_visual_encoder(CLIP_VISUAL, weights, random_init, image_size)
            text = create_text_encoder(CLIP_TEXT, text_weights or weights, random_init)
        except MissingWeightsError as exc:
            raise MissingWeightsError(f"{NEEDS_WEIGHTS} ({exc})") from exc
        assert isinstance(visual, OpenClipVisualEncoder)
        self.device = torch.device(device)
        self.encoder = visual.to(self.device).eval()
        self.text_encoder = text

    def _encode_text(self, names: list[str]) -> torch.Tensor:
        return self.text_encoder.encode_classes(names)

    def scores(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(B, K, h, w) scaled cosine similarity of each patch with each class."""
        normalised = (pixels - self.encoder.mean) / self.encoder.std
        dense = F.normalize(dense_clip_features(self.encoder.visual, normalised,
                                                self.encoder.stride), dim=-1)
        cosine = torch.einsum("bhwd,kd->bkhw", dense, F.normalize(text, dim=-1))
        return cosine * LOGIT_SCALE

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Softmax over the classes asked for (the winner's share of each pixel)."""
        return scores.softmax(dim=1)
