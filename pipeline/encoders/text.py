"""Frozen text encoders: L2-normalised class embeddings averaged over prompt templates."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.encoders.base import FrozenEncoder
from pipeline.encoders.registry import EncoderSpec
from pipeline.encoders.templates import PROMPT_TEMPLATES, expand_prompts


class TextEncoder(FrozenEncoder):
    """Base class: ``encode_prompts`` gives raw sentence embeddings; classes are built on it."""

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """(N,) strings -> (N, D) embeddings."""
        raise NotImplementedError

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
    """A transformers encoder with mean pooling over tokens (sentence-transformers style)."""

    def __init__(self, spec: EncoderSpec, weights: Path | None) -> None:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        tokenizer_dir = weights or spec.options["random_init_tokenizer"]()
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        if weights is not None:
            model = AutoModel.from_pretrained(str(weights), local_files_only=True)
        else:
            config_source = spec.options.get("random_init_config")
            config = config_source() if callable(config_source) else AutoConfig.from_pretrained(
                str(tokenizer_dir), local_files_only=True
            )
            torch.manual_seed(0)
            model = AutoModel.from_config(config)
        super().__init__(spec, weights, int(model.config.hidden_size))
        self.model = model.eval().requires_grad_(False)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=64, return_tensors="pt"
        ).to(self.model.device)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class OpenClipTextEncoder(TextEncoder):
    """The text tower of a CLIP/OpenCLIP model (its own BPE tokenizer ships with open_clip)."""

    def __init__(self, spec: EncoderSpec, weights: Path | None) -> None:
        import open_clip

        model_name = spec.library_id.removeprefix("open_clip:")
        model = open_clip.create_model(model_name, pretrained=str(weights) if weights else None)
        model.visual = None  # drop the image tower: only text is encoded here
        super().__init__(spec, weights, int(model.text_projection.shape[1]))
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model_name)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model.encode_text(self.tokenizer(prompts).to(device))


def build_hf(spec: EncoderSpec, weights: Path | None) -> TextEncoder:
    return HFTextEncoder(spec, weights)


def build_open_clip_text(spec: EncoderSpec, weights: Path | None) -> TextEncoder:
    return OpenClipTextEncoder(spec, weights)
