"""The Grafana dashboard: generated from the plan, and every panel's PromQL real.

Every query of every panel is evaluated by a real Prometheus that scrapes the
reference app under load and the operator's own /metrics (its Telemetry, fed with
a rollback, an unknown verdict, a failed tick and a reconcile), with the
recording rules loaded. A query error, a query that finds nothing, or a metric
name that neither the app, the operator nor the rules export fails the test.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from controller.catalog import load_plan
from controller.dashboard import FILE_NAME, dashboard_json, panel_queries
from controller.kube.resources import StageRolloutStatus, VerdictRecord
from controller.telemetry import Telemetry
from examples.reference_app.load import LoadGenerator
from examples.reference_app.server import Faults, ReferenceApp
from examples.reference_app.validation import AppConfig
from phases.decide import Decision
from phases.status import StepState
from tests.support import REPO_ROOT, RULES_DIR
from tests.support.prometheus import PrometheusServer, free_port
from tests.support.transitions import rollback_50_to_25

COMMITTED = REPO_ROOT / "manifests" / "grafana" / FILE_NAME
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_NOT_METRICS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}


def document() -> dict:
    return json.loads(COMMITTED.read_text(encoding="utf-8"))


def test_the_committed_dashboard_is_what_the_generator_writes() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == dashboard_json(load_plan()), (
        "regenerate: stagectl dashboard generate -d manifests/grafana"
    )


def test_the_runbooks_shadow_mode_panel_and_the_canary_thresholds_are_there() -> None:
    # Runbook: "# Via Grafana dashboard  # → Stage Validation → Shadow Mode panel"
    board = document()
    assert board["title"] == "Stage Validation"
    panels = {p["title"]: p for p in board["panels"]}
    shadow = panels["Shadow Mode: would-reject ratio"]
    # Runbook: "Condition: `would_reject_rate > 0.5%` for 30 minutes"
    assert [s["value"] for s in shadow["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [
        None,
        0.005,
    ]
    errors = panels["Canary gate: error_ratio"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    # The phase-3 gates (0.1 % canary, 1 % per increase) are orange; the 5 % rollback trigger red.
    assert [(s["value"], s["color"]) for s in errors] == [
        (None, "green"),
        (0.001, "red"),  # also the degradation-window trigger's threshold: rollback wins
        (0.01, "orange"),
        (0.05, "red"),
    ]
    assert {
        "Enforcement percent per rollout",
        "Step and state per rollout",
        "Rollbacks and stalls",
        "Replicas holding the leader Lease",
    } <= set(panels)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads: identifiers that are not functions, labels or keywords."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\(?)", text)
    return {name for name, call in names if not call and name not in _NOT_METRICS}


def test_metric_names_are_read_from_an_expression() -> None:
    assert metric_names(
        'sum by (le) (rate(a_bucket{x="y"}[5m])) / on() b:c:rate5m and d > bool 1'
    ) == {"a_bucket", "b:c:rate5m", "d"}


@pytest.fixture
def operator_metrics() -> Iterator[int]:
    telemetry = Telemetry()
    port = free_port()
    server = telemetry.serve("127.0.0.1", port)
    before = status(StepState.SOAKING, "3@50", 50)
    telemetry.decided("shop", "api", Decision(before, (), (), (), ()), before)
    rollback = rollback_50_to_25(NOW)
    after = status(StepState.ROLLING_BACK, "3@25", 25)
    telemetry.decided("shop", "api", Decision(after, (), (), (rollback,), ()), after)
    stalled = status(StepState.STALLED, "2.7", 0)
    telemetry.decided("shop", "shadow", Decision(stalled, (), (), (), ()), stalled)
    telemetry.failed("shop", "api", "api", "the API server timed out")
    telemetry.leadership(True)
    telemetry.reconcile_seconds.observe(0.012)
    try:
        yield port
    finally:
        server.shutdown()


def status(state: StepState, step: str, percent: int) -> StageRolloutStatus:
    unknown = VerdictRecord(
        name="canary-error-rate", role="gate", outcome="unknown", reason="Prometheus unreachable"
    )
    return StageRolloutStatus(
        plan_hash="h",
        step=step,
        state=state,
        step_entered_at=NOW,
        deadline_from=NOW,
        enforcement_percent=percent,
        last_verdicts=[unknown],
    )


@pytest.mark.prometheus
def test_every_panel_query_runs_and_finds_what_the_app_and_operator_export(
    prometheus_server: Callable[..., PrometheusServer],
    reference_app: Callable[..., ReferenceApp],
    operator_metrics: int,
) -> None:
    app = reference_app(
        AppConfig(mode="warn", dry_run=True), faults=Faults(internal_error_fraction=0.01), seed=31
    )
    server = prometheus_server(
        scrape_targets={
            "stage-app": [f"127.0.0.1:{app.port}"],
            "stage-rollout-operator": [f"127.0.0.1:{operator_metrics}"],
        },
        rule_files=[RULES_DIR / "stage-validation-recording.rules.yml"],
    )
    queries = panel_queries(document())
    assert len(queries) >= 13
    with LoadGenerator(
        app.url, rate=100, invalid_fraction=0.02, unknown_fraction=0.02, duration=60, seed=32
    ):
        server.wait_for('count_over_time(up{job="stage-app"}[1m])', lambda n: n >= 5, timeout=30)
        missing = _empty_queries(server, queries, deadline=time.monotonic() + 30)
        exported = set(
            httpx.get(f"{server.url}/api/v1/label/__name__/values", timeout=10).json()["data"]
        )
    assert not missing, missing
    unknown = {
        (title, name)
        for title, expr in queries
        for name in metric_names(expr)
        if name not in exported
    }
    assert not unknown, unknown


def _empty_queries(
    server: PrometheusServer, queries: list[tuple[str, str]], deadline: float
) -> list[str]:
    """Queries that fail, or still find no series at the deadline (rates need two scrapes)."""
    pending = list(queries)
    while True:
        still: list[tuple[str, str]] = []
        for title, expr in pending:
            answer = httpx.get(
                f"{server.url}/api/v1/query", params={"query": expr}, timeout=10
            ).json()
            if answer["status"] != "success":
                pytest.fail(f"{title}: {expr}: {answer.get('error')}")
            if not answer["data"]["result"]:
                still.append((title, expr))
        if not still or time.monotonic() > deadline:
            return [f"{title}: {expr}" for title, expr in still]
        pending = still
        time.sleep(1)
