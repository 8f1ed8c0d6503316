"""A test harness that ticks `decide` by hand: an obedient target, chosen verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources

from phases.actions import SetFlags
from phases.decide import Decision, decide, expected_flags
from phases.observations import (
    Approval,
    Command,
    JobObservation,
    JobPhase,
    Observations,
    TargetState,
)
from phases.plan import Plan, SignalGate
from phases.status import RolloutStatus, initial_status
from phases.steps import Step, steps_of
from phases.verdicts import Outcome, Verdict

PLAN_TEXT = (resources.files("phases") / "plans" / "stage-validation-v3.yaml").read_text(
    encoding="utf-8"
)
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UID = "uid-1"


class Driver:
    """Holds a rollout's status and a target that applies whatever flags it is told."""

    def __init__(self, plan: Plan, now: datetime = START) -> None:
        self.plan = plan
        self.now = now
        self.status: RolloutStatus = initial_status(plan.content_hash, steps_of(plan).first.id, now)
        self.target_flags_hash: str | None = None
        self.rolled_out = True
        self.modes: tuple[str, ...] | None = None
        self.approvals: list[Approval] = []
        self.commands: list[Command] = []
        self.jobs: dict[str, JobObservation] = {}
        self.baselines: dict[str, float | None] = {}
        self.last: Decision | None = None
        self.transitions: list = []

    @property
    def step(self) -> Step:
        return steps_of(self.plan).get(self.status.step)

    def verdicts(self, outcome: Outcome = Outcome.PASS, **overrides: Outcome) -> tuple[dict, dict]:
        step = self.step
        gates = {
            g.key: Verdict(g.key, overrides.get(g.key, outcome), "scripted") for g in step.gates
        }
        triggers = {
            t.key: Verdict(t.key, overrides.get(t.key, Outcome.PASS), "scripted")
            for t in step.triggers
        }
        return gates, triggers

    def tick(
        self,
        gates: dict | None = None,
        triggers: dict | None = None,
        *,
        gate_outcome: Outcome = Outcome.PASS,
        trigger_outcomes: dict[str, Outcome] | None = None,
    ) -> Decision:
        default_gates, default_triggers = self.verdicts(gate_outcome)
        if trigger_outcomes:
            for key, outcome in trigger_outcomes.items():
                default_triggers[key] = Verdict(key, outcome, "scripted")
        modes = self.modes
        if modes is None:
            observed = self.plan.observed_mode
            flags = expected_flags(self.step, self.status)[0]
            modes = (flags[observed.flag],) if observed else ()
        seen = Observations(
            rollout_uid=UID,
            target=TargetState(self.target_flags_hash, self.rolled_out, None, modes),
            gates=default_gates if gates is None else gates,
            triggers=default_triggers if triggers is None else triggers,
            baselines={s: self.baselines.get(s, 0.001) for s in self.step.baseline_signals},
            approvals=list(self.approvals),
            commands=list(self.commands),
            jobs=dict(self.jobs),
        )
        decision = decide(self.plan, self.status, seen, self.now)
        self.status = decision.status
        self.last = decision
        self.transitions.extend(decision.transitions)
        for action in decision.actions:
            if isinstance(action, SetFlags):
                self.target_flags_hash = action.flags_hash
        return decision

    def advance(self, delta: timedelta, **tick_args) -> Decision:
        self.now += delta
        return self.tick(**tick_args)

    def settle(self) -> None:
        """Tick until the step's flags are in effect (the target obeys at once)."""
        for _ in range(4):
            self.tick()

    def soak_to_gates(self) -> None:
        """Advance past min duration and the longest gate window of the step."""
        step = self.step
        windows = [g.window for g in step.gates if isinstance(g, SignalGate)]
        self.advance(max([step.min_duration, *windows]) + timedelta(minutes=1))

    def approve(self, step: str | None = None, *, approver: str = "alice", **fields) -> Approval:
        values = {
            "id": f"approval-{len(self.approvals) + 1}",
            "rollout_uid": UID,
            "step": step or self.status.step,
            "plan_hash": self.plan.content_hash,
            "approver": approver,
            "created_at": self.now,
        }
        values.update(fields)
        approval = Approval(**values)
        self.approvals.append(approval)
        return approval

    def command(self, kind: str, **fields) -> Command:
        command = Command(
            id=f"command-{len(self.commands) + 1}",
            kind=kind,
            issued_at=self.now,
            by="bob",
            **fields,
        )
        self.commands.append(command)
        return command

    def walk_to(self, step_id: str) -> None:
        """Promote step by step (approving where needed) until `step_id` is in effect."""
        for _ in range(40):
            if self.status.step == step_id and self.status.in_effect_at is not None:
                return
            self.settle()
            if self.status.step == step_id and self.status.in_effect_at is not None:
                return
            for job in self.step.jobs:
                self.jobs[job.name] = JobObservation(job.name, 1, JobPhase.SUCCEEDED)
            if self.step.approval.required:
                self.approve()
            self.soak_to_gates()
        raise AssertionError(f"did not reach {step_id}; at {self.status.step} {self.status.state}")
