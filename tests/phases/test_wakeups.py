"""`next_wakeup`: the earliest moment a rollout's decision can change, from what a tick saw.

Each kind of moment is checked against `decide` itself where it can be: one second
before the moment the decision is the same as now, one second after it differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from phases.decide import decide
from phases.needs import AlertReading, judge, needs_of
from phases.observations import Approval, Observations, TargetState
from phases.plan import Plan, SignalGate, SignalTrigger
from phases.plan_checks import parse_plan
from phases.status import RolloutStatus, StepState
from phases.steps import steps_of
from phases.verdicts import (
    POINTS_KEPT,
    AlertHistory,
    Outcome,
    WindowSummary,
    judge_gate,
    judge_trigger,
)
from phases.wakeups import alerts_named, next_wakeup

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UID = "uid-1"
MINUTE = timedelta(minutes=1)
PLAN_TEXT = """
name: wake
version: "1"
evaluation: {resolution: 1m, gap_tolerance: 5m, alert_coverage: "up"}
signals:
  errors: {query: "error_ratio"}
phases:
  - id: a
    name: A
    flags: {STAGE_VALIDATION_MODE: warn, ENFORCE_WRITE_ONLY: false, ENFORCEMENT_PERCENT: 0, STAGE_VALIDATION_DRY_RUN: false}
  - id: b
    name: B
    flags: {STAGE_VALIDATION_MODE: enforce, ENFORCE_WRITE_ONLY: false, ENFORCEMENT_PERCENT: 0, STAGE_VALIDATION_DRY_RUN: false}
    min_duration: 1h
    max_duration: 3h
    gates:
      - {name: low, signal: errors, comparator: "<", threshold: 0.01, window: 30m}
      - {name: quiet, no_firing_alerts: [Paging], window: 10m}
    triggers:
      - {name: high, signal: errors, comparator: ">", threshold: 0.05, for: 5m}
      - {name: paging, alert_firing: Paging, for: 2m}
"""


def plan_of(text: str = PLAN_TEXT) -> Plan:
    return parse_plan(text, source="wake")


PLAN = plan_of()
STEP_B = steps_of(PLAN).get("b")


def at_b(in_effect: timedelta = timedelta(minutes=20), **changes: object) -> RolloutStatus:
    """Step b soaking, its flags written at T0 and in effect `in_effect` later."""
    fields: dict[str, object] = {
        "plan_hash": PLAN.content_hash,
        "step": "b",
        "state": StepState.SOAKING,
        "step_entered_at": T0,
        "flags_applied_at": T0,
        "in_effect_at": T0 + in_effect,
        "deadline_from": T0,
        "approved_percent": 0,
    }
    fields.update(changes)
    return RolloutStatus.model_validate(fields)


def seen(**parts: object) -> Observations:
    target = TargetState(flags_hash=STEP_B.flags_hash, rolled_out=True)
    return Observations(rollout_uid=UID, target=target, **parts)  # type: ignore[arg-type]


def samples(value: Callable[[datetime], float], window: timedelta, now: datetime) -> WindowSummary:
    """A range read of `value` over the window, at the plan's 1m resolution, as Prometheus steps."""
    points = []
    at = now - window
    while at <= now:
        points.append((at.timestamp(), value(at)))
        at += MINUTE
    values = [v for _t, v in points]
    return WindowSummary.of_values("error_ratio", window, values, timedelta(0), tuple(points))


def observe(
    status: RolloutStatus, now: datetime, value: Callable[[datetime], float]
) -> Observations:
    """What a tick at `now` sees when the error ratio follows `value`; no alert fires."""
    needs = needs_of(PLAN, status, now)
    summaries = {(w.query, w.window): samples(value, w.window, now) for w in needs.windows}
    quiet = {
        c.read_key: AlertHistory(at=now, window=c.window, coverage=None)
        for c in needs.alert_windows
    }
    gates, triggers = judge(PLAN, status, needs, summaries, AlertReading(frozenset()), quiet)
    return seen(gates=gates, triggers=triggers)


def rolled_back(status: RolloutStatus, now: datetime, value: Callable[[datetime], float]) -> bool:
    decision = decide(PLAN, status, observe(status, now, value), now)
    return any(t.trigger == "rollback" for t in decision.transitions)


# each kind of moment -------------------------------------------------------------


def test_a_trigger_that_turned_bad_wakes_when_its_for_window_can_be_complete() -> None:
    bad_from = T0 + timedelta(hours=2, seconds=30)

    def errors(at: datetime) -> float:
        return 0.2 if at >= bad_from else 0.001

    now = T0 + timedelta(hours=2, minutes=2)
    status = at_b(in_effect=timedelta(hours=2))  # soaking: the 1h min duration is far off
    wake = next_wakeup(PLAN, status, observe(status, now, errors), now)
    # The last healthy sample the tick saw was at 2h00m; the 5m window is all bad just after 2h05m.
    assert wake == T0 + timedelta(hours=2, minutes=5)
    assert not rolled_back(status, wake, errors)
    assert rolled_back(status, wake + timedelta(seconds=31), errors)


def test_a_wake_up_before_the_evidence_is_complete_finds_the_next_moment() -> None:
    bad_from = T0 + timedelta(hours=2, seconds=30)

    def errors(at: datetime) -> float:
        return 0.2 if at >= bad_from else 0.001

    status = at_b(in_effect=timedelta(hours=2))
    early = T0 + timedelta(hours=2, minutes=5, seconds=5)
    assert not rolled_back(status, early, errors)
    again = next_wakeup(PLAN, status, observe(status, early, errors), early)
    # The window's first sample (2h00m05s) was still healthy: the next moment is just after it.
    assert again == early


def test_a_window_start_rounded_to_the_millisecond_still_wakes_at_once() -> None:
    # Prometheus is sent times in milliseconds: the window's first sample can be 0.4 ms older
    # than `now` less the window, and the moment it leaves the window is then just before `now`.
    now = T0 + timedelta(hours=2, minutes=5, microseconds=400)
    trigger = STEP_B.triggers[0]
    first = now - timedelta(minutes=5, microseconds=400)

    def errors(at: datetime) -> float:
        return 0.001 if at == first else 0.2

    points = tuple((t.timestamp(), errors(t)) for t in (first + k * MINUTE for k in range(6)))
    summary = WindowSummary.of_values(
        "error_ratio", timedelta(minutes=5), [v for _t, v in points], timedelta(0), points
    )
    assert isinstance(trigger, SignalTrigger)
    verdict = judge_trigger(trigger, summary, {}, timedelta(minutes=5))
    assert verdict.changes_after is not None and verdict.changes_after < now
    status = at_b(in_effect=timedelta(hours=1))
    assert next_wakeup(PLAN, status, seen(triggers={trigger.key: verdict}), now) == now


def test_a_healthy_trigger_cannot_fail_before_its_newest_sample_leaves_the_window() -> None:
    now = T0 + timedelta(hours=2, minutes=10)
    status = at_b(in_effect=timedelta(hours=1))
    wake = next_wakeup(PLAN, status, observe(status, now, lambda _at: 0.001), now)
    assert wake == now + timedelta(minutes=5)


def test_the_soak_ending_is_a_moment() -> None:
    status = at_b(in_effect=timedelta(minutes=20), soak_paused=timedelta(minutes=7))
    now = T0 + timedelta(minutes=55)
    healthy = seen()  # no verdict carries sample times
    assert next_wakeup(PLAN, status, healthy, now) == T0 + timedelta(minutes=20 + 7 + 60)


def test_a_gate_window_covered_by_the_step_is_a_moment() -> None:
    plan = plan_of(PLAN_TEXT.replace("min_duration: 1h", "min_duration: 10m"))
    status = at_b(in_effect=timedelta(minutes=20)).model_copy(
        update={"plan_hash": plan.content_hash}
    )
    now = T0 + timedelta(minutes=35)
    # Soaked 15m of 10m; the 30m window of gate `low` lies in the step from 50m on.
    assert next_wakeup(plan, status, seen(), now) == T0 + timedelta(minutes=50)


def test_a_failing_gate_wakes_when_its_last_bad_sample_leaves_the_window() -> None:
    gate = STEP_B.gates[0]
    assert isinstance(gate, SignalGate)
    now = T0 + timedelta(hours=3)
    spike = now - timedelta(minutes=12)
    summary = samples(lambda at: 0.5 if at == spike else 0.001, timedelta(minutes=30), now)
    verdict = judge_gate(gate, summary, {}, timedelta(minutes=5))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.changes_after == spike + timedelta(minutes=30)
    status = at_b(in_effect=timedelta(minutes=20), state=StepState.STALLED)
    assert next_wakeup(PLAN, status, seen(gates={gate.key: verdict}), now) == verdict.changes_after


def test_the_max_duration_passing_is_a_moment() -> None:
    status = at_b(in_effect=timedelta(hours=2, minutes=40), deadline_paused=timedelta(minutes=4))
    now = T0 + timedelta(hours=2, minutes=55)
    moment = next_wakeup(PLAN, status, seen(), now)
    assert moment == T0 + timedelta(hours=3, minutes=4)
    gate = STEP_B.gates[0]
    assert isinstance(gate, SignalGate)
    bad = samples(lambda _at: 0.5, timedelta(minutes=30), now)
    failing = seen(gates={gate.key: judge_gate(gate, bad, {}, timedelta(minutes=5))})
    before = decide(PLAN, status, failing, moment - timedelta(seconds=1))
    after = decide(PLAN, status, failing, moment + timedelta(seconds=1))
    assert before.status.state is StepState.SOAKING
    assert after.status.state is StepState.STALLED


def test_trigger_evidence_reaching_past_the_steps_start_is_a_moment() -> None:
    # Flags written at T0: the alert trigger's 2m evidence can count from T0 + 2m.
    status = at_b(in_effect=timedelta(seconds=30), state=StepState.VERIFYING, in_effect_at=None)
    now = T0 + timedelta(minutes=1)
    assert next_wakeup(PLAN, status, seen(), now) == T0 + timedelta(minutes=2)


def test_an_expiring_approval_is_a_moment() -> None:
    status = at_b(in_effect=timedelta(minutes=0), state=StepState.AWAITING_APPROVAL)
    now = T0 + timedelta(hours=2)
    expires = now + timedelta(minutes=3)
    approval = Approval("ap-1", UID, "b", PLAN.content_hash, "alice", now, expires_at=expires)
    elsewhere = Approval(
        "ap-2", "other", "b", PLAN.content_hash, "bob", now, expires_at=now + timedelta(minutes=1)
    )
    assert next_wakeup(PLAN, status, seen(approvals=(approval, elsewhere)), now) == expires


def test_a_closed_promotion_window_wakes_when_it_opens() -> None:
    windowed = PLAN_TEXT.replace(
        "phases:\n",
        "promotion_window: {timezone: Europe/Berlin, weekdays: [mon, tue, wed, thu, fri], "
        "start: '09:00', end: '17:00', freezes: [{start: 2026-03-09T00:00:00Z, "
        "end: 2026-03-09T12:30:00Z}]}\nphases:\n",
        1,
    )
    plan = plan_of(windowed)
    status = at_b(in_effect=timedelta(0), state=StepState.AWAITING_APPROVAL).model_copy(
        update={"plan_hash": plan.content_hash}
    )
    friday_evening = datetime(2026, 3, 6, 18, 0, tzinfo=UTC)  # 19:00 in Berlin
    assert next_wakeup(plan, status, seen(), friday_evening) == datetime(
        2026, 3, 9, 12, 30, tzinfo=UTC
    )  # Monday 09:00 Berlin is frozen; the freeze ends at 13:30 Berlin
    tuesday_night = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)
    assert next_wakeup(plan, status, seen(), tuesday_night) == datetime(
        2026, 3, 11, 8, 0, tzinfo=UTC
    )


def test_nothing_known_can_change_a_paused_a_completed_or_an_applying_rollout() -> None:
    now = T0 + timedelta(hours=2)
    paused = at_b(state=StepState.PAUSED, paused_at=T0 + timedelta(hours=1), flags_applied_at=None)
    completed = at_b(state=StepState.COMPLETED)
    applying = at_b(state=StepState.APPLYING, flags_applied_at=None, in_effect_at=None)
    for status in (paused, completed, applying):
        assert next_wakeup(PLAN, status, seen(), now) is None


def test_moments_already_past_are_not_wake_ups() -> None:
    # Soak over, gates covered, max duration 3h not reached: only the max duration is left.
    status = at_b(in_effect=timedelta(minutes=5))
    now = T0 + timedelta(hours=2)
    assert next_wakeup(PLAN, status, seen(), now) == T0 + timedelta(hours=3)
    stalled = status.model_copy(update={"state": StepState.STALLED})
    assert next_wakeup(PLAN, stalled, seen(), now) is None


# where the sample times come from -------------------------------------------------


def test_a_summary_without_sample_times_gives_no_moment() -> None:
    trigger = STEP_B.triggers[0]
    assert isinstance(trigger, SignalTrigger)
    summary = WindowSummary.of_values("q", timedelta(minutes=5), [0.001] * 6, timedelta(0))
    verdict = judge_trigger(trigger, summary, {}, timedelta(minutes=5))
    assert verdict.outcome is Outcome.PASS and verdict.changes_after is None


def test_a_non_finite_sample_blocks_the_trigger_until_it_leaves_the_window() -> None:
    trigger = STEP_B.triggers[0]
    assert isinstance(trigger, SignalTrigger)
    now = T0 + timedelta(hours=1)
    hole = now - timedelta(minutes=2)
    summary = samples(lambda at: math.nan if at == hole else 0.3, timedelta(minutes=5), now)
    verdict = judge_trigger(trigger, summary, {}, timedelta(minutes=5))
    assert verdict.outcome is Outcome.UNKNOWN
    healthy = now - timedelta(minutes=4)

    def errors(at: datetime) -> float:
        return 0.001 if at == healthy else (math.nan if at == hole else 0.3)

    passing = judge_trigger(
        trigger, samples(errors, timedelta(minutes=5), now), {}, timedelta(minutes=5)
    )
    # The NaN at -2m, not the healthy sample at -4m, is the last that keeps the trigger from failing.
    assert passing.outcome is Outcome.PASS
    assert passing.changes_after == hole + timedelta(minutes=5)


def test_long_windows_keep_no_sample_times() -> None:
    values = [0.0] * (POINTS_KEPT + 1)
    points = tuple((float(i), 0.0) for i in range(POINTS_KEPT + 1))
    summary = WindowSummary.of_values("q", timedelta(days=2), values, timedelta(0), points)
    assert summary.points == ()


def test_the_alerts_a_plan_names() -> None:
    assert alerts_named(PLAN) == frozenset({"Paging"})
    bundled = plan_of(PLAN_TEXT.replace("alert_firing: Paging", "alert_firing: Degraded"))
    assert alerts_named(bundled) == frozenset({"Paging", "Degraded"})
