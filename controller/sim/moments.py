"""When a simulated rollout's inputs can next change: the ticks an event-driven run visits.

`decide` is pure. A tick whose status, observations and clock comparisons are
those of the tick before decides nothing new, so a simulation need not run it.
Everything a tick reads changes only at moments known in advance:

- scenario edges (timeline points, outages, alerts, scripted approvals and their
  expiries, commands), shifted by how far from an edge a reading of the status
  can change: each window `phases.needs.needs_of` lists for it (signals and
  alert histories), each of the evaluation's spans (resolution, gap tolerance),
  and each window less each of those (an edge entering or leaving a window, a
  gap at either end outgrowing the tolerance); a shifted edge strictly inside
  an outage of every Prometheus is no moment, since every read fails there alike;
- the status's clock thresholds, as the core lists them beside the comparisons
  it makes (`phases.clocks`): the soak and the max duration ending, a gate's
  window covered by the step, the degradation window closing, a trigger's
  evidence reaching past its floor;
- the world's own clocks: workloads rolling out, jobs ending, an automatic
  approval's delay;
- the promotion window's daily edges and freezes.

Nothing here names today's rules: the windows are found by asking the core what
it reads, the clock thresholds by asking the core where it compares `now`. A
moment found too many costs a visit; one missed would change the result, which
the equivalence test against the tick engine catches.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import fields, is_dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from controller.sim.scenario import JobOutcome, Scenario
from controller.sim.scripted_world import InMemoryTarget, ScriptedJobs, ScriptedPeople
from phases.clocks import clock_thresholds
from phases.decide import Decision
from phases.needs import needs_of
from phases.plan import Plan, PromotionWindow
from phases.status import RolloutStatus, StepState

_US = timedelta(microseconds=1)
_FIXED_LIMIT = 250_000
"""Edges x shifts above which scenario moments are searched per shift, not merged."""


def _leaves(value: object) -> Iterator[object]:
    """Every scalar inside a model, list or mapping (the values, not the keys)."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _leaves(getattr(value, name))
    elif is_dataclass(value) and not isinstance(value, type):
        for item in fields(value):
            yield from _leaves(getattr(value, item.name))
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    else:
        yield value


def micros(span: timedelta) -> int:
    return span // _US


def edge_shifts(windows: frozenset[int], evaluation: frozenset[int]) -> list[int]:
    """How far from a scenario edge a reading can change: the edge entering a window
    (0), leaving it (the window), a gap at the window's end outgrowing the tolerance
    (the tolerance after), one at its start shrinking below it (the window less the
    tolerance). Each reading covers one window, so the difference of two windows
    moves none. A window ends at the tick that reads it, so no reading depends on an
    edge still to come: none changes before the edge that changes it."""
    spans = {0} | evaluation
    return sorted({*spans, *windows} | {w - d for w in windows for d in spans if w >= d})


def scenario_edges(scenario: Scenario) -> list[int]:
    """Every moment (µs from the start) at which the scenario itself changes something."""
    worlds = [scenario, *(scenario.world_of(name) for name in scenario.environments)]
    edges = {
        micros(point.at)
        for world in worlds
        for points in world.signals.values()
        for point in points
    }
    for world in worlds:
        for interval in (*world.outages, *world.alerts):
            edges.update((micros(interval.start), micros(interval.end)))
    for approval in scenario.approvals.scripted:
        edges.add(micros(approval.at))
        if approval.expires_after is not None:
            edges.add(micros(approval.at + approval.expires_after))
    edges.update(micros(command.at) for command in scenario.commands)
    return sorted(edges)


def _merged(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    joined: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        elif end > start:
            joined.append((start, end))
    return joined


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    found = [(max(s, t), min(e, f)) for s, e in a for t, f in b]
    return [(start, end) for start, end in found if start < end]


def outages_everywhere(scenario: Scenario) -> list[tuple[int, int]]:
    """The stretches [from, to) (µs) in which every Prometheus of the scenario is down.

    There every read fails alike (`ScriptedMetrics`), whatever its window, so no
    reading can change strictly inside one: only at its start, and at its end,
    which is itself an edge.
    """
    worlds = [scenario, *(scenario.world_of(name) for name in scenario.environments)]
    down = _merged((micros(o.start), micros(o.end)) for o in scenario.outages)
    for world in worlds[1:]:
        down = _overlap(down, _merged((micros(o.start), micros(o.end)) for o in world.outages))
    return down


def _outside(moments: Iterable[int], down: list[tuple[int, int]]) -> list[int]:
    """The moments not strictly inside a stretch of `down` (sorted, disjoint)."""
    starts = [start for start, _end in down]
    kept = []
    for moment in moments:
        index = bisect_left(starts, moment) - 1
        if index < 0 or moment >= down[index][1]:
            kept.append(moment)
    return kept


def durations_of(*parts: object) -> set[int]:
    """Every duration held anywhere in `parts`, and 0, in µs."""
    return {0} | {micros(v) for v in _leaves(parts) if isinstance(v, timedelta)}


def _window_edges(window: PromotionWindow, around: datetime) -> Iterator[datetime]:
    """The promotion window's freezes and its daily opening, closing and midnight nearby."""
    for freeze in window.freezes:
        yield freeze.start
        yield freeze.end
    zone = ZoneInfo(window.timezone)
    today = around.astimezone(zone).date()
    for days in range(-1, 9):
        date = today + timedelta(days=days)
        for clock in (window.start, window.end, dt.time(0)):
            for fold in (0, 1):
                yield datetime.combine(date, clock, tzinfo=zone).replace(fold=fold)


def _first_at_or_after(sorted_moments: list[int], now: int) -> int | None:
    index = bisect_left(sorted_moments, now)
    return sorted_moments[index] if index < len(sorted_moments) else None


class Moments:
    """The next tick at which anything a simulated rollout reads can differ."""

    def __init__(self, plan: Plan, scenario: Scenario) -> None:
        self._plan = plan
        self._start = scenario.start
        self._tick = micros(scenario.tick)
        self._status: RolloutStatus | None = None
        self._status_moments: list[int] = []
        self._edges = scenario_edges(scenario)
        self._down = outages_everywhere(scenario)
        self._edge_moments: dict[frozenset[int], tuple[list[int], list[int] | None]] = {}
        self._spans: tuple[RolloutStatus | None, frozenset[int]] = (None, frozenset())
        self._evaluation = frozenset(durations_of(plan.evaluation))

    def _read_spans(self, status: RolloutStatus, now: datetime) -> frozenset[int]:
        """The windows the status reads: its signals' and alert histories' (gates
        included, as `needs_of` lists them)."""
        needs = needs_of(self._plan, status, now, idle_gates=True)
        windows = [check.window for check in needs.windows]
        windows += [check.window for check in needs.alert_windows]
        return frozenset(micros(window) for window in windows)

    def _scenario_next(self, spans: frozenset[int], now: int) -> int | None:
        """The next scenario edge, shifted by what the current readings span."""
        cached = self._edge_moments.get(spans)
        if cached is None:
            shifts = edge_shifts(spans, self._evaluation)
            merged = None
            if len(self._edges) * len(shifts) <= _FIXED_LIMIT:
                shifted = {e + s for e in self._edges for s in shifts if s}
                merged = sorted({*self._edges, *_outside(shifted, self._down)})
            cached = self._edge_moments[spans] = (shifts, merged)
        shifts, merged = cached
        if merged is not None:
            return _first_at_or_after(merged, now)
        found = (_first_at_or_after(self._edges, now - shift) for shift in shifts)
        return min(
            (e + s for e, s in zip(found, shifts, strict=True) if e is not None), default=None
        )

    def _spans_of(self, status: RolloutStatus, now: datetime) -> frozenset[int]:
        # What a status reads changes only with the status (degradation-window
        # triggers drop out as it closes, which reads less): computed once per status.
        if self._spans[0] is not status:
            self._spans = (status, self._read_spans(status, now))
        return self._spans[1]

    def _status_next(self, status: RolloutStatus, now: int) -> int | None:
        """The next moment a comparison of `now` with the status's clocks can flip
        (`phases.clocks`); computed once per status."""
        if status is not self._status and status != self._status:
            thresholds = clock_thresholds(self._plan, status)
            self._status_moments = sorted(micros(moment - self._start) for moment in thresholds)
            self._status = status
        return _first_at_or_after(self._status_moments, now)

    def _window_next(self, now: int) -> int | None:
        window = self._plan.promotion_window
        if window is None:
            return None
        at = self._start + now * _US
        return min(
            (micros(edge - self._start) for edge in _window_edges(window, at) if edge >= at),
            default=None,
        )

    def next_tick(
        self, now: datetime, status: RolloutStatus, world_clocks: Iterable[int]
    ) -> datetime:
        """The first tick after `now` at which an input may have changed.

        A change at moment m shows at the first tick at or after m, or, for a
        comparison that flips just after m, at the first tick after it: both are
        the same tick unless m falls on the grid.
        """
        at = micros(now - self._start)
        found = [
            m
            for m in (
                self._scenario_next(self._spans_of(status, now), at),
                self._status_next(status, at),
                self._window_next(at),
            )
            if m is not None
        ]
        found += [m for m in world_clocks if m >= at]
        if not found:
            return datetime.max.replace(tzinfo=now.tzinfo)
        earliest = min(found)
        ticks = -(-earliest // self._tick)
        if ticks * self._tick <= at:
            ticks = at // self._tick + 1
        return self._start + ticks * self._tick * _US


class EventSchedule:
    """The `drive` schedule of the event-driven simulator.

    After a tick that changed anything (the status, the target, a job started,
    an event, an automatic approval) the next tick runs, as chained decisions
    need; otherwise the run jumps to the next moment an input can change. The
    core repeats its idempotent actions every tick: only their effects count.
    """

    def __init__(
        self,
        plan: Plan,
        scenario: Scenario,
        *,
        target: InMemoryTarget,
        people: ScriptedPeople,
        jobs: ScriptedJobs,
    ) -> None:
        self._moments = Moments(plan, scenario)
        self._scenario = scenario
        self._target = target
        self._people = people
        self._jobs = jobs
        self._seen: tuple[int, ...] = ()
        self._jobs_seen = 0
        self._clocks: set[int] = set()
        self._waiting: dict[tuple[str, datetime], int] = {}

    def __call__(self, now: datetime, before: RolloutStatus, decision: Decision) -> datetime:
        offset = micros(now - self._scenario.start)
        for name, _attempt in self._jobs.created[self._jobs_seen :]:
            outcome = self._scenario.jobs.get(name) or JobOutcome()
            self._clocks.add(offset + micros(outcome.duration))
        status = decision.status
        auto = self._scenario.approvals.auto
        if auto is not None and status.state is StepState.AWAITING_APPROVAL:
            since = self._waiting.setdefault((status.step, status.step_entered_at), offset)
            self._clocks.add(since + micros(auto.delay))
        seen = self._world_state()
        changed = seen != self._seen or bool(decision.events or decision.transitions)
        self._seen, self._jobs_seen = seen, len(self._jobs.created)
        if changed or (status is not before and status != before):
            return now + self._scenario.tick
        self._clocks = {clock for clock in self._clocks if clock >= offset}
        return self._moments.next_tick(now, status, self._world_clocks())

    def _world_state(self) -> tuple[int, ...]:
        """Counters that move whenever an action had an effect or someone approved."""
        auto = self._people.auto
        return (
            self._target.flag_writes,
            self._target.restarts,
            len(self._jobs.created),
            len(auto.given) if auto is not None else 0,
        )

    def _world_clocks(self) -> Iterator[int]:
        yield from self._clocks
        restarted = self._target.restarted_at
        if restarted is not None:
            yield micros(restarted - self._scenario.start + self._target.rollout_delay)
