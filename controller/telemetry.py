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
from collections.abc import Callable, Iterator
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from controller.kube.reconciler import Hooks
from controller.kube.resources import StageRolloutStatus
from controller.redaction import QUIET_LOGGERS, RedactingFilter
from phases.decide import Decision
from phases.status import StepState

ROLLOUT = ("namespace", "rollout")


class RolloutState:
    """What one rollout exports, as plain values (a prometheus_client child per series
    costs a lock and value objects: kilobytes a rollout at 10,000 rollouts)."""

    __slots__ = (
        "baselines",
        "errors",
        "last_tick",
        "percent",
        "stalled",
        "step",
        "transitions",
        "verdicts",
    )

    def __init__(self) -> None:
        self.step: tuple[str, str] | None = None
        self.percent = 0.0
        self.stalled = 0.0
        self.last_tick: float | None = None
        self.verdicts: dict[tuple[str, str, str], float] = {}
        self.transitions: dict[str, float] = {}
        self.errors: dict[str, float] = {}
        self.baselines: dict[tuple[str, str], float] = {}


class RolloutMetrics:
    """The per-rollout series, exported by one collector from plain dicts.

    One lock guards them: ticks run on a thread pool and a scrape reads while they
    write. Counters export `<name>_total` without `_created` samples."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rollouts: dict[tuple[str, str], RolloutState] = {}

    def decided(
        self, namespace: str, name: str, decision: Decision, status: StageRolloutStatus
    ) -> None:
        with self._lock:
            state = self._rollouts.setdefault((namespace, name), RolloutState())
            state.step = (status.step, status.state.value)
            state.percent = float(status.enforcement_percent)
            state.stalled = 1.0 if status.state is StepState.STALLED else 0.0
            state.baselines = {
                (r.signal, r.environment): float(r.value) for r in status.baselines.values()
            }
            if status.last_tick_at is not None:
                state.last_tick = status.last_tick_at.timestamp()
            for record in status.last_verdicts:
                verdict = (record.role, record.name, record.outcome)
                state.verdicts[verdict] = state.verdicts.get(verdict, 0.0) + 1
            for transition in decision.transitions:
                trigger = transition.trigger
                state.transitions[trigger] = state.transitions.get(trigger, 0.0) + 1

    def failed(self, namespace: str, name: str, kind: str) -> None:
        with self._lock:
            state = self._rollouts.setdefault((namespace, name), RolloutState())
            state.errors[kind] = state.errors.get(kind, 0.0) + 1

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._rollouts.pop((namespace, name), None)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            rollouts = [(key, _copy(state)) for key, state in self._rollouts.items()]
        yield from _gauges(rollouts)
        yield from _counters(rollouts)


def _copy(state: RolloutState) -> RolloutState:
    copy = RolloutState()
    for slot in RolloutState.__slots__:
        value = getattr(state, slot)
        setattr(copy, slot, dict(value) if isinstance(value, dict) else value)
    return copy


Snapshot = list[tuple[tuple[str, str], RolloutState]]


def _gauges(rollouts: Snapshot) -> Iterator[Metric]:
    step = GaugeMetricFamily(
        "stage_rollout_step_info",
        "Current step and state (value 1)",
        labels=[*ROLLOUT, "step", "state"],
    )
    percent = GaugeMetricFamily(
        "stage_rollout_enforcement_percent",
        "ENFORCEMENT_PERCENT the rollout holds",
        labels=ROLLOUT,
    )
    last_tick = GaugeMetricFamily(
        "stage_rollout_last_tick_timestamp_seconds",
        "When the rollout was last reconciled (its status is written only when it changes)",
        labels=ROLLOUT,
    )
    stalled = GaugeMetricFamily(
        "stage_rollout_stalled", "1 while the rollout is stalled", labels=ROLLOUT
    )
    baseline = GaugeMetricFamily(
        "stage_rollout_baseline",
        "The baseline a rollout's adaptive thresholds use, by signal and the environment "
        "it was measured in (empty for a pinned one); production alert rules read it",
        labels=[*ROLLOUT, "signal", "environment"],
    )
    for key, state in rollouts:
        if state.step is not None:
            step.add_metric([*key, *state.step], 1)
            percent.add_metric(key, state.percent)
            stalled.add_metric(key, state.stalled)
        if state.last_tick is not None:
            last_tick.add_metric(key, state.last_tick)
        for labels, value in state.baselines.items():
            baseline.add_metric([*key, *labels], value)
    yield from (step, percent, last_tick, stalled, baseline)


def _counters(rollouts: Snapshot) -> Iterator[Metric]:
    verdicts = CounterMetricFamily(
        "stage_rollout_verdicts_total",
        "Gate and trigger verdicts",
        labels=[*ROLLOUT, "role", "name", "outcome"],
    )
    transitions = CounterMetricFamily(
        "stage_rollout_transitions_total", "Transitions by trigger", labels=[*ROLLOUT, "trigger"]
    )
    rollbacks = CounterMetricFamily("stage_rollout_rollbacks_total", "Rollbacks", labels=ROLLOUT)
    errors = CounterMetricFamily(
        "stage_rollout_rollout_errors_total",
        "Failed ticks of one rollout by kind; the other rollouts' ticks go on",
        labels=[*ROLLOUT, "kind"],
    )
    for key, state in rollouts:
        for verdict, count in state.verdicts.items():
            verdicts.add_metric([*key, *verdict], count)
        for trigger, count in state.transitions.items():
            transitions.add_metric([*key, trigger], count)
        if "rollback" in state.transitions:
            rollbacks.add_metric(key, state.transitions["rollback"])
        for kind, count in state.errors.items():
            errors.add_metric([*key, kind], count)
    yield from (verdicts, transitions, rollbacks, errors)


class Telemetry(Hooks):
    """Metrics fed by the reconciler, plus the liveness and readiness the probes read."""

    def __init__(
        self,
        may_write: Callable[[], bool] = lambda: True,
        readiness: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.rollouts = RolloutMetrics()
        self.registry.register(self.rollouts)
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
        self._may_write = may_write
        self._readiness = readiness
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
        self.rollouts.decided(namespace, name, decision, status)
        for record in status.last_verdicts:
            if record.outcome == "unknown" and (
                "Prometheus" in record.reason or "query" in record.reason
            ):
                self.errors.labels("prometheus").inc()

    def failed(self, namespace: str, name: str, kind: str, message: str) -> None:
        self.errors.labels(kind).inc()
        if name:
            self.rollouts.failed(namespace, name, kind)

    def forget(self, namespace: str, name: str) -> None:
        """A deleted rollout's series go with it."""
        self.rollouts.forget(namespace, name)

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
