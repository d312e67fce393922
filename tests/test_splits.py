"""Zero-shot folds: class partitions, and no unseen class in any training episode of a split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.data import create_dataset
from pipeline.data.coco import COCO_CLASSES
from pipeline.data.pascal import VOC_CLASSES
from pipeline.data.splits import (
    ZeroShotSplit,
    all_unseen_split,
    background_id,
    evaluation_episodes,
    get_split,
    split_for,
    training_classes,
    training_view,
)
from pipeline.errors import UnknownNameError
from tests.dataset_fixtures import make_coco, make_folder, make_fss, make_pascal
from tests.helpers import CAMVID


@pytest.mark.parametrize(("dataset", "num_classes", "per_fold"), [("pascal", 20, 5),
                                                                   ("coco", 80, 20)])
def test_folds_partition_the_classes(dataset: str, num_classes: int, per_fold: int) -> None:
    unseen_all: list[int] = []
    for fold in range(4):
        split = get_split(dataset, fold)
        assert len(split.unseen) == per_fold and split.background == 0
        assert set(split.seen) | set(split.unseen) == set(range(1, num_classes + 1))
        assert not set(split.seen) & set(split.unseen)
        assert training_classes(split) == split.seen
        unseen_all += split.unseen
    assert sorted(unseen_all) == list(range(1, num_classes + 1))
    with pytest.raises(UnknownNameError):
        get_split(dataset, 4)


def test_literature_folds() -> None:
    assert [VOC_CLASSES[c] for c in get_split("pascal", 0).unseen] == [
        "aeroplane", "bicycle", "bird", "boat", "bottle"]
    assert get_split("pascal", 3).unseen == (16, 17, 18, 19, 20)
    assert get_split("coco", 0).unseen[:3] == (1, 5, 9)  # person, airplane, boat
    assert get_split("coco", 1).unseen[:2] == (2, 6)
    assert get_split("coco", 3).unseen[-1] == 80
    assert COCO_CLASSES[get_split("coco", 0).unseen[1]] == "airplane"
    assert background_id(VOC_CLASSES) == 0 and background_id(["sky", "road"]) is None


def test_unknown_dataset_split() -> None:
    with pytest.raises(UnknownNameError, match="split_for"):
        get_split("nope", 0)


def test_training_view_hand_example() -> None:
    split = ZeroShotSplit("toy", 0, seen=(1, 2), unseen=(3,), background=0)
    label = np.array([[0, 1, 3], [3, 255, 2]], dtype=np.uint8)
    present, safe = training_view(label, split)
    assert present == (1, 2)
    assert safe.tolist() == [[0, 1, 255], [255, 255, 2]]
    _, as_background = training_view(label, split, unseen_as="background")
    assert as_background.tolist() == [[0, 1, 0], [0, 255, 2]]
    only_unseen = np.full((2, 2), 3, np.uint8)
    assert training_view(only_unseen, split)[0] == ()  # no training episode: skip the image
    assert evaluation_episodes(label, split) == (3,)
    with pytest.raises(ValueError, match="no background"):
        training_view(label, get_split("camvid", 0), unseen_as="background")
    with pytest.raises(ValueError, match="unseen_as"):
        training_view(label, split, unseen_as="drop")  # type: ignore[arg-type]


@given(label=arrays(np.uint8, (5, 6), elements=st.sampled_from(list(range(21)) + [255])),
       fold=st.integers(0, 3), mode=st.sampled_from(["ignore", "background"]))
def test_training_view_never_shows_unseen(label: np.ndarray, fold: int, mode: str) -> None:
    split = get_split("pascal", fold)
    present, safe = training_view(label, split, unseen_as=mode)  # type: ignore[arg-type]
    assert not np.isin(safe, split.unseen).any()
    assert set(present) <= set(split.seen)
    assert set(present) == set(np.unique(label).tolist()) & set(split.seen)
    kept = ~np.isin(label, split.unseen)
    assert np.array_equal(safe[kept], label[kept])


def _assert_split_is_clean(dataset, split: ZeroShotSplit) -> None:
    """Every training episode of the whole dataset split queries seen classes only."""
    episodes = 0
    for index in range(len(dataset)):
        present, safe = training_view(dataset[index].label, split)
        assert not np.isin(safe, split.unseen).any()
        assert set(present) <= set(training_classes(split))
        episodes += len(present)
    assert episodes > 0


@pytest.mark.parametrize("fold", [0, 1, 2])
def test_camvid_train_split_has_no_unseen(fold: int) -> None:
    if not CAMVID.is_dir():
        pytest.skip("shared CamVid copy not present")
    _assert_split_is_clean(create_dataset("camvid", "train", CAMVID), get_split("camvid", fold))


@pytest.mark.parametrize("fold", range(4))
def test_fixture_train_splits_have_no_unseen(tmp_path: Path, fold: int) -> None:
    pascal = create_dataset("pascal", "train", make_pascal(tmp_path / "VOC2012"))
    _assert_split_is_clean(pascal, split_for(pascal, fold))
    coco = create_dataset("coco", "train", make_coco(tmp_path / "COCO2014"))
    _assert_split_is_clean(coco, split_for(coco, fold))


def test_folder_vocabularies_split_for(tmp_path: Path) -> None:
    folder = create_dataset("folder", "test", make_folder(tmp_path / "mine"))
    split = split_for(folder, 0)
    assert split == ZeroShotSplit("folder", 0, (), (1, 2), background=0)
    with pytest.raises(UnknownNameError):
        split_for(folder, 1)
    fss = make_fss(tmp_path / "fss")
    train, test = create_dataset("fss1000", "trn", fss), create_dataset("fss1000", "test", fss)
    assert split_for(train, 0).seen == (1, 2, 3, 4) and split_for(train, 0).unseen == ()
    assert split_for(test, 0).unseen == (1, 2, 3, 4, 5) and split_for(test, 0).seen == ()
    assert not set(train.class_names[1:]) & set(test.class_names[1:])
    assert all_unseen_split("x", ["a", "b"]).unseen == (0, 1)
