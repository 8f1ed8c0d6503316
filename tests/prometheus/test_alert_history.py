"""Alert gates over a window and alert triggers, read from the alert history a real Prometheus keeps.

Runbook, canary gate criteria: "4. No Active Alerts: ... `RedisModeFetchFailing` -
resolved", among conditions that hold "sustained for 30 minutes"; increase criteria:
"No alert fires". An alert that resolved a moment ago must not let a step promote,
so the gate reads ALERTS over its window, not at one instant.

The alert is the manifest's own `RedisModeFetchFailing` rule, evaluated by Prometheus
from the reference app's mode-fetch errors; only its durations are scaled down
(`[2m]` to `[4s]`, `for: 5m` to `for: 3s`) so that the test runs in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from controller.prometheus.source import PrometheusSettings, PrometheusSource
from examples.reference_app.load import LoadGenerator
from examples.reference_app.server import ReferenceApp
from examples.reference_app.validation import AppConfig
from phases.verdicts import Outcome, judge_alert_history_trigger, judge_alert_window
from tests.support import REPO_ROOT
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.prometheus

ALERT = "RedisModeFetchFailing"
RULE_FOR = timedelta(seconds=3)
GAP = timedelta(seconds=3)
# The bundled plan's coverage query, with its 120s freshness scaled down like the rule.
COVERAGE = "vector(1) and on() (time() - max(timestamp(stage_validation_validations_total)) < 3)"


def now() -> datetime:
    return datetime.now(UTC)


def scaled_rules(directory: Path) -> Path:
    source = REPO_ROOT / "manifests" / "prometheus" / "stage-validation-alerts.rules.yml"
    groups = yaml.safe_load(source.read_text(encoding="utf-8"))
    rule = next(r for g in groups["groups"] for r in g["rules"] if r.get("alert") == ALERT)
    assert "[2m]" in rule["expr"] and rule["for"] == "5m"
    rule["expr"] = rule["expr"].replace("[2m]", "[4s]")
    rule["for"] = "3s"
    path = directory / "alerts.rules.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "scaled", "rules": [rule]}]}), encoding="utf-8"
    )
    return path


def firing(server: PrometheusServer) -> float | None:
    return server.value(f'count(ALERTS{{alertname="{ALERT}",alertstate="firing"}})')


def test_alert_history_fails_the_gate_after_the_alert_resolved_and_sees_gaps(
    prometheus_server: Callable[..., PrometheusServer],
    reference_app: Callable[..., ReferenceApp],
    tmp_path: Path,
) -> None:
    app = reference_app(AppConfig(mode="warn"), seed=61)
    server = prometheus_server(
        scrape_targets={"stage-app": [f"127.0.0.1:{app.port}"]},
        rule_files=[scaled_rules(tmp_path)],
    )
    source = PrometheusSource(PrometheusSettings(url=server.url), timedelta(seconds=1))
    try:
        with LoadGenerator(app.url, rate=40, duration=180, seed=62):
            server.wait_for(
                'count_over_time(up{job="stage-app"}[1m])', lambda n: n >= 8, timeout=40
            )
            quiet = source.alert_history([ALERT], COVERAGE, timedelta(seconds=5), now())
            assert quiet.error is None and quiet.fired == frozenset()
            assert judge_alert_window("gate", (ALERT,), quiet, GAP).outcome is Outcome.PASS

            app.update_faults(mode_fetch_failing=True)
            failing_since = now()
            server.wait_for(
                f'count(ALERTS{{alertname="{ALERT}",alertstate="firing"}})',
                lambda n: n >= 1,
                timeout=40,
            )
            time.sleep(1.5)  # read past the firing evaluation
            at = now()
            history = source.alert_history([ALERT], COVERAGE, RULE_FOR, at)
            assert history.firing_now == {ALERT} and history.fired == {ALERT}
            trigger = judge_alert_history_trigger("trigger", ALERT, RULE_FOR, history, GAP)
            assert trigger.outcome is Outcome.FAIL, trigger
            # Active (pending, then firing) for all of its `for`: the evidence reaches `for`
            # back (less the part of a second the client's whole-second start cuts off).
            assert RULE_FOR - timedelta(seconds=1) <= trigger.window <= RULE_FOR
            longer = source.alert_history([ALERT], COVERAGE, timedelta(seconds=40), at)
            since = longer.active_since[ALERT]
            assert failing_since - timedelta(seconds=2) <= since <= at - RULE_FOR

            app.update_faults(mode_fetch_failing=False)
            server.wait_for(
                f'count(ALERTS{{alertname="{ALERT}"}}) or vector(0)', lambda n: n == 0, timeout=40
            )
            resolved = now()
            time.sleep(2)
            after = now()
            recent = source.alert_history([ALERT], COVERAGE, timedelta(seconds=30), after)
            gate = judge_alert_window("canary-no-active-alerts", (ALERT,), recent, GAP)
            assert gate.outcome is Outcome.FAIL, gate
            assert ALERT in gate.reason and "fired within the last 30s" in gate.reason
            trigger = judge_alert_history_trigger("trigger", ALERT, RULE_FOR, recent, GAP)
            assert trigger.outcome is Outcome.PASS, trigger  # resolved: no evidence now
            since_resolved = after - resolved - timedelta(seconds=1)
            clean = source.alert_history([ALERT], COVERAGE, since_resolved, after)
            assert judge_alert_window("gate", (ALERT,), clean, GAP).outcome is Outcome.PASS

            # Prometheus away for longer than the gap tolerance: the history has a hole there.
            server.stop()
            down = source.alert_history([ALERT], COVERAGE, timedelta(seconds=30), now())
            assert down.error is not None and "unreachable" in down.error
            assert judge_alert_window("gate", (ALERT,), down, GAP).outcome is Outcome.UNKNOWN
            time.sleep(5)
            server.start()
            server.wait_for(
                'count_over_time(up{job="stage-app"}[4s])', lambda n: n >= 3, timeout=40
            )
            back = now()
            window = back - resolved - timedelta(seconds=1)
            holed = source.alert_history([ALERT], COVERAGE, window, back)
            assert holed.error is None and holed.fired == frozenset()
            verdict = judge_alert_window("gate", (ALERT,), holed, GAP)
            assert verdict.outcome is Outcome.UNKNOWN, verdict
            assert "alert history incomplete" in verdict.reason and "gap" in verdict.reason
    finally:
        source.close()
