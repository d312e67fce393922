"""bench/vocabulary.py counts a vocabulary name as absent by its dataset class, matched as
``fusioner-segment`` matches names."""

from __future__ import annotations

import numpy as np

from bench.vocabulary import absent_shares, where_painted


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
