"""The operator's own metrics, health endpoints and JSON logs.

`/metrics` exposes step and percent per rollout, its baselines, verdicts,
transitions and rollbacks, reconcile durations, Prometheus and API errors and leadership;
`/healthz` answers while the tick loop is alive, `/readyz` while the operator is
ready to lead (its rule, given as `readiness`; by default once rollouts were
listed). Logs are one JSON object per line with the rollout, step and reason
wherever they are known; the chatter of the libraries underneath (a line per state
change of `transitions`, per scheduled run of APScheduler) is kept at WARNING unless
the level is debug.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from controller.kube.reconciler import Hooks
from controller.kube.resources import StageRolloutStatus
from controller.redaction import QUIET_LOGGERS, RedactingFilter
from phases.decide import Decision
from phases.status import StepState


class Telemetry(Hooks):
    """Metrics fed by the reconciler, plus the liveness and readiness the probes read."""

    def __init__(
        self,
        may_write: Callable[[], bool] = lambda: True,
        readiness: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        labels = ["namespace", "rollout"]
        self.step = Gauge(
            "stage_rollout_step_info",
            "Current step and state (value 1)",
            [*labels, "step", "state"],
            registry=self.registry,
        )
        self.percent = Gauge(
            "stage_rollout_enforcement_percent",
            "ENFORCEMENT_PERCENT the rollout holds",
            labels,
            registry=self.registry,
        )
        self.last_tick = Gauge(
            "stage_rollout_last_tick_timestamp_seconds",
            "When the rollout was last reconciled (its status is written only when it changes)",
            labels,
            registry=self.registry,
        )
        self.stalled = Gauge(
            "stage_rollout_stalled",
            "1 while the rollout is stalled",
            labels,
            registry=self.registry,
        )
        self.verdicts = Counter(
            "stage_rollout_verdicts_total",
            "Gate and trigger verdicts",
            [*labels, "role", "name", "outcome"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "stage_rollout_transitions_total",
            "Transitions by trigger",
            [*labels, "trigger"],
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "stage_rollout_rollbacks_total", "Rollbacks", labels, registry=self.registry
        )
        self.reconcile_seconds = Histogram(
            "stage_rollout_reconcile_duration_seconds",
            "Time of one reconcile",
            registry=self.registry,
        )
        self.errors = Counter(
            "stage_rollout_errors_total",
            "Failed ticks by kind (api, prometheus, reconcile, SpecInvalid, PlanInvalid)",
            ["kind"],
            registry=self.registry,
        )
        self.rollout_errors = Counter(
            "stage_rollout_rollout_errors_total",
            "Failed ticks of one rollout by kind; the other rollouts' ticks go on",
            [*labels, "kind"],
            registry=self.registry,
        )
        self.records_trusted = Gauge(
            "stage_rollout_records_trusted",
            "1 while approvals and commands count: the admission policies are installed and "
            "unchanged (or the operator was told to trust records without them)",
            registry=self.registry,
        )
        self.leader = Gauge(
            "stage_rollout_leader",
            "1 while this replica holds the leader Lease",
            registry=self.registry,
        )
        self.baseline = Gauge(
            "stage_rollout_baseline",
            "The baseline a rollout's adaptive thresholds use, by signal and the environment "
            "it was measured in (empty for a pinned one); production alert rules read it",
            [*labels, "signal", "environment"],
            registry=self.registry,
        )
        self._baselines: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._may_write = may_write
        self._readiness = readiness
        self._steps: dict[tuple[str, str], tuple[str, str]] = {}
        self.alive = threading.Event()
        self.ready = threading.Event()

    def may_write(self) -> bool:
        return self._may_write()

    def readiness(self) -> tuple[bool, str]:
        """(ready, why) for /readyz: the operator's own rule, or "rollouts listed once"."""
        if self._readiness is not None:
            return self._readiness()
        if self.ready.is_set():
            return True, "ok"
        return False, "rollouts not listed yet"

    def decided(
        self, namespace: str, name: str, decision: Decision, status: StageRolloutStatus
    ) -> None:
        key = (namespace, name)
        previous = self._steps.get(key)
        current = (status.step, status.state.value)
        if previous and previous != current:
            self.step.remove(namespace, name, *previous)
        self._steps[key] = current
        self.step.labels(namespace, name, *current).set(1)
        self.percent.labels(namespace, name).set(status.enforcement_percent)
        self.stalled.labels(namespace, name).set(1 if status.state is StepState.STALLED else 0)
        self._export_baselines(namespace, name, status)
        if status.last_tick_at is not None:
            self.last_tick.labels(namespace, name).set(status.last_tick_at.timestamp())
        for record in status.last_verdicts:
            self.verdicts.labels(namespace, name, record.role, record.name, record.outcome).inc()
            if record.outcome == "unknown" and (
                "Prometheus" in record.reason or "query" in record.reason
            ):
                self.errors.labels("prometheus").inc()
        for transition in decision.transitions:
            self.transitions.labels(namespace, name, transition.trigger).inc()
            if transition.trigger == "rollback":
                self.rollbacks.labels(namespace, name).inc()

    def _export_baselines(self, namespace: str, name: str, status: StageRolloutStatus) -> None:
        """One series per baseline the status holds; a baseline gone takes its series along."""
        current = {(r.signal, r.environment): r.value for r in status.baselines.values()}
        for gone in self._baselines.get((namespace, name), set()) - current.keys():
            self.baseline.remove(namespace, name, *gone)
        for (signal, environment), value in current.items():
            self.baseline.labels(namespace, name, signal, environment).set(value)
        self._baselines[(namespace, name)] = set(current)

    def failed(self, namespace: str, name: str, kind: str, message: str) -> None:
        self.errors.labels(kind).inc()
        if name:
            self.rollout_errors.labels(namespace, name, kind).inc()

    def leadership(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        """Start /metrics, /healthz and /readyz on a daemon thread."""
        telemetry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    self._send(200, generate_latest(telemetry.registry), CONTENT_TYPE_LATEST)
                elif self.path.startswith("/healthz"):
                    ok = telemetry.alive.is_set()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"tick loop not running\n")
                elif self.path.startswith("/readyz"):
                    ok, why = telemetry.readiness()
                    self._send(200 if ok else 503, f"{why}\n".encode())
                else:
                    self._send(404, b"not found\n")

            def _send(
                self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="telemetry", daemon=True).start()
        return server


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any rollout context."""

    CONTEXT = ("rollout", "step", "reason", "namespace")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in self.CONTEXT:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, default=str)


QUIET_LIBRARIES = ("transitions", "apscheduler")
"""Libraries whose INFO lines (every state change, every scheduled run) are chatter.

The HTTP libraries (urllib3, kubernetes, httpx…) are held at WARNING by
`redaction.QUIET_LOGGERS` at every level, debug included."""


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """JSON logs on stderr (or `stream`), secrets redacted (see `redaction`).

    The QUIET_LIBRARIES log at WARNING unless `level` is debug; the HTTP libraries stay
    at WARNING at any level, since their debug lines carry headers and bodies."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    libraries = max(root.level, logging.WARNING) if root.level > logging.DEBUG else logging.DEBUG
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(libraries)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
