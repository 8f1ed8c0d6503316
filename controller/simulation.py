"""The `simulate` driver: the real decision core on a virtual clock and a scripted world.

Each tick observes through the same glue as the operator, calls `decide`,
applies the actions to an in-memory target and records what changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from controller.clock import VirtualClock
from controller.observing import actuate, observe
from controller.scenario import Scenario
from controller.scripted_metrics import ScriptedMetrics
from controller.scripted_world import InMemoryTarget, ScriptedJobs, ScriptedPeople
from phases.actions import Event
from phases.decide import decide, expected_flags
from phases.needs import needs_of
from phases.plan import Plan
from phases.status import TERMINAL_STATES, RolloutStatus, TransitionRecord, initial_status
from phases.steps import steps_of


@dataclass
class SimulationResult:
    """What a simulation did: its transitions, events, final status and the world's counters."""

    plan: Plan
    scenario: Scenario
    start: datetime
    final: RolloutStatus
    ticks: int
    transitions: list[TransitionRecord] = field(default_factory=list)
    events: list[tuple[float, Event]] = field(default_factory=list)
    final_time_seconds: float = 0.0
    percent_changes: list[tuple[float, int]] = field(default_factory=list)
    flag_writes: int = 0
    restarts: int = 0
    jobs_created: list[tuple[str, int]] = field(default_factory=list)

    @property
    def final_percent(self) -> int:
        step = steps_of(self.plan).get(self.final.step)
        return int(expected_flags(step, self.final)[0].get("ENFORCEMENT_PERCENT", "0"))


def simulate(
    plan: Plan,
    scenario: Scenario,
    *,
    on_tick: Callable[[datetime, RolloutStatus], None] | None = None,
) -> SimulationResult:
    """Run the plan against the scenario until it ends or the scenario's time is up."""
    clock = VirtualClock(scenario.start)
    metrics = ScriptedMetrics(scenario, plan.evaluation.resolution)
    target = InMemoryTarget(scenario.target.rollout_delay)
    people = ScriptedPeople(scenario, plan.content_hash)
    jobs = ScriptedJobs(scenario.jobs)
    status = initial_status(plan.content_hash, steps_of(plan).first.id, clock.now())
    result = SimulationResult(
        plan=plan, scenario=scenario, start=scenario.start, final=status, ticks=0
    )
    end = scenario.start + scenario.duration
    last_percent: int | None = None
    while True:
        now = clock.now()
        needs = needs_of(plan, status, now, idle_gates=False)
        seen = observe(
            plan,
            status,
            needs,
            now,
            rollout_uid=scenario.rollout_uid,
            metrics=metrics,
            target=target,
            people=people,
            jobs=jobs,
        )
        decision = decide(plan, status, seen, now)
        status = decision.status
        actuate(decision.actions, now, target=target, jobs=jobs)
        people.watch(status, now)
        result.ticks += 1
        result.transitions.extend(decision.transitions)
        offset = (now - scenario.start).total_seconds()
        result.events.extend((offset, event) for event in decision.events)
        result.final_time_seconds = offset
        percent = int(target.flags.get("ENFORCEMENT_PERCENT", "0"))
        if percent != last_percent:
            result.percent_changes.append((offset, percent))
            last_percent = percent
        if on_tick is not None:
            on_tick(now, status)
        if status.state in TERMINAL_STATES or now + scenario.tick > end:
            break
        clock.advance(scenario.tick)
    result.final = status
    result.flag_writes = target.flag_writes
    result.restarts = target.restarts
    result.jobs_created = list(jobs.created)
    return result
