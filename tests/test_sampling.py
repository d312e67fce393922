"""Evenly spaced picks (calibration subsets, overlay images)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.data.sampling import evenly_spaced


def test_evenly_spaced_hand_computed() -> None:
    assert evenly_spaced(8, 3) == [0, 4, 7]
    assert evenly_spaced(10, 4) == [0, 3, 6, 9]
    assert evenly_spaced(5, 1) == [0]
    assert evenly_spaced(5, 5) == evenly_spaced(5, 9) == [0, 1, 2, 3, 4]
    assert evenly_spaced(5, 0) == evenly_spaced(0, 3) == []


@given(st.integers(1, 500), st.integers(1, 500))
def test_evenly_spaced_picks_distinct_sorted_ends_included(total: int, wanted: int) -> None:
    picks = evenly_spaced(total, wanted)
    assert len(picks) == min(total, wanted)
    assert picks == sorted(set(picks)) and all(0 <= p < total for p in picks)
    assert picks[0] == 0 and (wanted == 1 or picks[-1] == total - 1)
