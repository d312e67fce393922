"""Frozen text encoders: L2-normalised class embeddings averaged over prompt templates."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.encoders.base import FrozenEncoder, from_hub
from pipeline.encoders.registry import EncoderSpec
from pipeline.encoders.templates import PROMPT_TEMPLATES, expand_prompts
from pipeline.encoders.visual import create_open_clip, open_clip_hub_name
from pipeline.encoders.weights import FROM_HUB, WeightsSource


class TextEncoder(FrozenEncoder):
    """Base class: ``encode_prompts`` gives raw sentence embeddings; classes are built on it."""

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """(N,) strings -> (N, D) embeddings."""
        raise NotImplementedError

    def class_provenance(self, class_names: list[str]) -> dict[str, Any]:
        """What a text store of these names records beyond ``provenance()`` (a control's
        permutation); nothing for a plain encoder."""
        return {}

    @torch.inference_mode()
    def encode_classes(
        self, class_names: list[str], templates: tuple[str, ...] = PROMPT_TEMPLATES
    ) -> torch.Tensor:
        """(K, D) float32: each prompt normalised, averaged over templates, normalised again."""
        rows = []
        for name in class_names:
            prompts = self.encode_prompts(expand_prompts(name, templates))
            mean = nn.functional.normalize(prompts, dim=-1).mean(0)
            rows.append(nn.functional.normalize(mean, dim=-1))
        return torch.stack(rows).float()


class HFTextEncoder(TextEncoder):
    """A transformers encoder with mean pooling over tokens (sentence-transformers style).

    Hub weights load with ``from_pretrained(repo_id)`` (transformers' own hub download and
    cache); local ones from a model folder, never touching the network.
    """

    def __init__(self, spec: EncoderSpec, weights: WeightsSource | None) -> None:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if weights is not None and weights.kind == FROM_HUB:
            repo = spec.pretrained or spec.hub.repo_id  # type: ignore[union-attr]
            tokenizer, model = from_hub(spec, weights, lambda: (
                AutoTokenizer.from_pretrained(repo), AutoModel.from_pretrained(repo)))
        else:
            folder = str(weights.path if weights else spec.options["random_init_tokenizer"]())
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            if weights is not None:
                model = AutoModel.from_pretrained(folder, local_files_only=True)
            else:
                config_source = spec.options.get("random_init_config")
                config = config_source() if callable(config_source) else (
                    AutoConfig.from_pretrained(folder, local_files_only=True))
                torch.manual_seed(0)
                model = AutoModel.from_config(config)
        super().__init__(spec, weights, int(model.config.hidden_size))
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=64, return_tensors="pt"
        ).to(self.model.device)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class OpenClipTextEncoder(TextEncoder):
    """The text tower of a CLIP/OpenCLIP model (CLIP's BPE tokenizer ships with open_clip;
    SigLIP's comes from the hub with its weights). Hub weights load through open_clip's own
    loader (``create_open_clip``)."""

    def __init__(self, spec: EncoderSpec, weights: WeightsSource | None) -> None:
        import open_clip

        model = from_hub(spec, weights, lambda: create_open_clip(spec, weights))
        name = spec.library_id.removeprefix("open_clip:")
        if weights is not None and weights.kind == FROM_HUB:
            name = open_clip_hub_name(spec)
        tokenizer = from_hub(spec, weights, lambda: open_clip.get_tokenizer(name))
        model.visual = None  # drop the image tower: only text is encoded here
        self.tokenizer = tokenizer
        with torch.inference_mode():
            width = model.encode_text(tokenizer(["a"])).shape[-1]
        super().__init__(spec, weights, int(width))
        self.model = model.eval().requires_grad_(False)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model.encode_text(self.tokenizer(prompts).to(device))


def build_hf(spec: EncoderSpec, weights: WeightsSource | None) -> TextEncoder:
    return HFTextEncoder(spec, weights)


def build_open_clip_text(spec: EncoderSpec, weights: WeightsSource | None) -> TextEncoder:
    return OpenClipTextEncoder(spec, weights)
