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
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
REVISIONS = {f"timm/{TINY_TIMM}": "a1" * 20, TINY_CLIP_REPO: "c2" * 20, TINY_BERT_REPO: "b3" * 20}


@dataclass(frozen=True)
class HubCache:
    """Where the tiny models lie: the cache folder and each repo's snapshot folder."""

    root: Path
    snapshots: dict[str, Path]


def add_snapshot(cache: Path, repo_id: str, folder: Path, revision: str) -> Path:
    """Put every file of ``folder`` into ``cache`` as snapshot ``revision`` of ``repo_id``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
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


def _register_tiny_clip(folder: Path) -> None:
    import open_clip

    if open_clip.get_model_config(TINY_CLIP_MODEL) is None:
        path = folder / f"{TINY_CLIP_MODEL}.json"
        path.write_text(json.dumps(TINY_CLIP_CONFIG))
        open_clip.add_model_config(path)


def build_hub_cache(cache: Path, scratch: Path) -> HubCache:
    """Save a tiny timm ViT, a tiny open_clip CLIP and a tiny BERT (random weights, seeded) with
    the libraries' own save functions, and lay them out in ``cache``."""
    import open_clip
    import timm
    import torch
    from open_clip.push_to_hf_hub import save_for_hf as save_open_clip
    from timm.models import save_for_hf as save_timm
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pipeline.encoders.catalog import _packaged_minilm

    torch.manual_seed(0)
    saved: dict[str, Path] = {}
    saved[f"timm/{TINY_TIMM}"] = scratch / "timm"
    save_timm(timm.create_model(TINY_TIMM, pretrained=False), str(saved[f"timm/{TINY_TIMM}"]),
              safe_serialization=True)
    _register_tiny_clip(scratch)
    saved[TINY_CLIP_REPO] = scratch / "clip"
    save_open_clip(open_clip.create_model(TINY_CLIP_MODEL), _BundledTokenizer(),
                   TINY_CLIP_CONFIG, str(saved[TINY_CLIP_REPO]), safe_serialization=True)
    saved[TINY_BERT_REPO] = scratch / "bert"
    tokenizer = AutoTokenizer.from_pretrained(str(_packaged_minilm()), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(str(saved[TINY_BERT_REPO]))
    tokenizer.save_pretrained(str(saved[TINY_BERT_REPO]))
    snapshots = {repo: add_snapshot(cache, repo, folder, REVISIONS[repo])
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
        registry = TEXT_ENCODERS if slug in ("tiny_clip_text", "tiny_bert") else VISUAL_ENCODERS
        monkeypatch.setitem(registry._specs, slug, spec)
    yield hub_cache
