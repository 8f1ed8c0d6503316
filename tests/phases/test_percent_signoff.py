"""The percentage rule, path by path: no raise of ENFORCEMENT_PERCENT without a sign-off.

The runbook: "Team Approval: Manual sign-off required before each percentage
increase". The core keeps one rule for it (the flags asked never exceed the last
percentage signed off); each test here walks one path that used to raise the
percentage with no approval: a first step above 0 %, a plan edit, a resume after
an edit, a rollback to a step above the current flags.
"""

from __future__ import annotations

from datetime import timedelta

from phases.actions import EventKind, SetFlags
from phases.decide import Decision
from phases.flags import WARN_FLAGS
from phases.observations import Approval
from phases.plan import PERCENT_FLAG
from phases.status import StepState
from tests.phases.test_safety_properties import TINY, TINY_RAISED, UID, _Driver


def _percents(decision: Decision) -> list[int]:
    return [int(a.flags[PERCENT_FLAG]) for a in decision.actions if isinstance(a, SetFlags)]


def _unsigned() -> _Driver:
    driver = _Driver(TINY)
    driver.approvals.clear()
    return driver


def _approve(driver: _Driver, approval_id: str, approver: str, **fields: object) -> None:
    values: dict[str, object] = {
        "id": approval_id,
        "rollout_uid": UID,
        "step": driver.status.step,
        "plan_hash": driver.plan.content_hash,
        "approver": approver,
        "created_at": driver.now,
    }
    values.update(fields)
    driver.approvals.append(Approval(**values))  # type: ignore[arg-type]


def test_a_first_step_above_zero_waits_for_its_sign_off() -> None:
    driver = _unsigned()
    decision = driver.tick()
    assert _percents(decision) == [], "the first step's 5 % was applied with no approval"
    assert any("waiting for approval of step s" in b for b in decision.blockers)
    assert [e.kind for e in decision.events] == [EventKind.APPROVAL_NEEDED]
    _approve(driver, "a-1", "alice")
    decision = driver.tick(timedelta(seconds=5))
    assert _percents(decision) == [], "one approver applied a step whose plan asks for two"
    _approve(driver, "a-2", "bob")
    decision = driver.tick(timedelta(seconds=5))
    assert _percents(decision) == [5]
    assert driver.status.approved_percent == 5
    assert set(driver.status.approvals_consumed) == {"a-1", "a-2"}


def test_a_plan_edit_that_raises_the_current_step_waits_for_an_approval_of_the_new_plan() -> None:
    driver = _Driver(TINY)
    driver.tick()
    assert driver.status.state is StepState.SOAKING
    old_hash = driver.plan.content_hash
    _approve(driver, "old-1", "alice")
    _approve(driver, "old-2", "bob")
    decision = driver.tick(timedelta(seconds=5), plan=TINY_RAISED)
    assert _percents(decision) == [], "the edited plan's 8 % was applied with no approval"
    assert driver.status.state is StepState.APPLYING
    # Approvals of the old plan version, or given before the edit, never lift the hold.
    _approve(driver, "stale-1", "alice", plan_hash=old_hash)
    _approve(driver, "stale-2", "bob", plan_hash=old_hash)
    decision = driver.tick(timedelta(seconds=5))
    assert _percents(decision) == []
    _approve(driver, "new-1", "alice")
    _approve(driver, "new-2", "bob")
    decision = driver.tick(timedelta(seconds=5))
    assert _percents(decision) == [8]
    assert {"new-1", "new-2"} <= set(driver.status.approvals_consumed)
    assert not {"old-1", "old-2", "stale-1", "stale-2"} & set(driver.status.approvals_consumed)


def test_a_plan_edit_that_lowers_the_step_applies_at_once() -> None:
    driver = _Driver(TINY_RAISED)
    driver.tick()
    assert driver.status.approved_percent == 8
    decision = driver.tick(timedelta(seconds=5), plan=TINY)
    assert _percents(decision) == [5]
    assert driver.status.approved_percent == 5, "a lowered percentage lowers the ceiling"


def test_a_resume_after_a_raising_edit_still_waits() -> None:
    driver = _Driver(TINY)
    driver.tick()
    driver.command("pause")
    driver.tick(timedelta(seconds=5))
    assert driver.status.state is StepState.PAUSED
    driver.tick(timedelta(seconds=5), plan=TINY_RAISED)
    driver.command("resume")
    decision = driver.tick(timedelta(seconds=5))
    assert driver.status.state is not StepState.PAUSED
    assert _percents(decision) == [], "resume applied the edited plan's 8 % with no approval"


def test_a_rollback_to_a_step_above_the_current_flags_waits() -> None:
    """At e@50 on the warn flags (0 %), rolling back to e@10 would raise the percentage."""
    driver = _Driver(TINY)
    driver.tick()
    driver.status = driver.status.model_copy(
        update={
            "step": "e@50",
            "state": StepState.SOAKING,
            "flag_overrides": dict(WARN_FLAGS),
            "approved_percent": 0,
            "in_effect_at": driver.now,
            "flags_applied_at": driver.now,
        }
    )
    driver.command("rollback", "e@10")
    decision = driver.tick(timedelta(seconds=5))
    assert driver.status.step == "e@10"
    assert _percents(decision) == [], "the rollback applied e@10's 10 % with no approval"
    _approve(driver, "r-1", "alice")
    _approve(driver, "r-2", "bob")
    decision = driver.tick(timedelta(seconds=5))
    assert _percents(decision) == [10], "e@10 is entered from s, whose promotion asks two"
