"""The scripted metrics source summarises windows as a real series of samples would."""

from __future__ import annotations

from datetime import timedelta

from controller.sim.scenario import parse_scenario
from controller.sim.scripted_metrics import ScriptedMetrics

SCENARIO = parse_scenario(
    """
name: t
signals:
  s:
    - {at: 0s, value: 1.0}
    - {at: 1h, value: 3.0}
    - {at: 2h, value: null}
    - {at: 3h, value: 2.0}
outages:
  - {from: 5h, to: 6h}
alerts:
  - {name: A, from: 1h, to: 2h}
""",
    source="t",
)
M = ScriptedMetrics(SCENARIO, timedelta(minutes=1))
T0 = SCENARIO.start


def test_a_window_inside_one_piece_reads_that_value() -> None:
    summary = M.summarize("s", "q", timedelta(minutes=30), T0 + timedelta(minutes=45))
    assert (summary.minimum, summary.maximum, summary.count) == (1.0, 1.0, 30)
    assert summary.last == 1.0
    assert summary.largest_gap == timedelta(0)


def test_a_window_across_pieces_sees_the_extremes_and_the_latest_value() -> None:
    summary = M.summarize("s", "q", timedelta(hours=1), T0 + timedelta(hours=1, minutes=30))
    assert (summary.minimum, summary.maximum, summary.last) == (1.0, 3.0, 3.0)
    assert summary.count == 60


def test_steady_windows_give_the_same_summary_as_a_fresh_computation() -> None:
    fresh = ScriptedMetrics(SCENARIO, timedelta(minutes=1))
    for minutes in range(61, 120, 7):
        at = T0 + timedelta(minutes=minutes)
        first = M.summarize("s", "q", timedelta(minutes=30), at)
        assert first == fresh._summarize("s", "q", timedelta(minutes=30), at)


def test_null_values_are_gaps_not_zeros() -> None:
    summary = M.summarize("s", "q", timedelta(hours=2), T0 + timedelta(hours=3, minutes=30))
    assert summary.largest_gap == timedelta(hours=1)
    assert (summary.minimum, summary.maximum) == (2.0, 3.0)


def test_before_the_first_point_there_is_no_data() -> None:
    summary = M.summarize("s", "q", timedelta(hours=1), T0 + timedelta(minutes=10))
    assert summary.largest_gap == timedelta(minutes=50)


def test_during_an_outage_reads_fail_and_afterwards_the_outage_is_a_gap() -> None:
    during = M.summarize("s", "q", timedelta(minutes=5), T0 + timedelta(hours=5, minutes=30))
    assert during.error is not None and "outage" in during.error
    after = M.summarize("s", "q", timedelta(hours=2), T0 + timedelta(hours=6, minutes=30))
    assert after.largest_gap == timedelta(hours=1)
    assert M.firing_alerts(["A"], T0 + timedelta(hours=5, minutes=10)).firing is None


def test_alerts_fire_only_within_their_interval_and_when_asked_for() -> None:
    assert M.firing_alerts(["A"], T0 + timedelta(minutes=90)).firing == frozenset({"A"})
    assert M.firing_alerts(["B"], T0 + timedelta(minutes=90)).firing == frozenset()
    assert M.firing_alerts(["A"], T0 + timedelta(hours=2)).firing == frozenset()


def test_average_is_time_weighted_over_present_data() -> None:
    assert M.average("s", "q", T0, T0 + timedelta(hours=2)) == 2.0
    assert M.average("s", "q", T0 + timedelta(hours=2), T0 + timedelta(hours=3)) is None


def test_overlapping_and_touching_outages_are_down_exactly_over_their_union() -> None:
    scenario = parse_scenario(
        """
name: t
signals:
  s: [{at: 0s, value: 1.0}]
outages:
  - {from: 5h, to: 6h}
  - {from: 1h, to: 3h}
  - {from: 2h, to: 2h30m}
  - {from: 3h, to: 4h}
""",
        source="t",
    )
    metrics = ScriptedMetrics(scenario, timedelta(minutes=1))
    minutes = [59, 60, 135, 179, 180, 239, 240, 299, 300, 359, 360]
    down = {60, 135, 179, 180, 239, 300, 359}
    for minute in minutes:
        read = metrics.summarize(
            "s", "q", timedelta(minutes=1), scenario.start + timedelta(minutes=minute)
        )
        assert (read.error is not None) == (minute in down), minute
