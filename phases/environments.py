"""Which environments' targets hold the current step's flags.

A step's flags go to its own environment. Moving forward into another
environment leaves the one behind as it was: the runbook deploys staging in warn
for 2.1 and never asks for it to change afterwards. A rollback is different: it
exists to take the degraded environment off the step that degraded it, so when a
rollback crosses environments (production's 2.4 back into staging's 2.1), every
environment it stepped back over is given the restored step's flags too (for the
bundled plan: warn at 0 %, the runbook's "Full Rollback to Warn"), until the
rollout leaves that step.
"""

from __future__ import annotations

from collections.abc import Mapping

from phases.plan import Plan
from phases.status import RolloutStatus
from phases.steps import Step, steps_of


def step_environment(plan: Plan, step_id: str) -> str:
    """The environment a step runs in; the first step's for an id the plan lost (a rebase)."""
    table = steps_of(plan)
    step = table.by_id.get(step_id)
    return (step or table.first).environment


def environments_holding(plan: Plan, status: RolloutStatus) -> tuple[str, ...]:
    """The environments whose target must hold the current step's flags, its own first."""
    table = steps_of(plan)
    current = table.by_id.get(status.step)
    if current is None:
        return (table.first.environment,)
    left = _rolled_back_from(status, table.by_id)
    if left is None or left.index <= current.index:
        return (current.environment,)
    crossed = [s.environment for s in table.steps[current.index + 1 : left.index + 1]]
    others = [e for e in dict.fromkeys(crossed) if e != current.environment]
    return (current.environment, *others)


def _rolled_back_from(status: RolloutStatus, by_id: Mapping[str, Step]) -> Step | None:
    """The step the rollout left when it entered the current one, if it came by a rollback."""
    for record in reversed(status.history):
        if record.to_step != status.step:
            return None
        if record.from_step != record.to_step:
            if record.trigger != "rollback":
                return None
            return by_id.get(record.from_step)
    return None
