"""The operator's JSON logs and per-rollout metrics."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest

from controller.kube.resources import StageRolloutStatus
from controller.telemetry import JsonFormatter, Telemetry
from phases.decide import Decision
from phases.status import StepState, TransitionRecord

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_every_log_line_is_one_json_object_with_the_rollout_context() -> None:
    record = logging.LogRecord(
        "stage_rollout.operator", logging.INFO, __file__, 1, "tick: %s", ("soaking",), None
    )
    record.rollout = "shop/api"
    record.step = "3@25"
    record.reason = "gates pass"
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["message"] == "tick: soaking" and entry["level"] == "info"
    assert (entry["rollout"], entry["step"], entry["reason"]) == ("shop/api", "3@25", "gates pass")


def status(step: str, state: StepState, percent: int) -> StageRolloutStatus:
    return StageRolloutStatus(
        plan_hash="h",
        step=step,
        state=state,
        step_entered_at=NOW,
        deadline_from=NOW,
        enforcement_percent=percent,
    )


def test_metrics_follow_a_rollout_through_a_rollback() -> None:
    telemetry = Telemetry()
    telemetry.decided(
        "shop",
        "api",
        Decision(status(step := "3@50", StepState.SOAKING, 50), (), (), (), ()),
        status(step, StepState.SOAKING, 50),
    )
    rollback = TransitionRecord(
        at=NOW + timedelta(minutes=5),
        from_step="3@50",
        from_state=StepState.SOAKING,
        to_step="3@25",
        to_state=StepState.ROLLING_BACK,
        trigger="rollback",
        reason="errors",
    )
    after = status("3@25", StepState.ROLLING_BACK, 25)
    telemetry.decided("shop", "api", Decision(after, (), (), (rollback,), ()), after)
    text = generate_latest(telemetry.registry).decode()
    assert (
        'stage_rollout_step_info{namespace="shop",rollout="api",state="rolling_back",step="3@25"} 1.0'
        in text
    )
    assert 'step="3@50"' not in text
    assert 'stage_rollout_enforcement_percent{namespace="shop",rollout="api"} 25.0' in text
    assert 'stage_rollout_rollbacks_total{namespace="shop",rollout="api"} 1.0' in text
    assert (
        'stage_rollout_transitions_total{namespace="shop",rollout="api",trigger="rollback"} 1.0'
        in text
    )
