"""Weights from the Hugging Face hub cache, offline, through timm's, open_clip's and
transformers' own loaders; provenance records the hub repo and revision; missing weights are one
line naming the hub id, the cache and the pre-fetch command."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pipeline.encoders import create_text_encoder, create_visual_encoder
from pipeline.errors import MissingWeightsError
from tests.helpers import make_mini_camvid
from tests.hub_cache import (
    REVISIONS,
    TINY_BERT_REPO,
    TINY_CLIP_REPO,
    TINY_SIGLIP_REPO,
    TINY_TIMM,
    hub_cache_fixture,  # noqa: F401  (the hub_cache fixture)
    tiny_catalogue_fixture,  # noqa: F401  (the tiny_catalogue fixture)
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hub_cache_is_offline_and_empty_of_real_models() -> None:
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE and constants.HF_HUB_CACHE == os.environ["HF_HUB_CACHE"]


@pytest.mark.parametrize(("slug", "repo", "weights_file"), [
    ("tiny_timm", f"timm/{TINY_TIMM}", "model.safetensors"),
    ("tiny_clip", TINY_CLIP_REPO, "open_clip_model.safetensors"),
])
def test_visual_weights_from_hub_cache(tiny_catalogue, slug: str, repo: str,
                                       weights_file: str) -> None:
    encoder = create_visual_encoder(slug, image_size=(32, 48))
    snapshot = tiny_catalogue.snapshots[repo]
    provenance = encoder.provenance()
    assert provenance["weights_source"] == "hub" and provenance["random_init"] is False
    assert provenance["hub_id"] == repo and provenance["hub_revision"] == REVISIONS[repo]
    assert provenance["weights_sha256"] == _sha256(snapshot / weights_file)
    # the library really loaded the saved weights (not a random init)
    from safetensors.torch import load_file

    saved = load_file(str(snapshot / weights_file))
    loaded = dict(encoder.named_parameters())
    key = "model.patch_embed.proj.weight" if slug == "tiny_timm" else "visual.conv1.weight"
    source_key = key.removeprefix("model.")
    assert torch.equal(loaded[key], saved[source_key])
    with torch.inference_mode():
        out = encoder(torch.rand(1, 3, 32, 48))
    assert out["patch_tokens"].shape == (1, *encoder.grid_size, encoder.feature_dim)


@pytest.mark.parametrize(("slug", "repo", "weights_file", "width"), [
    ("tiny_bert", TINY_BERT_REPO, "model.safetensors", 32),
    ("tiny_clip_text", TINY_CLIP_REPO, "open_clip_model.safetensors", 16),
    ("tiny_siglip_text", TINY_SIGLIP_REPO, "open_clip_model.safetensors", 16),  # hub tokenizer
])
def test_text_weights_from_hub_cache(tiny_catalogue, slug: str, repo: str, weights_file: str,
                                     width: int) -> None:
    encoder = create_text_encoder(slug)
    provenance = encoder.provenance()
    assert (provenance["weights_source"], provenance["hub_id"]) == ("hub", repo)
    assert provenance["hub_revision"] == REVISIONS[repo]
    assert provenance["weights_sha256"] == _sha256(tiny_catalogue.snapshots[repo] / weights_file)
    embeddings = encoder.encode_classes(["cat", "road"])
    assert embeddings.shape == (2, width)
    # seeded random init would give other embeddings than the saved weights
    again = create_text_encoder(slug).encode_classes(["cat", "road"])
    assert torch.equal(embeddings, again)


def test_local_file_wins_over_hub(tiny_catalogue, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    local = tmp_path / "tiny_timm.safetensors"
    shutil.copy(tiny_catalogue.snapshots[f"timm/{TINY_TIMM}"] / "model.safetensors", local)
    monkeypatch.setenv("FUSIONER_WEIGHTS", str(tmp_path))
    provenance = create_visual_encoder("tiny_timm", image_size=(32, 32)).provenance()
    assert provenance["weights_source"] == "env"
    assert provenance["hub_id"] is None and provenance["hub_revision"] is None
    assert provenance["weights_sha256"] == _sha256(local)


def test_missing_hub_weights_are_one_line(tmp_path: Path) -> None:
    from stages.extract import main

    cache = tmp_path / "cache"
    result = CliRunner().invoke(main, ["--backbone", "dino_vitb16", "--cache-dir", str(cache),
                                       "--split", "val"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no weights for 'dino_vitb16'")
    assert "timm/vit_base_patch16_224.dino" in lines[0]
    assert os.environ["HF_HUB_CACHE"] in lines[0]
    assert "`hf download timm/vit_base_patch16_224.dino model.safetensors`" in lines[0]
    assert not cache.exists()
    with pytest.raises(MissingWeightsError, match="google-bert/bert-base-uncased"):
        create_text_encoder("bert")


def test_extract_store_records_hub_revision(tiny_catalogue, tmp_path: Path) -> None:
    import zarr

    from stages.extract import main

    data = make_mini_camvid(tmp_path / "camvid", per_split=2)
    result = CliRunner().invoke(main, [
        "--visual", "tiny_timm", "--text", "tiny_bert", "--data-root", str(data),
        "--cache-dir", str(tmp_path / "cache"), "--split", "val", "--image-size", "32x48",
        "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"visual encoder: tiny_timm (weights: hub timm/{TINY_TIMM}@" in result.output
    visual = dict(zarr.open_group(str(tmp_path / "cache/visual/tiny_timm/camvid-val.zarr")).attrs)
    text = dict(zarr.open_group(str(tmp_path / "cache/text/tiny_bert/camvid.zarr")).attrs)
    assert (visual["hub_id"], visual["hub_revision"]) == (f"timm/{TINY_TIMM}",
                                                          REVISIONS[f"timm/{TINY_TIMM}"])
    assert visual["complete"] is True and visual["weights_source"] == "hub"
    assert (text["hub_id"], text["hub_revision"]) == (TINY_BERT_REPO, REVISIONS[TINY_BERT_REPO])


def test_catalogue_command_says_where_weights_come_from(tiny_catalogue) -> None:
    import json

    from stages.encoders import main

    result = CliRunner().invoke(main, ["--json"])
    assert result.exit_code == 0, result.output
    rows = {row["slug"]: row for row in map(json.loads, result.output.splitlines())}
    for paper in ("clip_vitl14", "clip_vitl14_text", "clip_vitb16", "dino_vits16", "dino_vitb16",
                  "mocov3_vitb16", "bert_base", "dinov2_vits14", "dinov2_vitb14",
                  "dinov2_vitl14", "siglip_vitb16", "siglip_vitb16_text"):
        assert paper in rows, paper
    assert rows["tiny_timm"]["origin"] == "hub cache"
    assert REVISIONS[f"timm/{TINY_TIMM}"][:12] in rows["tiny_timm"]["where"]
    assert rows["minilm_l6"]["origin"] == "package"
    assert rows["clip_vitl14"]["origin"] == "missing"
    assert "hf download timm/vit_large_patch14_clip_224.openai" in rows["clip_vitl14"]["where"]
    assert rows["mocov3_vitb16"]["hub_id"] == "-" and rows["mocov3_vitb16"]["origin"] == "missing"
    table = CliRunner().invoke(main, []).output
    assert "clip_vitl14_text" in table and f"hub cache: {os.environ['HF_HUB_CACHE']}" in table
