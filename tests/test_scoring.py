"""Scoring many names at once (alone and joint forms) and the generalized decision rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.metrics import NONE
from pipeline.model.fusion import FusionConfig, FusionModel
from pipeline.model.scoring import (
    calibrate,
    generalized_prediction,
    joint_width,
    name_groups,
    name_logits,
)


@pytest.fixture(scope="module")
def model() -> FusionModel:
    torch.manual_seed(0)
    config = FusionConfig(visual_dim=8, text_dim=6, dim=16, layers=1, heads=2,
                          decoder_channels=(8, 8), embed_dim=8)
    return FusionModel(config).eval()


def test_alone_form_is_each_name_queried_by_itself(model: FusionModel) -> None:
    tokens, text = torch.randn(3, 4, 5, 8), torch.randn(7, 6)
    logits = name_logits(model, tokens, text, "alone", pairs_per_pass=5)
    assert logits.shape == (3, 7, 16, 20)
    for image in range(3):
        for name in range(7):
            single = model(tokens[image:image + 1], text[name:name + 1][None])[0, 0]
            torch.testing.assert_close(logits[image, name], single, rtol=1e-4, atol=1e-4)


def test_joint_form_is_one_pass_over_all_names(model: FusionModel) -> None:
    tokens, text = torch.randn(2, 4, 5, 8), torch.randn(3, 6)
    joint = name_logits(model, tokens, text, "joint")
    torch.testing.assert_close(joint, model(tokens, text[None].expand(2, -1, -1)))
    alone = name_logits(model, tokens, text, "alone")
    assert not torch.allclose(joint, alone)  # the names attend to each other in one pass


def test_generalized_prediction_calibrates_seen_names_then_thresholds() -> None:
    logits = np.zeros((3, 1, 4), dtype=np.float32)
    logits[0] = [[3.0, 1.0, -1.0, 0.5]]   # a seen name
    logits[1] = [[2.0, 2.0, -2.0, -3.0]]  # an unseen name
    logits[2] = [[-5.0, 0.2, -0.5, 0.4]]  # a seen name
    ids, seen = [10, 11, 12], np.array([True, False, True])
    assert generalized_prediction(logits, ids, seen).tolist() == [[10, 11, NONE, 10]]
    assert generalized_prediction(logits, ids, seen, gamma=1.5).tolist() == [[11, 11, NONE,
                                                                            NONE]]
    assert generalized_prediction(logits, ids, seen, threshold=0.9).tolist() == [[10, NONE, NONE,
                                                                                NONE]]
    shifted = calibrate(torch.from_numpy(logits), torch.from_numpy(seen), 2.0)
    torch.testing.assert_close(shifted[1], torch.from_numpy(logits[1]))
    torch.testing.assert_close(shifted[0], torch.from_numpy(logits[0]) - 2.0)


def test_trained_form_follows_the_episode_kind() -> None:
    from pipeline.model.scoring import trained_form

    assert trained_form({"train": {"episode": "vocabulary"}}) == "joint"
    assert trained_form({"train": {"episode": "single"}}) == "alone"
    assert trained_form({}) == "alone"


def test_name_groups_cut_a_vocabulary_into_passes() -> None:
    def sizes(*args: object) -> list[int]:
        return [len(g) for g in name_groups(*args)]  # type: ignore[arg-type]

    assert sizes(130, "alone", 60, 64) == [64, 64, 2]  # pairs per pass
    assert sizes(80, "joint", 60) == [40, 40]  # fewest passes of <= 60, equal sizes
    assert sizes(3, "joint", 2) == [2, 1] and sizes(80, "joint", 0) == [80]
    groups = name_groups(1203, "joint", 60)
    assert [i for g in groups for i in g] == list(range(1203)) and max(map(len, groups)) <= 60
    assert joint_width({"seen": [1, 2, 3]}) == 3 and joint_width({}) == 0
