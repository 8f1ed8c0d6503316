"""A metrics source that reads a scenario's timelines instead of Prometheus.

Timelines are piecewise constant, so a window is summarised from the pieces it
overlaps rather than sample by sample: a 48h window costs the same as a 5m one,
which keeps a thirty-day simulation at a one-minute tick fast. Outages make every
read fail while they last and leave gaps in the history they cover.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from controller.scenario import Scenario
from phases.needs import AlertReading
from phases.verdicts import WindowSummary

_OUTAGE = "Prometheus did not answer (scripted outage)"
Piece = tuple[float, float, float | None]


class ScriptedMetrics:
    """Signal values, alerts and outages as a scenario scripts them."""

    def __init__(self, scenario: Scenario, resolution: timedelta) -> None:
        self._start = scenario.start
        self._resolution = max(resolution.total_seconds(), 1.0)
        self._timelines = {
            name: ([p.at.total_seconds() for p in points], [p.value for p in points])
            for name, points in scenario.signals.items()
        }
        self._outages = sorted(
            (o.start.total_seconds(), o.end.total_seconds()) for o in scenario.outages
        )
        self._steady: dict[tuple[str, str, timedelta, int], WindowSummary] = {}
        self._alerts = [
            (a.name, a.start.total_seconds(), a.end.total_seconds()) for a in scenario.alerts
        ]

    def _offset(self, at: datetime) -> float:
        return (at - self._start).total_seconds()

    def _down(self, offset: float) -> bool:
        return bool(self._outages) and any(start <= offset < end for start, end in self._outages)

    def value_at(self, signal: str, at: datetime) -> float | None:
        """The scripted value of a signal at a moment (None: no data)."""
        timeline = self._timelines.get(signal)
        offset = self._offset(at)
        if timeline is None or self._down(offset):
            return None
        index = bisect_right(timeline[0], offset) - 1
        return timeline[1][index] if index >= 0 else None

    def summarize(self, signal: str, query: str, window: timedelta, at: datetime) -> WindowSummary:
        end = self._offset(at)
        if self._down(end):
            return WindowSummary.failed(query, window, _OUTAGE)
        start = end - window.total_seconds()
        piece = self._single_piece(signal, start, end)
        if piece is None:
            return self._summarize(signal, query, window, start, end)
        key = (signal, query, window, piece)
        summary = self._steady.get(key)
        if summary is None:
            summary = self._summarize(signal, query, window, start, end)
            self._steady[key] = summary
        return summary

    def _single_piece(self, signal: str, start: float, end: float) -> int | None:
        """The timeline piece holding the whole window, when one does and no outage touches it.

        Such a window reads the same whatever its position in the piece, so its
        summary is computed once.
        """
        timeline = self._timelines.get(signal)
        if timeline is None or self._outages or start < timeline[0][0]:
            return None
        index = bisect_right(timeline[0], start) - 1
        following = timeline[0][index + 1] if index + 1 < len(timeline[0]) else math.inf
        return index if end < following else None

    def _summarize(
        self, signal: str, query: str, window: timedelta, start: float, end: float
    ) -> WindowSummary:
        low, high, last = math.inf, -math.inf, math.nan
        weighted, present, gap, largest_gap = 0.0, 0.0, 0.0, 0.0
        for piece_start, piece_end, value in self._pieces(signal, start, end):
            length = piece_end - piece_start
            if value is None:
                gap += length
                largest_gap = max(largest_gap, gap)
                continue
            gap = 0.0
            low, high, last = min(low, value), max(high, value), value
            weighted += value * length
            present += length
        if present == 0:
            return WindowSummary(query=query, window=window, series=0, largest_gap=window)
        return WindowSummary(
            query=query,
            window=window,
            count=max(1, int(present // self._resolution)),
            minimum=low,
            maximum=high,
            last=last,
            mean=weighted / present,
            largest_gap=timedelta(seconds=largest_gap),
        )

    def _pieces(self, signal: str, start: float, end: float) -> Iterator[Piece]:
        if not self._outages:
            yield from self._timeline_pieces(signal, start, end)
            return
        for piece in self._timeline_pieces(signal, start, end):
            yield from self._mask_outages(piece)

    def _timeline_pieces(self, signal: str, start: float, end: float) -> Iterator[Piece]:
        timeline = self._timelines.get(signal)
        if timeline is None:
            yield (start, end, None)
            return
        times, values = timeline
        index = bisect_right(times, start) - 1
        cursor = start
        if index < 0:
            first = min(times[0], end)
            if first > cursor:
                yield (cursor, first, None)
                cursor = first
            index = 0
        while cursor < end:
            following = times[index + 1] if index + 1 < len(times) else math.inf
            piece_end = min(following, end)
            if piece_end > cursor:
                yield (cursor, piece_end, values[index])
            cursor = piece_end
            index += 1

    def _mask_outages(self, piece: Piece) -> Iterator[Piece]:
        start, end, value = piece
        for outage_start, outage_end in self._outages:
            if value is None or outage_end <= start or outage_start >= end:
                continue
            if outage_start > start:
                yield (start, outage_start, value)
            yield (max(start, outage_start), min(end, outage_end), None)
            start = min(end, outage_end)
        if end > start:
            yield (start, end, value)

    def firing_alerts(self, names: Sequence[str], at: datetime) -> AlertReading:
        offset = self._offset(at)
        if self._down(offset):
            return AlertReading(None, _OUTAGE)
        wanted = set(names)
        return AlertReading(
            frozenset(
                name
                for name, start, end in self._alerts
                if name in wanted and start <= offset < end
            )
        )

    def average(self, signal: str, query: str, start: datetime, end: datetime) -> float | None:
        if self._down(self._offset(end)):
            return None
        total, present = 0.0, 0.0
        for piece_start, piece_end, value in self._pieces(
            signal, self._offset(start), self._offset(end)
        ):
            if value is not None:
                total += value * (piece_end - piece_start)
                present += piece_end - piece_start
        return total / present if present else None

    def modes(self, query: str, at: datetime) -> tuple[float, ...] | None:
        # The simulated target reports its pods' modes itself.
        return None
