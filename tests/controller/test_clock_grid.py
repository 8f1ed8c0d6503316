"""`on_grid`: the moment a scheduled pass stands at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import hypothesis.strategies as st
from hypothesis import given

from controller.clock import on_grid

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(
    micros=st.integers(min_value=0, max_value=4_000_000_000 * 1_000_000),
    step_ms=st.integers(min_value=1, max_value=3_600_000),
)
def test_the_grid_moment_is_the_last_multiple_of_the_step_at_or_before(
    micros: int, step_ms: int
) -> None:
    moment = EPOCH + timedelta(microseconds=micros)
    step = timedelta(milliseconds=step_ms)
    found = on_grid(moment, step)
    assert found <= moment < found + step
    assert (found - EPOCH) % step == timedelta(0)
    assert on_grid(found, step) == found


def test_a_moment_in_another_time_zone_is_the_same_instant() -> None:
    moment = datetime(2026, 12, 2, 6, 0, 7, 500_000, tzinfo=timezone(timedelta(hours=2)))
    assert on_grid(moment, timedelta(seconds=5)) == datetime(2026, 12, 2, 4, 0, 5, tzinfo=UTC)
