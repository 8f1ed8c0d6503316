"""A metrics source that reads a scenario's timelines instead of Prometheus.

Timelines are piecewise constant, so a window is summarised from the pieces it
overlaps rather than sample by sample: a 48h window costs the same as a 5m one.
Outages are folded into every timeline once, as pieces without data, and make
every read fail while they last. A window whose first and last pieces hold data
reads the same wherever it sits over those pieces, so its summary is computed
once and reused: that keeps a thirty-day simulation at a one-minute tick fast.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import datetime, timedelta

from controller.sim.scenario import Point, Scenario
from phases.needs import AlertReading
from phases.verdicts import AlertHistory, WindowSummary

_OUTAGE = "Prometheus did not answer (scripted outage)"
_COVERAGE = "\0alert-history-coverage"
"""The timeline of Prometheus being up: 1 everywhere but in outages (no signal has this name)."""


def _run_start(runs: list[tuple[float, float]], end: float) -> float | None:
    """The start of the unbroken stretch of runs [from, to) that covers `end`, or None."""
    covering = [run for run in runs if run[0] <= end < run[1]]
    if not covering:
        return None
    began = min(a for a, _b in covering)
    while earlier := [a for a, b in runs if a < began <= b]:
        began = min(earlier)
    return began


def _merged(intervals: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Sorted [from, to) intervals joined where they overlap or touch: starts and ends."""
    starts: list[float] = []
    ends: list[float] = []
    for start, end in intervals:
        if ends and start <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        elif end > start:
            starts.append(start)
            ends.append(end)
    return starts, ends


Timeline = tuple[list[float], list[float | None]]


class ScriptedMetrics:
    """Signal values, alerts and outages as a scenario scripts them."""

    def __init__(self, scenario: Scenario, resolution: timedelta) -> None:
        self._start = scenario.start
        self._resolution = max(resolution.total_seconds(), 1.0)
        self._outages = sorted(
            (o.start.total_seconds(), o.end.total_seconds()) for o in scenario.outages
        )
        self._down_starts, self._down_ends = _merged(self._outages)
        self._timelines = {name: self._fold(points) for name, points in scenario.signals.items()}
        self._alerts = [
            (a.name, a.start.total_seconds(), a.end.total_seconds()) for a in scenario.alerts
        ]
        self._coverage = self._fold([Point(at=timedelta(0), value=1.0)])
        self._quiet: dict[tuple[tuple[str, ...], timedelta, int], AlertHistory] = {}
        self._readings: dict[frozenset[str], AlertReading] = {}
        self._last_at: datetime | None = None
        self._last_offset = 0.0
        self._window_seconds: dict[timedelta, float] = {}
        self._steady: dict[tuple[str, timedelta, int, int], WindowSummary] = {}
        self._recent: dict[tuple[str, timedelta], tuple[float, float, WindowSummary]] = {}

    def _fold(self, points: list[Point]) -> Timeline:
        """The timeline with every outage cut in as a piece without data."""
        changes: dict[float, float | None] = {p.at.total_seconds(): p.value for p in points}
        times = sorted(changes)
        values = [changes[t] for t in times]
        for start, end in self._outages:
            resume = self._value(times, values, end)
            changes[start] = None
            for t in [t for t in changes if start < t < end]:
                del changes[t]
            if end not in changes or (
                end in changes and changes[end] is None and resume is not None
            ):
                changes[end] = resume
            times = sorted(changes)
            values = [changes[t] for t in times]
        return times, values

    @staticmethod
    def _value(times: list[float], values: list[float | None], offset: float) -> float | None:
        index = bisect_right(times, offset) - 1
        return values[index] if index >= 0 else None

    def _offset(self, at: datetime) -> float:
        # Every read of one tick asks for the same moment: compute its offset once.
        if at is not self._last_at:
            self._last_at = at
            self._last_offset = (at - self._start).total_seconds()
        return self._last_offset

    def _seconds(self, window: timedelta) -> float:
        seconds = self._window_seconds.get(window)
        if seconds is None:
            seconds = self._window_seconds[window] = window.total_seconds()
        return seconds

    def _down(self, offset: float) -> bool:
        index = bisect_right(self._down_starts, offset) - 1
        return index >= 0 and offset < self._down_ends[index]

    def value_at(self, signal: str, at: datetime) -> float | None:
        """The scripted value of a signal at a moment (None: no data)."""
        timeline = self._timelines.get(signal)
        return self._value(*timeline, self._offset(at)) if timeline else None

    def summarize(self, signal: str, query: str, window: timedelta, at: datetime) -> WindowSummary:
        end = self._offset(at)
        recent = self._recent.get((query, window))
        if recent is not None and recent[0] < end < recent[1]:
            return recent[2]
        if self._down(end):
            return WindowSummary.failed(query, window, _OUTAGE)
        timeline = self._timelines.get(signal)
        if timeline is None:
            return WindowSummary(query=query, window=window, series=0, largest_gap=window)
        times, values = timeline
        start = end - self._seconds(window)
        first = bisect_right(times, start) - 1
        last = bisect_left(times, end) - 1
        if first < 0 or values[first] is None or values[last if last > first else first] is None:
            return self._summarize(signal, query, window, at)
        key = (query, window, first, last)
        summary = self._steady.get(key)
        if summary is None:
            summary = self._summarize(signal, query, window, at)
            self._steady[key] = summary
        # The same summary holds while neither edge of the window leaves its piece.
        seconds = end - start
        after_first = times[first + 1] if first + 1 < len(times) else math.inf
        after_last = times[last + 1] if last + 1 < len(times) else math.inf
        self._recent[(query, window)] = (
            max(times[first] + seconds, times[last] if last >= 0 else -math.inf),
            min(after_first + seconds, after_last),
            summary,
        )
        return summary

    def _summarize(self, signal: str, query: str, window: timedelta, at: datetime) -> WindowSummary:
        """Walk the pieces that overlap (at - window, at]."""
        times, values = self._timelines[signal]
        end = self._offset(at)
        start = end - window.total_seconds()
        low, high, last = math.inf, -math.inf, math.nan
        present, gap, largest_gap = 0.0, 0.0, 0.0
        index = bisect_right(times, start) - 1
        cursor = start
        if index < 0:
            gap = min(times[0], end) - start
            largest_gap = gap
            cursor, index = min(times[0], end), 0
        while cursor < end:
            piece_end = min(times[index + 1] if index + 1 < len(times) else math.inf, end)
            value = values[index]
            length = piece_end - cursor
            if length > 0 and value is None:
                gap += length
                largest_gap = max(largest_gap, gap)
            elif length > 0 and value is not None:
                gap = 0.0
                low, high, last = min(low, value), max(high, value), value
                present += length
            cursor = piece_end
            index += 1
        if present == 0:
            return WindowSummary(query=query, window=window, series=0, largest_gap=window)
        return WindowSummary(
            query=query,
            window=window,
            count=max(1, int(present // self._resolution)),
            minimum=low,
            maximum=high,
            last=last,
            largest_gap=timedelta(seconds=largest_gap),
        )

    def firing_alerts(self, names: Sequence[str], at: datetime) -> AlertReading:
        offset = self._offset(at)
        if self._down(offset):
            return AlertReading(None, _OUTAGE)
        firing = frozenset(
            name for name, start, end in self._alerts if start <= offset < end and name in names
        )
        reading = self._readings.get(firing)
        if reading is None:
            reading = self._readings[firing] = AlertReading(firing)
        return reading

    def alert_history(
        self, alerts: Sequence[str], coverage_query: str | None, window: timedelta, at: datetime
    ) -> AlertHistory:
        """The scripted alerts over the window; the history has gaps where outages are.

        A scripted alert is active and firing from its `from` to its `to`: scenarios
        script no pending time. Before the scenario starts there is no history.
        """
        end = self._offset(at)
        if self._down(end):
            return AlertHistory.failed(at, window, _OUTAGE)
        start = end - self._seconds(window)
        coverage = self._coverage_summary(coverage_query, window, at)
        runs = (
            [(n, a, b) for n, a, b in self._alerts if n in alerts and a <= end and b > start]
            if self._alerts
            else []
        )
        if not runs:
            # Quiet: no verdict depends on the read time, so one object serves every such read
            # (and lets the judge memo see that nothing changed).
            key = (tuple(alerts), window, id(coverage))
            quiet = self._quiet.get(key)
            if quiet is None or quiet.coverage is not coverage:
                quiet = self._quiet[key] = AlertHistory(at=at, window=window, coverage=coverage)
            return quiet
        fired = frozenset(n for n, _a, _b in runs)
        since: dict[str, datetime] = {}
        for name in fired:
            began = _run_start([(a, b) for n, a, b in runs if n == name], end)
            if began is not None:
                since[name] = self._start + timedelta(seconds=max(began, start))
        return AlertHistory(
            at=at,
            window=window,
            coverage=coverage,
            fired=fired,
            firing_now=frozenset(since),
            active_since=since,
        )

    def _coverage_summary(
        self, coverage_query: str | None, window: timedelta, at: datetime
    ) -> WindowSummary | None:
        if coverage_query is None:
            return None
        self._timelines.setdefault(_COVERAGE, self._coverage)
        return self.summarize(_COVERAGE, coverage_query, window, at)

    def average(self, signal: str, query: str, start: datetime, end: datetime) -> float | None:
        if self._down(self._offset(end)) or signal not in self._timelines:
            return None
        times, values = self._timelines[signal]
        low, high = self._offset(start), self._offset(end)
        total, present = 0.0, 0.0
        for index, value in enumerate(values):
            piece_start = max(times[index], low)
            piece_end = min(times[index + 1] if index + 1 < len(times) else math.inf, high)
            if value is not None and piece_end > piece_start:
                total += value * (piece_end - piece_start)
                present += piece_end - piece_start
        return total / present if present else None

    def modes(self, query: str, at: datetime) -> tuple[float, ...] | None:
        # The simulated target reports its pods' modes itself.
        return None
