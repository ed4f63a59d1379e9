"""The router's commit rule (`services/router/offsets.py`): never commit past a record that was
not acknowledged, unless the log showed the offset holds none."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.router.offsets import commit_point, hole


def test_advances_over_a_contiguous_run_from_the_start() -> None:
    assert commit_point(5, {5, 6, 7, 9}, []) == 8


def test_a_record_missing_at_the_head_stops_the_commit() -> None:
    # faust 0.15.3 commits here: committed 31, first acked 32 ("off by one" in _new_offset).
    assert commit_point(31, {32, 33, 34}, []) is None
    # ... and with nothing committed yet it starts from whatever run came first.
    assert commit_point(0, {9, 10, 11}, []) is None


def test_confirmed_empty_ranges_are_passed_over() -> None:
    assert commit_point(31, {32, 33}, [(31, 32)]) == 34
    assert commit_point(10, {20}, [(10, 15), (15, 20)]) == 21
    assert commit_point(10, set(), [(10, 15)]) == 15
    assert commit_point(10, {11}, [(12, 20)]) is None


def test_hole_up_to_the_first_acknowledged_offset_or_the_end_of_the_log() -> None:
    assert hole(3, [7, 8], end=None) == (3, 7)
    assert hole(3, [3, 4], end=None) is None
    assert hole(3, [], end=10) == (3, 10)
    assert hole(3, [], end=3) is None
    assert hole(3, [], end=None) is None


@given(st.integers(0, 50), st.sets(st.integers(0, 120)),
       st.lists(st.tuples(st.integers(0, 120), st.integers(1, 10)), max_size=4))
def test_never_commits_past_an_offset_neither_acked_nor_empty(
        start: int, acked: set[int], spans: list[tuple[int, int]]) -> None:
    empty = [(lo, lo + n) for lo, n in spans]
    point = commit_point(start, acked, empty)
    if point is None:
        assert start not in acked and not any(lo <= start < hi for lo, hi in empty)
        return
    assert point > start
    for offset in range(start, point):
        assert offset in acked or any(lo <= offset < hi for lo, hi in empty)
    # It stops at the first offset that is neither.
    assert point not in acked and not any(lo <= point < hi for lo, hi in empty)
