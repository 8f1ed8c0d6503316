"""The decision core's rules, one behaviour per test, on the bundled plan."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rollout_driver import PLAN_TEXT, Driver

from controller.catalog import load_plan
from phases.actions import EventKind, SetFlags, StartJob
from phases.decide import decide
from phases.flags import WARN_FLAGS
from phases.observations import JobObservation, JobPhase
from phases.plan import AlertsGate, SignalGate, SignalTrigger
from phases.plan_checks import parse_plan
from phases.status import StepState
from phases.steps import steps_of
from phases.verdicts import AlertHistory, Outcome, Verdict, judge_alert_history_trigger

PLAN = load_plan()


@pytest.fixture
def driver() -> Driver:
    return Driver(PLAN)


def triggers_of(driver: Driver) -> list[str]:
    return [t.trigger for t in driver.transitions]


def test_a_new_rollout_applies_the_first_steps_flags_then_soaks(driver: Driver) -> None:
    first = driver.tick()
    assert driver.status.state is StepState.APPLYING
    set_flags = [a for a in first.actions if isinstance(a, SetFlags)]
    assert set_flags and dict(set_flags[0].flags) == dict(driver.step.flags)
    driver.tick()
    assert driver.status.state is StepState.SOAKING
    assert driver.status.in_effect_at == driver.now


def test_soak_clock_waits_for_the_workloads_and_the_reported_mode(driver: Driver) -> None:
    driver.rolled_out = False
    driver.tick()
    driver.tick()
    assert driver.status.state is StepState.VERIFYING
    driver.rolled_out = True
    driver.modes = ("off",)
    driver.advance(timedelta(minutes=5))
    assert driver.status.state is StepState.VERIFYING
    assert "report mode warn" in driver.last.blockers[0]
    driver.modes = None
    driver.advance(timedelta(minutes=5))
    assert driver.status.state is StepState.SOAKING
    assert driver.status.in_effect_at == driver.now


def test_promotes_only_after_min_duration_with_every_gate_passing(driver: Driver) -> None:
    driver.settle()
    driver.approve()
    driver.advance(timedelta(hours=23, minutes=59))
    assert driver.status.step == "2.1"
    assert any("soaking" in b for b in driver.last.blockers)
    driver.advance(timedelta(minutes=2))
    assert driver.status.step == "2.4"
    assert triggers_of(driver)[-1] == "promote"


@pytest.mark.parametrize("outcome", [Outcome.UNKNOWN, Outcome.FAIL])
def test_a_gate_that_does_not_pass_never_promotes(driver: Driver, outcome: Outcome) -> None:
    driver.settle()
    driver.approve()
    for _ in range(10):
        driver.advance(timedelta(hours=5), gate_outcome=outcome)
    assert driver.status.step == "2.1"
    assert "promote" not in triggers_of(driver)
    assert any(f"{outcome}" in b for b in driver.last.blockers)


def test_one_unknown_gate_among_passing_ones_blocks_promotion(driver: Driver) -> None:
    driver.settle()
    driver.approve()
    driver.now += timedelta(days=1, minutes=1)
    gates, triggers = driver.verdicts()
    gates["baseline-p99-latency"] = Verdict("baseline-p99-latency", Outcome.UNKNOWN, "no data")
    driver.tick(gates, triggers)
    assert driver.status.step == "2.1"
    assert any(b.startswith("baseline-p99-latency: unknown") for b in driver.last.blockers)


def test_a_gate_window_must_lie_inside_the_steps_time_in_effect() -> None:
    plan_text = PLAN_TEXT.replace(
        "    min_duration: 24h\n    max_duration: 48h",
        "    min_duration: 1h\n    max_duration: 48h",
        1,
    )
    plan = parse_plan(plan_text, source="short-2.1")
    driver = Driver(plan)
    driver.settle()
    driver.approve()
    driver.advance(timedelta(hours=2))
    assert driver.status.step == "2.1"
    assert any("window is not yet covered" in b for b in driver.last.blockers)
    driver.advance(timedelta(hours=23))
    assert driver.status.step == "2.4"


def test_percent_never_rises_without_an_approval(driver: Driver) -> None:
    driver.walk_to("2.7")
    driver.soak_to_gates()
    for _ in range(20):
        driver.advance(timedelta(hours=6))
    assert driver.status.step == "2.7"
    assert driver.status.state is StepState.AWAITING_APPROVAL
    assert any("waiting for approval to leave 2.7 (0 of 1)" in b for b in driver.last.blockers)
    approval = driver.approve()
    driver.tick()
    assert driver.status.step == "3@10"
    assert driver.transitions[-1].approvals == [approval.id]
    assert approval.id in driver.status.approvals_consumed


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        ("rollout_uid", "uid-other", "for another rollout"),
        ("plan_hash", "0" * 64, "was given for plan version"),
        ("step", "3@25", "is for step 3@25"),
    ],
)
def test_an_approval_bound_elsewhere_is_ignored_with_an_event(
    driver: Driver, field: str, value: str, phrase: str
) -> None:
    driver.walk_to("3@10")
    driver.soak_to_gates()
    approval = driver.approve(**{field: value})
    first = driver.tick()
    ignored = [e for e in first.events if e.kind is EventKind.APPROVAL_IGNORED]
    assert len(ignored) == 1 and phrase in ignored[0].message
    second = driver.tick()
    assert not [e for e in second.events if e.kind is EventKind.APPROVAL_IGNORED]
    assert driver.status.step == "3@10"
    assert driver.status.approvals_ignored == [approval.id]


def test_an_expired_approval_does_not_count(driver: Driver) -> None:
    driver.walk_to("3@10")
    driver.soak_to_gates()
    driver.approve(expires_at=driver.now + timedelta(minutes=5))
    driver.advance(timedelta(minutes=10))
    assert driver.status.step == "3@10"
    assert driver.status.state is StepState.AWAITING_APPROVAL


def test_an_approval_given_before_the_step_was_entered_does_not_count(driver: Driver) -> None:
    driver.walk_to("3@10")
    driver.approve(created_at=driver.status.step_entered_at - timedelta(seconds=1))
    driver.soak_to_gates()
    driver.tick()
    assert driver.status.step == "3@10"


def test_a_plan_can_require_distinct_approvers() -> None:
    text = PLAN_TEXT
    text = text.replace(
        "    approval: {required: true}\n    degradation_window: 30m",
        "    approval: {required: true, approvers: 2}\n    degradation_window: 30m",
    )
    driver = Driver(parse_plan(text, source="two-approvers"))
    driver.walk_to("3@10")
    driver.soak_to_gates()
    driver.approve(approver="alice")
    driver.approve(approver="alice")
    driver.tick()
    assert driver.status.step == "3@10"
    assert any("(1 of 2)" in b for b in driver.last.blockers)
    driver.approve(approver="carol")
    driver.tick()
    assert driver.status.step == "3@25"
    assert sorted(driver.transitions[-1].by.split(", ")) == ["alice", "carol"]


def test_a_trigger_fail_rolls_back_to_the_previous_step_which_then_needs_a_new_approval(
    driver: Driver,
) -> None:
    driver.walk_to("3@50")
    driver.advance(timedelta(minutes=10), trigger_outcomes={"error-rate-above-5pct": Outcome.FAIL})
    assert driver.status.step == "3@25"
    assert driver.status.state is StepState.ROLLING_BACK
    assert driver.transitions[-1].trigger == "rollback"
    assert driver.status.hold_for_approval
    driver.settle()
    assert driver.status.state is StepState.SOAKING
    driver.soak_to_gates()
    driver.tick()
    assert driver.status.step == "3@25"
    assert driver.status.state is StepState.AWAITING_APPROVAL
    driver.approve()
    driver.tick()
    assert driver.status.step == "3@50"


def test_an_unknown_trigger_holds_and_never_rolls_back(driver: Driver) -> None:
    driver.walk_to("3@50")
    for _ in range(12):
        driver.advance(
            timedelta(minutes=10),
            trigger_outcomes={k.key: Outcome.UNKNOWN for k in driver.step.triggers},
        )
    assert "rollback" not in triggers_of(driver)
    assert driver.status.step == "3@50"


def test_trigger_evidence_older_than_the_steps_flags_is_not_counted(driver: Driver) -> None:
    """The trigger holds for 5m on `rate(...[5m])`: its evidence reaches 10m back."""
    driver.walk_to("3@50")
    entered = driver.status.flags_applied_at
    assert entered is not None
    driver.now = entered + timedelta(minutes=9)
    driver.tick(trigger_outcomes={"error-rate-above-5pct": Outcome.FAIL})
    assert driver.status.step == "3@50"
    driver.advance(timedelta(minutes=1), trigger_outcomes={"error-rate-above-5pct": Outcome.FAIL})
    assert driver.status.step == "3@25"


def test_degradation_window_triggers_count_only_just_after_an_increase(driver: Driver) -> None:
    driver.walk_to("3@50")
    applied = driver.status.flags_applied_at
    assert applied is not None
    driver.now = applied + timedelta(hours=2)
    driver.tick(trigger_outcomes={"canary-error-rate-degraded": Outcome.FAIL})
    assert driver.status.step == "3@50"
    fresh = Driver(PLAN)
    fresh.walk_to("3@50")
    fresh.now = fresh.status.flags_applied_at + timedelta(minutes=20)
    fresh.tick(trigger_outcomes={"canary-error-rate-degraded": Outcome.FAIL})
    assert fresh.status.step == "3@25"


def test_a_step_that_pauses_on_degradation_does_not_roll_back(driver: Driver) -> None:
    driver.settle()
    driver.advance(timedelta(minutes=10), trigger_outcomes={"error-rate-above-5pct": Outcome.FAIL})
    assert driver.status.step == "2.1"
    assert driver.status.state is StepState.PAUSED
    assert any(e.kind is EventKind.PAUSED for e in driver.last.events)


def test_past_max_duration_without_the_gates_the_step_stalls_until_resumed(driver: Driver) -> None:
    driver.settle()
    driver.advance(timedelta(hours=47), gate_outcome=Outcome.FAIL)
    assert driver.status.state is StepState.SOAKING
    driver.advance(timedelta(hours=2), gate_outcome=Outcome.FAIL)
    assert driver.status.state is StepState.STALLED
    assert any(e.kind is EventKind.STALLED for e in driver.last.events)
    driver.approve()
    driver.advance(timedelta(hours=1))
    assert driver.status.state is StepState.STALLED
    driver.command("resume", reason="clients fixed")
    driver.tick()
    driver.tick()
    assert driver.status.step == "2.4"


def test_pause_stops_the_soak_clock_and_resume_restarts_it(driver: Driver) -> None:
    driver.settle()
    driver.approve()
    driver.advance(timedelta(hours=20))
    driver.command("pause", reason="investigating")
    driver.tick()
    assert driver.status.state is StepState.PAUSED
    soaked = driver.status.soak_elapsed(driver.now)
    driver.advance(timedelta(hours=10))
    assert driver.status.soak_elapsed(driver.now) == soaked
    driver.command("resume")
    driver.tick()
    driver.tick()
    assert driver.status.state is StepState.SOAKING
    driver.advance(timedelta(hours=3, minutes=59))
    assert driver.status.step == "2.1"
    driver.advance(timedelta(minutes=2))
    assert driver.status.step == "2.4"


def test_rollback_to_warn_leaves_exactly_the_runbooks_full_rollback_flags(driver: Driver) -> None:
    driver.walk_to("3@50")
    driver.command("rollback", to="warn", reason="scenario 3")
    decision = driver.tick()
    assert driver.status.step == "2.4"
    flags = [a for a in decision.actions if isinstance(a, SetFlags)][-1].flags
    # Runbook scenario 3 names the four; the plan's endpoint overrides go with them.
    assert dict(flags) == {**WARN_FLAGS, "STAGE_VALIDATION_ENDPOINT_MODES": "{}"}
    assert dict(flags) == load_plan().flag_set.safe


def test_rollback_command_to_a_later_step_is_rejected(driver: Driver) -> None:
    driver.walk_to("2.5")
    driver.command("rollback", to="3@10")
    decision = driver.tick()
    assert driver.status.step == "2.5"
    assert [e.kind for e in decision.events] == [EventKind.COMMAND_REJECTED]
    assert "not before the current step" in decision.events[0].message


def test_abort_is_final(driver: Driver) -> None:
    driver.settle()
    driver.command("abort", reason="wrong cluster")
    driver.tick()
    assert driver.status.state is StepState.ABORTED
    decision = driver.advance(timedelta(days=3))
    assert decision.actions == () and decision.transitions == ()


def test_flags_changed_behind_the_controllers_back_are_reapplied(driver: Driver) -> None:
    driver.walk_to("2.5")
    driver.target_flags_hash = "edited-by-hand"
    decision = driver.advance(timedelta(minutes=1))
    assert driver.status.state is StepState.APPLYING
    assert any(e.kind is EventKind.FLAGS_DRIFTED for e in decision.events)
    assert driver.status.in_effect_at is None


def test_a_failed_job_holds_and_retry_reruns_it_with_resume_arguments(driver: Driver) -> None:
    driver.walk_to("2.5")
    started = [a for a in driver.last.actions if isinstance(a, StartJob)]
    assert driver.status.jobs["migrate-stages"].attempt == 1 or started
    driver.jobs["migrate-stages"] = JobObservation(
        "migrate-stages", 1, JobPhase.FAILED, "batch 17 failed"
    )
    driver.jobs.pop("verify-migration", None)
    driver.soak_to_gates()
    assert driver.status.step == "2.5"
    assert any("migrate-stages attempt 1 failed" in b for b in driver.last.blockers)
    driver.command("retry", reason="db back")
    decision = driver.tick()
    retried = [
        a for a in decision.actions if isinstance(a, StartJob) and a.name == "migrate-stages"
    ]
    assert retried == [StartJob("migrate-stages", "2.5", 2, "normalize-stages", ("--resume",))]


def test_outside_the_promotion_window_a_ready_step_waits() -> None:
    text = PLAN_TEXT
    text = text.replace(
        "evaluation:\n",
        "promotion_window: {timezone: Europe/Berlin, weekdays: [mon, tue, wed, thu], start: '09:00', end: '16:00'}\nevaluation:\n",
    )
    driver = Driver(parse_plan(text, source="windowed"))
    driver.settle()
    driver.approve()
    driver.advance(timedelta(days=1, hours=7))  # Tuesday 16:01 UTC is 17:01 in Berlin
    assert driver.status.step == "2.1"
    assert any("outside the promotion window" in b for b in driver.last.blockers)
    driver.advance(timedelta(hours=16))  # Wednesday 09:01 Berlin
    assert driver.status.step == "2.4"


def test_a_changed_plan_restarts_the_step_without_its_soak_or_approvals(driver: Driver) -> None:
    driver.walk_to("2.5")
    changed = parse_plan(
        PLAN_TEXT.replace('version: "3.0"', 'version: "3.1"'),
        source="v3.1",
    )
    driver.plan = changed
    driver.advance(timedelta(hours=1))
    assert driver.status.plan_hash == changed.content_hash
    assert driver.status.step == "2.5"
    this_tick = [t.trigger for t in driver.last.transitions]
    assert this_tick == ["reapply", "verified"]
    assert "plan changed" in driver.last.transitions[0].reason
    assert driver.status.in_effect_at == driver.now
    assert driver.status.soak_elapsed(driver.now) == timedelta(0)


def test_decide_is_deterministic(driver: Driver) -> None:
    driver.walk_to("3@10")
    status = driver.status
    from phases.observations import Observations, TargetState

    seen = Observations("uid-1", TargetState(driver.target_flags_hash, True, None, ("enforce",)))
    first = decide(PLAN, status, seen, driver.now)
    second = decide(PLAN, status, seen, driver.now)
    assert first == second


def test_a_pause_taken_before_the_flags_landed_still_arms_the_triggers_after_resume(
    driver: Driver,
) -> None:
    driver.walk_to("3@10")
    driver.approve()
    driver.soak_to_gates()
    assert driver.status.step == "3@25" and driver.status.state is StepState.APPLYING
    driver.command("pause")
    driver.tick()
    driver.command("resume")
    driver.tick()
    driver.tick()
    assert driver.status.state is StepState.SOAKING
    assert driver.status.flags_applied_at is not None
    driver.advance(timedelta(minutes=10), trigger_outcomes={"error-rate-above-5pct": Outcome.FAIL})
    assert driver.status.step == "3@10"
    assert driver.transitions[-1].trigger == "rollback"


def test_rollback_with_write_enforcement_off_keeps_the_step_and_only_that_flag(
    driver: Driver,
) -> None:
    driver.walk_to("2.5")
    driver.command("rollback", to="write-enforcement-off", reason="scenario 2")
    decision = driver.tick()
    assert driver.status.step == "2.5" and driver.transitions[-1].trigger == "rollback"
    flags = [a for a in decision.actions if isinstance(a, SetFlags)][-1].flags
    assert dict(flags) == {**dict(driver.step.flags), "ENFORCE_WRITE_ONLY": "false"}
    assert driver.status.hold_for_approval
    driver.command("rollback", to="write-enforcement-off")
    again = driver.tick()
    assert [e.message for e in again.events if e.kind is EventKind.COMMAND_REJECTED] == [
        "rollback by bob: write enforcement is already off at step 2.5"
    ]


# --- one step back per degradation episode (runbook: "rollback to previous percentage") ---


def alert_verdict(driver: Driver, active_since: timedelta, *, key: str = "high-error-rate-alert"):
    """The alert trigger's verdict as `judge` gives it: the alert active since `active_since` ago."""
    trigger = next(t for t in driver.step.triggers if t.key == key)
    history = AlertHistory(
        at=driver.now,
        window=trigger.sustained_for,
        coverage=None,
        fired=frozenset({trigger.alert_firing}),
        firing_now=frozenset({trigger.alert_firing}),
        active_since={
            trigger.alert_firing: max(driver.now - active_since, driver.now - trigger.sustained_for)
        },
    )
    verdict = judge_alert_history_trigger(
        key, trigger.alert_firing, trigger.sustained_for, history, timedelta(minutes=5)
    )
    assert verdict.failed
    _gates, triggers = driver.verdicts()
    return {**triggers, key: verdict}


def test_an_alert_still_firing_after_a_rollback_costs_one_step_not_four(driver: Driver) -> None:
    """Runbook: "If conditions degrade within 30 minutes of increase, rollback to previous
    percentage." `StageValidationHighErrorRate` fires at 3@100 and keeps firing for
    another hour: one episode, one step back. 3@50 holds while the alert that caused
    the rollback still fires; once it has cleared there, a new firing is a new episode."""
    driver.walk_to("3@100")
    fired_at = driver.now + timedelta(minutes=1)
    driver.now = fired_at
    driver.tick(triggers=alert_verdict(driver, timedelta(0)))
    assert (driver.status.step, driver.transitions[-1].trigger) == ("3@50", "rollback")
    driver.rolled_out = False
    for _ in range(4):  # the workloads take 4 minutes to roll back
        driver.advance(timedelta(minutes=1), triggers=alert_verdict(driver, driver.now - fired_at))
    assert driver.status.step == "3@50" and driver.status.in_effect_at is None
    driver.rolled_out = True
    for _ in range(60):  # still firing, with 3@50 in effect, for an hour
        driver.advance(timedelta(minutes=1), triggers=alert_verdict(driver, driver.now - fired_at))
        assert driver.status.step == "3@50", driver.now - fired_at
    driver.advance(timedelta(minutes=1))  # the alert resolves: the episode is over
    assert driver.status.step == "3@50"
    driver.advance(timedelta(minutes=10))
    driver.advance(timedelta(minutes=1), triggers=alert_verdict(driver, timedelta(0)))
    assert driver.status.step == "3@25"  # a new episode at 3@50: one more step
    assert [t.from_step for t in driver.transitions if t.trigger == "rollback"] == ["3@100", "3@50"]


def test_an_alert_that_became_active_after_the_restored_step_took_effect_counts_at_once(
    driver: Driver,
) -> None:
    driver.walk_to("3@50")
    driver.advance(timedelta(minutes=1), triggers=alert_verdict(driver, timedelta(0)))
    assert driver.status.step == "3@25"
    driver.settle()
    assert driver.status.in_effect_at is not None
    driver.advance(timedelta(minutes=20))
    # Became active 1 minute ago, after 3@25 took effect: new evidence, one more step.
    driver.advance(timedelta(minutes=1), triggers=alert_verdict(driver, timedelta(minutes=1)))
    assert driver.status.step == "3@10"


def test_a_signal_window_straddling_the_rollback_does_not_count_at_the_restored_step(
    driver: Driver,
) -> None:
    """`error-rate-above-5pct` holds 5m on `rate(...[5m])`: its evidence reaches 10m back,
    and after a rollback all of it must come from the restored step in effect."""
    driver.walk_to("3@50")
    driver.advance(timedelta(minutes=10), trigger_outcomes={"error-rate-above-5pct": Outcome.FAIL})
    assert driver.status.step == "3@25"
    driver.settle()
    restored = driver.status.in_effect_at
    assert restored is not None
    failing = {"error-rate-above-5pct": Outcome.FAIL}
    for minutes in range(1, 10):
        driver.now = restored + timedelta(minutes=minutes)
        driver.tick(trigger_outcomes=failing)
        assert driver.status.step == "3@25", minutes
    driver.now = restored + timedelta(minutes=10)
    driver.tick(trigger_outcomes=failing)
    assert driver.status.step == "3@10"


# --- windows measured from when a step is in effect ---


def test_the_degradation_window_runs_from_when_a_slow_step_is_in_effect(driver: Driver) -> None:
    """Runbook: "If conditions degrade within 30 minutes of increase, rollback to previous
    percentage." The workloads take 45 minutes to roll out 3@50: the 30 minutes start
    when 3@50 serves requests, not when its flags were written."""
    driver.walk_to("3@25")
    driver.jobs.clear()
    driver.approve()
    driver.soak_to_gates()
    driver.rolled_out = False
    driver.tick()
    assert driver.status.step == "3@50"
    applied = driver.status.flags_applied_at or driver.now
    driver.now = applied + timedelta(minutes=45)
    driver.rolled_out = True
    driver.tick()
    in_effect = driver.status.in_effect_at
    assert in_effect == applied + timedelta(minutes=45)
    degraded = {"canary-error-rate-degraded": Outcome.FAIL}
    driver.now = in_effect + timedelta(minutes=34)  # first sample 29m after it took effect
    driver.tick(trigger_outcomes=degraded)
    assert driver.status.step == "3@25"
    assert "canary-error-rate-degraded" in driver.transitions[-1].reason


def test_the_degradation_window_closes_30_minutes_after_the_step_took_effect(
    driver: Driver,
) -> None:
    driver.walk_to("3@50")
    in_effect = driver.status.in_effect_at
    assert in_effect is not None
    driver.now = in_effect + timedelta(minutes=36)  # first sample 31m after
    driver.tick(trigger_outcomes={"canary-error-rate-degraded": Outcome.FAIL})
    assert driver.status.step == "3@50"


def test_a_slow_rollout_shortens_neither_the_soak_nor_any_gate_window(driver: Driver) -> None:
    """Runbook 3: increase criteria "Error rate <1% sustained for 48h"; the canary
    conditions hold "for 30 minutes". A step that takes 3 hours to roll out is promoted
    48h after it took effect, not after its flags were written."""
    driver.walk_to("3@25")
    driver.approve()
    driver.soak_to_gates()
    driver.rolled_out = False
    driver.tick()
    assert driver.status.step == "3@50"
    applied = driver.status.flags_applied_at or driver.now
    driver.now = applied + timedelta(hours=3)
    driver.rolled_out = True
    driver.tick()
    in_effect = driver.status.in_effect_at
    assert in_effect == applied + timedelta(hours=3)
    driver.approve()
    driver.now = applied + timedelta(hours=48, minutes=1)
    driver.tick()
    assert driver.status.step == "3@50"
    assert any("soaking" in b for b in driver.last.blockers)
    driver.now = in_effect + timedelta(hours=48)
    driver.tick()
    driver.tick()
    assert driver.status.step == "3@100"


def test_an_alert_gate_window_must_lie_inside_the_steps_time_in_effect() -> None:
    """Runbook 3, increase criteria: "No alert fires" over the 48h; 2.7's blast-radius
    alert over its 48h. A plan soaking less than the window waits for the window."""
    text = PLAN_TEXT.replace(
        "    min_duration: 48h\n    max_duration: 72h\n",
        "    min_duration: 1h\n    max_duration: 72h\n",
    )
    plan = parse_plan(text, source="short-2.7.yaml")
    driver = Driver(plan)
    driver.walk_to("2.7")
    driver.approve()
    driver.advance(timedelta(hours=2))
    assert driver.status.step == "2.7"
    assert any(
        "no-blast-radius-alert: its 2d window is not yet covered" in b for b in driver.last.blockers
    )


# --- every increase gated by the canary criteria ---

CANARY = (
    "canary-p99-latency",
    "canary-error-rate",
    "canary-unknown-stage-rate",
    "canary-no-active-alerts",
)


def test_every_step_whose_promotion_raises_the_percentage_has_the_canary_gates() -> None:
    """Runbook 3: "Required conditions before increasing percentage" 1-4, each "sustained
    for 30 minutes"; they apply to 0 -> 10 % as to 10 -> 25 %."""
    table = steps_of(PLAN)
    raising = [
        s for s in table.steps if (n := table.after(s)) is not None and n.percent > s.percent
    ]
    assert [s.id for s in raising] == ["2.7", "3@10", "3@25", "3@50"]
    for step in raising:
        gates = {g.key: g for g in step.gates}
        assert set(CANARY) <= gates.keys(), step.id
        assert all(gates[key].window == timedelta(minutes=30) for key in CANARY), step.id
        alerts = gates["canary-no-active-alerts"]
        assert isinstance(alerts, AlertsGate)
        assert set(alerts.no_firing_alerts) >= {
            "StageValidatorLatencyRegression",
            "EnforceGateUnknownRateHigh",
            "RedisModeFetchFailing",
        }


@pytest.mark.parametrize("gate", CANARY)
def test_leaving_2_7_for_10_percent_waits_for_each_canary_condition(gate: str) -> None:
    driver = Driver(PLAN)
    driver.walk_to("2.7")
    driver.approve()
    failing = {**driver.verdicts()[0], gate: Verdict(gate, Outcome.FAIL, "scripted")}
    driver.advance(timedelta(hours=49), gates=failing)
    driver.tick(gates=failing)
    assert driver.status.step == "2.7"
    assert any(b.startswith(f"{gate}: fail") for b in driver.last.blockers)
    driver.tick()
    assert driver.status.step == "3@10"


# --- write enforcement kept from 2.5 on ---


def test_write_enforcement_stays_on_from_2_5_to_the_end() -> None:
    """Runbook production configuration: `enforceWriteOnly: true` beside
    `enforcementPercent: 10`."""
    flags = {s.id: s.flags["ENFORCE_WRITE_ONLY"] for s in steps_of(PLAN).steps}
    assert flags == {
        "2.1": "false",
        "2.4": "false",
        **{s: "true" for s in ("2.5", "2.7", "3@10", "3@25", "3@50", "3@100", "4")},
    }


def test_invalid_writes_are_watched_in_phases_3_and_4_as_a_gate_and_a_trigger() -> None:
    """Runbook 2.5: "No new invalid writes entering system (enforced)"."""
    for step in steps_of(PLAN).steps:
        if step.phase_id not in ("3", "4"):
            continue
        gate_signals = {g.signal for g in step.gates if isinstance(g, SignalGate)}
        trigger_signals = {t.signal for t in step.triggers if isinstance(t, SignalTrigger)}
        assert "invalid_write_ratio" in gate_signals & trigger_signals, step.id


def test_invalid_writes_entering_at_25_percent_roll_back_to_10(driver: Driver) -> None:
    driver.walk_to("3@25")
    driver.advance(timedelta(hours=3))
    driver.advance(timedelta(minutes=1), trigger_outcomes={"invalid-writes-entering": Outcome.FAIL})
    assert (driver.status.step, driver.transitions[-1].trigger) == ("3@10", "rollback")
    driver.settle()
    driver.soak_to_gates()
    driver.tick(
        gates={
            **driver.verdicts()[0],
            "no-new-invalid-writes": Verdict("no-new-invalid-writes", Outcome.FAIL, "scripted"),
        }
    )
    assert driver.status.step == "3@10"
