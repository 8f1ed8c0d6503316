"""The in-cluster operator: scheduled ticks, watches, leadership and telemetry together.

APScheduler runs the pass over all rollouts on a fixed period without overlap
(`max_instances=1`, missed runs coalesced); each rollout is reconciled when its
own interval is due. Before a pass reconciles anything, the Prometheus windows
every due rollout needs are prefetched together, so identical queries from many
rollouts are sent once. Watches on StageRollouts (spec changes), StageApprovals
and StageCommands trigger an immediate tick for the rollout concerned, which is
how an approval of a ready step promotes within a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as SchedulerPool
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from controller.clock import SystemClock
from controller.kube.api import APPROVALS, COMMANDS, ROLLOUTS, Kind, KubeApi, KubeError
from controller.kube.leadership import LeaderElector
from controller.kube.reconciler import Outcome, Reconciler
from controller.kube.resources import StageRolloutSpec
from controller.notifications import Notifier
from controller.observing import window_requests
from controller.ports import MetricsSource, WindowRequest
from controller.prometheus.source import PrometheusSettings, PrometheusSource
from controller.telemetry import Telemetry
from phases.needs import AlertReading
from phases.plan import Plan
from phases.verdicts import AlertHistory, WindowSummary

log = logging.getLogger("stage_rollout.operator")
WATCHED: tuple[Kind, ...] = (ROLLOUTS, APPROVALS, COMMANDS)
"""Kinds listed and watched by `watch_loop` (RBAC grants them list and watch)."""


@dataclass(frozen=True)
class OperatorSettings:
    """Everything `stagectl run` was told, validated once."""

    namespace: str | None = None
    prometheus_url: str | None = None
    interval: timedelta = timedelta(seconds=30)
    granularity: timedelta = timedelta(seconds=5)
    dry_run: bool = False
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8080
    leader_elect: bool = False
    lease_namespace: str = "stage-rollout-system"
    lease_name: str = "stage-rollout-controller"
    identity: str = "stage-rollout-controller"
    workers: int = 8


class _NoPrometheus:
    """The metrics source of a rollout with no Prometheus configured: every read is unknown."""

    REASON = "no Prometheus configured: set spec.prometheus.url or the operator's --prometheus-url"

    def summarize(self, signal: str, query: str, window: timedelta, at: datetime) -> WindowSummary:
        return WindowSummary.failed(query, window, self.REASON)

    def firing_alerts(self, names: Sequence[str], at: datetime) -> AlertReading:
        return AlertReading(None, self.REASON)

    def alert_history(
        self, alerts: Sequence[str], coverage_query: str | None, window: timedelta, at: datetime
    ) -> AlertHistory:
        return AlertHistory.failed(at, window, self.REASON)

    def average(self, signal: str, query: str, start: datetime, end: datetime) -> float | None:
        return None

    def modes(self, query: str, at: datetime) -> tuple[float, ...] | None:
        return None


class Operator:
    """Runs reconcile passes for every StageRollout it can see."""

    def __init__(
        self,
        api: KubeApi,
        settings: OperatorSettings,
        clock: SystemClock | None = None,
        metrics_for: Callable[[StageRolloutSpec, Plan], MetricsSource] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.api = api
        self.notifier = notifier
        self._metrics_source_for = metrics_for or self._metrics_for
        self.settings = settings
        self.clock = clock or SystemClock()
        self.elector: LeaderElector | None = None
        if settings.leader_elect:
            self.elector = LeaderElector(
                api,
                settings.lease_namespace,
                settings.lease_name,
                settings.identity,
                now=self.clock.now,
                monotonic=self.clock.monotonic,
                on_change=lambda leading: self.telemetry.leadership(leading),
            )
        self.telemetry = Telemetry(may_write=self._may_write)
        self.reconciler = Reconciler(
            api, self._metrics_source_for, dry_run=settings.dry_run, hooks=self.telemetry
        )
        self._sources: dict[PrometheusSettings, PrometheusSource] = {}
        self._sources_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="reconcile"
        )
        self._generations: dict[tuple[str, str], int] = {}
        self._last_tick: dict[tuple[str, str], datetime] = {}
        self.stop = threading.Event()
        self.scheduler = BackgroundScheduler(
            executors={"default": SchedulerPool(max_workers=settings.workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone="UTC",
        )

    # leadership and sources ----------------------------------------------------

    def _may_write(self) -> bool:
        return self.elector is None or self.elector.holding()

    def _metrics_for(self, spec: StageRolloutSpec, plan: Plan) -> MetricsSource:
        if spec.prometheus is not None:
            settings = PrometheusSettings(
                url=spec.prometheus.url,
                timeout=spec.prometheus.timeout,
                bearer_token_file=spec.prometheus.bearer_token_file,
                ca_file=spec.prometheus.ca_file,
                insecure_skip_verify=spec.prometheus.insecure_skip_verify,
            )
        elif self.settings.prometheus_url:
            settings = PrometheusSettings(url=self.settings.prometheus_url)
        else:
            return _NoPrometheus()
        with self._sources_lock:
            source = self._sources.get(settings)
            if source is None:
                source = PrometheusSource(settings, plan.evaluation.resolution)
                self._sources[settings] = source
            return source

    # passes ----------------------------------------------------------------------

    def list_rollouts(self) -> list[dict[str, Any]]:
        items, _ = self.api.list(ROLLOUTS, self.settings.namespace)
        self.telemetry.ready.set()
        return items

    def _due(self, rollout: Mapping[str, Any], now: datetime) -> bool:
        key = (rollout["metadata"]["namespace"], rollout["metadata"]["name"])
        interval = self.settings.interval
        raw_interval = (rollout.get("spec") or {}).get("interval")
        if raw_interval:
            try:
                parsed = StageRolloutSpec.model_validate(rollout["spec"]).interval
                interval = parsed or interval
            except ValueError:
                pass
        last = self._last_tick.get(key)
        return last is None or now - last >= interval - self.settings.granularity / 2

    def tick_all(self) -> list[Outcome]:
        """One pass: prefetch every due rollout's queries together, then reconcile each."""
        self.telemetry.alive.set()
        if not self._may_write():
            return []
        now = self.clock.now()
        try:
            rollouts = [r for r in self.list_rollouts() if self._due(r, now)]
        except KubeError as error:
            log.warning("cannot list rollouts: %s", error)
            self.telemetry.failed("", "", "api", str(error))
            return []
        self._prefetch(rollouts, now)
        futures = [
            self._pool.submit(
                self._reconcile, r["metadata"]["namespace"], r["metadata"]["name"], now
            )
            for r in rollouts
        ]
        return [future.result() for future in futures]

    def _prefetch(self, rollouts: Sequence[Mapping[str, Any]], now: datetime) -> None:
        wanted: dict[int, tuple[PrometheusSource, list[WindowRequest], set[str]]] = {}
        for rollout in rollouts:
            planned = self.reconciler.plan_tick(rollout, now)
            if planned is None:
                continue
            spec, plan, needs = planned
            source = self._metrics_source_for(spec, plan)
            if isinstance(source, PrometheusSource) and (
                needs.windows or needs.alert_windows or needs.mode_query
            ):
                entry = wanted.setdefault(id(source), (source, [], set()))
                entry[1].extend(window_requests(needs))
                if needs.mode_query:
                    entry[2].add(needs.mode_query)
        for source, requests, instants in wanted.values():
            source.prefetch(requests, now, instants=instants)

    def _reconcile(
        self,
        namespace: str,
        name: str,
        now: datetime,
        listed: Mapping[str, Any] | None = None,
        records: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None,
    ) -> Outcome:
        started = self.clock.monotonic()
        outcome = self.reconciler.reconcile(namespace, name, now, listed=listed, records=records)
        self.telemetry.reconcile_seconds.observe(self.clock.monotonic() - started)
        if self.notifier is not None and outcome.decision is not None and outcome.wrote_status:
            # Queued, never sent here: a slow webhook cannot hold the tick.
            self.notifier.notify(namespace, name, outcome.decision.events, now)
        self._last_tick[(namespace, name)] = now
        step = outcome.decision.status.step if outcome.decision else None
        log.info(
            "tick: %s",
            outcome.problem
            or (outcome.decision.status.reason if outcome.decision else "no change"),
            extra={"rollout": f"{namespace}/{name}", "step": step, "reason": outcome.problem},
        )
        for write in outcome.writes:
            log.info(write, extra={"rollout": f"{namespace}/{name}", "step": step})
        return outcome

    def tick_now(self, namespace: str, name: str) -> Outcome | None:
        """An immediate tick for one rollout (watch events); nothing while not leading."""
        if not self._may_write():
            return None
        return self._reconcile(namespace, name, self.clock.now())

    # watches -----------------------------------------------------------------------

    def handle_event(
        self, kind: Kind, kind_of_event: str, obj: Mapping[str, Any]
    ) -> tuple[str, str] | None:
        """The rollout an event should tick at once, if any."""
        metadata = obj.get("metadata") or {}
        namespace = str(metadata.get("namespace", ""))
        if kind is ROLLOUTS:
            key = (namespace, str(metadata.get("name", "")))
            generation = int(metadata.get("generation", 0))
            if kind_of_event == "DELETED":
                self._generations.pop(key, None)
                return None
            if self._generations.get(key) == generation:
                return None
            self._generations[key] = generation
            return key
        if kind_of_event != "ADDED":
            return None
        rollout = ((obj.get("spec") or {}).get("rollout") or {}).get("name")
        return (namespace, str(rollout)) if rollout else None

    def watch_loop(self, kind: Kind) -> None:
        """Watch one kind until stopped; relist on 410 Gone; back off on errors."""
        backoff = 1.0
        while not self.stop.is_set():
            try:
                _items, version = self.api.list(kind, self.settings.namespace)
                for event_type, obj in self.api.watch(
                    kind, self.settings.namespace, version, timeout_seconds=300
                ):
                    if self.stop.is_set():
                        return
                    target = self.handle_event(kind, event_type, obj)
                    if target is not None:
                        self.scheduler.add_job(
                            self.tick_now,
                            args=target,
                            id=f"now:{target[0]}/{target[1]}",
                            replace_existing=True,
                        )
                backoff = 1.0
            except KubeError as error:
                if error.status != 410:
                    log.warning("watch of %s interrupted: %s", kind.plural, error)
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)

    # running -----------------------------------------------------------------------

    def run(self) -> None:
        """Serve telemetry, elect, schedule, watch; return when `stop` is set."""
        server = self.telemetry.serve(self.settings.metrics_host, self.settings.metrics_port)
        threads = []
        if self.elector is not None:
            threads.append(
                threading.Thread(
                    target=self.elector.run, args=(self.stop,), name="leader", daemon=True
                )
            )
        for kind in WATCHED:
            threads.append(
                threading.Thread(
                    target=self.watch_loop, args=(kind,), name=f"watch-{kind.plural}", daemon=True
                )
            )
        for thread in threads:
            thread.start()
        self.scheduler.add_job(
            self.tick_all,
            IntervalTrigger(seconds=self.settings.granularity.total_seconds()),
            id="tick-all",
            next_run_time=self.clock.now(),
        )
        self.scheduler.start()
        try:
            self.stop.wait()
        finally:
            self.scheduler.shutdown(wait=True)
            if self.elector is not None:
                self.elector.release()
            self._pool.shutdown(wait=True)
            server.shutdown()
            for source in self._sources.values():
                source.close()
            if self.notifier is not None:
                self.notifier.close()
