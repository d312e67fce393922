"""The Fusioner fusion module: early fusion of cached visual patch tokens and class-name embeddings.

visual tokens (B, h*w, C_v) -> LayerNorm -> Linear -> LayerNorm           \
                                                                            concat -> L pre-norm
text tokens   (B, K, C_t)   -> LayerNorm -> Linear + class-slot embedding /  blocks -> LayerNorm
-> split -> Linear (patches) / Linear (classes) -> conv upsampler (patches) -> cosine / 0.07.

Classes per sample vary: ``text`` is padded to the batch's largest K and ``text_mask`` (B, K,
True = real class) hides the padding from attention, so a sample's logits do not depend on how
much padding its batch needed. Logits of padded slots are returned but meaningless; the loss and
the predictions mask them out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.model.decoder import ConvUpsampler
from pipeline.model.layers import Block


@dataclass(frozen=True)
class FusionConfig:
    """Every hyper-parameter needed to rebuild a ``FusionModel`` (stored in checkpoints).

    ``decoder_channels`` empty -> (dim/2, dim/4, dim/8) (three x2 stages); ``embed_dim`` 0 -> dim.
    Defaults are the paper's (d=512, L=12, 8 heads); the small CPU default is ``FitConfig``'s.
    """

    visual_dim: int
    text_dim: int
    dim: int = 512
    layers: int = 12
    heads: int = 8
    mlp_ratio: float = 4.0
    drop_path: float = 0.1
    decoder_channels: tuple[int, ...] = field(default_factory=tuple)
    embed_dim: int = 0
    temperature: float = 0.07

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if not self.decoder_channels:
            channels = tuple(max(self.dim // 2**i, 8) for i in (1, 2, 3))
            object.__setattr__(self, "decoder_channels", channels)
        object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))
        if not self.embed_dim:
            object.__setattr__(self, "embed_dim", self.dim)

    @property
    def upsample(self) -> int:
        """Decoder output size = patch grid size * ``upsample``."""
        return 2 ** len(self.decoder_channels)

    def to_dict(self) -> dict[str, Any]:
        """Plain python values only (``torch.load(weights_only=True)`` safe)."""
        out = asdict(self)
        out["decoder_channels"] = list(self.decoder_channels)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FusionConfig:
        return cls(**{**values, "decoder_channels": tuple(values.get("decoder_channels", ()))})



class FusionModel(nn.Module):
    """``model(patch_tokens (B,h,w,Cv), text (B,K,Ct), text_mask (B,K)) -> logits (B,K,H',W')``."""

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.config = config
        d = config.dim
        self.visual_in = nn.Sequential(nn.LayerNorm(config.visual_dim),
                                       nn.Linear(config.visual_dim, d), nn.LayerNorm(d))
        self.text_in = nn.Sequential(nn.LayerNorm(config.text_dim), nn.Linear(config.text_dim, d))
        self.class_slot = nn.Parameter(torch.zeros(d))  # modality embedding on every text token
        rates = torch.linspace(0, config.drop_path, config.layers).tolist()
        self.blocks = nn.ModuleList(Block(d, config.heads, config.mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(d)
        self.patch_out = nn.Linear(d, d)
        self.class_out = nn.Linear(d, config.embed_dim)
        self.decoder = ConvUpsampler(d, config.decoder_channels, config.embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.class_slot, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def fuse(self, patch_tokens: Tensor, text: Tensor,
             text_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Fused (B, d, h, w) patch map and (B, K, embed_dim) class tokens."""
        b, h, w, _ = patch_tokens.shape
        visual = self.visual_in(patch_tokens.reshape(b, h * w, -1))
        classes = self.text_in(text) + self.class_slot
        x = torch.cat([visual, classes], dim=1)
        key_mask = None
        if text_mask is not None and not bool(text_mask.all()):
            key_mask = torch.cat([text_mask.new_ones(b, h * w), text_mask.bool()], dim=1)
        for block in self.blocks:
            x = block(x, key_mask)
        x = self.norm(x)
        patches = self.patch_out(x[:, : h * w]).transpose(1, 2).reshape(b, -1, h, w)
        return patches, self.class_out(x[:, h * w:])

    def forward(self, patch_tokens: Tensor, text: Tensor,
                text_mask: Tensor | None = None) -> Tensor:
        """Mask logits (B, K, h*up, w*up): cosine(pixel feature, class token) / temperature."""
        patches, classes = self.fuse(patch_tokens, text, text_mask)
        return self.decoder.cosine_logits(patches, classes) / self.config.temperature

    @torch.no_grad()
    def predict(self, patch_tokens: Tensor, text: Tensor, text_mask: Tensor | None = None,
                size: tuple[int, int] | None = None) -> Tensor:
        """Per-class foreground probabilities (B, K, H, W), upsampled to ``size`` if given.

        ``text`` may be (K, C_t): the same class names for every image.
        """
        if text.dim() == 2:
            text = text.unsqueeze(0).expand(patch_tokens.shape[0], -1, -1)
        logits = self(patch_tokens, text, text_mask).float()
        if size is not None:
            logits = upsample_logits(logits, size)
        return logits.sigmoid()


def upsample_logits(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of (B, K, H', W') logits to ``size`` = (H, W) (e.g. the label size)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def build_model(config: FusionConfig | dict[str, Any]) -> FusionModel:
    """A ``FusionModel`` from a config or its ``to_dict()`` form."""
    if isinstance(config, dict):
        config = FusionConfig.from_dict(config)
    return FusionModel(config)
