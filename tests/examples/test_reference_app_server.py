"""The reference app over real HTTP: modes, classification, headers, metrics and knobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from examples.reference_app.server import ENDPOINTS, Faults, ReferenceApp
from examples.reference_app.validation import AppConfig
from tests.support import REPO_ROOT

MakeApp = Callable[..., ReferenceApp]
HTTP = httpx.Client(timeout=5)

STRATEGY = "/api/portfolio/strategies"
SIMULATE = "/api/monte-carlo/simulate"
COMPANIES = "/api/funds/:fundId/companies"
ALLOCATIONS = "/api/allocations"


def distribution(*stages: str) -> dict[str, Any]:
    return {
        "fundId": 1,
        "stageDistribution": [{"stage": s, "weight": 1 / len(stages)} for s in stages],
    }


def post(
    app: ReferenceApp, path: str, body: Any, request_id: str | None = None, method: str = "POST"
) -> httpx.Response:
    headers = {"X-Request-Id": request_id} if request_id else {}
    return HTTP.request(method, app.url + path, json=body, headers=headers)


def sample(app: ReferenceApp, name: str, **labels: str) -> float:
    return app.registry.get_sample_value(name, labels) or 0.0


def validations(app: ReferenceApp, endpoint: str, operation: str, mode: str, result: str) -> float:
    return sample(
        app,
        "stage_validation_validations_total",
        endpoint=endpoint,
        operation=operation,
        mode=mode,
        result=result,
    )


def test_off_mode_validates_nothing(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="off"))
    response = post(app, STRATEGY, distribution("nonsense"))
    assert response.status_code == 201
    assert not any(name.lower().startswith("x-stage-") for name in response.headers)
    assert sample(app, "stage_validation_duration_seconds_count", endpoint=STRATEGY) == 0
    assert sample(app, "http_requests_total", endpoint=STRATEGY, method="POST", code="201") == 1


def test_warn_mode_allows_invalid_stages_with_warning_headers(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="warn"))
    response = post(app, SIMULATE, distribution("late-stage", "growth", "invalid", "seed"))
    assert response.status_code == 200
    assert response.headers["X-Stage-Deprecated-Variants"] == "late-stage,growth"
    assert response.headers["X-Stage-Unknown-Stages"] == "invalid"
    assert "X-Stage-Warning" in response.headers
    assert "X-Stage-Would-Reject" not in response.headers
    assert [s["normalized"] for s in response.json()["stages"]] == [
        "series-c+",
        "series-c+",
        None,
        "seed",
    ]
    assert validations(app, SIMULATE, "read", "warn", "warn") == 1
    assert sample(app, "stage_warn_unknown_total", endpoint=SIMULATE) == 1


def test_warn_mode_counts_canonical_requests_as_ok(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="warn"))
    response = post(app, ALLOCATIONS, {"fundId": 3, "stage": "series-b"})
    assert response.status_code == 201
    assert "X-Stage-Warning" not in response.headers
    assert validations(app, ALLOCATIONS, "write", "warn", "ok") == 1
    assert sample(app, "stage_warn_unknown_total", endpoint=ALLOCATIONS) == 0


def test_enforce_mode_rejects_invalid_stages_with_400(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="enforce"))
    response = post(app, STRATEGY, distribution("Series A", "seed"))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_stage"
    assert body["invalidStages"] == ["Series A"]
    assert body["suggestions"] == {"Series A": "series-a"}
    assert validations(app, STRATEGY, "write", "enforce", "reject") == 1
    assert sample(app, "stage_validation_errors_total", endpoint=STRATEGY, reason="rejected") == 1
    assert sample(app, "http_requests_total", endpoint=STRATEGY, method="POST", code="400") == 1


def test_enforce_mode_accepts_canonical_stages(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="enforce"))
    assert post(app, STRATEGY, distribution("series-c+"), method="PUT").status_code == 200
    assert post(app, STRATEGY, distribution("series-c+"), method="PATCH").status_code == 200
    assert validations(app, STRATEGY, "write", "enforce", "ok") == 2


def test_write_only_enforces_writes_and_warns_reads(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="warn", enforce_write_only=True, enforcement_percent=0))
    for method in ("POST", "PUT", "PATCH"):
        assert post(app, STRATEGY, distribution("growth"), method=method).status_code == 400
        assert post(app, ALLOCATIONS, {"stage": "growth"}, method=method).status_code == 400
    assert post(app, SIMULATE, distribution("growth")).status_code == 200
    read = HTTP.get(app.url + "/api/funds/7/companies", params={"stage": "growth"})
    assert read.status_code == 200
    assert read.headers["X-Stage-Deprecated-Variants"] == "growth"
    assert validations(app, STRATEGY, "write", "enforce", "reject") == 3
    assert validations(app, ALLOCATIONS, "write", "enforce", "reject") == 3
    assert validations(app, SIMULATE, "read", "warn", "warn") == 1
    assert validations(app, COMPANIES, "read", "warn", "warn") == 1


def test_dry_run_reports_what_enforcement_would_reject(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="warn", dry_run=True))
    response = post(app, SIMULATE, distribution("late-stage", "growth"))
    assert response.status_code == 200
    assert response.headers["X-Stage-Would-Reject"] == "true"
    assert response.headers["X-Stage-Deprecated-Variants"] == "late-stage,growth"
    assert response.headers["X-Stage-Recommendation"]
    assert response.headers["X-Stage-Docs"].startswith("https://")
    created = post(app, STRATEGY, distribution("invalid"))
    assert created.status_code == 201
    assert created.headers["X-Stage-Would-Reject"] == "true"
    assert validations(app, SIMULATE, "read", "warn", "would_reject") == 1
    assert validations(app, STRATEGY, "write", "warn", "would_reject") == 1
    assert sample(app, "stage_validation_errors_total", endpoint=SIMULATE, reason="rejected") == 0
    valid = post(app, SIMULATE, distribution("seed"))
    assert "X-Stage-Would-Reject" not in valid.headers


def test_percent_rollout_decides_by_request_id(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="enforce", enforcement_percent=50))
    outcomes: dict[str, int] = {}
    for n in range(60):
        request_id = f"client-{n}"
        outcomes[request_id] = post(app, SIMULATE, distribution("growth"), request_id).status_code
    assert set(outcomes.values()) == {200, 400}
    for request_id, status in list(outcomes.items())[:20]:
        assert post(app, SIMULATE, distribution("growth"), request_id).status_code == status
    enforced = validations(app, SIMULATE, "read", "enforce", "reject")
    warned = validations(app, SIMULATE, "read", "warn", "warn")
    assert enforced + warned == 80


def test_a_request_without_id_gets_one(reference_app: MakeApp) -> None:
    app = reference_app()
    first = post(app, SIMULATE, distribution("seed")).headers["X-Request-Id"]
    second = post(app, SIMULATE, distribution("seed")).headers["X-Request-Id"]
    assert first and second and first != second
    assert post(app, SIMULATE, distribution("seed"), "mine").headers["X-Request-Id"] == "mine"


def test_client_stages_cannot_inject_headers(reference_app: MakeApp) -> None:
    app = reference_app()
    response = post(app, SIMULATE, distribution("bad\r\nSet-Cookie: x=1", "ünïcode"))
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert (
        response.headers["X-Stage-Unknown-Stages"]
        == "bad%0D%0ASet-Cookie%3A x%3D1,%C3%BCn%C3%AFcode"
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", SIMULATE, "not json", 400),
        ("POST", SIMULATE, ["a list"], 400),
        ("POST", SIMULATE, {"stageDistribution": "seed"}, 400),
        ("GET", "/api/allocations", None, 405),
        ("POST", "/api/unknown", {}, 404),
    ],
)
def test_malformed_requests_are_answered_clearly(
    reference_app: MakeApp, method: str, path: str, body: Any, status: int
) -> None:
    app = reference_app(AppConfig(mode="enforce"))
    content = body if isinstance(body, str) else json.dumps(body)
    response = HTTP.request(method, app.url + path, content=content)
    assert response.status_code == status
    assert response.json()["message"]
    assert sample(app, "stage_validation_duration_seconds_count", endpoint=SIMULATE) == 0


def test_metrics_endpoint_exposes_every_series_with_its_labels(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="warn", enforce_write_only=True, enforcement_percent=10))
    post(app, STRATEGY, distribution("invalid"))
    post(app, SIMULATE, distribution("invalid"))
    text = HTTP.get(app.url + "/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    label_sets = {name: labels for name, labels in samples}
    assert label_sets["stage_validation_validations_total"] == (
        "endpoint",
        "mode",
        "operation",
        "result",
    )
    assert label_sets["stage_validation_errors_total"] == ("endpoint", "reason")
    assert label_sets["stage_validation_duration_seconds_bucket"] == ("endpoint", "le")
    assert label_sets["stage_warn_unknown_total"] == ("endpoint",)
    assert label_sets["http_requests_total"] == ("code", "endpoint", "method")
    assert label_sets["stage_validation_mode"] == ("mode",)
    for name in (
        "stage_validation_enforcement_percent",
        "stage_validation_dry_run",
        "stage_validation_enforce_write_only",
        "stage_validation_mode_fetch_errors_total",
    ):
        assert label_sets[name] == ()
    assert 'le="0.0005"' in text and 'le="0.001"' in text and 'le="0.05"' in text
    for endpoint in ENDPOINTS:
        assert (
            app.registry.get_sample_value(
                "stage_validation_errors_total", {"endpoint": endpoint, "reason": "internal"}
            )
            == 0
        )


def test_flag_gauges_follow_set_config(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="warn"))

    def gauges() -> dict[str, float]:
        return {
            mode: sample(app, "stage_validation_mode", mode=mode)
            for mode in ("off", "warn", "enforce")
        } | {
            "percent": sample(app, "stage_validation_enforcement_percent"),
            "dry_run": sample(app, "stage_validation_dry_run"),
            "write_only": sample(app, "stage_validation_enforce_write_only"),
        }

    assert gauges() == {
        "off": 0,
        "warn": 1,
        "enforce": 0,
        "percent": 100,
        "dry_run": 0,
        "write_only": 0,
    }
    app.set_config(
        AppConfig(mode="enforce", enforcement_percent=25, dry_run=True, enforce_write_only=True)
    )
    assert gauges() == {
        "off": 0,
        "warn": 0,
        "enforce": 1,
        "percent": 25,
        "dry_run": 1,
        "write_only": 1,
    }


def test_admin_config_changes_flags_and_refuses_bad_ones(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="warn"))
    changed = HTTP.post(
        app.url + "/admin/config",
        json={"STAGE_VALIDATION_MODE": "enforce", "ENFORCEMENT_PERCENT": 10},
        timeout=5,
    )
    assert changed.status_code == 200
    assert changed.json()["ENFORCEMENT_PERCENT"] == "10"
    assert app.config == AppConfig(mode="enforce", enforcement_percent=10)
    refused = HTTP.post(app.url + "/admin/config", json={"ENFORCEMENT_PERCENT": 250})
    assert refused.status_code == 400
    assert "ENFORCEMENT_PERCENT" in refused.json()["message"]
    assert app.config.enforcement_percent == 10


def test_injected_internal_errors_fail_validated_requests(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="warn"), faults=Faults(internal_error_fraction=1.0))
    response = post(app, SIMULATE, distribution("seed"))
    assert response.status_code == 500
    assert sample(app, "stage_validation_errors_total", endpoint=SIMULATE, reason="internal") == 1
    assert validations(app, SIMULATE, "read", "warn", "ok") == 1


def test_internal_error_fraction_is_roughly_respected(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="warn"), faults=Faults(internal_error_fraction=0.3), seed=3)
    statuses = [post(app, SIMULATE, distribution("seed")).status_code for _ in range(200)]
    assert 40 <= statuses.count(500) <= 80


def test_injected_latency_shows_in_the_duration_histogram(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="warn"))
    response = HTTP.post(app.url + "/admin/faults", json={"latency_seconds": 0.02})
    assert response.json()["latency_seconds"] == 0.02
    started = time.perf_counter()
    post(app, SIMULATE, distribution("seed"))
    assert time.perf_counter() - started >= 0.02
    fast = sample(app, "stage_validation_duration_seconds_bucket", endpoint=SIMULATE, le="0.01")
    assert fast == 0
    assert (
        sample(app, "stage_validation_duration_seconds_bucket", endpoint=SIMULATE, le="0.025") == 1
    )


def test_a_failing_mode_fetch_counts_errors_and_keeps_the_last_flags(
    reference_app: MakeApp,
) -> None:
    app = reference_app(AppConfig(mode="warn"))
    app.update_faults(mode_fetch_failing=True)
    app.set_config(AppConfig(mode="enforce"))
    assert post(app, SIMULATE, distribution("growth")).status_code == 200
    assert post(app, SIMULATE, distribution("growth")).status_code == 200
    assert sample(app, "stage_validation_mode_fetch_errors_total") == 2
    assert sample(app, "stage_validation_mode", mode="warn") == 1
    app.update_faults(mode_fetch_failing=False)
    assert sample(app, "stage_validation_mode", mode="enforce") == 1
    assert post(app, SIMULATE, distribution("growth")).status_code == 400
    assert sample(app, "stage_validation_mode_fetch_errors_total") == 2


@pytest.mark.parametrize(
    "knobs",
    [
        {"latency_seconds": -1},
        {"internal_error_fraction": 2},
        {"mode_fetch_failing": "yes"},
        {"typo": 1},
    ],
)
def test_bad_fault_knobs_are_refused(reference_app: MakeApp, knobs: dict[str, Any]) -> None:
    app = reference_app()
    response = HTTP.post(app.url + "/admin/faults", json=knobs)
    assert response.status_code == 400
    assert response.json()["message"]
    assert app.faults == Faults()


def test_the_app_stops_and_frees_its_port() -> None:
    app = ReferenceApp().start()
    url = app.url
    assert HTTP.get(url + "/healthz").status_code == 200
    app.stop()
    with pytest.raises(httpx.TransportError):
        HTTP.get(url + "/healthz", timeout=1)


def run_module(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "examples.reference_app.server", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_command_refuses_a_bad_flag_with_a_clear_message() -> None:
    process = run_module(["--port", "0"], {"STAGE_VALIDATION_MODE": "strict"})
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "STAGE_VALIDATION_MODE must be one of off, warn, enforce, not 'strict'" in stderr


def test_the_command_serves_on_a_free_port_until_terminated() -> None:
    process = run_module(
        ["--port", "0"], {"STAGE_VALIDATION_MODE": "enforce", "ENFORCEMENT_PERCENT": "100"}
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        port = int(line.split("port=")[1].split()[0])
        response = HTTP.post(
            f"http://127.0.0.1:{port}/api/allocations", json={"stage": "growth"}, timeout=5
        )
        assert response.status_code == 400
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
