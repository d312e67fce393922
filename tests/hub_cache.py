"""A Hugging Face hub cache laid out as huggingface_hub lays it out, holding tiny random-init
models saved by the libraries' own save functions - and test-only catalogue entries that load
them through each library's own hub loader (nothing reaches the network).

``models--<org>--<name>/blobs/<sha256>``, ``snapshots/<commit>/<file>`` (a relative symlink to
its blob) and ``refs/main`` (the commit).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.encoders.catalog import HF_FILES, open_clip_spec, timm_spec
from pipeline.encoders.hub import HubRef
from pipeline.encoders.registry import TEXT_ENCODERS, VISUAL_ENCODERS, EncoderSpec
from pipeline.encoders.text import build_hf

TINY_TIMM = "test_vit.r160_in1k"  # timm's own test ViT (64-d, 6 blocks); hub repo timm/<tag>
TINY_CLIP_MODEL = "fusioner-tiny-clip"  # registered with open_clip.add_model_config
TINY_CLIP_REPO = "fusioner-test/tiny-clip"
TINY_BERT_REPO = "fusioner-test/tiny-bert"
TINY_SIGLIP_MODEL = "fusioner-tiny-siglip"  # SigLIP-style: custom text tower, hub tokenizer
TINY_SIGLIP_REPO = "fusioner-test/tiny-siglip"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
TINY_SIGLIP_CONFIG = {
    "embed_dim": 16, "init_logit_bias": -10, "custom_text": True,
    "vision_cfg": TINY_CLIP_CONFIG["vision_cfg"],
    "text_cfg": {"context_length": 16, "vocab_size": 30522, "hf_tokenizer_name": TINY_SIGLIP_REPO,
                 "tokenizer_kwargs": {"clean": "canonicalize"}, "width": 16, "heads": 2,
                 "layers": 1, "no_causal_mask": True, "proj_bias": True, "pool_type": "last"},
}
REVISIONS = {f"timm/{TINY_TIMM}": "a1" * 20, TINY_CLIP_REPO: "c2" * 20, TINY_BERT_REPO: "b3" * 20,
             TINY_SIGLIP_REPO: "d4" * 20}


@dataclass(frozen=True)
class HubCache:
    """Where the tiny models lie: the cache folder and each repo's snapshot folder."""

    root: Path
    snapshots: dict[str, Path]


def add_snapshot(cache: Path, repo_id: str, folder: Path, revision: str,
                 absent: tuple[str, ...] = ()) -> Path:
    """Put every file of ``folder`` into ``cache`` as snapshot ``revision`` of ``repo_id``;
    ``absent``: files the hub answered 404 for (``.no_exist/<revision>/<file>`` markers)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for name in absent:
        marker = repo / ".no_exist" / revision / name
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    snapshot = repo / "snapshots" / revision
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


class _BundledTokenizer:
    """CLIP's BPE tokenizer ships inside open_clip: nothing to save beside the weights."""

    def save_pretrained(self, _directory: object) -> None:
        return None


def _register_open_clip_configs(folder: Path) -> None:
    """The tiny CLIP and SigLIP architectures as open_clip built-in model names."""
    import open_clip

    for name, config in ((TINY_CLIP_MODEL, TINY_CLIP_CONFIG),
                         (TINY_SIGLIP_MODEL, TINY_SIGLIP_CONFIG)):
        if open_clip.get_model_config(name) is None:
            path = folder / f"{name}.json"
            path.write_text(json.dumps(config))
            open_clip.add_model_config(path)


def build_hub_cache(cache: Path, scratch: Path) -> HubCache:
    """Save a tiny timm ViT, tiny open_clip CLIP and SigLIP models and a tiny BERT (random
    weights, seeded) with the libraries' own save functions, and lay them out in ``cache``."""
    import open_clip
    import timm
    import torch
    from open_clip.push_to_hf_hub import save_for_hf as save_open_clip
    from open_clip.tokenizer import HFTokenizer
    from timm.models import save_for_hf as save_timm
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pipeline.encoders.catalog import _packaged_minilm

    torch.manual_seed(0)
    saved: dict[str, Path] = {}
    saved[f"timm/{TINY_TIMM}"] = scratch / "timm"
    save_timm(timm.create_model(TINY_TIMM, pretrained=False), str(saved[f"timm/{TINY_TIMM}"]),
              safe_serialization=True)
    _register_open_clip_configs(scratch)
    saved[TINY_CLIP_REPO] = scratch / "clip"
    save_open_clip(open_clip.create_model(TINY_CLIP_MODEL), _BundledTokenizer(),
                   TINY_CLIP_CONFIG, str(saved[TINY_CLIP_REPO]), safe_serialization=True)
    saved[TINY_SIGLIP_REPO] = scratch / "siglip"  # its tokenizer: MiniLM's WordPiece, saved
    save_open_clip(open_clip.create_model(TINY_SIGLIP_MODEL), HFTokenizer(str(_packaged_minilm())),
                   TINY_SIGLIP_CONFIG, str(saved[TINY_SIGLIP_REPO]), safe_serialization=True)
    saved[TINY_BERT_REPO] = scratch / "bert"
    tokenizer = AutoTokenizer.from_pretrained(str(_packaged_minilm()), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(str(saved[TINY_BERT_REPO]))
    tokenizer.save_pretrained(str(saved[TINY_BERT_REPO]))
    # a SigLIP repo has no config.json: transformers' AutoTokenizer asks for it, and the hub's
    # 404 is cached as a marker by huggingface_hub on the first (online) use
    snapshots = {repo: add_snapshot(cache, repo, folder, REVISIONS[repo],
                                    ("config.json",) if repo == TINY_SIGLIP_REPO else ())
                 for repo, folder in saved.items()}
    return HubCache(cache, snapshots)


def tiny_specs() -> dict[str, EncoderSpec]:
    """Test-only catalogue entries, one per library, whose weights are the tiny hub models."""
    return {
        "tiny_timm": timm_spec("tiny_timm", TINY_TIMM, "timm's test ViT"),
        "tiny_clip": open_clip_spec("tiny_clip", TINY_CLIP_MODEL, TINY_CLIP_REPO, "",
                                    "tiny CLIP image tower"),
        "tiny_clip_text": open_clip_spec("tiny_clip_text", TINY_CLIP_MODEL, TINY_CLIP_REPO, "",
                                         "tiny CLIP text tower", text=True),
        "tiny_siglip_text": open_clip_spec("tiny_siglip_text", TINY_SIGLIP_MODEL,
                                           TINY_SIGLIP_REPO, "", "tiny SigLIP text tower",
                                           text=True, hf_tokenizer=True),
        "tiny_bert": EncoderSpec("tiny_bert", f"hf:{TINY_BERT_REPO}", build_hf, ("tiny_bert",),
                                 hub=HubRef(TINY_BERT_REPO, HF_FILES)),
    }


@pytest.fixture(name="hub_cache", scope="session")
def hub_cache_fixture(tmp_path_factory: pytest.TempPathFactory) -> HubCache:
    """The tiny models in the session's (offline) hub cache, ``$HF_HUB_CACHE`` (conftest)."""
    return build_hub_cache(Path(os.environ["HF_HUB_CACHE"]), tmp_path_factory.mktemp("saved"))


@pytest.fixture(name="tiny_catalogue")
def tiny_catalogue_fixture(hub_cache: HubCache,
                           monkeypatch: pytest.MonkeyPatch) -> Iterator[HubCache]:
    """The test-only entries registered for one test (and removed after it)."""
    for slug, spec in tiny_specs().items():
        registry = VISUAL_ENCODERS if slug in ("tiny_timm", "tiny_clip") else TEXT_ENCODERS
        monkeypatch.setitem(registry._specs, slug, spec)
    yield hub_cache
