"""The `replay` driver: what the controller would have done over a past window.

It steps a virtual clock through [start, end] and evaluates every gate and trigger
against a real Prometheus *at that past time* (one per plan environment, if
given), then decides exactly as the operator would. The target is in memory (nothing is written anywhere), jobs
succeed after ten minutes, and approvals are either given at once (`auto`) or
never (`none`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

from controller.driving import RunResult, World, drive
from controller.prometheus.source import PrometheusSource
from controller.sim.environment_targets import in_memory_target
from controller.sim.scenario import MAX_TICKS
from controller.sim.scripted_world import AutoApprover, ScriptedJobs
from phases.observations import Approval, Command
from phases.plan import Plan
from phases.status import RolloutStatus

ApprovalMode = Literal["auto", "none"]
REPLAY_UID = "replay"


class _ReplayPeople:
    """Approvals from the automatic approver, if any; no commands."""

    def __init__(self, approver: AutoApprover | None) -> None:
        self._approver = approver

    def approvals(self, at: datetime) -> Sequence[Approval]:
        return self._approver.given if self._approver is not None else ()

    def commands(self, at: datetime) -> Sequence[Command]:
        return ()


def replay(
    plan: Plan,
    source: PrometheusSource,
    *,
    start: datetime,
    end: datetime,
    tick: timedelta,
    approvals: ApprovalMode = "auto",
    rollout_delay: timedelta = timedelta(0),
    on_tick: Callable[[datetime, RolloutStatus], None] | None = None,
    by_environment: Mapping[str, PrometheusSource] | None = None,
) -> RunResult:
    """Drive the plan over [start, end] against the source's history; `on_tick` sees each tick.

    `by_environment` gives plan environments their own Prometheus (staging's history is
    not production's); `source` serves the others."""
    if end <= start:
        raise ValueError(f"--end {end.isoformat()} must be after --start {start.isoformat()}")
    if tick <= timedelta(0) or (end - start) / tick > MAX_TICKS:
        raise ValueError(
            f"a tick of {tick} over {end - start} would be more than {MAX_TICKS} ticks"
        )
    approver = (
        AutoApprover(REPLAY_UID, plan.content_hash, approver="replay")
        if approvals == "auto"
        else None
    )
    world = World(
        rollout_uid=REPLAY_UID,
        metrics=source,
        target=in_memory_target(plan, rollout_delay),
        people=_ReplayPeople(approver),
        jobs=ScriptedJobs({}),
        watchers=(approver,) if approver is not None else (),
        metrics_by_environment=dict(by_environment or {}),
    )
    return drive(plan, world, start=start, end=end, tick=tick, on_tick=on_tick)
