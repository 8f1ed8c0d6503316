"""One in-memory target per plan environment, routed as the operator routes its targets.

A simulated or replayed rollout of a plan with several environments keeps one
`InMemoryTarget` per environment: a tick observes the target of the step it
began in and writes to the ones `phases.environments.environments_holding`
names for the step it decided on, so production starts without staging's flags
and rolls out its workloads when the rollout arrives there, as in a cluster.
The counters the drivers read (writes, restarts, the latest restart) add up
every environment's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.sim.scripted_world import InMemoryTarget, target_for
from phases.actions import RestartWorkloads, SetFlags
from phases.environments import environments_holding, step_environment
from phases.observations import TargetState
from phases.plan import Plan
from phases.status import RolloutStatus


class InMemoryEnvironments(InMemoryTarget):
    """The targets of every environment, seen through the one-target interface."""

    def __init__(self, plan: Plan, rollout_delay: timedelta) -> None:
        one = target_for(plan, rollout_delay)
        super().__init__(rollout_delay, flag_names=one.flag_names, mode_flag=one.mode_flag)
        self._plan = plan
        self.targets = {name: target_for(plan, rollout_delay) for name in plan.environments}
        self._observed = self.targets[plan.environments[0]]
        self._writing: tuple[InMemoryTarget, ...] = (self._observed,)
        self._aimed: tuple[object, ...] = ()
        self._observed_step = ""

    def observe_from(self, status: RolloutStatus) -> None:
        """The tick begins in the status's step: observe that step's environment."""
        if status.step != self._observed_step:
            self._observed_step = status.step
            self._observed = self.targets[step_environment(self._plan, status.step)]

    def aim(self, status: RolloutStatus) -> None:
        """The decision left the rollout in this status: write where its flags belong."""
        last = status.history[-1] if status.history else None
        key = (status.step, last.at if last else None, last.trigger if last else None)
        if key != self._aimed:
            self._aimed = key
            held = environments_holding(self._plan, status)
            self._writing = tuple(self.targets[name] for name in held)

    def observe(self, at: datetime) -> TargetState:
        return self._observed.observe(at)

    def apply(self, action: SetFlags | RestartWorkloads, at: datetime) -> None:
        changed = False
        for target in self._writing:
            counts = (target.flag_writes, target.restarts)
            target.apply(action, at)
            changed = changed or counts != (target.flag_writes, target.restarts)
        self.flags = self._writing[0].flags
        if changed:
            self.flag_writes = sum(t.flag_writes for t in self.targets.values())
            self.restarts = sum(t.restarts for t in self.targets.values())
            restarts = [t.restarted_at for t in self.targets.values() if t.restarted_at]
            self.restarted_at = max(restarts) if restarts else None


def in_memory_target(plan: Plan, rollout_delay: timedelta) -> InMemoryTarget:
    """One target for a one-place plan, one per environment otherwise."""
    if len(plan.environments) == 1:
        return target_for(plan, rollout_delay)
    return InMemoryEnvironments(plan, rollout_delay)
