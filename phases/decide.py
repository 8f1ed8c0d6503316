"""`decide`: the one pure function every driver calls once per tick and rollout.

Given the plan, the last status, what was observed and the time, it returns the
new status, the (idempotent) actions to take and the events to tell. Its safety
rules: promote only when every gate passed over its whole window, inside the
step's time in effect; `unknown` never promotes; roll back only on a trigger's
`fail` whose evidence is all newer than the step (after a rollback: newer than
the moment the trigger was seen clear at the restored step), so one degradation
episode costs one step; after a rollback, hold until a new approval; never raise
the percentage without an approval bound to this rollout, step and plan; past the
max duration without the gates, stall.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from phases.actions import (
    Action,
    Event,
    EventKind,
    RecordBaseline,
    RestartWorkloads,
    SetFlags,
    StartJob,
)
from phases.approvals import ApprovalCount, count_approvals, raise_policy
from phases.baselines import BaselineRecord, captured_record, settle, settled_status, usable
from phases.durations import format_duration
from phases.flags import hash_flags
from phases.machine import PhaseMachines, machines_for
from phases.needs import query_lookback
from phases.observations import Command, JobPhase, Observations
from phases.plan import (
    WRITE_ONLY_FLAG,
    ApprovalPolicy,
    JobGate,
    Plan,
    SignalTrigger,
)
from phases.status import (
    HANDLED_LIMIT,
    HISTORY_LIMIT,
    JobRecord,
    RolloutStatus,
    StepState,
    TransitionRecord,
)
from phases.steps import GateSpec, Step, TriggerSpec
from phases.verdicts import Outcome, Verdict
from phases.windows import promotion_blocker

_TRIGGER_STATES = frozenset(
    {
        StepState.VERIFYING,
        StepState.SOAKING,
        StepState.AWAITING_APPROVAL,
        StepState.STALLED,
        StepState.PAUSED,
    }
)
_NO_APPROVALS = ApprovalCount((), ())
WRITE_ENFORCEMENT_OFF = "write-enforcement-off"
"""A rollback target: keep the step, turn ENFORCE_WRITE_ONLY off (runbook scenario 2)."""
_READY_STATES = frozenset({StepState.SOAKING, StepState.AWAITING_APPROVAL, StepState.STALLED})


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one tick: the status to persist, then the actions and events."""

    status: RolloutStatus
    actions: tuple[Action, ...]
    events: tuple[Event, ...]
    transitions: tuple[TransitionRecord, ...]
    blockers: tuple[str, ...]


def decide(
    plan: Plan, status: RolloutStatus, observations: Observations, now: datetime
) -> Decision:
    """Decide one tick for one rollout. Pure: the same inputs always give the same decision."""
    return _Tick(plan, status, observations, now).run()


def requeue_after(plan: Plan, status: RolloutStatus, now: datetime) -> timedelta | None:
    """How long until the soak can be over, for a driver that sleeps until something can change."""
    if status.state not in (StepState.SOAKING, StepState.AWAITING_APPROVAL):
        return None
    remaining = machines_for(plan).table.get(status.step).min_duration - status.soak_elapsed(now)
    return remaining if remaining > timedelta(0) else None


_FLAG_ACTIONS: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[SetFlags, RestartWorkloads]] = {}


def _flag_actions(flags: Mapping[str, str], flags_hash: str) -> tuple[SetFlags, RestartWorkloads]:
    """The two flag actions of a flag set; immutable, so built once and shared."""
    key = (flags_hash, tuple(sorted(flags.items())))
    actions = _FLAG_ACTIONS.get(key)
    if actions is None:
        actions = _FLAG_ACTIONS[key] = (SetFlags(flags, flags_hash), RestartWorkloads(flags_hash))
    return actions


def expected_flags(step: Step, status: RolloutStatus) -> tuple[Mapping[str, str], str]:
    """The flags the target must hold now: the step's, with any emergency overrides."""
    if not status.flag_overrides:
        return step.flags, step.flags_hash
    # An override of a flag the plan no longer declares (a plan edit) is not written.
    kept = {k: v for k, v in status.flag_overrides.items() if k in step.flags}
    flags = {**step.flags, **kept}
    return flags, hash_flags(flags)


def signed_changes(plan: Plan, flags: Mapping[str, str], signed: Mapping[str, str]) -> list[str]:
    """The approval_to_change flags whose value in `flags` differs from the signed one.

    A flag never signed off in this rollout counts as signed at the first step's value:
    the plan was reviewed to start there.
    """
    first = machines_for(plan).table.first.flags
    return [
        name
        for name in plan.flag_set.approval_flags
        if flags.get(name) != signed.get(name, first.get(name))
    ]


class _Tick:
    """The working state of one `decide` call; discarded when it returns."""

    def __init__(
        self, plan: Plan, status: RolloutStatus, observations: Observations, now: datetime
    ) -> None:
        self.plan = plan
        self.machines: PhaseMachines = machines_for(plan)
        self.status = settled_status(plan, status, observations.carried_baselines)
        self.seen = observations
        self.now = now
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.transitions: list[TransitionRecord] = []
        self.blockers: list[str] = []
        self._step = self.machines.table.get(status.step)
        self._expected_key: tuple[str, tuple[tuple[str, str], ...]] | None = None
        self._expected_value: tuple[Mapping[str, str], str] = ({}, "")

    def _expected(self) -> tuple[Mapping[str, str], str]:
        """The expected flags, computed again only when the step or the overrides change."""
        overrides = self.status.flag_overrides
        key = (self.status.step, tuple(sorted(overrides.items())) if overrides else ())
        if self._expected_key != key:
            self._expected_key = key
            self._expected_value = expected_flags(self.step, self.status)
        return self._expected_value

    @property
    def step(self) -> Step:
        if self._step.id != self.status.step:
            self._step = self.machines.table.get(self.status.step)
        return self._step

    def run(self) -> Decision:
        if self.status.state is not StepState.ABORTED:
            if self.status.plan_hash != self.plan.content_hash:
                self._rebase()
            self._handle_commands()
            if self.status.state in _TRIGGER_STATES:
                self._handle_triggers()
            held = self._percent_held()
            if not held:
                self._progress()
                held = self._percent_held()
            if not held:
                self._assert_flags()
        return Decision(
            status=self.status,
            actions=tuple(self.actions),
            events=tuple(self.events),
            transitions=tuple(self.transitions),
            blockers=tuple(self.blockers),
        )

    def _assert_flags(self) -> None:
        """Level-triggered: every tick asks for the step's flags; the target skips what matches."""
        if self.status.state is StepState.ABORTED:
            return
        self.actions.extend(_flag_actions(*self._expected()))

    # status changes -----------------------------------------------------------

    def _update(self, **changes: Any) -> None:
        if any(getattr(self.status, name) != value for name, value in changes.items()):
            self.status = self.status.model_copy(update=changes)

    def _warn_once(self, kind: EventKind, message: str, **details: str) -> None:
        """Emit a warning event the first time this exact message comes up in the step."""
        if message in self.status.warnings_reported:
            return
        self.events.append(Event(kind, self.status.step, message, True, details))
        self._update(warnings_reported=[*self.status.warnings_reported, message][-HANDLED_LIMIT:])

    def _move(
        self,
        trigger: str,
        reason: str,
        *,
        to_step: str | None = None,
        by: str = "",
        approvals: tuple[str, ...] = (),
        kind: EventKind = EventKind.TRANSITION,
        warning: bool = False,
        **changes: Any,
    ) -> None:
        old = self.status
        state = self.machines.life_after(old.state, trigger)
        dest = to_step or old.step
        record = TransitionRecord(
            at=self.now,
            from_step=old.step,
            from_state=old.state,
            to_step=dest,
            to_state=state,
            trigger=trigger,
            reason=reason,
            by=by,
            approvals=list(approvals),
            environment=self.machines.table.get(dest).environment,
        )
        self.transitions.append(record)
        history = [*old.history, record][-HISTORY_LIMIT:]
        self.status = old.model_copy(
            update={"step": dest, "state": state, "reason": reason, "history": history, **changes}
        )
        where = f"{old.step} ({old.state}) → {dest} ({state})"
        self.events.append(Event(kind, dest, f"{trigger}: {where}: {reason}", warning))

    def _enter_step(self) -> dict[str, Any]:
        """Fields that start a step afresh: no soak, no pause, a new deadline."""
        return {
            "step_entered_at": self.now,
            "flags_applied_at": None,
            "in_effect_at": None,
            "paused_at": None,
            "soak_paused": timedelta(0),
            "deadline_from": self.now,
            "deadline_paused": timedelta(0),
            "warnings_reported": [],
            "flag_overrides": {},
            "triggers_cleared_at": {},
        }

    def _rebase(self) -> None:
        """The plan changed under a running rollout: keep the step, start it afresh.

        Soak time and approvals were earned under the old plan and never carry over.
        """
        kept = self._restart_fields()
        if self.status.step not in self.machines.table.by_id:
            first = self.machines.table.first
            self.status = self.status.model_copy(
                update={"plan_hash": self.plan.content_hash, "step": first.id, **kept}
            )
            self._move_to_paused(
                f"plan changed to {self.plan.short_hash}; its steps do not include the current "
                f"one, so the rollout holds at {first.id} until a person decides"
            )
            return
        old = self.status.plan_hash[:12]
        self.status = self.status.model_copy(update={"plan_hash": self.plan.content_hash})
        reason = f"plan changed from {old} to {self.plan.short_hash}: step restarts, approvals and soak time reset"
        if self.machines.may(self.status.state, "reapply"):
            self._move("reapply", reason, **kept)
        else:
            self._update(reason=reason, **kept)

    def _restart_fields(self) -> dict[str, Any]:
        """A fresh start of the current step that keeps what protects the target.

        Emergency flag overrides and a rollback's hold stay: a plan edit must never
        lift them, or it could raise the percentage without an approval.
        """
        status = self.status
        return {
            **self._enter_step(),
            "flag_overrides": dict(status.flag_overrides),
            "hold_for_approval": status.hold_for_approval,
            "paused_at": self.now if status.state is StepState.PAUSED else None,
        }

    def _move_to_paused(self, reason: str) -> None:
        if self.machines.may(self.status.state, "pause"):
            self._move(
                "pause",
                reason,
                kind=EventKind.PAUSED,
                warning=True,
                paused_at=self.status.paused_at or self.now,
            )

    # commands -----------------------------------------------------------------

    def _handle_commands(self) -> None:
        if not self.seen.commands:
            return
        handled = set(self.status.commands_handled)
        covered_until = watermark = self.status.commands_handled_until
        issued = {command.id: command.issued_at for command in self.seen.commands}
        for command in sorted(self.seen.commands, key=lambda c: (c.issued_at, c.id)):
            if command.id in handled or self.status.state is StepState.ABORTED:
                continue
            if covered_until is not None and command.issued_at <= covered_until:
                continue
            handled.add(command.id)
            remembered = [*self.status.commands_handled, command.id]
            if len(remembered) > HANDLED_LIMIT:
                # Forgotten ids are still covered: every command up to their time counts as handled.
                forgotten = remembered[: len(remembered) - HANDLED_LIMIT]
                times = [issued[i] for i in forgotten if i in issued]
                if times:
                    watermark = max([*times, *([watermark] if watermark else [])])
                remembered = remembered[-HANDLED_LIMIT:]
            self._update(commands_handled=remembered, commands_handled_until=watermark)
            problem = self._apply_command(command)
            if problem:
                self.events.append(
                    Event(
                        EventKind.COMMAND_REJECTED,
                        self.status.step,
                        f"{command.kind} by {command.by or 'unknown'}: {problem}",
                        True,
                    )
                )

    def _apply_command(self, command: Command) -> str | None:
        state = self.status.state
        why = f"{command.kind} by {command.by or 'unknown'}" + (
            f": {command.reason}" if command.reason else ""
        )
        if command.kind == "retry":
            return self._retry_jobs(why)
        if command.kind == "rollback":
            return self._rollback_command(command, why)
        if not self.machines.may(state, command.kind):
            return f"not possible while the step is {state}"
        if command.kind == "pause":
            self._move(
                "pause",
                why,
                by=command.by,
                kind=EventKind.PAUSED,
                paused_at=self.status.paused_at or self.now,
            )
        elif command.kind == "resume":
            self._resume(why, command.by)
        else:
            self._move("abort", why, by=command.by, warning=True)
        return None

    def _resume(self, why: str, by: str) -> None:
        status = self.status
        if status.state is StepState.STALLED:
            # As after a pause, the clocks wait until the step is verified in effect again.
            self._move(
                "resume",
                f"{why} (max duration counted afresh)",
                by=by,
                deadline_from=self.now,
                deadline_paused=timedelta(0),
                paused_at=self.now,
            )
            return
        # The clocks stay stopped (paused_at kept) until the step is verified in effect again.
        self._move("resume", why, by=by)

    def _rollback_command(self, command: Command, why: str) -> str | None:
        table = self.machines.table
        current = self.step
        if not self.machines.may(self.status.state, "rollback"):
            return f"not possible while the step is {self.status.state}"
        overrides: dict[str, str] = {}
        if command.to in (None, "", "previous"):
            target = table.before(current)
            if target is None:
                return f"{current.id} is the first step; there is nothing to roll back to"
        elif command.to == WRITE_ENFORCEMENT_OFF:
            # Runbook scenario 2: write enforcement too aggressive. Same step, writes back
            # in warn; like any rollback it re-soaks and waits for a new approval.
            flags, _hash = self._expected()
            if WRITE_ONLY_FLAG not in flags:
                return f"this plan declares no {WRITE_ONLY_FLAG} flag"
            if flags.get(WRITE_ONLY_FLAG) != "true":
                return f"write enforcement is already off at step {current.id}"
            target = current
            overrides = {**self.status.flag_overrides, WRITE_ONLY_FLAG: "false"}
        elif command.to == "warn":
            # The plan's safe values (the runbook's: warn, no write enforcement, 0 %).
            safe = self.plan.flag_set.safe
            earlier = [s for s in table.steps[: current.index] if safe and dict(s.flags) == safe]
            target = earlier[-1] if earlier else table.first
            if target is current or (target.index == current.index):
                return f"{current.id} is the first step; it cannot go further back"
            if safe is not None and dict(target.flags) != safe:
                overrides = dict(safe)
        else:
            found = table.by_id.get(command.to)
            if found is None:
                known = ", ".join(s.id for s in table.steps)
                return f"unknown step {command.to!r} (steps: {known}; or warn, or {WRITE_ENFORCEMENT_OFF})"
            if found.index >= current.index:
                return f"{found.id} is not before the current step {current.id}"
            target = found
        self._rollback(target, why, by=command.by, overrides=overrides)
        return None

    def _rollback(
        self, target: Step, reason: str, *, by: str = "", overrides: Mapping[str, str] | None = None
    ) -> None:
        changes = self._enter_step()
        changes.update(
            hold_for_approval=True,
            rollbacks=self.status.rollbacks + 1,
            flag_overrides=dict(overrides or {}),
            # Going back needs nobody, as lowering the percentage needs nobody.
            approved_flags=self._signed_part({**target.flags, **(overrides or {})}),
        )
        if target.index == self.step.index - 1:
            self.machines.step_after(self.step.id, "rollback")
        self._move(
            "rollback",
            reason,
            to_step=target.id,
            by=by,
            kind=EventKind.ROLLBACK,
            warning=True,
            **changes,
        )

    def _retry_jobs(self, why: str) -> str | None:
        failed = [
            (name, record)
            for name, record in self.status.jobs.items()
            if record.step == self.status.step
            and (seen := self.seen.jobs.get(name)) is not None
            and seen.attempt == record.attempt
            and seen.phase is JobPhase.FAILED
        ]
        if not failed:
            return f"no failed job in step {self.status.step} to retry"
        jobs = dict(self.status.jobs)
        for name, record in failed:
            jobs[name] = JobRecord(
                step=record.step, attempt=record.attempt + 1, started_at=self.now, resume=True
            )
        self._update(
            jobs=jobs,
            reason=f"{why}: retrying {', '.join(name for name, _ in failed)} with resume arguments",
        )
        return None

    # triggers -----------------------------------------------------------------

    def _evidence_floor(self, trigger: TriggerSpec) -> datetime | None:
        """The moment a trigger's evidence must lie entirely after; None: it cannot count.

        A promoted step counts everything since its flags were written, so that a
        slow rollout of a bad step is rolled back before it completes. A step
        restored by a rollback counts a trigger only once the episode that rolled it
        back is over: after the trigger was seen clear there, in effect again. A
        degradation that outlasts the rollback (an alert still firing, errors still
        high) holds the restored step instead of walking it down: one episode, one
        step back ("rollback to previous percentage").
        """
        if self.status.hold_for_approval:
            return self.status.triggers_cleared_at.get(trigger.key)
        return self.status.flags_applied_at

    def _note_cleared_triggers(self) -> None:
        """On a restored step in effect, remember when each trigger is first seen clear."""
        if not self.status.hold_for_approval or self.status.in_effect_at is None:
            return
        cleared = dict(self.status.triggers_cleared_at)
        for trigger in self.step.triggers:
            verdict = self.seen.triggers.get(trigger.key)
            if trigger.key not in cleared and verdict is not None and verdict.passed:
                cleared[trigger.key] = self.now
        self._update(triggers_cleared_at=cleared)

    def _evidence_start(self, trigger: TriggerSpec, verdict: Verdict) -> datetime:
        """Where a failing verdict's evidence begins, the data behind its first sample included."""
        if isinstance(trigger, SignalTrigger):
            query = self.plan.signals[trigger.signal].query
            return self.now - trigger.sustained_for - query_lookback(query)
        return self.now - verdict.window

    def _in_degradation_window(self, trigger: TriggerSpec, verdict: Verdict) -> bool:
        """Whether the degradation was first seen within the window after the step took effect."""
        if self.status.hold_for_approval:
            return False
        in_effect_at = self.status.in_effect_at
        if in_effect_at is None:
            return True
        seen = self.now - (
            trigger.sustained_for if isinstance(trigger, SignalTrigger) else verdict.window
        )
        return seen <= in_effect_at + self.step.degradation_window

    def _handle_triggers(self) -> None:
        if self.status.flags_applied_at is None:
            return
        self._note_cleared_triggers()
        step = self.step
        fired: list[str] = []
        for trigger in step.triggers:
            verdict = self.seen.triggers.get(trigger.key)
            if verdict is None or not verdict.failed:
                continue
            floor = self._evidence_floor(trigger)
            if floor is None or self._evidence_start(trigger, verdict) < floor:
                continue
            if trigger.scope == "degradation_window" and not self._in_degradation_window(
                trigger, verdict
            ):
                continue
            fired.append(f"{trigger.key}: {verdict.reason}")
        if not fired:
            return
        reason = "degradation: " + "; ".join(fired)
        previous = self.machines.table.before(step)
        if step.on_degradation == "rollback" and previous is not None:
            self._rollback(previous, reason)
        elif self.status.state is not StepState.PAUSED:
            self._move(
                "pause",
                f"{reason} (this step pauses instead of rolling back)",
                kind=EventKind.PAUSED,
                warning=True,
                paused_at=self.status.paused_at or self.now,
            )

    # progress -----------------------------------------------------------------

    def _progress(self) -> None:
        state = self.status.state
        if state in (StepState.APPLYING, StepState.ROLLING_BACK):
            self._apply_step()
        elif state is StepState.VERIFYING:
            self._verify_step()
        elif state in _READY_STATES:
            if self._drifted():
                return
            self._run_jobs()
            self._consider_promotion()
        elif state is StepState.PAUSED:
            self.blockers.append(
                f"paused: {self.status.reason}" if self.status.reason else "paused"
            )

    def _apply_step(self) -> None:
        _flags, flags_hash = self._expected()
        if self.seen.target.flags_hash != flags_hash:
            self.blockers.append(f"applying flags {flags_hash} to the target")
            return
        if self.status.flags_applied_at is None:
            self._update(flags_applied_at=self.now)
        if self._in_effect():
            self._verified("flags applied and workloads rolled out", self.now)
        elif self.status.state is StepState.APPLYING:
            self._move("applied", "flags written; waiting for the workloads to roll out")
        else:
            self.blockers.append(self._rollout_wait())

    def _verify_step(self) -> None:
        if self._drifted():
            return
        if self.status.flags_applied_at is None:
            # Reached by resuming a pause taken before the flags landed.
            self._update(flags_applied_at=self.now)
        if self._in_effect():
            self._verified(
                "workloads rolled out with the step's flags", self.status.in_effect_at or self.now
            )
            return
        self.blockers.append(self._rollout_wait())
        problem = self.seen.target.rollout_problem
        if problem:
            self._warn_once(EventKind.ROLLOUT_PROBLEM, problem)

    def _verified(self, reason: str, in_effect_at: datetime) -> None:
        """The step is in effect: its soak clock runs from `in_effect_at`, any pause closes."""
        self._move("verified", reason, in_effect_at=in_effect_at, **self._back_in_effect())

    def _back_in_effect(self) -> dict[str, Any]:
        """Fields that close a pause when a resumed step is verified in effect again."""
        status = self.status
        if status.paused_at is None:
            return {}
        paused_for = self.now - status.paused_at
        soak_paused = status.soak_paused
        if status.in_effect_at is not None and status.in_effect_at <= status.paused_at:
            soak_paused += paused_for
        return {
            "paused_at": None,
            "soak_paused": soak_paused,
            "deadline_paused": status.deadline_paused + paused_for,
        }

    def _rollout_wait(self) -> str:
        target = self.seen.target
        if target.rollout_problem:
            return f"holding: {target.rollout_problem}"
        if not target.rolled_out:
            return "waiting for the workloads to finish rolling out"
        observed = self.plan.observed_mode
        expected = self._expected()[0].get(observed.flag, "") if observed else ""
        waiting = f"workloads rolled out; waiting for the app to report mode {expected}"
        if target.observed_modes is None:
            return f"{waiting}: its mode is unknown, Prometheus did not answer the mode query"
        if not target.observed_modes:
            return f"{waiting}: Prometheus answers but has no mode series for the app yet"
        return f"{waiting}: its pods report {', '.join(target.observed_modes)}"

    def _in_effect(self) -> bool:
        target = self.seen.target
        if not target.rolled_out or target.rollout_problem:
            return False
        if self.plan.observed_mode is None:
            return True
        expected = self._expected()[0].get(self.plan.observed_mode.flag)
        modes = target.observed_modes
        return bool(modes) and all(mode == expected for mode in modes or ())

    def _drifted(self) -> bool:
        _flags, flags_hash = self._expected()
        seen = self.seen.target.flags_hash
        if seen == flags_hash:
            return False
        reason = f"target holds flags {seen or 'none'}, not the step's {flags_hash}: re-applying"
        self._move(
            "reapply",
            reason,
            kind=EventKind.FLAGS_DRIFTED,
            warning=True,
            flags_applied_at=None,
            in_effect_at=None,
            soak_paused=timedelta(0),
        )
        return True

    def _run_jobs(self) -> None:
        step = self.step
        if not step.jobs:
            return
        jobs = dict(self.status.jobs)
        for spec in step.jobs:
            record = jobs.get(spec.name)
            if record is None:
                if any(self._job_phase(dep) is not JobPhase.SUCCEEDED for dep in spec.after):
                    continue
                record = JobRecord(step=step.id, started_at=self.now)
                jobs[spec.name] = record
            seen = self.seen.jobs.get(spec.name)
            if seen is None or seen.attempt != record.attempt:
                args = spec.resume_args if record.resume else spec.args
                self.actions.append(
                    StartJob(spec.name, step.id, record.attempt, spec.template, tuple(args))
                )
            elif seen.phase is JobPhase.FAILED:
                message = f"job {spec.name} attempt {record.attempt} failed: {seen.message or 'no message'}; `stagectl retry` re-runs it with its resume arguments"
                self.blockers.append(message)
                self._warn_once(EventKind.JOB_FAILED, message, job=spec.name)
        if jobs != self.status.jobs:
            self._update(jobs=jobs)

    def _job_phase(self, name: str) -> JobPhase | None:
        record = self.status.jobs.get(name)
        seen = self.seen.jobs.get(name)
        if record is None or seen is None or seen.attempt != record.attempt:
            return None
        return seen.phase

    def _gate_verdict(self, gate: GateSpec) -> Verdict:
        if isinstance(gate, JobGate):
            phase = self._job_phase(gate.job_succeeded)
            if phase is JobPhase.SUCCEEDED:
                return Verdict(gate.key, Outcome.PASS, f"job {gate.job_succeeded} succeeded")
            if phase is JobPhase.FAILED:
                return Verdict(gate.key, Outcome.FAIL, f"job {gate.job_succeeded} failed")
            started = gate.job_succeeded in self.status.jobs
            return Verdict(
                gate.key,
                Outcome.UNKNOWN,
                f"job {gate.job_succeeded} {'running' if started else 'not started'}",
            )
        found = self.seen.gates.get(gate.key)
        return found or Verdict(gate.key, Outcome.UNKNOWN, "not evaluated this tick")

    def _gate_blockers(self) -> list[str]:
        step = self.step
        status = self.status
        blockers: list[str] = []
        soak = status.soak_elapsed(self.now)
        if soak < step.min_duration:
            blockers.append(
                f"soaking: {format_duration(soak)} of {format_duration(step.min_duration)} in effect"
            )
            if not self.seen.gates:
                return blockers
        in_effect_at = status.in_effect_at or self.now
        for gate, reach in zip(step.gates, step.gate_windows, strict=True):
            if reach is not None and self.now - reach < in_effect_at:
                blockers.append(
                    f"{gate.key}: its {format_duration(reach)} window is not yet covered by this step"
                )
                continue
            verdict = self._gate_verdict(gate)
            if not verdict.passed:
                blockers.append(f"{gate.key}: {verdict.outcome}: {verdict.reason}")
        for signal in step.baseline_signals:
            measured = self.seen.baselines.get(signal)
            if measured is None:
                blockers.append(f"baseline of {signal}: not measured yet")
            elif not usable(measured):
                blockers.append(f"baseline of {signal}: measured {measured:g}, not a usable number")
        return blockers

    def _consider_promotion(self) -> None:
        blockers = self._gate_blockers()
        step = self.step
        state = self.status.state
        if blockers:
            self.blockers.extend(blockers)
            if state is StepState.AWAITING_APPROVAL:
                self._move("gates_lost", "gates no longer pass: " + blockers[0])
            elif (
                state is StepState.SOAKING
                and step.max_duration is not None
                and self.status.deadline_elapsed(self.now) > step.max_duration
            ):
                self._move(
                    "stall",
                    f"max duration {format_duration(step.max_duration)} passed without the gates: {blockers[0]}",
                    kind=EventKind.STALLED,
                    warning=True,
                )
            return
        if state is StepState.STALLED:
            self.blockers.append(
                "stalled: the gates pass now; `stagectl resume` lets the rollout continue"
            )
            return
        approvals = self._approvals(step.approval)
        needed = (
            step.approval.approvers
            if (step.approval.required or self.status.hold_for_approval)
            else 0
        )
        if len(approvals.approvers) < needed:
            waiting = (
                f"waiting for approval to leave {step.id} ({len(approvals.approvers)} of {needed})"
            )
            self.blockers.append(waiting)
            if state is StepState.SOAKING:
                self._move(
                    "gates_passed", f"all gates pass; {waiting}", kind=EventKind.APPROVAL_NEEDED
                )
            return
        closed = promotion_blocker(self.plan.promotion_window, self.now)
        if closed:
            self.blockers.append(closed)
            return
        self._promote(approvals)

    def _approvals(self, policy: ApprovalPolicy) -> ApprovalCount:
        status = self.status
        if not self.seen.approvals:
            return _NO_APPROVALS
        count = count_approvals(
            self.seen.approvals,
            rollout_uid=self.seen.rollout_uid,
            step=status.step,
            plan_hash=self.plan.content_hash,
            entered_at=status.step_entered_at,
            consumed=status.approvals_consumed,
            now=self.now,
            policy=policy,
            requester=self.seen.requester,
        )
        fresh = [(a, why) for a, why in count.ignored if a.id not in status.approvals_ignored]
        if fresh:
            for approval, why in fresh:
                self.events.append(
                    Event(
                        EventKind.APPROVAL_IGNORED,
                        status.step,
                        why,
                        True,
                        {"approval": approval.id},
                    )
                )
            ignored = [*status.approvals_ignored, *(a.id for a, _ in fresh)][-HANDLED_LIMIT:]
            self._update(approvals_ignored=ignored)
        return count

    def _promote(self, approvals: ApprovalCount) -> None:
        step = self.step
        used = tuple(a.id for a in approvals.counted)
        by = ", ".join(sorted(approvals.approvers))
        consumed = [*self.status.approvals_consumed, *used][-HANDLED_LIMIT:]
        changes: dict[str, Any] = {"approvals_consumed": consumed}
        following = self.machines.table.after(step)
        if used and following is not None:
            changes["approved_percent"] = max(self.status.approved_percent, following.percent)
            changes["approved_flags"] = self._signed_part(following.flags)
        if step.baseline_signals:
            changes["baselines"] = self._capture_baselines(step)
        reason = "all gates passed" + (f"; approved by {by}" if by else "")
        if following is None:
            self._move(
                "complete", reason, by=by, approvals=used, kind=EventKind.COMPLETED, **changes
            )
            return
        if following.percent > step.percent and not used:
            self.blockers.append(
                f"refusing to raise the percentage to {following.percent} without an approval"
            )
            return
        changed = self._signed_changes(following.flags, self._signed_part(step.flags))
        if changed and not used:
            self.blockers.append(
                f"refusing to change {', '.join(changed)} (marked approval_to_change) without "
                "an approval"
            )
            return
        dest = self.machines.step_after(step.id, "promote")
        changes.update(self._enter_step(), hold_for_approval=False)
        self._move("promote", reason, to_step=dest, by=by, approvals=used, **changes)

    def _capture_baselines(self, step: Step) -> dict[str, BaselineRecord]:
        """Records of the step's averages over its time in effect; pins keep precedence."""
        since = self.status.in_effect_at or self.status.step_entered_at
        records = tuple(
            captured_record(
                self.plan,
                signal,
                float(value),
                environment=step.environment,
                step=step.id,
                since=since,
                now=self.now,
            )
            for signal in step.baseline_signals
            if usable(value := self.seen.baselines.get(signal)) and value is not None
        )
        self.actions.append(RecordBaseline(records))
        captured = {**self.status.baselines, **{r.signal: r for r in records}}
        return settle(self.plan, captured)

    # the percentage rule ----------------------------------------------------------

    def _percent_held(self) -> bool:
        """The sign-off rule: the flags asked never exceed or differ from the last sign-off.

        The exposure percentage may not rise above the last approved one; a flag
        marked approval_to_change may not differ from its last approved value.
        Lowering the percentage needs nobody, and lowers the ceiling with it. A change
        by any path other than an approved promotion (a plan edit, a first step above
        0 %, a resume, a rollback to a higher percentage) holds the flags the target
        has until approvals of this rollout, step and plan version arrive.
        """
        if self.status.state is StepState.ABORTED:
            return False
        flags = self._expected()[0]
        exposure = self.plan.flag_set.exposure or "the exposure percentage"
        percent = self.plan.flag_set.percent(flags)
        ceiling = self.status.approved_percent
        changed = self._signed_changes(flags, self.status.approved_flags)
        if percent <= ceiling and not changed:
            if percent < ceiling:
                self._update(approved_percent=percent)
            return False
        step = self.step
        policy = raise_policy(self.machines.table, step)
        count = self._approvals(policy)
        if len(count.approvers) < policy.approvers:
            what = []
            if percent > ceiling:
                what.append(f"sets {exposure}={percent}, above the {ceiling} last approved")
            if changed:
                what.append(f"changes {', '.join(changed)} (marked approval_to_change)")
            waiting = (
                f"holding the flags: step {step.id} {' and '.join(what)}; waiting for approval "
                f"of step {step.id} at plan {self.plan.short_hash}"
            )
            self.blockers.append(f"{waiting} ({len(count.approvers)} of {policy.approvers})")
            self._warn_once(EventKind.APPROVAL_NEEDED, waiting)
            return True
        self._authorise_raise(count, max(percent, ceiling))
        self._update(approved_flags=self._signed_part(flags))
        return False

    def _signed_part(self, flags: Mapping[str, str]) -> dict[str, str]:
        """The values of the flags marked approval_to_change within `flags`."""
        return {n: flags[n] for n in self.plan.flag_set.approval_flags if n in flags}

    def _signed_changes(self, flags: Mapping[str, str], signed: Mapping[str, str]) -> list[str]:
        return signed_changes(self.plan, flags, signed)

    def _authorise_raise(self, count: ApprovalCount, percent: int) -> None:
        used = [a.id for a in count.counted]
        by = ", ".join(sorted(count.approvers))
        exposure = self.plan.flag_set.exposure or "flags"
        if percent > self.status.approved_percent:
            message = f"{exposure} {self.status.approved_percent} → {percent} approved by {by}"
        else:
            message = f"flag change at step {self.status.step} approved by {by}"
        self._update(
            approved_percent=percent,
            approvals_consumed=[*self.status.approvals_consumed, *used][-HANDLED_LIMIT:],
            reason=message,
        )
        details = {"approvals": ",".join(used), "by": by}
        self.events.append(
            Event(EventKind.PERCENT_RAISED, self.status.step, message, False, details)
        )
