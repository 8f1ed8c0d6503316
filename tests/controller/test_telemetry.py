"""The operator's JSON logs and per-rollout metrics."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller.kube.resources import StageRolloutStatus, VerdictRecord
from controller.telemetry import JsonFormatter, Telemetry
from phases.baselines import BaselineRecord
from phases.decide import Decision
from phases.status import StepState
from tests.support.transitions import rollback_50_to_25

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
    rollback = rollback_50_to_25(NOW + timedelta(minutes=5))
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


def test_a_rollouts_exposition_parses_into_its_families_and_goes_when_it_is_deleted() -> None:
    telemetry = Telemetry()
    verdicts = [
        VerdictRecord(name="errors", role="gate", outcome="pass", reason="0.1 < 1"),
        VerdictRecord(name="latency", role="trigger", outcome="unknown", reason="Prometheus down"),
    ]
    baselines = {"errors": BaselineRecord(signal="errors", value=0.5, environment="staging")}
    soaking = status("3@50", StepState.SOAKING, 50).model_copy(
        update={"last_verdicts": verdicts, "baselines": baselines, "last_tick_at": NOW}
    )
    rollback = rollback_50_to_25(NOW)
    for name in ("api", "web"):
        telemetry.decided("shop", name, Decision(soaking, (), (), (rollback,), ()), soaking)
        telemetry.decided("shop", name, Decision(soaking, (), (), (), ()), soaking)
        telemetry.failed("shop", name, "PlanInvalid", "bad plan")

    families = parsed(telemetry)
    api = {"namespace": "shop", "rollout": "api"}
    assert families["stage_rollout_step_info"][0] == "gauge"
    assert samples(families, "stage_rollout_step_info", api) == {
        (("state", "soaking"), ("step", "3@50")): 1.0
    }
    assert samples(families, "stage_rollout_enforcement_percent", api) == {(): 50.0}
    assert samples(families, "stage_rollout_stalled", api) == {(): 0.0}
    assert samples(families, "stage_rollout_last_tick_timestamp_seconds", api) == {
        (): NOW.timestamp()
    }
    assert samples(families, "stage_rollout_baseline", api) == {
        (("environment", "staging"), ("signal", "errors")): 0.5
    }
    # Each tick counts its verdicts again; the transition and the rollback once.
    assert families["stage_rollout_verdicts"][0] == "counter"
    assert samples(families, "stage_rollout_verdicts", api) == {
        (("name", "errors"), ("outcome", "pass"), ("role", "gate")): 2.0,
        (("name", "latency"), ("outcome", "unknown"), ("role", "trigger")): 2.0,
    }
    assert samples(families, "stage_rollout_transitions", api) == {(("trigger", "rollback"),): 1.0}
    assert samples(families, "stage_rollout_rollbacks", api) == {(): 1.0}
    assert samples(families, "stage_rollout_rollout_errors", api) == {
        (("kind", "PlanInvalid"),): 1.0
    }
    # Process-wide: two ticks of two rollouts, each with one verdict Prometheus left unknown.
    assert samples(families, "stage_rollout_errors", {}) == {
        (("kind", "PlanInvalid"),): 2.0,
        (("kind", "prometheus"),): 4.0,
    }

    telemetry.forget("shop", "api")
    after = parsed(telemetry)
    rollouts = {dict(key).get("rollout") for _, series in after.values() for key in series} - {None}
    assert rollouts == {"web"}
    assert samples(after, "stage_rollout_rollbacks", {"namespace": "shop", "rollout": "web"}) == {
        (): 1.0
    }


Series = dict[tuple[tuple[str, str], ...], float]


def parsed(telemetry: Telemetry) -> dict[str, tuple[str, Series]]:
    """Family name -> (type, {sorted labels: value}) as a scraper reads /metrics."""
    families: dict[str, tuple[str, Series]] = {}
    for family in text_string_to_metric_families(generate_latest(telemetry.registry).decode()):
        series = {
            tuple(sorted(sample.labels.items())): sample.value
            for sample in family.samples
            if not sample.name.endswith("_created")
        }
        families[family.name] = (family.type, series)
    return families


def samples(families: dict[str, tuple[str, Series]], name: str, of: dict[str, str]) -> Series:
    """The series of one rollout (or all, for {}), without the rollout's own labels."""
    return {
        tuple(pair for pair in key if pair[0] not in of): value
        for key, value in families[name][1].items()
        if all(pair in key for pair in of.items())
    }
