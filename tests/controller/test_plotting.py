"""The simulation plot, read from its matplotlib objects (artists, labels, limits), not pixels."""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import pytest

from controller.catalog import load_plan, load_scenario
from controller.sim.plotting import simulation_figure
from controller.sim.scenario import parse_scenario
from controller.sim.simulation import simulate

PLAN = load_plan()


@pytest.fixture(scope="module")
def figures() -> Any:
    import matplotlib.pyplot as plt

    made: dict[str, Any] = {}

    def figure(name: str) -> Any:
        if name not in made:
            made[name] = simulation_figure(simulate(PLAN, load_scenario(name, PLAN)))
        return made[name]

    yield figure
    for made_figure in made.values():
        plt.close(made_figure)


def panel(figure: Any, ylabel: str) -> Any:
    return next(axis for axis in figure.axes if axis.get_ylabel() == ylabel)


def legend_texts(axis: Any) -> list[str]:
    return [text.get_text() for text in axis.get_legend().get_texts()]


def threshold_levels(axis: Any, colour: str) -> set[float]:
    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_rgba

    return {
        round(float(segment[0][1]), 6)
        for collection in axis.collections
        if isinstance(collection, LineCollection)
        and tuple(collection.get_colors()[0]) == to_rgba(colour)
        for segment in collection.get_segments()
    }


def shaded(axis: Any, label: str) -> list[Any]:
    return [patch for patch in axis.patches if patch.get_label() == label]


def test_each_signal_panel_draws_its_gate_thresholds_and_has_a_legend(figures: Any) -> None:
    errors = panel(figures("degrade-at-50"), "error_ratio")
    # Runbook phase 3: "Error rate < 0.1% (sustained 30 minutes)" at each canary step.
    assert {0.001, 0.01} <= threshold_levels(errors, "tab:green")
    assert "gate threshold (promotion)" in legend_texts(errors)
    # The 5 % rollback trigger lies far above the data: named, not allowed to squash the panel.
    assert "rollback trigger 0.05 (above this range)" in legend_texts(errors)
    assert errors.get_ylim()[1] < 0.05
    latency = panel(figures("degrade-at-50"), "p99_latency_seconds")
    assert 0.005 in threshold_levels(latency, "tab:green")


def test_the_percent_panel_labels_steps_without_overlap_and_marks_the_rollback(
    figures: Any,
) -> None:
    figure = figures("degrade-at-50")
    percent = panel(figure, "ENFORCEMENT_PERCENT")
    labels = [t for t in percent.texts if t.get_gid() == "step-label"]
    assert [t.get_text().strip() for t in labels][-2:] == ["3@50", "3@25"]
    renderer = figure.canvas.get_renderer()
    boxes = [label.get_window_extent(renderer) for label in labels]
    assert not [(a, b) for a, b in combinations(boxes, 2) if a.overlaps(b)]
    assert {"promotion", "rollback", "soaking (in effect)"} <= set(legend_texts(percent))


def test_long_runs_count_days(figures: Any) -> None:
    figure = figures("degrade-at-50")
    assert figure.axes[-1].get_xlabel() == "days since start"
    assert 9 < figure.axes[-1].get_xlim()[1] < 11  # the scenario runs ten days


def test_a_flat_line_gets_a_fixed_range_from_zero_not_magnified_noise(figures: Any) -> None:
    figure = figures("shadow-blast-radius")
    unknown = panel(figure, "unknown_stage_ratio")  # flat at 0.001 the whole run
    # 2.7's canary gate (unknown stages < 0.5 %) is drawn on this panel, so the range
    # must show it too: from zero up to just above the larger of the line and the
    # thresholds, never a band magnified around the flat line.
    gates = threshold_levels(unknown, "tab:green")
    assert gates, "the canary gate on unknown stages is drawn"
    highest = max(0.001, *gates)
    low, high = unknown.get_ylim()
    assert low <= 0 < 0.001 < high
    assert highest < high <= 1.5 * highest, (high, gates)
    zero = panel(figure, "invalid_write_ratio")  # flat at 0
    assert zero.get_ylim()[0] <= 0 < zero.get_ylim()[1]


def test_stall_and_outage_are_shaded(figures: Any) -> None:
    stalled = panel(figures("shadow-blast-radius"), "ENFORCEMENT_PERCENT")
    assert shaded(stalled, "stalled")
    outage_figure = figures("prometheus-outage")
    for axis in outage_figure.axes:
        (band,) = shaded(axis, "Prometheus outage")
        assert "Prometheus outage" in legend_texts(axis)
    errors = panel(outage_figure, "error_ratio")
    line = next(line for line in errors.get_lines() if line.get_label() == "error_ratio")
    left, right = band.get_x(), band.get_x() + band.get_width()
    inside = [
        y for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True) if left <= x < right
    ]
    assert inside and all(math.isnan(y) for y in inside)  # no line where Prometheus said nothing


SHORT = """
name: short-with-a-pause
duration: 40h
tick: 5m
signals:
  error_ratio: [{at: 0s, value: 0.0004}]
  p99_latency_seconds: [{at: 0s, value: 0.0006}]
  unknown_stage_ratio: [{at: 0s, value: 0.001}]
  would_reject_ratio: [{at: 0s, value: 0.002}]
  invalid_write_ratio: [{at: 0s, value: 0}]
approvals:
  auto: {delay: 3h, approver: alice@example.com}
commands:
  - {at: 2h, kind: pause, by: bob, reason: investigating}
  - {at: 5h, kind: resume, by: bob}
"""


def test_short_runs_count_hours_and_pauses_and_approval_waits_are_shaded() -> None:
    import matplotlib.pyplot as plt

    scenario = parse_scenario(SHORT, source="short", known_signals=PLAN.signals.keys())
    figure = simulation_figure(simulate(PLAN, scenario))
    try:
        assert figure.axes[-1].get_xlabel() == "hours since start"
        percent = panel(figure, "ENFORCEMENT_PERCENT")
        (pause,) = shaded(percent, "paused")
        assert pause.get_x() == pytest.approx(2, abs=0.1)
        assert pause.get_x() + pause.get_width() == pytest.approx(5, abs=0.1)
        assert shaded(percent, "waiting for approval")
    finally:
        plt.close(figure)
