"""One rollout's failure is its own: a poisoned rollout never holds up the other nine.

Ten rollouts share one operator on the API-server emulator. One of them is
poisoned (a URL scheme Prometheus does not speak, a token file that is not there,
a plan name that is a binary file, a Prometheus that answers without `data`, or a
metrics port that raises whatever it is asked); the operator's periodic passes
must still promote the nine others after their soak and roll them back when their
error ratio degrades, on the same virtual minutes as a pass without the poison,
and the poisoned rollout must carry its own condition.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controller.kube.api import DEPLOYMENTS, EVENTS, ROLLOUTS, KubeApi
from controller.kube.resources import StageRolloutSpec
from controller.operator import Operator, OperatorSettings
from controller.ports import MetricsSource
from controller.sim.scenario import parse_scenario
from controller.sim.scripted_metrics import ScriptedMetrics
from phases.needs import AlertReading
from phases.plan import Plan
from phases.verdicts import WindowSummary
from tests.kube.operator_world import OPERATOR_USER, T0, crds, install_admission_policies
from tests.support.kube_emulator import KubeEmulator

NAMESPACE = "shop"
POISONED = "r-poisoned"
PLAN = {
    "name": "two-steps",
    "version": "1",
    "signals": {"error_ratio": {"query": "sum(rate(errors_total[5m]))"}},
    "phases": [
        {
            "id": "a",
            "name": "Warn",
            "flags": {
                "STAGE_VALIDATION_MODE": "warn",
                "ENFORCE_WRITE_ONLY": False,
                "ENFORCEMENT_PERCENT": 0,
                "STAGE_VALIDATION_DRY_RUN": False,
            },
            "min_duration": "2m",
            "on_degradation": "pause",
            "gates": [
                {
                    "name": "errors-low",
                    "signal": "error_ratio",
                    "comparator": "<",
                    "threshold": 0.01,
                    "window": "2m",
                }
            ],
        },
        {
            "id": "b",
            "name": "Enforce writes, dry run",
            "flags": {
                "STAGE_VALIDATION_MODE": "enforce",
                "ENFORCE_WRITE_ONLY": True,
                "ENFORCEMENT_PERCENT": 0,
                "STAGE_VALIDATION_DRY_RUN": True,
            },
            "min_duration": "1h",
            "triggers": [
                {
                    "name": "errors-high",
                    "signal": "error_ratio",
                    "comparator": ">",
                    "threshold": 0.05,
                    "for": "1m",
                }
            ],
        },
    ],
}
PASS = timedelta(minutes=1)
PROMOTION_DUE = timedelta(minutes=3)
"""`a` soaks 2m and its gate needs a 2m window in effect: promoted by the third pass."""
DEGRADES_AT = timedelta(minutes=5)
"""The error ratio jumps to 20 % then: every healthy rollout must be back at `a` soon after."""
ROLLBACK_DUE = timedelta(minutes=2)
"""The trigger needs 1m of evidence, sampled each minute: back by the second pass after."""


class _Clock:
    """The operator's clock, moved by the test: passes happen at chosen virtual times."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return time.monotonic()

    def advance(self, step: timedelta) -> None:
        self._now += step


class _RaisingSource:
    """A metrics port that raises on every read: any exception, not only the known ones."""

    def summarize(self, signal: str, query: str, window: timedelta, at: datetime) -> WindowSummary:
        raise RuntimeError("the metrics port exploded")

    def firing_alerts(self, names: Sequence[str], at: datetime) -> AlertReading:
        raise RuntimeError("the metrics port exploded")

    def average(self, signal: str, query: str, start: datetime, end: datetime) -> float | None:
        raise RuntimeError("the metrics port exploded")

    def modes(self, query: str, at: datetime) -> tuple[float, ...] | None:
        raise RuntimeError("the metrics port exploded")


class _NoDataHandler(BaseHTTPRequestHandler):
    """A Prometheus look-alike whose every answer is a success without `data`."""

    def _answer(self) -> None:
        body = json.dumps({"status": "success"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def no_data_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoDataHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def healthy_then_degraded() -> ScriptedMetrics:
    text = (
        f"name: ten\nstart: {T0.isoformat()}\nsignals:\n  error_ratio:\n"
        "    - {at: 0s, value: 0.001}\n"
        f"    - {{at: {int(DEGRADES_AT.total_seconds())}s, value: 0.2}}\n"
    )
    return ScriptedMetrics(parse_scenario(text, source="ten"), timedelta(minutes=1))


def poison(kind: str, tmp_path: Path, no_data_url: str) -> dict[str, Any]:
    """The spec fields that poison one rollout."""
    if kind == "bad-url-scheme":
        return {"prometheus": {"url": "gopher://prometheus.monitoring:9090"}}
    if kind == "missing-token-file":
        return {
            "prometheus": {"url": no_data_url, "bearerTokenFile": str(tmp_path / "no-such-token")}
        }
    if kind == "binary-plan-file":
        binary = tmp_path / "plan.bin"
        binary.write_bytes(bytes(range(256)) * 8)
        return {"plan": {"name": str(binary)}}
    if kind == "answer-without-data":
        return {"prometheus": {"url": no_data_url}}
    return {}  # "raising-port": the metrics port raises for this rollout


def create_rollouts(api: KubeApi, poisoned: dict[str, Any]) -> list[str]:
    names = [f"r-{i}" for i in range(9)] + [POISONED]
    for name in names:
        api.create(
            DEPLOYMENTS,
            NAMESPACE,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"app-{name}", "namespace": NAMESPACE},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "app", "image": "pause:3.9"}]},
                    },
                },
            },
        )
        spec: dict[str, Any] = {
            "plan": {"inline": PLAN},
            "target": {"configMap": f"flags-{name}", "deployments": [f"app-{name}"]},
            "interval": "60s",
        }
        if name == POISONED:
            spec.update(poisoned)
        api.create(
            ROLLOUTS,
            NAMESPACE,
            {
                "apiVersion": ROLLOUTS.api_version,
                "kind": ROLLOUTS.name,
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": spec,
            },
        )
    return names


def run_passes(operator: Operator, clock: _Clock, api: KubeApi, until: timedelta) -> dict:
    """A pass each virtual minute; when each rollout first reached `b` and when it left it."""
    reached: dict[str, timedelta] = {}
    back: dict[str, timedelta] = {}
    while clock.now() - T0 <= until:
        operator.tick_all()
        elapsed = clock.now() - T0
        for item in api.list(ROLLOUTS, NAMESPACE)[0]:
            name, status = item["metadata"]["name"], item.get("status") or {}
            if status.get("step") == "b":
                reached.setdefault(name, elapsed)
            elif name in reached and status.get("step") == "a":
                back.setdefault(name, elapsed)
        time.sleep(0.06)  # the emulated Deployments roll out in real time
        clock.advance(PASS)
    return {"reached": reached, "back": back}


@pytest.mark.parametrize(
    "kind",
    [
        "bad-url-scheme",
        "missing-token-file",
        "binary-plan-file",
        "answer-without-data",
        "raising-port",
    ],
)
def test_one_poisoned_rollout_of_ten_holds_up_none_of_the_others(
    kube_emulator: Callable[..., KubeEmulator], tmp_path: Path, no_data_server: str, kind: str
) -> None:
    emulator = kube_emulator(rollout_delay=0.01, job_delay=0.01)
    for crd in crds():
        emulator.register_crd(crd)
    install_admission_policies(emulator)
    api = KubeApi(emulator.api_client(user=OPERATOR_USER))
    names = create_rollouts(api, poison(kind, tmp_path, no_data_server))
    scripted = healthy_then_degraded()
    clock = _Clock(T0)
    holder: dict[str, Operator] = {}

    def metrics_for(spec: StageRolloutSpec, plan: Plan) -> MetricsSource:
        if spec.target.config_map == f"flags-{POISONED}" and kind == "raising-port":
            return _RaisingSource()
        if spec.prometheus is not None:
            return holder["operator"]._metrics_for(spec, plan)
        return scripted

    operator = Operator(
        api,
        OperatorSettings(namespace=NAMESPACE, interval=PASS, metrics_port=0, workers=4),
        clock=clock,  # type: ignore[arg-type]
        metrics_for=metrics_for,
    )
    holder["operator"] = operator
    seen = run_passes(operator, clock, api, until=DEGRADES_AT + ROLLBACK_DUE)
    healthy = [n for n in names if n != POISONED]
    late = {
        n: seen["reached"].get(n)
        for n in healthy
        if seen["reached"].get(n, DEGRADES_AT) > PROMOTION_DUE
    }
    assert not late, f"promoted late or never (virtual time): {late}"
    slow = {
        n: seen["back"].get(n)
        for n in healthy
        if seen["back"].get(n, timedelta(days=1)) > DEGRADES_AT + ROLLBACK_DUE
    }
    assert not slow, f"rolled back late or never: {slow}"
    assert POISONED not in seen["reached"], "the poisoned rollout promoted"
    poisoned = api.get(ROLLOUTS, NAMESPACE, POISONED)
    assert poisoned is not None
    conditions = {c["type"]: c for c in (poisoned.get("status") or {}).get("conditions", [])}
    blockers = (poisoned.get("status") or {}).get("blockers", [])
    failed = [
        c
        for c in conditions.values()
        if c["type"] in ("Valid", "Reconciled") and c["status"] == "False"
    ]
    assert failed or blockers, f"the poisoned rollout says nothing: {poisoned.get('status')}"
    if kind == "raising-port":
        assert conditions["Reconciled"]["status"] == "False"
        assert "RuntimeError" in conditions["Reconciled"]["message"]
        events, _ = api.list(EVENTS, NAMESPACE)
        assert any(
            e["reason"] == "ReconcileFailed" and e["involvedObject"]["name"] == POISONED
            for e in events
        )
        errors = operator.telemetry.registry.get_sample_value(
            "stage_rollout_rollout_errors_total",
            {"namespace": NAMESPACE, "rollout": POISONED, "kind": "reconcile"},
        )
        assert errors and errors >= 1
