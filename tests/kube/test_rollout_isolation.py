"""One rollout's failure is its own: a poisoned rollout never holds up the other nine.

Ten rollouts share one operator on the API-server emulator, set up as
`tests/kube/operator_world.py` sets a world up: RBAC enforced, the cluster admin
(group system:masters) creates the objects, each rollout acts as the example
ServiceAccount of its namespace, the operator as its own ServiceAccount. One of
them is poisoned the way a namespace user can break their own rollout today,
with a spec the API server accepts: an inline plan that fails validation, a plan
ConfigMap holding binary data or garbage text, a Prometheus endpoint the operator
does not have, a URL whose server answers without `data`, a credentials Secret
that does not exist, a service account without rights, or a metrics port that
raises whatever it is asked. The operator's periodic passes must still promote
the nine others after their soak and roll them back when their error ratio
degrades, on the same virtual minutes as a pass without the poison, and the
poisoned rollout must carry its own condition.

The poisons of the first version of this test (a gopher:// URL, a bearer token
file, a plan name that is a path) no longer reach the operator: the API server
refuses or prunes them, which `test_poisons_the_api_server_refuses_never_reach_the_operator`
checks here (and tests/kube/test_tenant_isolation.py, test_prometheus_isolation.py
check the operator's own refusal of each when the schema is missing).
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controller.kube.api import CONFIGMAPS, DEPLOYMENTS, EVENTS, ROLLOUTS, KubeApi, KubeError
from controller.kube.prometheus_refs import NoPrometheus
from controller.kube.resources import StageRolloutSpec
from controller.kube.tenancy import Tenancy
from controller.operator import Operator, OperatorSettings
from controller.ports import MetricsSource
from controller.sim.scenario import parse_scenario
from controller.sim.scripted_metrics import ScriptedMetrics
from phases.needs import AlertReading
from phases.plan import Plan
from phases.verdicts import WindowSummary
from tests.kube.operator_world import (
    OPERATOR_USER,
    RBAC_KINDS,
    ROLLOUT_ACCOUNT,
    T0,
    admin_api,
    crds,
    grant_manifests,
    grant_rollout_account,
    install_admission_policies,
)
from tests.support.kube_emulator import KubeEmulator

NAMESPACE = "shop"
POISONED = "r-poisoned"
PLAN = {
    "name": "two-steps",
    "version": "1",
    # No range in the query: a trigger's evidence reaches back its `for` plus the query's
    # longest range, and this test wants the 1m `for` alone (see ROLLBACK_DUE).
    "signals": {"error_ratio": {"query": "job:errors:ratio"}},
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


NO_RIGHTS = "no-rights"
"""A ServiceAccount of the namespace that no Role is bound to."""
SECRET = "prometheus-credentials"
"""The Secret the example Role lets the rollout read; never created here."""
PLAN_KEY = "plan.yaml"
POISONS: dict[str, tuple[str, str] | None] = {
    # kind: the (condition type, reason) the poisoned rollout must carry
    "invalid-inline-plan": ("Valid", "PlanInvalid"),
    "binary-plan-configmap": ("Valid", "PlanNotFound"),
    "garbage-plan-configmap": ("Valid", "PlanInvalid"),
    "unknown-endpoint": ("Valid", "PrometheusRefused"),
    "answer-without-data": None,  # no condition: its gate is unknown, a blocker says why
    "missing-credentials-secret": ("Valid", "PrometheusRefused"),
    "account-without-rights": ("Valid", "Forbidden"),
    "raising-port": ("Reconciled", "ReconcileFailed"),
}


def app_names() -> list[str]:
    return [f"r-{i}" for i in range(9)] + [POISONED]


def cluster(kube_emulator: Callable[..., KubeEmulator]) -> tuple[KubeEmulator, KubeApi, KubeApi]:
    """The emulator with our CRDs, admission policies and RBAC on, as `make_world` sets it
    up: the cluster admin's connection and the operator's (its ServiceAccount)."""
    emulator = kube_emulator(rollout_delay=0.01, job_delay=0.01)
    for crd in crds():
        emulator.register_crd(crd)
    install_admission_policies(emulator)
    admin = admin_api(emulator)
    grant_manifests(emulator, NAMESPACE)
    grant_rollout_account(admin, NAMESPACE, [f"app-{name}" for name in app_names()])
    return emulator, admin, KubeApi(emulator.api_client(user=OPERATOR_USER))


def poison(kind: str, admin: KubeApi, no_data_url: str) -> dict[str, Any]:
    """The spec fields that poison one rollout (and the objects they need, made as the
    admin). Each is a spec the API server accepts and a namespace user may write."""
    if kind == "invalid-inline-plan":
        plan = copy.deepcopy(PLAN)
        plan["phases"][0]["gates"][0]["signal"] = "no_such_signal"
        return {"plan": {"inline": plan}}
    if kind in ("binary-plan-configmap", "garbage-plan-configmap"):
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "poisoned-plan", "namespace": NAMESPACE},
        }
        if kind == "binary-plan-configmap":
            body["binaryData"] = {PLAN_KEY: base64.b64encode(bytes(range(256)) * 8).decode()}
        else:
            body["data"] = {PLAN_KEY: "\x00\x1b[31m{{{: ][\n\t- ::\ufffd" * 50}
        admin.create(CONFIGMAPS, NAMESPACE, body)
        return {"plan": {"configMapRef": {"name": "poisoned-plan", "key": PLAN_KEY}}}
    if kind == "unknown-endpoint":
        return {"prometheus": {"endpoint": "elsewhere"}}
    if kind == "answer-without-data":
        return {"prometheus": {"url": no_data_url}}
    if kind == "missing-credentials-secret":
        return {"prometheus": {"url": no_data_url, "credentialsSecret": {"name": SECRET}}}
    if kind == "account-without-rights":
        account = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NO_RIGHTS, "namespace": NAMESPACE},
        }
        admin.create(RBAC_KINDS["ServiceAccount"], NAMESPACE, account)
        return {"serviceAccountName": NO_RIGHTS}
    assert kind == "raising-port"  # the metrics port raises for this rollout
    return {}


def rollout_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": ROLLOUTS.api_version,
        "kind": ROLLOUTS.name,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def create_rollouts(api: KubeApi, poisoned: dict[str, Any]) -> list[str]:
    names = app_names()
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
            "serviceAccountName": ROLLOUT_ACCOUNT,
            "target": {"configMap": f"flags-{name}", "deployments": [f"app-{name}"]},
            "interval": "60s",
        }
        if name == POISONED:
            spec.update(poisoned)
        api.create(ROLLOUTS, NAMESPACE, rollout_body(name, spec))
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


@pytest.mark.parametrize("kind", list(POISONS))
def test_one_poisoned_rollout_of_ten_holds_up_none_of_the_others(
    kube_emulator: Callable[..., KubeEmulator], no_data_server: str, kind: str
) -> None:
    _emulator, admin, api = cluster(kube_emulator)
    names = create_rollouts(admin, poison(kind, admin, no_data_server))
    scripted = healthy_then_degraded()
    clock = _Clock(T0)
    holder: dict[str, Operator] = {}
    tenancy = Tenancy(api)

    def metrics_for(spec: StageRolloutSpec, plan: Plan) -> MetricsSource:
        if spec.target.config_map != f"flags-{POISONED}":
            return scripted
        if kind == "raising-port":
            return _RaisingSource()
        # The poisoned rollout's Prometheus is chosen as the operator chooses it without
        # an injected port (Reconciler._metrics): its endpoint, or its URL with its Secret
        # read as its own account.
        endpoints = holder["operator"].endpoints
        settings = endpoints.settings_for(spec.prometheus, tenancy.admit(NAMESPACE, spec))
        return NoPrometheus() if settings is None else endpoints.source(settings, plan)

    operator = Operator(
        api,
        OperatorSettings(namespace=NAMESPACE, interval=PASS, metrics_port=0, workers=4),
        clock=clock,  # type: ignore[arg-type]
        metrics_for=metrics_for,
    )
    holder["operator"] = operator
    seen = run_passes(operator, clock, admin, until=DEGRADES_AT + ROLLBACK_DUE)
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
    poisoned = admin.get(ROLLOUTS, NAMESPACE, POISONED)
    assert poisoned is not None
    status = poisoned.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    expected = POISONS[kind]
    if expected is None:
        assert status.get("step") == "a" and status.get("blockers"), status
        verdicts = {v["name"]: v for v in status.get("lastVerdicts", [])}
        assert verdicts["errors-low"]["outcome"] == "unknown", status
        assert "no data" in verdicts["errors-low"]["reason"], status
        assert conditions["Reconciled"]["status"] == "True", "a Prometheus answer escaped the tick"
        return
    kind_of_condition, reason = expected
    condition = conditions.get(kind_of_condition) or {}
    assert (condition.get("status"), condition.get("reason")) == ("False", reason), status
    events, _ = admin.list(EVENTS, NAMESPACE)
    assert any(e["reason"] == reason and e["involvedObject"]["name"] == POISONED for e in events), (
        "no Event for the poisoned rollout"
    )
    errors = operator.telemetry.registry.get_sample_value(
        "stage_rollout_rollout_errors_total",
        {
            "namespace": NAMESPACE,
            "rollout": POISONED,
            "kind": "reconcile" if kind == "raising-port" else reason,
        },
    )
    assert errors and errors >= 1
    if kind == "raising-port":
        assert "RuntimeError" in condition["message"]
    else:
        assert admin.get(CONFIGMAPS, NAMESPACE, f"flags-{POISONED}") is None, (
            "a refused rollout wrote its target"
        )


@pytest.mark.parametrize(
    "kind",
    ["url-scheme-prometheus-does-not-speak", "bearer-token-file", "plan-name-that-is-a-path"],
)
def test_poisons_the_api_server_refuses_never_reach_the_operator(
    kube_emulator: Callable[..., KubeEmulator], tmp_path: Path, kind: str
) -> None:
    """The poisons of this test's first version, refused (or pruned) at creation.

    Should the CRD's schema be missing, the operator refuses each too:
    test_prometheus_isolation.py::test_a_spec_that_still_names_a_token_file_is_refused,
    test_a_token_file_named_by_a_rollout_is_never_read_nor_sent, and
    test_tenant_isolation.py::test_a_plan_name_is_never_opened_as_a_file; a URL scheme
    other than http(s) is refused by PrometheusSettings (test_only_http_and_https_urls_are_accepted
    shows the API server's refusal of file://, gopher:// and ftp://)."""
    _emulator, admin, _api = cluster(kube_emulator)
    spec: dict[str, Any] = {
        "plan": {"inline": PLAN},
        "serviceAccountName": ROLLOUT_ACCOUNT,
        "target": {"configMap": f"flags-{POISONED}", "deployments": [f"app-{POISONED}"]},
    }
    if kind == "bearer-token-file":
        token = tmp_path / "no-such-token"
        spec["prometheus"] = {"url": "http://127.0.0.1:9", "bearerTokenFile": str(token)}
        created = admin.create(ROLLOUTS, NAMESPACE, rollout_body(POISONED, spec))
        assert created["spec"]["prometheus"] == {"url": "http://127.0.0.1:9"}, "not pruned"
        return
    if kind == "plan-name-that-is-a-path":
        binary = tmp_path / "plan.bin"
        binary.write_bytes(bytes(range(256)) * 8)
        spec["plan"], field = {"name": str(binary)}, "spec.plan.name"
    else:
        spec["prometheus"], field = (
            {"url": "gopher://prometheus.monitoring:9090"},
            "spec.prometheus.url",
        )
    with pytest.raises(KubeError) as refused:
        admin.create(ROLLOUTS, NAMESPACE, rollout_body(POISONED, spec))
    assert refused.value.status == 422 and field in str(refused.value)
    assert admin.get(ROLLOUTS, NAMESPACE, POISONED) is None
