"""Which environments hold the current step's flags.

Phase 2.1 is "Deploy to staging with `STAGE_VALIDATION_MODE=warn`"; nothing in the
runbook changes staging afterwards, so moving on to production leaves staging as
2.1 left it. A rollback is there to take the degraded environment off its step
("Scenario 3: Full Rollback to Warn"): one that crosses from production back into
2.1 gives production 2.1's flags too, until the rollout moves on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources

from phases.environments import environments_holding, step_environment
from phases.plan_checks import parse_plan
from phases.status import RolloutStatus, StepState, TransitionRecord, initial_status

PLAN = parse_plan(
    resources.files("phases").joinpath("plans", "stage-validation-v3.yaml").read_text(),
    source="bundled",
)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def walked(*moves: tuple[str, str, str]) -> RolloutStatus:
    """A status that went through (trigger, from, to) moves, with a self-move after each."""
    status = initial_status(PLAN.content_hash, "2.1", T0)
    history: list[TransitionRecord] = []
    for n, (trigger, source, dest) in enumerate(moves):
        at = T0 + timedelta(hours=n)
        history.append(
            TransitionRecord(
                at=at,
                from_step=source,
                from_state=StepState.AWAITING_APPROVAL,
                to_step=dest,
                to_state=StepState.APPLYING,
                trigger=trigger,
                reason="",
            )
        )
        history.append(
            TransitionRecord(
                at=at + timedelta(minutes=1),
                from_step=dest,
                from_state=StepState.APPLYING,
                to_step=dest,
                to_state=StepState.VERIFYING,
                trigger="applied",
                reason="",
            )
        )
    step = moves[-1][2] if moves else "2.1"
    return status.model_copy(update={"step": step, "history": history})


def test_a_step_holds_only_its_own_environment_on_the_way_forward() -> None:
    assert environments_holding(PLAN, walked()) == ("staging",)
    assert environments_holding(PLAN, walked(("promote", "2.1", "2.4"))) == ("production",)


def test_a_rollback_from_production_into_staging_also_restores_production() -> None:
    status = walked(("promote", "2.1", "2.4"), ("rollback", "2.4", "2.1"))
    assert environments_holding(PLAN, status) == ("staging", "production")


def test_a_rollback_within_production_touches_staging_not() -> None:
    status = walked(
        ("promote", "2.1", "2.4"), ("promote", "2.4", "2.5"), ("rollback", "2.5", "2.4")
    )
    assert environments_holding(PLAN, status) == ("production",)


def test_promoting_again_after_the_rollback_leaves_staging_behind_again() -> None:
    status = walked(
        ("promote", "2.1", "2.4"), ("rollback", "2.4", "2.1"), ("promote", "2.1", "2.4")
    )
    assert environments_holding(PLAN, status) == ("production",)


def test_a_step_the_plan_lost_runs_where_the_first_step_does() -> None:
    assert step_environment(PLAN, "gone") == "staging"
    lost = walked().model_copy(update={"step": "gone"})
    assert environments_holding(PLAN, lost) == ("staging",)
