"""A small HTTP service that behaves like the runbook's API server.

The controller's gates read Prometheus series that only a running application
produces. This app produces them for real: it classifies requests as reads or
writes like the runbook's table, validates their stages under the four flags, and
exports the metrics the runbook's queries and our rules use. Knobs that a test can
turn while it runs (extra latency, internal errors, a failing mode fetch) make the
signals move on demand.

Run it with ``python -m examples.reference_app.server --port 0``; tests start it
in-process with `ReferenceApp`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Self, cast
from urllib.parse import parse_qs, quote, urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .validation import (
    CANONICAL_STAGES,
    ENDPOINT_MODES_ENV,
    MODES,
    AppConfig,
    ConfigError,
    Operation,
    Verdict,
    judge,
)

DOCS_URL = "https://api.example.invalid/docs/stage-normalization"
MAX_BODY_BYTES = 1 << 20

# Fine around the thresholds the runbook names: 0.5 ms, 1 ms (canary p99),
# 5 ms (baseline p99) and 50 ms (latency spike), so histogram_quantile
# interpolates over short spans near each of them.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0004,
    0.0005,
    0.0006,
    0.00075,
    0.001,
    0.0015,
    0.0025,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.04,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


@dataclass(frozen=True)
class Route:
    """One API endpoint: its label in metrics, its path, and how each method is classified."""

    endpoint: str
    path: re.Pattern[str]
    methods: Mapping[str, Operation]


ROUTES: tuple[Route, ...] = (
    Route(
        "/api/portfolio/strategies",
        re.compile(r"/api/portfolio/strategies/?"),
        {"POST": "write", "PUT": "write", "PATCH": "write"},
    ),
    Route(
        "/api/monte-carlo/simulate", re.compile(r"/api/monte-carlo/simulate/?"), {"POST": "read"}
    ),
    Route(
        "/api/funds/:fundId/companies",
        re.compile(r"/api/funds/[^/]+/companies/?"),
        {"GET": "read"},
    ),
    Route(
        "/api/allocations",
        re.compile(r"/api/allocations/?"),
        {"POST": "write", "PUT": "write", "PATCH": "write"},
    ),
)
ENDPOINTS: tuple[str, ...] = tuple(route.endpoint for route in ROUTES)
UNMATCHED_ENDPOINT = "unmatched"


def check_endpoints(config: AppConfig) -> None:
    """An endpoint override must name one of the app's endpoints (as its metrics label it)."""
    for endpoint, _mode in config.endpoint_modes:
        if endpoint not in ENDPOINTS:
            raise ConfigError(
                f"{ENDPOINT_MODES_ENV} names {endpoint!r}, which is not an endpoint of the app "
                f"({', '.join(ENDPOINTS)})"
            )


class BadRequest(ValueError):
    """A request or knob payload the app cannot make sense of; answered with 400."""


@dataclass(frozen=True)
class Faults:
    """Test knobs that degrade the app on purpose.

    `latency_seconds` is added to every validation, `internal_error_fraction` of
    the requests that pass validation fail with 500, and while `mode_fetch_failing`
    holds every request's mode fetch (Redis, in the runbook) fails and the app keeps
    its last fetched flags.
    """

    latency_seconds: float = 0.0
    internal_error_fraction: float = 0.0
    mode_fetch_failing: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.latency_seconds <= 60.0:
            raise BadRequest(f"latency_seconds must be from 0 to 60, not {self.latency_seconds}")
        if not 0.0 <= self.internal_error_fraction <= 1.0:
            raise BadRequest(
                f"internal_error_fraction must be from 0 to 1, not {self.internal_error_fraction}"
            )

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with some knobs changed, checking names and types like an API would."""
        known = {"latency_seconds", "internal_error_fraction", "mode_fetch_failing"}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise BadRequest(f"unknown fault knobs {unknown}; known: {sorted(known)}")
        for name in ("latency_seconds", "internal_error_fraction"):
            value = changes.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadRequest(f"{name} must be a number, not {value!r}")
        if not isinstance(changes.get("mode_fetch_failing", False), bool):
            raise BadRequest("mode_fetch_failing must be true or false")
        return replace(self, **changes)


class StageMetrics:
    """The app's Prometheus series, in a registry of its own so that apps can run side by side."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.validations = Counter(
            "stage_validation_validations",
            "Requests whose stages were validated, by effective mode and result.",
            ["endpoint", "operation", "mode", "result"],
            registry=registry,
        )
        self.errors = Counter(
            "stage_validation_errors",
            "Validated requests that failed: rejected by enforcement, or an internal error.",
            ["endpoint", "reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "stage_validation_duration_seconds",
            "Time spent validating the stages of one request.",
            ["endpoint"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.unknown = Counter(
            "stage_warn_unknown",
            "Validated requests carrying at least one unknown stage.",
            ["endpoint"],
            registry=registry,
        )
        self.requests = Counter(
            "http_requests",
            "API requests answered, by endpoint, method and status code.",
            ["endpoint", "method", "code"],
            registry=registry,
        )
        self.mode = Gauge(
            "stage_validation_mode",
            "1 for the validation mode the app runs in, 0 for the others.",
            ["mode"],
            registry=registry,
        )
        self.percent = Gauge(
            "stage_validation_enforcement_percent",
            "Share of requests enforce mode enforces, in percent.",
            registry=registry,
        )
        self.dry_run = Gauge(
            "stage_validation_dry_run", "1 while shadow enforcement is on.", registry=registry
        )
        self.write_only = Gauge(
            "stage_validation_enforce_write_only",
            "1 while writes are enforced and reads only warned.",
            registry=registry,
        )
        self.mode_fetch_errors = Counter(
            "stage_validation_mode_fetch_errors",
            "Failed fetches of the validation mode from the flag store.",
            registry=registry,
        )
        # Series that exist from the start read as 0 instead of "no data".
        for endpoint in ENDPOINTS:
            self.unknown.labels(endpoint)
            for reason in ("rejected", "internal"):
                self.errors.labels(endpoint, reason)

    def show_config(self, config: AppConfig) -> None:
        for mode in MODES:
            self.mode.labels(mode).set(1 if mode == config.mode else 0)
        self.percent.set(config.enforcement_percent)
        self.dry_run.set(1 if config.dry_run else 0)
        self.write_only.set(1 if config.enforce_write_only else 0)


@dataclass(frozen=True)
class Reply:
    """What the HTTP layer sends back."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str]


class ReferenceApp:
    """The app: its flags, fault knobs and metrics, and an HTTP server to run it on.

    `start` serves on a background thread (port 0 picks a free port); `stop` shuts
    the server down and waits for requests in flight. `set_config` and `set_faults`
    change behaviour while it runs, as do ``POST /admin/config`` and
    ``POST /admin/faults``.
    """

    def __init__(
        self,
        config: AppConfig | None = None,
        *,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        access_log: bool = False,
    ) -> None:
        self.registry = CollectorRegistry()
        self.metrics = StageMetrics(self.registry)
        self._lock = threading.Lock()
        check_endpoints(config or AppConfig())
        self._wanted = config or AppConfig()
        self._active = self._wanted
        self._faults = faults or Faults()
        self._random = random.Random(seed)
        self._host = host
        self._port = port
        self.access_log = access_log
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.metrics.show_config(self._active)

    @property
    def config(self) -> AppConfig:
        """The flags requests are validated with now (the last ones fetched)."""
        with self._lock:
            return self._active

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the app is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def set_config(self, config: AppConfig) -> None:
        """Publish new flags; they apply at once unless the mode fetch is failing."""
        check_endpoints(config)
        with self._lock:
            self._wanted = config
            if not self._faults.mode_fetch_failing:
                self._apply(config)

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self._install(faults)

    def update_faults(self, **changes: Any) -> Faults:
        """Change some fault knobs, keep the others; returns the knobs now in force."""
        with self._lock:
            faults = self._faults.updated(changes)
            self._install(faults)
            return faults

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the app is already running")
        self._server = _Server((self._host, self._port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"reference-app-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _install(self, faults: Faults) -> None:
        # The caller holds the lock. A fetch that works again picks up the wanted flags.
        self._faults = faults
        if not faults.mode_fetch_failing:
            self._apply(self._wanted)

    def _apply(self, config: AppConfig) -> None:
        self._active = config
        self.metrics.show_config(config)

    def _fetch(self) -> tuple[AppConfig, Faults]:
        """The runbook's per-request mode fetch; on failure the last fetched flags stay."""
        with self._lock:
            if self._faults.mode_fetch_failing:
                self.metrics.mode_fetch_errors.inc()
            return self._active, self._faults

    def _draw(self) -> float:
        with self._lock:
            return self._random.random()

    def handle_api(
        self, route: Route, method: str, request_id: str, stages: Sequence[str]
    ) -> Reply:
        """Validate one API request and decide the reply, counting everything on the way."""
        operation = route.methods[method]
        config, faults = self._fetch()
        started = time.perf_counter()
        verdict = judge(
            config,
            operation=operation,
            request_id=request_id,
            stages=stages,
            endpoint=route.endpoint,
        )
        if verdict.result is not None:
            if faults.latency_seconds > 0:
                time.sleep(faults.latency_seconds)
            self.metrics.duration.labels(route.endpoint).observe(time.perf_counter() - started)
            self.metrics.validations.labels(
                route.endpoint, operation, verdict.mode, verdict.result
            ).inc()
            if verdict.unknown:
                self.metrics.unknown.labels(route.endpoint).inc()
        headers = {"X-Request-Id": request_id, **_stage_headers(verdict)}
        if verdict.rejected:
            self.metrics.errors.labels(route.endpoint, "rejected").inc()
            return Reply(HTTPStatus.BAD_REQUEST, _rejection(verdict), headers)
        if faults.internal_error_fraction > 0 and self._draw() < faults.internal_error_fraction:
            self.metrics.errors.labels(route.endpoint, "internal").inc()
            failure = {"error": "internal", "message": "injected fault", "requestId": request_id}
            return Reply(HTTPStatus.INTERNAL_SERVER_ERROR, failure, headers)
        status = HTTPStatus.CREATED if method == "POST" and operation == "write" else HTTPStatus.OK
        body: dict[str, Any] = {
            "requestId": request_id,
            "endpoint": route.endpoint,
            "operation": operation,
            "mode": verdict.mode,
            "stages": [{"stage": c.stage, "normalized": c.canonical} for c in verdict.checks],
        }
        return Reply(status, body, headers)


def _header_text(values: Sequence[str]) -> str:
    # Stages come from clients: percent-encode anything that could break a header.
    return ",".join(quote(value, safe=" +-_.()") for value in values)


def _stage_headers(verdict: Verdict) -> dict[str, str]:
    if verdict.result not in ("warn", "would_reject"):
        return {}
    headers = {"X-Stage-Docs": DOCS_URL}
    if verdict.deprecated:
        headers["X-Stage-Deprecated-Variants"] = _header_text([c.stage for c in verdict.deprecated])
    if verdict.unknown:
        headers["X-Stage-Unknown-Stages"] = _header_text([c.stage for c in verdict.unknown])
    if verdict.result == "warn":
        headers["X-Stage-Warning"] = (
            "non-canonical stages accepted; they will be rejected once enforced"
        )
    else:
        headers["X-Stage-Would-Reject"] = "true"
        headers["X-Stage-Recommendation"] = (
            "Send canonical stages before enforcement starts; X-Stage-Docs explains the migration."
        )
    return headers


def _rejection(verdict: Verdict) -> dict[str, Any]:
    invalid = [c for c in verdict.checks if c.status != "canonical"]
    return {
        "error": "invalid_stage",
        "message": "stages must be canonical: " + ", ".join(CANONICAL_STAGES),
        "invalidStages": [c.stage for c in invalid],
        "suggestions": {c.stage: c.canonical for c in invalid if c.canonical is not None},
        "docs": DOCS_URL,
    }


def stages_from_body(body: Any) -> list[str]:
    """The stages a JSON body carries: a top-level `stage` and `stageDistribution[].stage`."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    stages: list[str] = []
    if "stage" in body:
        stages.append(_stage_text(body["stage"]))
    distribution = body.get("stageDistribution")
    if distribution is not None:
        if not isinstance(distribution, list):
            raise BadRequest("stageDistribution must be a list of {stage, weight} objects")
        for item in distribution:
            if not isinstance(item, dict) or "stage" not in item:
                raise BadRequest("every stageDistribution item needs a stage")
            stages.append(_stage_text(item["stage"]))
    return stages


def _stage_text(value: Any) -> str:
    # A stage that is not a string is just another unknown stage.
    return value if isinstance(value, str) else json.dumps(value)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections under load bursts, and a dropped
    # SYN costs the client a one-second retransmission.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], app: ReferenceApp
    ) -> None:
        self.app = app
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server_version = "stage-reference-app/1"

    @property
    def app(self) -> ReferenceApp:
        return cast(_Server, self.server).app

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.access_log:
            super().log_message(format, *args)

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        try:
            if parts.path == "/metrics" and method == "GET":
                self._send_bytes(200, generate_latest(self.app.registry), CONTENT_TYPE_LATEST)
            elif parts.path == "/healthz" and method == "GET":
                self._send_json(200, {"status": "ok"})
            elif parts.path.startswith("/admin/"):
                self._admin(method, parts.path)
            else:
                self._api(method, parts.path, parts.query)
        except BadRequest as error:
            self._send_json(400, {"error": "bad_request", "message": str(error)})

    def _api(self, method: str, path: str, query: str) -> None:
        route = next((r for r in ROUTES if r.path.fullmatch(path)), None)
        if route is None:
            self._count(UNMATCHED_ENDPOINT, method, 404)
            self._send_json(404, {"error": "not_found", "message": f"no endpoint {path}"})
            return
        if method not in route.methods:
            self._count(route.endpoint, method, 405)
            allowed = ", ".join(route.methods)
            self._send_json(405, {"error": "method_not_allowed", "message": f"use {allowed}"})
            return
        try:
            if method == "GET":
                stages = parse_qs(query).get("stage", [])
            else:
                stages = stages_from_body(self._read_json())
        except BadRequest:
            self._count(route.endpoint, method, 400)
            raise
        request_id = self.headers.get("X-Request-Id") or uuid.uuid4().hex
        reply = self.app.handle_api(route, method, request_id, stages)
        self._count(route.endpoint, method, reply.status)
        self._send_json(reply.status, reply.body, reply.headers)

    def _admin(self, method: str, path: str) -> None:
        app = self.app
        if path == "/admin/faults":
            if method == "POST":
                app.update_faults(**self._read_object())
            self._send_json(200, asdict(app.faults))
        elif path == "/admin/config":
            if method == "POST":
                changes = {key: _env_text(value) for key, value in self._read_object().items()}
                try:
                    app.set_config(AppConfig.from_env(app.config.to_env() | changes))
                except ConfigError as error:
                    raise BadRequest(str(error)) from None
            self._send_json(200, app.config.to_env())
        else:
            self._send_json(404, {"error": "not_found", "message": f"no admin endpoint {path}"})

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise BadRequest(f"request body larger than {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise BadRequest("the request body is not valid JSON") from None

    def _read_object(self) -> dict[str, Any]:
        body = self._read_json()
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def _count(self, endpoint: str, method: str, status: int) -> None:
        self.app.metrics.requests.labels(endpoint, method, str(int(status))).inc()

    def _send_json(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        payload = json.dumps(body).encode()
        self._send_bytes(status, payload, "application/json", headers)

    def _send_bytes(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, with the flags taken from the environment."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.reference_app.server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=3333, help="port; 0 picks a free one")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    try:
        config = AppConfig.from_env(os.environ)
        check_endpoints(config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    app = ReferenceApp(config, host=args.host, port=args.port, access_log=args.access_log)
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with app:
        flags = " ".join(f"{k}={v}" for k, v in config.to_env().items())
        print(f"listening on {app.url} port={app.port} {flags}", flush=True)
        while not stopping.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
