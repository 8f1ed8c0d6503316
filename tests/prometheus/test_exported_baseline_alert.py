"""A real Prometheus scrapes the operator's /metrics and the app's, and the production
alert rule reads the staging baseline the operator exports (stage_rollout_baseline).

Runbook, phase 2.1: "Export baselines for production alert thresholds"; and
"Formula: current > max(min_threshold, baseline * multiplier)".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from controller.kube.resources import StageRolloutStatus
from controller.telemetry import Telemetry
from phases.baselines import BaselineRecord
from phases.decide import Decision
from tests.support import RULES_DIR
from tests.support.prometheus import PrometheusServer

MakeServer = Callable[..., PrometheusServer]
ALERT = "StageValidationHighErrorRateVsStaging"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


class SteadyErrors(Collector):
    """Counters of an app validating 100 requests/s of which 3% fail, from when it starts."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def collect(self) -> Iterator[CounterMetricFamily]:
        seconds = time.monotonic() - self.started
        validations = CounterMetricFamily(
            "stage_validation_validations",
            "validations",
            labels=["endpoint", "operation", "mode", "result"],
        )
        validations.add_metric(["/api/allocations", "write", "enforce", "ok"], 100 * seconds)
        errors = CounterMetricFamily(
            "stage_validation_errors", "errors", labels=["endpoint", "reason"]
        )
        errors.add_metric(["/api/allocations", "internal"], 3 * seconds)
        yield validations
        yield errors


def export(telemetry: Telemetry, value: float, environment: str = "staging") -> None:
    """What the reconciler hands the telemetry after a tick of a rollout holding a baseline."""
    record = BaselineRecord(signal="error_ratio", value=value, environment=environment)
    status = StageRolloutStatus(
        plan_hash="0" * 64,
        step="2.4",
        state="soaking",
        step_entered_at=NOW,
        deadline_from=NOW,
        baselines={"error_ratio": record},
    )
    telemetry.decided("shop", "api-staging", Decision(status, (), (), (), ()), status)


STAGING = 'stage_rollout_baseline{signal="error_ratio", environment="staging"}'
PENDING = f'count(ALERTS{{alertname="{ALERT}", alertstate="pending", job="api"}})'
ANY = f'count(ALERTS{{alertname="{ALERT}"}}) or vector(0)'


@pytest.mark.prometheus
def test_the_production_alert_follows_the_staging_baseline_the_operator_exports(
    prometheus_server: MakeServer,
) -> None:
    telemetry = Telemetry()
    # Only production exports a baseline: this form reads staging's, so the 1% minimum.
    export(telemetry, 0.02, environment="production")
    operator = telemetry.serve("127.0.0.1", 0)
    registry = CollectorRegistry()
    registry.register(SteadyErrors())
    app, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        server = prometheus_server(
            scrape_targets={
                "stage-rollout-operator": [f"127.0.0.1:{operator.server_address[1]}"],
                "api": [f"127.0.0.1:{app.server_port}"],
            },
            rule_files=[
                RULES_DIR / "stage-validation-recording.rules.yml",
                RULES_DIR / "stage-validation-exported-baseline-alerts.rules.yml",
            ],
        )
        server.wait_for(
            'job:stage_validation_error_ratio:rate5m{job="api"}',
            lambda v: abs(v - 0.03) < 0.001,
        )
        assert server.wait_for('stage_rollout_baseline{environment="production"}') == 0.02
        server.wait_for(PENDING, lambda v: v == 1)

        # Staging exports 2%: the threshold is 4%, and 3% errors no longer alert.
        export(telemetry, 0.02)
        server.wait_for(STAGING, lambda v: v == pytest.approx(0.02))
        server.wait_for(ANY, lambda v: v == 0)

        # Staging captured a lower baseline: the threshold falls to the 1% minimum.
        export(telemetry, 0.001)
        server.wait_for(STAGING, lambda v: v == pytest.approx(0.001))
        server.wait_for(PENDING, lambda v: v == 1)
    finally:
        operator.shutdown()
        app.shutdown()
