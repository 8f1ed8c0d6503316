"""When a rollout's decision can next change: the moment the operator ticks it again.

`decide` compares the status clocks and the verdicts with the step's durations.
Between two ticks those comparisons can flip only at moments known from what the
last tick saw: the soak or the max duration ending, a gate's window being covered
by the step, a trigger's evidence reaching past the step's start, the last healthy
sample leaving a trigger's `for` window (a window that turned bad after the sample
at t can be complete just after t + `for`), the last bad sample leaving a gate's
window, an approval expiring, the promotion window opening. `next_wakeup` gives
the earliest of them; the regular pass and the watches still run, so a moment
found too late costs latency, never safety, and one found too early costs a tick.

Every moment is the boundary itself; a comparison that is strict flips just after
it, so a driver wakes a little later (and at the latest just before the next pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from phases.clocks import evidence_reach
from phases.needs import degradation_window_open
from phases.observations import Observations
from phases.plan import AlertsGate, AlertTrigger, Plan, PromotionWindow
from phases.status import RolloutStatus, StepState
from phases.steps import Step, steps_of
from phases.windows import promotion_blocker

_READY = frozenset({StepState.SOAKING, StepState.AWAITING_APPROVAL, StepState.STALLED})
_TRIGGERS_READ = _READY | {StepState.VERIFYING, StepState.PAUSED}
_WINDOW_DAYS = 8
"""A weekly promotion window opens within a week; eight days cover a time-zone shift."""


def next_wakeup(
    plan: Plan, status: RolloutStatus, observations: Observations, now: datetime
) -> datetime | None:
    """The earliest moment at or after `now` at which deciding again can give another result.

    `status` is the one the last decision produced, `observations` what that tick saw.
    None when nothing known in advance can change the decision (it waits for people,
    workloads, jobs or new samples, which the watches and the regular pass bring).
    """
    step = steps_of(plan).by_id.get(status.step)
    if step is None or status.state in (StepState.COMPLETED, StepState.ABORTED):
        return None
    moments = [
        *_clock_moments(step, status),
        *_trigger_moments(plan, step, status, observations, now),
    ]
    if status.state in _READY and status.paused_at is None:
        moments += _gate_moments(step, status, observations, now)
        moments += _approval_moments(status, observations, now)
        moments += _window_moments(plan.promotion_window, now)
    return min((m for m in moments if m >= now), default=None)


def _clock_moments(step: Step, status: RolloutStatus) -> Iterator[datetime]:
    """The soak ending, the max duration passing, each gate's window covered by the step."""
    if status.state not in _READY or status.paused_at is not None:
        return
    if status.in_effect_at is not None:
        yield status.in_effect_at + status.soak_paused + step.min_duration
        for reach in step.gate_windows:
            if reach is not None:
                yield status.in_effect_at + reach
    if status.state is StepState.SOAKING and step.max_duration is not None:
        yield status.deadline_from + status.deadline_paused + step.max_duration


def _trigger_moments(
    plan: Plan, step: Step, status: RolloutStatus, observations: Observations, now: datetime
) -> Iterator[datetime]:
    """When each trigger's evidence can be complete and count for this step."""
    if status.state not in _TRIGGERS_READ or status.flags_applied_at is None:
        return
    window_open = degradation_window_open(step, status, now)
    for trigger in step.triggers:
        if trigger.scope == "degradation_window" and not window_open:
            continue
        floor = (
            status.triggers_cleared_at.get(trigger.key)
            if status.hold_for_approval
            else status.flags_applied_at
        )
        if floor is None:
            continue  # a restored step counts it once seen clear, at a tick
        reach = evidence_reach(plan, trigger)
        if reach is not None:
            yield floor + reach
        verdict = observations.triggers.get(trigger.key)
        if verdict is not None and verdict.changes_after is not None:
            yield _not_before(verdict.changes_after, now)


def _gate_moments(
    step: Step, status: RolloutStatus, observations: Observations, now: datetime
) -> Iterator[datetime]:
    """When a failing gate's last bad sample leaves its window."""
    if status.in_effect_at is None:
        return
    for gate in step.gates:
        if isinstance(gate, AlertsGate) and gate.window is None:
            continue  # instant: it changes when an alert does (the webhook's part)
        verdict = observations.gates.get(gate.key)
        if verdict is not None and not verdict.passed and verdict.changes_after is not None:
            yield _not_before(verdict.changes_after, now)


def _not_before(changes_after: datetime, now: datetime) -> datetime:
    """A verdict's moment lies within its window after `now`; one a little before `now` is
    the window's first sample, its time rounded to the millisecond Prometheus was sent."""
    return max(changes_after, now)


def _approval_moments(
    status: RolloutStatus, observations: Observations, now: datetime
) -> Iterator[datetime]:
    """When an approval of this rollout's current step stops counting."""
    for approval in observations.approvals:
        if (
            approval.expires_at is not None
            and approval.expires_at > now
            and approval.step == status.step
            and approval.rollout_uid == observations.rollout_uid
            and approval.id not in status.approvals_consumed
        ):
            yield approval.expires_at


def _window_moments(window: PromotionWindow | None, now: datetime) -> Iterator[datetime]:
    """When a closed promotion window opens again."""
    if window is None or promotion_blocker(window, now) is None:
        return
    for candidate in sorted(_window_edges(window, now)):
        if candidate > now and promotion_blocker(window, candidate) is None:
            yield candidate
            return


def _window_edges(window: PromotionWindow, now: datetime) -> Iterator[datetime]:
    """The freezes' ends and the daily opening over the next days, in the window's zone."""
    for freeze in window.freezes:
        yield freeze.end
    zone = ZoneInfo(window.timezone)
    today: date = now.astimezone(zone).date()
    for days in range(_WINDOW_DAYS + 1):
        day = today + timedelta(days=days)
        yield datetime.combine(day, window.start, tzinfo=zone)


def alerts_named(plan: Plan) -> frozenset[str]:
    """Every alert a plan's triggers or gates name: a firing one is a reason to tick now."""
    names: set[str] = set()
    for step in steps_of(plan).steps:
        for trigger in step.triggers:
            if isinstance(trigger, AlertTrigger):
                names.add(trigger.alert_firing)
        for gate in step.gates:
            if isinstance(gate, AlertsGate):
                names.update(gate.no_firing_alerts)
    return frozenset(names)
