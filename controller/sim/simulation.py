"""The `simulate` driver: the real decision core in a scripted world on a virtual clock.

It chooses the scripted adapters (timelines, an in-memory target, scripted people
and jobs) and hands them to the shared tick loop in `controller.driving`. Two
engines give the same run: `ticks` decides at every tick of the scenario, `events`
(the default) only at the ticks where an input can change (`controller.sim.moments`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from controller.driving import RunResult, World, drive
from controller.sim.environment_targets import in_memory_target
from controller.sim.moments import EventSchedule
from controller.sim.scenario import Scenario
from controller.sim.scripted_metrics import ScriptedMetrics
from controller.sim.scripted_world import ScriptedJobs, ScriptedPeople
from phases.plan import Plan
from phases.status import TERMINAL_STATES, RolloutStatus

Engine = Literal["events", "ticks"]


@dataclass
class SimulationResult(RunResult):
    """A run's result with the scenario it ran and the jobs it created.

    `ticks` counts the scenario's ticks the run covered, whichever the engine;
    `decisions` counts the ticks at which `decide` actually ran.
    """

    scenario: Scenario | None = None
    jobs_created: list[tuple[str, int]] = field(default_factory=list)
    decisions: int = 0


def simulate(
    plan: Plan,
    scenario: Scenario,
    *,
    on_tick: Callable[[datetime, RolloutStatus], None] | None = None,
    engine: Engine = "events",
) -> SimulationResult:
    """Run the plan against the scenario until it ends or the scenario's time is up.

    With the `events` engine, `on_tick` sees only the ticks at which `decide` ran.
    """
    people = ScriptedPeople(scenario, plan.content_hash)
    jobs = ScriptedJobs(scenario.jobs)
    target = in_memory_target(plan, scenario.target.rollout_delay)
    schedule = (
        EventSchedule(plan, scenario, target=target, people=people, jobs=jobs)
        if engine == "events"
        else None
    )
    world = World(
        rollout_uid=scenario.rollout_uid,
        metrics=ScriptedMetrics(scenario, plan.evaluation.resolution),
        target=target,
        people=people,
        jobs=jobs,
        watchers=(people,),
        metrics_by_environment={
            name: ScriptedMetrics(scenario.world_of(name), plan.evaluation.resolution)
            for name in scenario.environments
        },
    )
    run = drive(
        plan,
        world,
        start=scenario.start,
        end=scenario.start + scenario.duration,
        tick=scenario.tick,
        on_tick=on_tick,
        schedule=schedule,
    )
    result = SimulationResult(
        **vars(run), scenario=scenario, jobs_created=list(jobs.created), decisions=run.ticks
    )
    _cover_skipped_ticks(result, scenario)
    return result


def _cover_skipped_ticks(result: SimulationResult, scenario: Scenario) -> None:
    """Report the time and ticks covered as the tick engine would: up to the last tick."""
    tick = scenario.tick.total_seconds()
    if result.final.state not in TERMINAL_STATES:
        result.final_time_seconds = (scenario.duration // scenario.tick) * tick
    result.ticks = round(result.final_time_seconds / tick) + 1
