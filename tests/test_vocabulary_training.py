"""``fusioner-fit --episode vocabulary``: every seen name in one pass, a per-pixel softmax over
[background, names] with the background logit at 0, unseen pixels ignored; it trains on views,
resumes exactly, and its checkpoint is scored in the joint form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from pipeline.data import get_split
from pipeline.model import load_fusion_checkpoint
from pipeline.model.loss import VocabularyTargets, predicted_classes, with_background
from pipeline.model.scoring import VOCABULARY_EPISODE, trained_form
from pipeline.store import CachedFeatureDataset
from pipeline.train import EpisodeDataset
from pipeline.train.episodes import EPISODE_CLASSES
from stages.fit import main
from tests.helpers import TINY_FIT

COCO_LIKE = ("background", "cat", "dog", "car", "bus", "tree", "sky", "road", "sea")


def test_the_episode_kind_is_the_one_scoring_reads() -> None:
    assert VOCABULARY_EPISODE in EPISODE_CLASSES
    assert trained_form({"train": {"episode": VOCABULARY_EPISODE}}) == "joint"


def test_targets_are_the_pixel_class_or_background_and_ignore_the_rest() -> None:
    label = torch.tensor([[[0, 3, 5, 255, 7]]])  # background, two asked classes, 255, other
    class_ids = torch.tensor([[5, 3, -1]])  # the last slot is padding
    logits = torch.zeros(1, 3, 1, 5)
    coco = VocabularyTargets.of(logits, label, class_ids, class_ids >= 0, background=0)
    assert coco.index.tolist() == [[[0, 2, 1, -1, -1]]]
    camvid = VocabularyTargets.of(logits, label, class_ids, class_ids >= 0, background=None)
    assert camvid.index.tolist() == [[[-1, 2, 1, -1, -1]]]  # no background: class 0 unasked
    assert camvid.masks.labelled[0, 0, 0].tolist() == [False, True, True, False, False]


def test_cross_entropy_is_a_softmax_over_a_zero_background_and_the_real_slots() -> None:
    torch.manual_seed(0)
    label = torch.randint(0, 4, (2, 6, 7))
    label[0, 0] = 255
    class_ids = torch.tensor([[1, 2, 3], [2, 3, -1]])
    logits = torch.randn(2, 3, 6, 7) * 3
    targets = VocabularyTargets.of(logits, label, class_ids, class_ids >= 0, background=0)
    total, count = targets.cross_entropy_terms(logits)
    scored = targets.index >= 0
    by_hand = []
    for b in range(2):
        real = int((class_ids[b] >= 0).sum())
        full = torch.cat([torch.zeros(1, 6, 7), logits[b, :real]])  # padding never competes
        losses = F.cross_entropy(full[None], targets.index[b:b + 1].clamp(min=0),
                                 reduction="none")
        by_hand.append(losses[scored[b:b + 1]])
    expected = torch.cat(by_hand)
    assert count == scored.sum() == len(expected)
    assert total / count == pytest.approx(float(expected.mean()), rel=1e-5)
    # an image's row of 1 + K probabilities puts nothing on its padding slot
    probs = with_background(logits, class_ids >= 0).softmax(1)
    assert probs[1, 3].abs().max() == 0 and torch.allclose(probs.sum(1), torch.ones(2, 6, 7))


def test_a_name_wins_where_its_logit_is_positive_and_highest() -> None:
    logits = torch.tensor([[[[2.0, -1.0, 0.5]], [[1.0, -0.5, 3.0]]]])  # (1, 2 names, 1, 3)
    class_ids = torch.tensor([[4, 9]])
    softmax_winner = with_background(logits).argmax(1)  # 0 = background
    predicted = predicted_classes(logits, class_ids)
    assert softmax_winner.tolist() == [[[1, 0, 2]]]
    assert predicted.tolist() == [[[4, -1, 9]]]


def test_vocabulary_episodes_ask_every_seen_name_and_hide_unseen_pixels(make_stores,
                                                                      tmp_path: Path) -> None:
    stores = make_stores(tmp_path, dataset="coco128", classes=COCO_LIKE)
    split = get_split("coco128", 0, COCO_LIKE)
    assert split.background == 0
    episodes = EpisodeDataset(CachedFeatureDataset(stores.visual_paths["train"]), split,
                              VOCABULARY_EPISODE, negatives=3)
    assert len(episodes) > 0 and not episodes.needs_epoch  # no per-epoch draws
    for item in (episodes[i] for i in range(len(episodes))):
        assert tuple(item["class_ids"].tolist()) == split.seen
        assert not set(item["label"].unique().tolist()) & set(split.unseen)


def _fit(stores, out: Path, *extra: str) -> CliRunner:
    args = ["--visual", stores.visual, "--text", stores.text, "--dataset", stores.dataset,
            "--cache-dir", str(stores.cache_dir), "--out", str(out), "--episode",
            VOCABULARY_EPISODE, *TINY_FIT, *extra]
    return CliRunner().invoke(main, args)


def test_fit_on_views_learns_and_records_the_joint_form(make_stores, tmp_path: Path) -> None:
    stores = make_stores(tmp_path, num_images=12, dataset="coco128", classes=COCO_LIKE, views=2)
    out = tmp_path / "run"
    result = _fit(stores, out, "--lr", "3e-3", "--epochs", "6", "--dice-weight", "1")
    assert result.exit_code == 0, result.output
    _, meta = load_fusion_checkpoint(out / "checkpoint.pt")
    assert meta["train"]["episode"] == VOCABULARY_EPISODE and trained_form(meta) == "joint"
    assert meta["views"]["count"] == 2
    log = json.loads((out / "train_log.json").read_text())
    assert log[-1]["loss"] < log[0]["loss"] and log[-1]["train_miou"] > log[0]["train_miou"]
    assert log[-1]["val_seen_miou"] > log[0]["val_seen_miou"]  # seen-class validation scores


def test_fit_without_a_background_ignores_pixels_of_no_seen_class(tiny_stores,
                                                                   tmp_path: Path) -> None:
    result = _fit(tiny_stores, tmp_path / "run", "--epochs", "2")  # CamVid: no background
    assert result.exit_code == 0, result.output
    log = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert all(record["loss"] > 0 for record in log)
