"""Frozen visual encoders: one feature contract, each owning its preprocessing.

Contract: ``forward(pixels)`` returns ``{"patch_tokens": (B, h, w, C), "cls_token": (B, C)}`` -
the last layer's tokens after the backbone's final norm (not L2-normalised; the fusion module
normalises). ConvNets give their last feature map as tokens and its average as ``cls_token``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from pipeline.data.transforms import image_to_tensor
from pipeline.encoders.base import FrozenEncoder, from_hub
from pipeline.encoders.registry import EncoderSpec
from pipeline.encoders.state_dicts import read_state_dict, strip_prefixes
from pipeline.encoders.weights import FROM_HUB, RANDOM_INIT, WeightsSource
from pipeline.errors import FusionerError

DEFAULT_IMAGE_SIZE = (240, 320)  # (H, W): CamVid's 3:4 aspect, 15x20 patches at stride 16


def fit_to_stride(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Round an (H, W) size to the nearest multiple of the encoder's patch stride."""
    return tuple(max(stride, round(s / stride) * stride) for s in size)  # type: ignore[return-value]


def input_size(spec: EncoderSpec, asked: tuple[int, int] | None, stride: int) -> tuple[int, int]:
    """The asked (H, W), else the encoder's default, rounded to its patch stride."""
    return fit_to_stride(asked or spec.options.get("image_size", DEFAULT_IMAGE_SIZE), stride)


class VisualEncoder(FrozenEncoder):
    """Base class: a frozen backbone, its normalisation, and the provenance of its weights."""

    def __init__(
        self,
        spec: EncoderSpec,
        weights: WeightsSource | None,
        stride: int,
        feature_dim: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        image_size: tuple[int, int],
    ) -> None:
        super().__init__(spec, weights, feature_dim)
        self.stride = stride
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def grid_size(self) -> tuple[int, int]:
        return (self.image_size[0] // self.stride, self.image_size[1] // self.stride)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> (3, H, W) float tensor in [0, 1] at ``image_size`` (bicubic).

        Mean/std normalisation happens inside ``forward`` so batches stay in image units.
        """
        return image_to_tensor(image, self.image_size)

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) pixels in [0, 1] -> the feature contract."""
        return self.encode((pixels - self.mean) / self.std)

    def encode(self, normalised: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        """What a store must record to tell these features apart from any others."""
        return {
            **super().provenance(),
            "image_size": list(self.image_size),
            "patch_size": self.stride,
            "grid_size": list(self.grid_size),
        }


def _split_tokens(
    tokens: torch.Tensor, prefix: int, grid: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """(B, prefix + h*w, C) -> contract; prefix tokens (CLS, registers) stripped by count.

    Models without a class token (SigLIP) give the mean patch token as ``cls_token``.
    """
    batch, _, channels = tokens.shape
    patches = tokens[:, prefix:].reshape(batch, grid[0], grid[1], channels)
    cls = tokens[:, 0] if prefix else patches.mean((1, 2))
    return {"patch_tokens": patches, "cls_token": cls}


class TimmVisualEncoder(VisualEncoder):
    """Any timm backbone: ViTs give patch tokens, ConvNets their last feature map.

    Hub weights load through timm's own pretrained mechanism (the tag in ``library_id``, or an
    ``hf_hub:`` model name); local files through the model's timm checkpoint filter.
    """

    def __init__(self, spec: EncoderSpec, weights: WeightsSource | None,
                 image_size: tuple[int, int] | None):
        import timm

        model_name = spec.library_id.removeprefix("timm:")
        is_vit = spec.options.get("vit", "vit" in model_name or "deit" in model_name)
        hub = weights is not None and weights.kind == FROM_HUB
        probe = timm.create_model(model_name, pretrained=False, num_classes=0)
        stride = _timm_stride(probe, is_vit)
        size = input_size(spec, image_size, stride)
        sized = {"img_size": size} if is_vit else {}
        model = probe
        if hub:
            model = from_hub(spec, weights, lambda: timm.create_model(
                model_name, pretrained=True, num_classes=0, **sized))
        elif is_vit:
            model = timm.create_model(model_name, pretrained=False, num_classes=0, **sized)
        if weights is not None and not hub:
            _load_timm_weights(model, weights.path, spec)
        config = timm.data.resolve_model_data_config(model)
        feature_dim = model.num_features
        super().__init__(spec, weights, stride, feature_dim, config["mean"], config["std"], size)
        self.model = model.eval().requires_grad_(False)
        self.is_vit = is_vit

    def encode(self, normalised: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.model.forward_features(normalised)
        if self.is_vit:
            grid = (normalised.shape[2] // self.stride, normalised.shape[3] // self.stride)
            return _split_tokens(features, self.model.num_prefix_tokens, grid)
        return {"patch_tokens": features.permute(0, 2, 3, 1), "cls_token": features.mean((2, 3))}


def _timm_stride(model: nn.Module, is_vit: bool) -> int:
    if is_vit:
        return int(model.patch_embed.patch_size[0])
    return int(model.feature_info[-1]["reduction"])


def _load_timm_weights(model: nn.Module, path: Path, spec: EncoderSpec) -> None:
    """Load a local checkpoint through the model family's own timm checkpoint filter."""
    state = strip_prefixes(read_state_dict(path), spec.options.get("strip_prefixes", ()))
    module = sys.modules[type(model).__module__]
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("head", "fc.", "classifier"))]
    if missing:
        raise FusionerError(
            f"{path}: not a checkpoint of {spec.library_id} ({len(missing)} missing keys, "
            f"e.g. {missing[:3]})"
        )


class OpenClipVisualEncoder(VisualEncoder):
    """The image tower of a CLIP/OpenCLIP model (standard ViT towers).

    Hub weights load through open_clip's own loader (``create_open_clip``); OpenAI weights need
    QuickGELU, which the spec's ``quick_gelu`` option forces for local files too.
    """

    def __init__(self, spec: EncoderSpec, weights: WeightsSource | None,
                 image_size: tuple[int, int] | None):
        import open_clip

        model_name = spec.library_id.removeprefix("open_clip:")
        config = open_clip.get_model_config(model_name)
        stride = int(config["vision_cfg"]["patch_size"])
        size = input_size(spec, image_size, stride)
        model = from_hub(spec, weights, lambda: create_open_clip(
            spec, weights, force_image_size=size))
        visual = model.visual
        super().__init__(
            spec, weights, stride, int(visual.ln_post.normalized_shape[0]),
            tuple(visual.image_mean or open_clip.OPENAI_DATASET_MEAN),
            tuple(visual.image_std or open_clip.OPENAI_DATASET_STD), size,
        )
        self.visual = visual.eval().requires_grad_(False)

    def encode(self, normalised: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.visual.ln_post(self.visual.transformer(self.visual._embeds(normalised)))
        grid = (normalised.shape[2] // self.stride, normalised.shape[3] // self.stride)
        return _split_tokens(tokens, 1, grid)


def create_open_clip(spec: EncoderSpec, weights: WeightsSource | None, **kwargs: Any) -> nn.Module:
    """An open_clip model from local weights, or from the hub by open_clip's own loader: the
    spec's ``pretrained=`` tag, else the ``hf-hub:`` id of its repo."""
    import open_clip

    model_name = spec.library_id.removeprefix("open_clip:")
    quick_gelu = bool(spec.options.get("quick_gelu"))
    if weights is None or weights.kind != FROM_HUB:
        return open_clip.create_model(model_name, pretrained=str(weights.path) if weights else None,
                                      force_quick_gelu=quick_gelu, **kwargs)
    if spec.pretrained:
        return open_clip.create_model(model_name, pretrained=spec.pretrained,
                                      force_quick_gelu=quick_gelu, **kwargs)
    return open_clip.create_model(open_clip_hub_name(spec), **kwargs)


def open_clip_hub_name(spec: EncoderSpec) -> str:
    """The name open_clip builds ``spec``'s hub weights (and tokenizer) under."""
    if spec.pretrained or spec.hub is None:
        return spec.library_id.removeprefix("open_clip:")
    return f"hf-hub:{spec.hub.repo_id}"


def build_timm(spec: EncoderSpec, weights: WeightsSource | None,
               image_size: tuple[int, int] | None = None) -> VisualEncoder:
    return TimmVisualEncoder(spec, weights, image_size)


def build_open_clip(spec: EncoderSpec, weights: WeightsSource | None,
                    image_size: tuple[int, int] | None = None) -> VisualEncoder:
    return OpenClipVisualEncoder(spec, weights, image_size)


def describe(encoder: VisualEncoder) -> str:
    """One line for logs: slug, weights origin."""
    origin = RANDOM_INIT if encoder.source is None else encoder.source.describe()
    return f"{encoder.slug} ({encoder.library_id}, weights: {origin})"
