"""bench/vocabulary.py counts a vocabulary name as absent by its dataset class, matched as
``fusioner-segment`` matches names."""

from __future__ import annotations

import numpy as np

from bench.vocabulary import AbsentTally, absent_shares, object_pixels, where_painted
from pipeline.docs.absent_names import absent_names_table


def test_absent_names_are_the_typed_names_of_no_labelled_class() -> None:
    class_of = {"dog": 1, "zebra": 2, "dining table": 3}
    names = ["Dog", "zebra", "dining_table", "unicorn"]
    painted = {"Dog": 0.2, "zebra": 0.0, "dining_table": 0.05, "unicorn": 0.01, "(none)": 0.74}
    assert absent_shares(names, painted, {1}, class_of) == {"zebra": 0.0, "dining_table": 0.05,
                                                             "unicorn": 0.01}
    assert absent_shares(names, painted, {1, 2, 3}, class_of) == {"unicorn": 0.01}


def test_where_painted_counts_paint_on_labelled_objects() -> None:
    label = np.array([[0, 0, 3, 3],
                      [0, 255, 3, 5],
                      [0, 0, 5, 5]], dtype=np.uint8)
    painted = np.zeros_like(label, dtype=bool)
    painted[:2, 1:] = True  # background 0, ignore 255, 3, 3, 3, 5
    assert where_painted(painted, label) == (6, 4, 3)
    assert where_painted(label == 0, label) == (5, 0, None)
    assert where_painted(np.zeros_like(painted), label) == (0, 0, None)
    assert object_pixels(label).sum() == 6


def test_the_tally_counts_pairs_and_where_the_pairs_over_one_percent_paint() -> None:
    label = np.zeros((10, 10), dtype=np.uint8)
    label[:, :5] = 1  # class 1 ("person") covers half the image
    winners = np.full((10, 10), -1)
    winners[:2, :] = 0  # "zebra": 20 pixels, 10 on the person
    winners[9, 9] = 1  # "dog": 1 pixel (1%, not over it)
    tally = AbsentTally()
    tally.add("img", {"zebra": 0.2, "dog": 0.01}, winners, ["zebra", "dog"], label,
              ["background", "person"])
    record = tally.record()
    assert record["pairs"] == 2 and record["pairs_over_1pct"] == 1
    assert record["pairs_any_pixel"] == 2
    assert record["mean_share"] == 0.105 and record["max_share"] == 0.2
    assert record["worst"] == {"name": "zebra", "image": "img"}
    assert record["over_1pct"] == {"on_objects": 0.5, "object_cover": 0.5,
                                   "confusions": [["zebra", "person", 1]]}


def test_the_absent_names_table_has_a_row_per_checkpoint_and_a_mean_per_module() -> None:
    def record(fold: int, episode: str | None, mean: float, over: int) -> dict:
        return {"fold": fold, "text": "minilm_l6", "episode": episode, "pairs": 10,
                "mean_share": mean, "max_share": 0.5, "pairs_over_1pct": over,
                "over_1pct": {"on_objects": 0.6, "object_cover": 0.4,
                              "confusions": [["zebra", "person", 2]]}}
    document = {"dataset": "coco128", "split": "val", "visual": "dinov2_vits14",
                "vocabulary": "coco", "checkpoints": [
                    record(0, "single", 0.004, 3), record(1, "single", 0.006, 5),
                    record(0, "vocabulary", 0.001, 1)]}
    lines = absent_names_table(document).splitlines()
    assert lines[0].startswith("coco128/val, dinov2_vits14: every name of the coco vocabulary")
    rows = [line for line in lines if line.startswith("| minilm")]
    assert [row.split(" | ")[1] for row in rows] == ["0", "1", "mean (sums of pairs; max of max)",
                                                     "0"]
    assert rows[2].split(" | ")[2:6] == ["20", "0.50%", "50.00%", "8"]
    assert rows[3].startswith("| minilm_l6 (vocabulary episodes) | 0 | 10 | 0.10% |")
    assert rows[0].endswith("| 60.00% | 40.00% | zebra on person (2) |")
