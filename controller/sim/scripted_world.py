"""The simulated world around a rollout: an in-memory target, people and jobs.

These stand in for Kubernetes and for the humans at the same ports the live
adapters use, so the simulation exercises the operator's real decision path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType

from controller.sim.scenario import JobOutcome, Scenario
from phases.actions import RestartWorkloads, SetFlags, StartJob
from phases.flags import hash_flags
from phases.observations import Approval, Command, JobObservation, JobPhase, TargetState
from phases.plan import KNOWN_FLAGS, MODE_FLAG, Plan
from phases.status import RolloutStatus, StepState


class InMemoryTarget:
    """A ConfigMap and its workloads, held in memory; counts writes and restarts."""

    def __init__(
        self,
        rollout_delay: timedelta,
        *,
        flag_names: Sequence[str] = KNOWN_FLAGS,
        mode_flag: str | None = MODE_FLAG,
    ) -> None:
        self.flag_names = tuple(flag_names)
        self.mode_flag = mode_flag
        self.flags: dict[str, str] = {}
        self.template_hash: str | None = None
        self.restarted_at: datetime | None = None
        self.rollout_delay = rollout_delay
        self.flag_writes = 0
        self.restarts = 0
        self._running_mode: str | None = None
        self._flags_hash: str | None = None

    def apply(self, action: SetFlags | RestartWorkloads, at: datetime) -> None:
        if isinstance(action, SetFlags):
            if action.flags_hash != self._flags_hash and any(
                self.flags.get(key) != value for key, value in action.flags.items()
            ):
                self.flags.update(action.flags)
                self.flag_writes += 1
                self._flags_hash = (
                    hash_flags({k: self.flags[k] for k in self.flag_names})
                    if all(k in self.flags for k in self.flag_names)
                    else None
                )
        elif self.template_hash != action.flags_hash:
            self.template_hash = action.flags_hash
            self.restarted_at = at
            self.restarts += 1

    def observe(self, at: datetime) -> TargetState:
        flags_hash = self._flags_hash
        rolled_out = (
            flags_hash is not None
            and self.template_hash == flags_hash
            and self.restarted_at is not None
            and at >= self.restarted_at + self.rollout_delay
        )
        if rolled_out:
            self._running_mode = self.flags.get(self.mode_flag) if self.mode_flag else None
        modes = (self._running_mode,) if self._running_mode else ()
        return TargetState(flags_hash=flags_hash, rolled_out=rolled_out, observed_modes=modes)


def target_for(plan: Plan, rollout_delay: timedelta) -> InMemoryTarget:
    """An in-memory target holding the plan's flags, its app reporting the observed flag."""
    observed = plan.observed_mode
    return InMemoryTarget(
        rollout_delay,
        flag_names=plan.flag_set.names,
        mode_flag=observed.flag if observed else plan.mode_flag,
    )


class AutoApprover:
    """Approves any step that waits for approval, `delay` after it started waiting.

    It plays the people of a simulation or a replay: it watches the status as a
    person would and leaves steps listed in `withhold` waiting for ever.
    """

    def __init__(
        self,
        rollout_uid: str,
        plan_hash: str,
        *,
        delay: timedelta = timedelta(0),
        approver: str = "automatic-approver",
        withhold: Sequence[str] = (),
    ) -> None:
        self._rollout_uid = rollout_uid
        self._plan_hash = plan_hash
        self._delay = delay
        self._approver = approver
        self._withhold = frozenset(withhold)
        self._waiting_since: dict[tuple[str, datetime], datetime] = {}
        self.given: list[Approval] = []

    def watch(self, status: RolloutStatus, at: datetime) -> None:
        if status.state is not StepState.AWAITING_APPROVAL or status.step in self._withhold:
            return
        key = (status.step, status.step_entered_at)
        since = self._waiting_since.setdefault(key, at)
        if at - since >= self._delay and not any(
            a.step == status.step and a.created_at >= status.step_entered_at for a in self.given
        ):
            self.given.append(
                Approval(
                    id=f"auto-approval-{len(self.given) + 1}",
                    rollout_uid=self._rollout_uid,
                    step=status.step,
                    plan_hash=self._plan_hash,
                    approver=self._approver,
                    created_at=at,
                    reason="approved automatically",
                )
            )


class ScriptedPeople:
    """Approvals and commands from the scenario; automatic approvals watch the status."""

    def __init__(self, scenario: Scenario, plan_hash: str) -> None:
        auto = scenario.approvals.auto
        self.auto = (
            AutoApprover(
                scenario.rollout_uid,
                plan_hash,
                delay=auto.delay,
                approver=auto.approver,
                withhold=auto.withhold,
            )
            if auto is not None
            else None
        )
        self._scripted = [
            Approval(
                id=f"approval-{index}",
                rollout_uid=item.rollout_uid or scenario.rollout_uid,
                step=item.step,
                plan_hash=item.plan_hash or plan_hash,
                approver=item.approver,
                created_at=scenario.start + item.at,
                expires_at=scenario.start + item.at + item.expires_after
                if item.expires_after
                else None,
                reason=item.reason,
            )
            for index, item in enumerate(scenario.approvals.scripted, start=1)
        ]
        self._commands = [
            Command(
                id=f"command-{index}",
                kind=item.kind,
                issued_at=scenario.start + item.at,
                by=item.by,
                reason=item.reason,
                to=item.to,
            )
            for index, item in enumerate(scenario.commands, start=1)
        ]

    def watch(self, status: RolloutStatus, at: datetime) -> None:
        """Let the automatic approver see the rollout, as a person watching status would."""
        if self.auto is not None:
            self.auto.watch(status, at)

    def approvals(self, at: datetime) -> Sequence[Approval]:
        given = self.auto.given if self.auto is not None else []
        if not self._scripted and not given:
            return ()
        return [a for a in (*self._scripted, *given) if a.created_at <= at]

    def commands(self, at: datetime) -> Sequence[Command]:
        if not self._commands:
            return ()
        return [c for c in self._commands if c.issued_at <= at]


class ScriptedJobs:
    """Jobs that run for a scripted time and end as scripted, attempt by attempt."""

    def __init__(self, outcomes: Mapping[str, JobOutcome]) -> None:
        self._outcomes = outcomes
        self._started: dict[str, tuple[int, datetime]] = {}
        self._view: dict[str, JobObservation] = {}
        self._pending: dict[str, tuple[datetime, JobObservation]] = {}
        self._snapshot: Mapping[str, JobObservation] | None = None
        self.created: list[tuple[str, int]] = []

    def start(self, action: StartJob, at: datetime) -> None:
        current = self._started.get(action.name)
        if current is not None and current[0] >= action.attempt:
            return
        self._started[action.name] = (action.attempt, at)
        self.created.append((action.name, action.attempt))
        outcome = self._outcomes.get(action.name) or JobOutcome()
        attempt = action.attempt
        ending = (
            outcome.attempts[attempt - 1] if attempt <= len(outcome.attempts) else outcome.outcome
        )
        message = outcome.message if ending == "failed" else ""
        self._view[action.name] = JobObservation(action.name, attempt, JobPhase.RUNNING)
        self._snapshot = None
        self._pending[action.name] = (
            at + outcome.duration,
            JobObservation(action.name, attempt, JobPhase(ending), message),
        )

    def observe(self, at: datetime) -> Mapping[str, JobObservation]:
        finished = [name for name, (ends, _seen) in self._pending.items() if at >= ends]
        if finished or self._snapshot is None:
            for name in finished:
                self._view[name] = self._pending.pop(name)[1]
            self._snapshot = MappingProxyType(dict(self._view))
        return self._snapshot
