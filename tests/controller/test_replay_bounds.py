"""`replay` refuses up front a window that would take more ticks than it may run.

Issue 9: `replay --tick 0.001s` and a start in year 1 hung. The CLI refuses both at
the edge; the library refuses the tick count too, for callers other than the CLI.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from controller.catalog import load_plan
from controller.sim.replay import replay
from controller.sim.scenario import MAX_TICKS


def test_a_replay_of_more_ticks_than_allowed_is_refused_before_any_query() -> None:
    end = datetime(2026, 11, 20, tzinfo=UTC)
    untouched = cast(Any, object())  # any query would fail on it: none is made
    with pytest.raises(ValueError, match=f"more than {MAX_TICKS} ticks"):
        replay(
            load_plan(),
            untouched,
            start=end - timedelta(days=3650),
            end=end,
            tick=timedelta(seconds=1),
        )
