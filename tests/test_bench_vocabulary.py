"""bench/vocabulary.py counts a vocabulary name as absent by its dataset class, matched as
``fusioner-segment`` matches names."""

from __future__ import annotations

from bench.vocabulary import absent_shares


def test_absent_names_are_the_typed_names_of_no_labelled_class() -> None:
    class_of = {"dog": 1, "zebra": 2, "dining table": 3}
    names = ["Dog", "zebra", "dining_table", "unicorn"]
    painted = {"Dog": 0.2, "zebra": 0.0, "dining_table": 0.05, "unicorn": 0.01, "(none)": 0.74}
    assert absent_shares(names, painted, {1}, class_of) == {"zebra": 0.0, "dining_table": 0.05,
                                                             "unicorn": 0.01}
    assert absent_shares(names, painted, {1, 2, 3}, class_of) == {"unicorn": 0.01}
