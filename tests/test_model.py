"""Fusion model: shapes, padding invariance, ignore label, tiny overfit, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.data import get_split
from pipeline.errors import StoreError
from pipeline.model import (
    FusionConfig,
    FusionModel,
    MaskTargets,
    check_checkpoint_provenance,
    load_fusion_checkpoint,
    mask_bce_loss,
    mask_dice_terms,
    predicted_classes,
    save_fusion_checkpoint,
    upsample_logits,
)
from pipeline.store import CachedFeatureDataset
from pipeline.train import EpisodeDataset, collate_episodes, episode_text

TINY = {"visual_dim": 16, "text_dim": 12, "dim": 32, "layers": 2, "heads": 4, "drop_path": 0.1,
        "decoder_channels": (16, 8, 8), "embed_dim": 16}


def _model(**overrides: object) -> FusionModel:
    torch.manual_seed(0)
    return FusionModel(FusionConfig(**{**TINY, **overrides}))  # type: ignore[arg-type]


def test_forward_backward_shapes() -> None:
    model = _model()
    tokens, text = torch.randn(2, 4, 5, 16), torch.randn(2, 3, 12)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    logits = model(tokens, text, mask)
    assert logits.shape == (2, 3, 32, 40)  # grid x 2^3
    label = torch.randint(0, 4, (2, 64, 80))  # label size != decoder size: resized inside
    loss = mask_bce_loss(logits, label, torch.tensor([[0, 1, 2], [1, 3, -1]]), mask)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert upsample_logits(logits, (64, 80)).shape == (2, 3, 64, 80)
    probs = model.eval().predict(tokens, text[0], size=(64, 80))  # same names for every image
    assert probs.shape == (2, 3, 64, 80) and 0 <= probs.min() and probs.max() <= 1


def test_narrow_cosine_head_equals_the_wide_one() -> None:
    """The head computed at the decoder's last width gives the wide map's logits and gradients."""
    model = _model(embed_dim=64).double().eval()
    for param in model.decoder.out.parameters():
        torch.nn.init.normal_(param, std=0.5)  # a non-trivial bias too
    tokens, text = torch.randn(2, 3, 4, 16, dtype=torch.float64), torch.randn(2, 5, 12,
                                                                               dtype=torch.float64)

    def wide() -> torch.Tensor:
        patches, classes = model.fuse(tokens, text)
        pixels = torch.nn.functional.normalize(model.decoder(patches), dim=1)
        cosine = torch.einsum("bchw,bkc->bkhw", pixels,
                              torch.nn.functional.normalize(classes, dim=-1))
        return cosine / model.config.temperature

    grads = []
    for logits in (model(tokens, text), wide()):
        model.zero_grad()
        (logits.sin().sum()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(model(tokens, text), wide(), rtol=1e-9, atol=1e-9)
    for narrow, reference in zip(*grads, strict=True):
        torch.testing.assert_close(narrow, reference, rtol=1e-7, atol=1e-9)


def test_paper_config_builds() -> None:
    config = FusionConfig(visual_dim=384, text_dim=384)
    assert (config.dim, config.layers, config.heads, config.embed_dim) == (512, 12, 8, 512)
    assert config.decoder_channels == (256, 128, 64) and config.upsample == 8
    assert FusionConfig.from_dict(config.to_dict()) == config


def test_padding_does_not_change_a_sample() -> None:
    model = _model().eval()
    tokens, text = torch.randn(1, 4, 5, 16), torch.randn(1, 2, 12)
    alone = model(tokens, text)
    padded = model(tokens, torch.cat([text, torch.randn(1, 3, 12)], 1),
                   torch.tensor([[True, True, False, False, False]]))
    torch.testing.assert_close(padded[:, :2], alone, rtol=1e-4, atol=1e-4)


def test_ignore_label_and_padding_get_no_gradient() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 10, requires_grad=True)
    label = torch.randint(0, 3, (2, 8, 10))
    label[:, :3] = 255
    ids, mask = torch.tensor([[0, 1, 2], [2, 0, -1]]), torch.tensor([[1, 1, 1], [1, 1, 0]]).bool()
    loss = mask_bce_loss(logits, label, ids, mask)
    loss.backward()
    ignored = (label == 255)[:, None].expand_as(logits)
    scored = ~ignored & mask[..., None, None]
    assert (logits.grad[ignored] == 0).all() and (logits.grad[scored] != 0).all()
    assert (logits.grad[1, 2] == 0).all()  # padded slot
    changed = logits.detach().clone()
    changed[ignored] = 100.0
    changed[1, 2] = -100.0
    assert torch.equal(mask_bce_loss(changed, label, ids, mask), loss.detach())
    other = label.clone()
    other[label == 255] = 1  # the same pixels, now labelled: the loss must change
    assert not torch.equal(mask_bce_loss(logits.detach(), other, ids, mask), loss.detach())


def dice(logits: torch.Tensor, label: torch.Tensor, ids: torch.Tensor,
         mask: torch.Tensor | None = None, smooth: float = 1.0) -> tuple[torch.Tensor, ...]:
    """``mask_dice_terms`` on the targets of ``label``."""
    return mask_dice_terms(logits, MaskTargets.of(logits, label, ids, mask), smooth=smooth)


def test_dice_terms_by_hand_ignoring_label_and_padding() -> None:
    label = torch.tensor([[[1, 1, 0, 255]]])  # (1, 1, 4): class 1 on two pixels, one ignored
    logits = torch.tensor([[[[0.0, 0.0, 0.0, 9.0]], [[9.0, 9.0, 9.0, 9.0]]]])  # (1, 2, 1, 4)
    ids, mask = torch.tensor([[1, 0]]), torch.tensor([[True, False]])  # slot 2 is padding
    total, count = dice(logits, label, ids, mask, smooth=0.0)
    # slot 0: p = 0.5 on the three labelled pixels, target 1 on two: 1 - 2 * 1 / (1.5 + 2)
    assert count.item() == 1.0
    assert total.item() == pytest.approx(1 - 2.0 / 3.5)
    perfect = torch.tensor([[[[30.0, 30.0, -30.0, -30.0]]]])
    assert dice(perfect, label, ids[:, :1])[0].item() == pytest.approx(0.0, abs=1e-6)


def test_dice_skips_empty_masks() -> None:
    label = torch.tensor([[[1, 1, 0, 0]]])
    logits = torch.tensor([[[[9.0, 9.0, -9.0, -9.0]], [[9.0, -9.0, -9.0, -9.0]]]])
    ids = torch.tensor([[1, 5]])  # class 5 is absent: its mask is empty
    total, count = dice(logits, label, ids)
    only_present = dice(logits[:, :1], label, ids[:, :1])
    assert count.item() == 1.0 and torch.equal(total, only_present[0])  # slot 2: BCE only
    assert dice(logits[:, 1:], label, ids[:, 1:])[1].item() == 0.0


def test_predicted_classes_threshold_and_mask() -> None:
    logits = torch.tensor([[[[2.0, -1.0]], [[3.0, -2.0]], [[9.0, 9.0]]]])  # (1, 3, 1, 2)
    ids, mask = torch.tensor([[4, 7, 9]]), torch.tensor([[True, True, False]])
    assert predicted_classes(logits, ids, mask).tolist() == [[[7, -1]]]


def test_tiny_overfit_on_cached_samples(tiny_stores) -> None:
    features = CachedFeatureDataset(tiny_stores.visual_paths["train"], indices=range(4))
    episodes = EpisodeDataset(features, get_split("camvid", 0))
    batch = collate_episodes([episodes[i] for i in range(len(episodes))])
    table = torch.randn(11, 16)  # text table is looked up by class id
    model = _model(text_dim=16, drop_path=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        logits = model(batch["patch_tokens"], episode_text(table, batch["class_ids"]),
                       batch["text_mask"])
        loss = mask_bce_loss(logits, batch["label"], batch["class_ids"], batch["text_mask"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5, losses[::10]


def test_checkpoint_round_trip_and_provenance(tmp_path: Path) -> None:
    model = _model().eval()
    meta = {"model_config": model.config.to_dict(),
            "visual": {"encoder": "dino_vits16", "weights_sha256": "a", "feature_dim": 16},
            "text": {"encoder": "minilm_l6", "weights_sha256": "b", "feature_dim": 12}}
    path = save_fusion_checkpoint(tmp_path / "checkpoint.pt", model, meta)
    torch.load(path, weights_only=True)  # plain tensors and python values only
    loaded, loaded_meta = load_fusion_checkpoint(path)
    tokens, text = torch.randn(1, 4, 5, 16), torch.randn(1, 2, 12)
    torch.testing.assert_close(loaded(tokens, text), model(tokens, text))
    assert loaded_meta == meta and not loaded.training
    check_checkpoint_provenance(meta, {"encoder": "dino_vits16", "weights_sha256": "a",
                                       "feature_dim": 16, "split": "val"})
    with pytest.raises(StoreError, match="encoder='clip_vitb16'"):
        check_checkpoint_provenance(meta, {"encoder": "clip_vitb16", "weights_sha256": "a",
                                           "feature_dim": 16})
    with pytest.raises(StoreError, match="weights_sha256"):
        check_checkpoint_provenance(meta, None, {"encoder": "minilm_l6", "weights_sha256": "c",
                                                 "feature_dim": 12})
