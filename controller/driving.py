"""The tick loop every virtual-clock driver shares: observe, decide, act, record.

`simulate` and `replay` differ only in the adapters they hand to `drive`: scripted
timelines or a real Prometheus queried at past times. The loop itself, and every
decision in it, is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from controller.clock import VirtualClock
from controller.observing import JudgeMemo, actuate, observe, window_requests
from controller.ports import Jobs, MetricsSource, People, Target, WindowRequest
from controller.sim.environment_targets import InMemoryEnvironments
from controller.sim.scripted_world import InMemoryTarget
from phases.actions import Event
from phases.baselines import BaselineRecord
from phases.decide import Decision, decide, expected_flags
from phases.environments import step_environment
from phases.needs import needs_of
from phases.plan import Plan
from phases.status import TERMINAL_STATES, RolloutStatus, TransitionRecord, initial_status
from phases.steps import steps_of


@runtime_checkable
class Prefetching(Protocol):
    """A metrics source that reads a tick's windows together, each distinct one once."""

    def prefetch(self, requests_: Iterable[WindowRequest], at: datetime) -> None: ...


class Watcher(Protocol):
    """People who react to the status (an automatic approver)."""

    def watch(self, status: RolloutStatus, at: datetime) -> None: ...


class Schedule(Protocol):
    """When to decide next, given this tick's moment, the status it began with and its decision."""

    def __call__(self, now: datetime, before: RolloutStatus, decision: Decision) -> datetime: ...


@dataclass
class RunResult:
    """What a run did: its transitions, events, final status and the target's counters."""

    plan: Plan
    start: datetime
    final: RolloutStatus
    ticks: int = 0
    transitions: list[TransitionRecord] = field(default_factory=list)
    events: list[tuple[float, Event]] = field(default_factory=list)
    percent_changes: list[tuple[float, int]] = field(default_factory=list)
    final_time_seconds: float = 0.0
    flag_writes: int = 0
    restarts: int = 0
    recorded: list[BaselineRecord] = field(default_factory=list)
    """The baselines captured during the run, as the RecordBaseline actions gave them."""

    @property
    def final_percent(self) -> int:
        step = steps_of(self.plan).get(self.final.step)
        return self.plan.flag_set.percent(expected_flags(step, self.final)[0])


@dataclass(frozen=True)
class World:
    """The adapters a run observes and acts through."""

    rollout_uid: str
    metrics: MetricsSource
    target: InMemoryTarget
    people: People
    jobs: Jobs
    watchers: tuple[Watcher, ...] = ()
    metrics_by_environment: Mapping[str, MetricsSource] = field(default_factory=dict)
    """Each plan environment's own metrics; `metrics` serves the environments not in it."""

    def metrics_at(self, plan: Plan, status: RolloutStatus) -> MetricsSource:
        """The metrics of the environment the status's step runs in."""
        if not self.metrics_by_environment:
            return self.metrics
        return self.metrics_by_environment.get(step_environment(plan, status.step), self.metrics)


def drive(
    plan: Plan,
    world: World,
    *,
    start: datetime,
    end: datetime,
    tick: timedelta,
    idle_gates: bool = False,
    on_tick: Callable[[datetime, RolloutStatus], None] | None = None,
    schedule: Schedule | None = None,
) -> RunResult:
    """Tick from `start` until the rollout ends or the next tick would pass `end`.

    With a `schedule`, the loop goes from each tick to the one it names instead of
    the next: an event-driven driver skips the ticks at which nothing can change.
    """
    clock = VirtualClock(start)
    target: Target = world.target
    status = initial_status(plan.content_hash, steps_of(plan).first.id, start)
    result = RunResult(plan=plan, start=start, final=status)
    last_percent: int | None = None
    sources = (world.metrics, *world.metrics_by_environment.values())
    prefetching = {id(m): m for m in sources if isinstance(m, Prefetching)}
    routed = world.target if isinstance(world.target, InMemoryEnvironments) else None
    memo = JudgeMemo()
    writes = -1
    while True:
        now = clock.now()
        needs = needs_of(plan, status, now, idle_gates=idle_gates)
        metrics = world.metrics_at(plan, status)
        if routed is not None:
            routed.observe_from(status)
        prefetcher = prefetching.get(id(metrics))
        if prefetcher is not None and (needs.windows or needs.alert_windows):
            prefetcher.prefetch(window_requests(needs), now)
        seen = observe(
            plan,
            status,
            needs,
            now,
            rollout_uid=world.rollout_uid,
            metrics=metrics,
            target=target,
            people=world.people,
            jobs=world.jobs,
            memo=memo,
        )
        decision = decide(plan, status, seen, now)
        before, status = status, decision.status
        if routed is not None:
            routed.aim(status)
        for recorded in actuate(decision.actions, now, target=target, jobs=world.jobs):
            result.recorded.extend(recorded.records)
        for watcher in world.watchers:
            watcher.watch(status, now)
        offset = (now - start).total_seconds()
        result.ticks += 1
        result.transitions.extend(decision.transitions)
        if decision.events:
            result.events.extend((offset, event) for event in decision.events)
        result.final_time_seconds = offset
        if world.target.flag_writes != writes:
            writes = world.target.flag_writes
            percent = plan.flag_set.percent(world.target.flags)
            if percent != last_percent:
                result.percent_changes.append((offset, percent))
                last_percent = percent
        if on_tick is not None:
            on_tick(now, status)
        following = now + tick if schedule is None else schedule(now, before, decision)
        if status.state in TERMINAL_STATES or following > end:
            break
        clock.advance(following - now)
    result.final = status
    result.flag_writes = world.target.flag_writes
    result.restarts = world.target.restarts
    return result
