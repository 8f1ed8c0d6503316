"""The in-cluster operator: scheduled ticks, watches, leadership and telemetry together.

APScheduler runs the pass over all rollouts on a fixed period without overlap
(`max_instances=1`, missed runs coalesced); each rollout is reconciled when its
own interval is due. Before a pass reconciles anything, the Prometheus windows
every due rollout needs are prefetched together, so identical queries from many
rollouts are sent once. Watches on StageRollouts (spec changes), StageApprovals
and StageCommands trigger an immediate tick for the rollout concerned, which is
how an approval of a ready step promotes within a second.

With `--leader-elect` every replica runs the watches and the elector, and only the
Lease holder reconciles. A standby is ready (`/readyz` answers 200) while it reaches
the Lease and its watches are up, so that two replicas show 2/2 ready and a rolling
upgrade can proceed; which replica leads is the `stage_rollout_leader` metric and
the `/readyz` body.

`run` (or `start_caches`) keeps list-and-watch caches (`controller.kube.caches`) of
rollouts, approvals, commands and the admission policies, and of each rollout's
target as its ServiceAccount where that account may list and watch it: a steady
pass then reads nothing from the API server, and writes only a status that
changed. Spent approvals and commands are left out of ticks and deleted after
`record_retention` (`controller.kube.retention`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import ThreadingHTTPServer
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as SchedulerPool
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from controller.alert_receiver import Receiver
from controller.alert_receiver import serve as serve_alert_receiver
from controller.clock import SystemClock, on_grid
from controller.heap import HeapKeeper
from controller.kube.admission_check import Trust, check_admission
from controller.kube.api import (
    ADMISSION_BINDINGS,
    ADMISSION_POLICIES,
    APPROVALS,
    COMMANDS,
    CONFIGMAPS,
    DEPLOYMENTS,
    JOBS,
    ROLLOUTS,
    Kind,
    KubeApi,
    KubeError,
)
from controller.kube.caches import Caches, CachingApi, Informer
from controller.kube.leadership import LeaderElector
from controller.kube.prometheus_refs import DEFAULT_ENDPOINT, PrometheusEndpoints
from controller.kube.reconciler import Outcome, Reconciler
from controller.kube.resources import StageRolloutSpec
from controller.kube.retention import DEFAULT_RETENTION, Records, live_records, spent_records
from controller.kube.tenancy import Tenancy
from controller.notifications import Notifier
from controller.observing import window_requests
from controller.ports import MetricsSource, WindowRequest
from controller.prometheus.source import PrometheusSettings, PrometheusSource
from controller.telemetry import Telemetry
from controller.wakeups import DEFAULT_MARGIN, WakeUps, stop_scheduling
from phases.actions import StartJob
from phases.plan import Plan
from phases.wakeups import alerts_named

log = logging.getLogger("stage_rollout.operator")
NOT_LEADER = "not the leader: nothing written"
"""The problem the reconciler reports on a standby: not an error, never logged."""
WATCHED: tuple[Kind, ...] = (ROLLOUTS, APPROVALS, COMMANDS, ADMISSION_POLICIES, ADMISSION_BINDINGS)
"""Kinds the operator's own caches list and watch (RBAC grants them list and watch)."""
_POLICY_KINDS = (ADMISSION_POLICIES, ADMISSION_BINDINGS)
TENANT_CACHED: tuple[Kind, ...] = (CONFIGMAPS, DEPLOYMENTS, JOBS)
"""Target kinds cached per namespace as the rollout's account, when it may list and watch them."""
PRUNE_EVERY = timedelta(minutes=10)


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
    lease_duration: timedelta = timedelta(seconds=15)
    renew_deadline: timedelta = timedelta(seconds=10)
    retry_period: timedelta = timedelta(seconds=2)
    default_service_account: str | None = None
    """The ServiceAccount (of each rollout's own namespace) for rollouts without spec.serviceAccountName."""
    prometheus_endpoints: Mapping[str, PrometheusSettings] = field(default_factory=dict)
    """Named endpoints a rollout may choose with spec.prometheus.endpoint."""
    record_retention: timedelta = DEFAULT_RETENTION
    """Spent approvals and commands older than this are deleted (status.history keeps the trail)."""
    unsafe_trust_records: bool = False
    """Believe approvers and command authors without the admission policy. Unsafe: anyone
    who may create a StageApproval can then sign as anyone."""
    wakeups: bool = True
    """Tick a rollout when its decision can next change, on top of the regular pass."""
    wakeup_margin: timedelta = DEFAULT_MARGIN
    """How long after that moment to tick (about the scrape interval; see controller.wakeups)."""
    alert_webhook_port: int | None = None
    """Port of the Alertmanager webhook receiver (None: not served; 0: any free port)."""
    alert_webhook_token: str | None = None
    """The bearer token the receiver requires, when given."""

    def endpoints(self) -> PrometheusEndpoints:
        named = dict(self.prometheus_endpoints)
        if self.prometheus_url:
            named.setdefault(DEFAULT_ENDPOINT, PrometheusSettings(url=self.prometheus_url))
        default = DEFAULT_ENDPOINT if DEFAULT_ENDPOINT in named else None
        return PrometheusEndpoints(named, default=default)


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
        self._injected_metrics = metrics_for
        self.endpoints = settings.endpoints()
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
                lease_duration=settings.lease_duration,
                renew_deadline=settings.renew_deadline,
                retry_period=settings.retry_period,
                on_change=lambda leading: self.telemetry.leadership(leading),
            )
        self.telemetry = Telemetry(may_write=self._may_write, readiness=self.readiness)
        self.telemetry_server: ThreadingHTTPServer | None = None
        self.caches: Caches | None = None
        self._reads: KubeApi = api
        self._trust: Trust | None = None
        self.reconciler = Reconciler(
            api,
            metrics_for,
            dry_run=settings.dry_run,
            hooks=self.telemetry,
            tenancy=Tenancy(api, default_service_account=settings.default_service_account),
            endpoints=self.endpoints,
            trust=self.records_trust,
        )
        self._pool = ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="reconcile"
        )
        self._generations: dict[tuple[str, str], int] = {}
        self._last_tick: dict[tuple[str, str], datetime] = {}
        self._busy: set[str] = set()
        """Rollouts whose last pass tick wrote, failed, raised or waited on a server. A pass hands
        them to the pool and ticks the others in its own thread: steady ticks read only
        caches, and sixteen threads taking turns at the interpreter spent a third more CPU
        on them than one thread. The first quiet tick that turns out busy hands the rest of
        the pass to the pool, so a pass in which everything changes still overlaps its
        writes."""
        self._live: dict[str, tuple[tuple[str, str, int, int], Records]] = {}
        """Each rollout's live records, for the rollout version and record buckets they were
        sorted from (`_records`): a steady pass looks at no record, however many are spent."""
        self._problems: dict[str, str] = {}
        self.stop = threading.Event()
        self.scheduler = BackgroundScheduler(
            executors={"default": SchedulerPool(max_workers=settings.workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone="UTC",
        )
        self.wakeups = WakeUps(self.scheduler, self.tick_now, margin=settings.wakeup_margin)
        self.heap = HeapKeeper(monotonic=self.clock.monotonic)
        self.alert_server: ThreadingHTTPServer | None = None

    # leadership and sources ----------------------------------------------------

    def _may_write(self) -> bool:
        return self.elector is None or self.elector.holding()

    def readiness(self) -> tuple[bool, str]:
        """Ready to lead: rollouts listed, every watch up and, when electing, the Lease reached."""
        if self._cached(ROLLOUTS) is not None:
            self.telemetry.ready.set()
        if not self.telemetry.ready.is_set():
            return False, "rollouts not listed yet"
        failing: dict[str, str] = {}
        for informer in self.caches.informers() if self.caches else ():
            if informer.failing and informer.api.impersonating is None:
                failing[informer.kind.plural] = informer.failing
        if failing:
            return False, "; ".join(
                f"watch of {k} failing: {e}" for k, e in sorted(failing.items())
            )
        if self.elector is None:
            return True, "ok"
        if not self.elector.lease_reachable():
            return False, f"Lease {self.elector.namespace}/{self.elector.name} not reachable"
        return True, "ok: leading" if self.elector.holding() else "ok: standby, ready to lead"

    def _shared_source(self, spec: StageRolloutSpec, plan: Plan) -> MetricsSource | None:
        """The source a rollout shares with others (an operator endpoint), for prefetching.

        Rollouts with their own URL and Secret are read at their tick, not prefetched."""
        if self._injected_metrics is not None:
            return self._injected_metrics(spec, plan)
        settings = self.endpoints.shared_settings(spec.prometheus)
        return None if settings is None else self.endpoints.source(settings, plan)

    # trust in people's records ---------------------------------------------------

    def check_records_trust(self) -> Trust:
        """Compare the installed admission policies with the shipped ones (start, every pass)."""
        trust = check_admission(self._reads, unsafe_trust=self.settings.unsafe_trust_records)
        if not trust.trusted and (self._trust is None or self._trust.trusted):
            log.warning("%s", trust.message)
        self._trust = trust
        self.telemetry.records_trusted.set(1 if trust.trusted else 0)
        return trust

    def records_trust(self) -> Trust:
        """The last pass's verdict on the admission policies (checked now if none yet)."""
        return self._trust or self.check_records_trust()

    # caches ----------------------------------------------------------------------

    def start_caches(self) -> Caches:
        """List and start watching every cached kind; from now on reads come from the caches.

        A kind that cannot be listed yet is read directly until its cache catches up."""
        if self.caches is not None:
            return self.caches
        caches = Caches(self.stop)
        caches.tenant_kinds = frozenset(kind.plural for kind in TENANT_CACHED)
        for kind in WATCHED:
            caches.add(
                Informer(
                    self.api,
                    kind,
                    None if kind in _POLICY_KINDS else self.settings.namespace,
                    on_event=self._on_cache_event,
                    index=_rollout_index if kind in (APPROVALS, COMMANDS) else None,
                )
            )
        for informer in caches.informers():
            try:
                informer.sync()
            except KubeError as error:
                log.warning("cache of %s not filled yet: %s", informer.kind.plural, error)
            informer.start(self.stop)
        listed = caches.find("", ROLLOUTS, self.settings.namespace)
        for rollout in listed.items() if listed is not None else ():
            # Known as listed: only a later change of spec (generation) ticks at once.
            metadata = rollout.get("metadata") or {}
            key = (str(metadata.get("namespace", "")), str(metadata.get("name", "")))
            self._generations[key] = int(metadata.get("generation", 0))
        self.caches = caches
        self._reads = CachingApi(self.api, caches)
        self.reconciler.read_through(self._reads)
        return caches

    def _cached(self, kind: Kind) -> Informer | None:
        if self.caches is None:
            return None
        return self.caches.find("", kind, self.settings.namespace)

    def _on_cache_event(self, kind: Kind, kind_of_event: str, obj: Mapping[str, Any]) -> None:
        if kind in _POLICY_KINDS:
            self.check_records_trust()
            return
        target = self.handle_event(kind, kind_of_event, obj)
        if target is None:
            return
        if self.scheduler.running:
            self.scheduler.add_job(
                self.tick_now, args=target, id=f"now:{target[0]}/{target[1]}", replace_existing=True
            )
        else:
            self._pool.submit(self.tick_now, *target)

    def _records(self, rollout: Mapping[str, Any], now: datetime) -> Records | None:
        """The rollout's live approvals and commands from the caches (None: read them)."""
        approvals, commands = self._cached(APPROVALS), self._cached(COMMANDS)
        if approvals is None or commands is None:
            return None
        key = _rollout_key(rollout)
        metadata = rollout.get("metadata") or {}
        valid_for = (
            str(metadata.get("uid", "")),
            str(metadata.get("resourceVersion", "")),
            approvals.stamp(key),
            commands.stamp(key),
        )
        known = self._live.get(key)
        # `live_records` reads `now` only to leave out expired approvals, and the core
        # refuses an expired approval itself (phases.approvals): one that expires while
        # memoised is handed on and refused there, so the memo needs no `now`.
        if known is not None and known[0] == valid_for and valid_for[1]:
            return known[1]
        stamped_approvals, items = approvals.indexed_at(key)
        stamped_commands, orders = commands.indexed_at(key)
        live = live_records(rollout, items, orders, now)
        stamped = (*valid_for[:2], stamped_approvals, stamped_commands)
        self._live[key] = (stamped, live)
        return live

    def prune_records(self) -> int:
        """Delete spent approvals and commands older than the retention; how many went."""
        rollouts, approvals, commands = (self._cached(k) for k in (ROLLOUTS, APPROVALS, COMMANDS))
        if rollouts is None or approvals is None or commands is None or self.settings.dry_run:
            return 0
        if not self._may_write():
            return 0
        now, deleted = self.clock.now(), 0
        for rollout in rollouts.items():
            key = _rollout_key(rollout)
            retention = self.settings.record_retention
            spent_approvals = spent_records(rollout, approvals.indexed(key), [], now, retention)
            spent_commands = spent_records(rollout, [], commands.indexed(key), now, retention)
            for record in spent_approvals:
                deleted += self._delete_record(APPROVALS, record)
            for record in spent_commands:
                deleted += self._delete_record(COMMANDS, record)
        return deleted

    def _delete_record(self, kind: Kind, record: Mapping[str, Any]) -> int:
        metadata = record["metadata"]
        try:
            if kind is APPROVALS:
                self._reads.delete(APPROVALS, metadata["namespace"], metadata["name"])
            else:
                self._reads.delete(COMMANDS, metadata["namespace"], metadata["name"])
        except KubeError as error:
            if not error.not_found:
                log.warning("spent record not deleted: %s", error)
            return 0
        return 1

    # passes ----------------------------------------------------------------------

    def list_rollouts(self) -> list[dict[str, Any]]:
        cached = self._cached(ROLLOUTS)
        if cached is not None:
            items = [dict(item) for item in cached.items(self.settings.namespace)]
        else:
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

    def tick_all(self, at: datetime | None = None) -> list[Outcome]:
        """One pass: prefetch every due rollout's queries together, then reconcile each.

        `at` is the pass's moment, by default now.
        """
        self.telemetry.alive.set()
        if not self._may_write():
            return []
        now = at if at is not None else self.clock.now()
        try:
            rollouts = [r for r in self.list_rollouts() if self._due(r, now)]
        except KubeError as error:
            log.warning("cannot list rollouts: %s", error)
            self.telemetry.failed("", "", "api", str(error))
            return []
        self.check_records_trust()
        # A prefetch that failed leaves each tick to query on its own: none is quiet.
        inline = self._prefetch(rollouts, now) and self.caches is not None
        lanes = [(r, inline and _rollout_key(r) not in self._busy) for r in rollouts]
        futures = {
            position: self._pool.submit(self._pass_tick, rollout, now)
            for position, (rollout, quiet) in enumerate(lanes)
            if not quiet
        }
        # Quiet rollouts: in this thread while the pass stays quiet, see `_busy`.
        for position, (rollout, quiet) in enumerate(lanes):
            if quiet and inline:
                done = futures[position] = _settled(self._pass_tick, rollout, now)
                inline = done.exception() is None and _rollout_key(rollout) not in self._busy
            elif quiet:
                futures[position] = self._pool.submit(self._pass_tick, rollout, now)
        return [
            self._outcome_of(r["metadata"]["namespace"], r["metadata"]["name"], futures[i])
            for i, (r, _quiet) in enumerate(lanes)
        ]

    def _pass_tick(self, rollout: Mapping[str, Any], now: datetime) -> Outcome:
        """A pass's reconcile of one listed rollout; remembers whether it was busy."""
        namespace, name = rollout["metadata"]["namespace"], rollout["metadata"]["name"]
        started = self.clock.monotonic()
        key, busy = _rollout_key(rollout), True  # a tick that raises counts as busy
        try:
            outcome = self._reconcile_summarised(
                namespace,
                name,
                now,
                rollout if self.caches is not None else None,
                self._records(rollout, now),
            )
            busy = _was_busy(outcome, self.clock.monotonic() - started)
        finally:
            if busy:
                self._busy.add(key)
            else:
                self._busy.discard(key)
        return outcome

    def scheduled_pass(self) -> list[Outcome]:
        """A pass of the schedule, standing on the granularity's grid since the epoch.

        The scheduler fires on that grid, so this is now less the scheduler's delay.
        A rollout due every 30s then reads Prometheus at moments 60s apart every
        other pass, which a 1m resolution's window cache continues instead of
        reading whole windows again (`controller.prometheus.window_cache`).
        """
        return self.tick_all(on_grid(self.clock.now(), self.settings.granularity))

    def _pass_job(self) -> None:
        """The running operator's pass: the scheduled pass, then the heap put away
        (`controller.heap`) so that the next pass's collections skip the caches."""
        try:
            self.scheduled_pass()
        finally:
            self.heap.after_pass()

    def _outcome_of(self, namespace: str, name: str, future: Any) -> Outcome:
        """A reconcile's outcome; whatever escaped it stays that rollout's problem."""
        try:
            outcome: Outcome = future.result()
        except Exception as error:
            message = f"{type(error).__name__} after the reconcile"
            self.telemetry.failed(namespace, name, "reconcile", message)
            log.warning("tick failed: %s", message, extra={"rollout": f"{namespace}/{name}"})
            return Outcome(namespace, name, problem=message)
        return outcome

    def _prefetch(self, rollouts: Sequence[Mapping[str, Any]], now: datetime) -> bool:
        """Read every due rollout's windows together; False when a source's read failed."""
        wanted: dict[int, tuple[PrometheusSource, list[WindowRequest], set[str]]] = {}
        for rollout in rollouts:
            planned = self.reconciler.plan_tick(rollout, now)
            if planned is None:
                continue
            spec, plan, needs = planned
            try:
                source = self._shared_source(spec, plan)
            except Exception:
                continue  # its own tick reports the problem
            if isinstance(source, PrometheusSource) and (
                needs.windows or needs.alert_windows or needs.mode_query
            ):
                entry = wanted.setdefault(id(source), (source, [], set()))
                entry[1].extend(window_requests(needs))
                if needs.mode_query:
                    entry[2].add(needs.mode_query)
        read = True
        for source, requests, instants in wanted.values():
            try:
                source.prefetch(requests, now, instants=instants)
            except Exception as error:
                # Each rollout's own queries report the problem in its tick.
                log.warning("prefetch skipped: %s", type(error).__name__)
                read = False
        return read

    def _reconcile_summarised(self, *call: Any) -> Outcome:
        """A pass's reconcile: its outcome without the decision, which the pass would
        otherwise hold for every rollout until its end (a status each)."""
        return self._reconcile(*call).summarised()

    def _reconcile(
        self,
        namespace: str,
        name: str,
        now: datetime,
        listed: Mapping[str, Any] | None = None,
        records: Records | None = None,
    ) -> Outcome:
        started = self.clock.monotonic()
        outcome = self.reconciler.reconcile(namespace, name, now, listed=listed, records=records)
        self.telemetry.reconcile_seconds.observe(self.clock.monotonic() - started)
        if self.notifier is not None and outcome.decision is not None and outcome.wrote_status:
            # Queued, never sent here: a slow webhook cannot hold the tick.
            self.notifier.notify(namespace, name, outcome.decision.events, now)
        self._last_tick[(namespace, name)] = now
        self._log_outcome(f"{namespace}/{name}", outcome)
        # A decision was made as the leader, written or not: a steady status is not
        # rewritten, yet its next moment still has to be planned.
        if self.settings.wakeups and outcome.decision is not None:
            self.wakeups.plan(namespace, name, outcome.wake_at, now)
        elif outcome.problem == "rollout no longer exists":
            self.wakeups.cancel(namespace, name)
        return outcome

    def _log_outcome(self, key: str, outcome: Outcome) -> None:
        """One line per transition, per write to the target, per new or cleared problem.

        A tick that changes nothing logs nothing; a problem that persists is logged
        when it appears and when it clears, not on every pass.
        """
        decision = outcome.decision
        step = decision.status.step if decision else None
        would = "" if outcome.wrote_status else "would "
        for change in decision.transitions if decision else ():
            log.info(
                "%s%s: %s %s -> %s %s",
                would,
                change.trigger,
                change.from_step,
                change.from_state.value,
                change.to_step,
                change.to_state.value,
                extra={"rollout": key, "step": change.to_step, "reason": change.reason},
            )
        for write in outcome.writes:
            log.info(write, extra={"rollout": key, "step": step})
        for action in decision.actions if decision else ():
            if isinstance(action, StartJob):
                log.info(
                    "%sstart Job %s (attempt %d)",
                    would,
                    action.name,
                    action.attempt,
                    extra={"rollout": key, "step": action.step},
                )
        problem = None if outcome.problem == NOT_LEADER else outcome.problem
        if problem != self._problems.get(key):
            if problem:
                self._problems[key] = problem
                log.warning("tick held: %s", problem, extra={"rollout": key, "reason": problem})
            else:
                log.info("tick no longer held", extra={"rollout": key, "step": step})
                self._problems.pop(key, None)

    def tick_now(self, namespace: str, name: str) -> Outcome | None:
        """An immediate tick for one rollout (watch events); nothing while not leading."""
        if not self._may_write():
            return None
        now = self.clock.now()
        cached = self._cached(ROLLOUTS)
        listed = cached.get(namespace, name) if cached is not None else None
        records = self._records(listed, now) if listed is not None else None
        return self._reconcile(namespace, name, now, listed, records)

    def tick_soon(self, namespace: str, name: str) -> None:
        """Queue an immediate tick of one rollout (an alert webhook), as a watch event does."""
        self.scheduler.add_job(
            self.tick_now,
            args=(namespace, name),
            id=f"now:{namespace}/{name}",
            replace_existing=True,
        )

    def rollouts_naming(self, alerts: frozenset[str]) -> list[tuple[str, str]]:
        """The rollouts whose plan names one of `alerts` in a trigger or a gate."""
        found = []
        now = self.clock.now()
        for rollout in self.list_rollouts():
            planned = self.reconciler.plan_tick(rollout, now)
            if planned is not None and alerts_named(planned[1]) & alerts:
                found.append((rollout["metadata"]["namespace"], rollout["metadata"]["name"]))
        return found

    # watches -----------------------------------------------------------------------

    def handle_event(
        self, kind: Kind, kind_of_event: str, obj: Mapping[str, Any]
    ) -> tuple[str, str] | None:
        """The rollout an event should tick at once, if any."""
        metadata = obj.get("metadata") or {}
        namespace = str(metadata.get("namespace", ""))
        if kind_of_event not in ("ADDED", "MODIFIED", "DELETED"):
            return None  # BOOKMARK: a resourceVersion, no object to tick
        if kind is ROLLOUTS:
            key = (namespace, str(metadata.get("name", "")))
            generation = int(metadata.get("generation", 0))
            if kind_of_event == "DELETED":
                self._generations.pop(key, None)
                self._live.pop(f"{key[0]}/{key[1]}", None)
                self._busy.discard(f"{key[0]}/{key[1]}")
                self.wakeups.cancel(*key)
                self.telemetry.forget(*key)
                return None
            if self._generations.get(key) == generation:
                return None
            self._generations[key] = generation
            return key
        if kind_of_event != "ADDED":
            return None
        rollout = ((obj.get("spec") or {}).get("rollout") or {}).get("name")
        return (namespace, str(rollout)) if rollout else None

    # running -----------------------------------------------------------------------

    def run(self) -> None:
        """Serve telemetry, elect, schedule, watch; return when `stop` is set."""
        server = self.telemetry.serve(self.settings.metrics_host, self.settings.metrics_port)
        self.telemetry_server = server
        if self.settings.alert_webhook_port is not None:
            receiver = Receiver(
                self.rollouts_naming,
                self.tick_soon,
                self.settings.alert_webhook_token,
                leading=self._may_write,
            )
            self.alert_server = serve_alert_receiver(
                receiver, self.settings.metrics_host, self.settings.alert_webhook_port
            )
        threads = []
        if self.elector is not None:
            threads.append(
                threading.Thread(
                    target=self.elector.run, args=(self.stop,), name="leader", daemon=True
                )
            )
        for thread in threads:
            thread.start()
        self.start_caches()
        self.scheduler.add_job(
            self.prune_records,
            IntervalTrigger(seconds=PRUNE_EVERY.total_seconds()),
            id="prune-records",
        )
        granularity = self.settings.granularity
        self.scheduler.add_job(
            self._pass_job,
            IntervalTrigger(
                seconds=granularity.total_seconds(),
                start_date=on_grid(self.clock.now(), granularity) + granularity,
            ),
            id="tick-all",
            next_run_time=self.clock.now(),
        )
        self.scheduler.start()
        try:
            self.stop.wait()
        finally:
            stop_scheduling(self.scheduler, self.wakeups)
            self.heap.close()
            if self.elector is not None:
                self.elector.release()
            self._pool.shutdown(wait=True)
            server.shutdown()
            if self.alert_server is not None:
                self.alert_server.shutdown()
            self.endpoints.close()
            if self.notifier is not None:
                self.notifier.close()


BUSY_TICK_SECONDS = 0.05
"""A tick this long waited on a server (a steady one takes about a millisecond)."""


def _was_busy(outcome: Outcome, seconds: float) -> bool:
    """Whether a tick wrote, failed or waited on a server: its next one goes to the pool."""
    return bool(
        outcome.wrote_status
        or outcome.writes
        or outcome.problem
        or outcome.conflicts
        or seconds >= BUSY_TICK_SECONDS
    )


def _settled(tick: Callable[..., Outcome], *args: Any) -> Future[Outcome]:
    """A tick run here and now, as a finished future (the pool's, for `_outcome_of`)."""
    done: Future[Outcome] = Future()
    try:
        done.set_result(tick(*args))
    except Exception as error:
        done.set_exception(error)
    return done


def _rollout_index(record: Mapping[str, Any]) -> str | None:
    """namespace/rollout of an approval or command, from its spec.rollout.name."""
    name = ((record.get("spec") or {}).get("rollout") or {}).get("name")
    return f"{(record.get('metadata') or {}).get('namespace', '')}/{name}" if name else None


def _rollout_key(rollout: Mapping[str, Any]) -> str:
    """The index key of a rollout's records."""
    metadata = rollout.get("metadata") or {}
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
