"""The `simulate` driver: the real decision core in a scripted world on a virtual clock.

It chooses the scripted adapters (timelines, an in-memory target, scripted people
and jobs) and hands them to the shared tick loop in `controller.driving`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from controller.driving import RunResult, World, drive
from controller.sim.scenario import Scenario
from controller.sim.scripted_metrics import ScriptedMetrics
from controller.sim.scripted_world import InMemoryTarget, ScriptedJobs, ScriptedPeople
from phases.plan import Plan
from phases.status import RolloutStatus


@dataclass
class SimulationResult(RunResult):
    """A run's result with the scenario it ran and the jobs it created."""

    scenario: Scenario | None = None
    jobs_created: list[tuple[str, int]] = field(default_factory=list)


def simulate(
    plan: Plan,
    scenario: Scenario,
    *,
    on_tick: Callable[[datetime, RolloutStatus], None] | None = None,
) -> SimulationResult:
    """Run the plan against the scenario until it ends or the scenario's time is up."""
    people = ScriptedPeople(scenario, plan.content_hash)
    jobs = ScriptedJobs(scenario.jobs)
    world = World(
        rollout_uid=scenario.rollout_uid,
        metrics=ScriptedMetrics(scenario, plan.evaluation.resolution),
        target=InMemoryTarget(scenario.target.rollout_delay),
        people=people,
        jobs=jobs,
        watchers=(people,),
    )
    run = drive(
        plan,
        world,
        start=scenario.start,
        end=scenario.start + scenario.duration,
        tick=scenario.tick,
        on_tick=on_tick,
    )
    return SimulationResult(**vars(run), scenario=scenario, jobs_created=list(jobs.created))
