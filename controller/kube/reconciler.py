"""One reconcile tick for one StageRollout, in the order that survives crashes.

1. Read the rollout; validate its spec and plan (a bad one becomes a condition).
2. Observe through the Kubernetes and Prometheus ports; 3. `decide`.
4. Persist the new status first, guarded by resourceVersion: a stale writer gets
   a conflict, reads again and decides again.
5. Only then apply the actions (idempotent), and 6. emit Events and metrics.

A crash between any two writes converges on the next tick: the status already
says what the world must look like, and every action compares before it writes.

One rollout's failure is its own: whatever one tick raises, at whichever stage
(reading, observing, deciding, acting), becomes that rollout's `Reconciled`
condition, an Event and an error metric, and `reconcile` returns normally, so a
pass goes on with every other rollout.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from controller.kube.admission_check import Trust, check_admission
from controller.kube.api import EVENTS, JOBS, ROLLOUTS, Kind, KubeApi, KubeError
from controller.kube.baseline_sources import carried_baselines
from controller.kube.conditions import (
    failure_condition,
    lifecycle_conditions,
    set_condition,
    trust_condition,
)
from controller.kube.environments import (
    Environments,
    EnvironmentTargets,
    Place,
    for_environment,
    not_permitted_at,
)
from controller.kube.jobs import KubeJobs
from controller.kube.people import KubePeople
from controller.kube.plan_sources import PlanSources
from controller.kube.prometheus_refs import NoPrometheus, PrometheusEndpoints
from controller.kube.resources import (
    API_VERSION,
    KIND,
    RejectedCommand,
    StageRolloutSpec,
    StageRolloutStatus,
    VerdictRecord,
)
from controller.kube.tenancy import (
    Refused,
    Tenancy,
    Tenant,
    excerpt,
    forbidden,
    not_permitted,
)
from controller.observing import actuate, observe
from controller.ports import MetricsSource
from phases.actions import (
    Action,
    EventKind,
    RecordBaseline,
    RestartWorkloads,
    SetFlags,
    StartJob,
)
from phases.baselines import settled_status
from phases.decide import Decision, decide, expected_flags
from phases.documents import DocumentError
from phases.environments import step_environment
from phases.needs import Needs, needs_of
from phases.observations import JobPhase, Observations
from phases.plan import Plan
from phases.status import RolloutStatus, initial_status
from phases.steps import steps_of
from phases.wakeups import next_wakeup

log = logging.getLogger("stage_rollout.reconcile")
_Model = TypeVar("_Model", bound=BaseModel)
_PARSED_LIMIT = 100_000
"""Parsed specs, the latest version of each rollout's; cleared when full. Statuses are
parsed each tick instead (about 13 us): kept, they were a third of the operator's memory
a rollout, beside the cached copy they were parsed from."""
CONFLICT_RETRIES = 3
_VOLATILE = {"last_tick_at", "last_verdicts", "blockers", "conditions"}
"""Status fields compared in their own way by `_worth_writing` (or not at all: lastTickAt)."""
_DIGITS = re.compile(r"[0-9.]+")


@dataclass
class Outcome:
    """What one reconcile did, for logs, metrics and tests."""

    namespace: str
    name: str
    wrote_status: bool = False
    decision: Decision | None = None
    problem: str | None = None
    conflicts: int = 0
    writes: list[str] = field(default_factory=list)
    stage: str = "reading"
    """How far the tick got: reading, observing, deciding, writing status, acting."""
    wake_at: datetime | None = None
    """When the decision can next change (`phases.wakeups.next_wakeup`): tick again then."""
    step: str | None = None
    state: str | None = None
    """Where the decision left the rollout; kept by `summarised` when the decision is not."""

    def summarised(self) -> Outcome:
        """This outcome without its decision (which holds a whole status, and a pass holds
        every rollout's outcome until it ends), but with the step and state it decided."""
        if self.decision is None:
            return self
        status = self.decision.status
        return dataclasses.replace(self, decision=None, step=status.step, state=status.state.value)


class Hooks:
    """Where the reconciler reports to (metrics, leadership); no-ops by default."""

    def may_write(self) -> bool:
        return True

    def decided(
        self, namespace: str, name: str, decision: Decision, status: StageRolloutStatus
    ) -> None:
        pass

    def failed(self, namespace: str, name: str, kind: str, message: str) -> None:
        pass


class Reconciler:
    """Reconciles StageRollouts; safe to call from several threads (one rollout at a time)."""

    def __init__(
        self,
        api: KubeApi,
        metrics_for: Callable[[StageRolloutSpec, Plan], MetricsSource] | None = None,
        *,
        dry_run: bool = False,
        hooks: Hooks | None = None,
        tenancy: Tenancy | None = None,
        endpoints: PrometheusEndpoints | None = None,
        trust: Callable[[], Trust] | None = None,
    ) -> None:
        """`metrics_for` replaces the Prometheus `endpoints` (tests, simulations); the
        default `tenancy` impersonates each rollout's spec.serviceAccountName."""
        self._api = api
        self._trust = trust or (lambda: check_admission(api))
        self._metrics_for = metrics_for
        self._tenancy = tenancy or Tenancy(api)
        self._endpoints = endpoints or PrometheusEndpoints()
        self._plan_sources = PlanSources()
        self._environments = Environments(self._tenancy)
        self._dry_run = dry_run
        self._hooks = hooks or Hooks()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._parsed_parts: dict[tuple[str, str], tuple[str, BaseModel]] = {}
        self._locks_guard = threading.Lock()

    def read_through(self, api: KubeApi) -> None:
        """Read (and write) through `api` from now on: the operator's caching connection."""
        self._api = api
        self._tenancy = Tenancy(api, default_service_account=self._tenancy.default_service_account)

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    # planning (used by the operator to prefetch every rollout's queries at once) ---

    def plan_tick(
        self, rollout: Mapping[str, Any], now: datetime
    ) -> tuple[StageRolloutSpec, Plan, Needs] | None:
        """The spec (as its current step's environment sees it: that environment's
        Prometheus), plan and needs of a rollout as it stands, or None when it is unusable."""
        namespace = str((rollout.get("metadata") or {}).get("namespace", ""))
        try:
            spec = self._spec(rollout)
            plan = self._plan(spec, self._tenancy.admit(namespace, spec))
        except Exception:
            # Its own tick reports what is wrong; planning only skips its prefetch.
            return None
        status = self._status(rollout, plan, now)
        here = for_environment(spec, step_environment(plan, status.step))
        return here, plan, needs_of(plan, status, now)

    # the tick -------------------------------------------------------------------

    def reconcile(
        self,
        namespace: str,
        name: str,
        now: datetime,
        *,
        listed: Mapping[str, Any] | None = None,
        records: tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]] | None = None,
    ) -> Outcome:
        """One tick. `listed` is the rollout as a pass just listed it (saves a read; a
        stale copy only costs a conflict and a re-read); `records` are the namespace's
        approvals and commands, listed once for the whole pass."""
        outcome = Outcome(namespace, name)
        with self._lock(namespace, name):
            for attempt in range(CONFLICT_RETRIES):
                try:
                    known = listed if attempt == 0 else None
                    # After a conflict the rollout is read again from the API server itself.
                    if self._tick(namespace, name, now, outcome, known, records, fresh=attempt > 0):
                        return outcome
                except KubeError as error:
                    outcome.problem = str(error)
                    self._hooks.failed(namespace, name, "api", str(error))
                    return outcome
                except Exception as error:
                    self._failed(namespace, name, now, outcome, error)
                    return outcome
                outcome.conflicts += 1
            outcome.problem = f"status kept changing under the operator ({CONFLICT_RETRIES} conflicts); next tick retries"
            return outcome

    def _tick(
        self,
        namespace: str,
        name: str,
        now: datetime,
        outcome: Outcome,
        listed: Mapping[str, Any] | None,
        records: tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]] | None,
        *,
        fresh: bool = False,
    ) -> bool:
        """One attempt; False when the status write met a conflict and the tick must re-run."""
        read = self._api.get_fresh if fresh else self._api.get
        rollout = dict(listed) if listed is not None else read(ROLLOUTS, namespace, name)
        if rollout is None or (rollout.get("metadata") or {}).get("name") != name:
            # Gone, or an answer that is not the rollout (e.g. a Status while the API server stops).
            outcome.problem = "rollout no longer exists"
            return True
        generation = int(rollout["metadata"].get("generation", 0))
        try:
            spec = self._spec(rollout)
        except ValidationError as error:
            return self._hold(
                rollout, "SpecInvalid", _describe_validation("spec", error), now, outcome
            )
        try:
            tenant = self._tenancy.admit(namespace, spec)
            plan = self._plan(spec, tenant)
            status = self._status(rollout, plan, now)
            places = self._environments.places(spec, plan, tenant)
            here = step_environment(plan, status.step)
            metrics = self._metrics(for_environment(spec, here), plan, tenant)
        except DocumentError as error:
            return self._hold(rollout, "PlanInvalid", _capped(str(error)), now, outcome)
        except Refused as refusal:
            return self._hold(rollout, refusal.reason, refusal.message, now, outcome)
        except KubeError as error:
            return self._refuse_as(tenant, error, rollout, now, outcome)
        try:
            carried, carry_warnings = carried_baselines(
                spec.baselines, plan, tenant.api, namespace, status, rollout=name
            )
        except Refused as refusal:
            return self._hold(rollout, refusal.reason, refusal.message, now, outcome)
        except KubeError as error:
            return self._refuse_as(tenant, error, rollout, now, outcome)
        read_status, status = status, settled_status(plan, status, carried)
        writes: list[str] = []
        target = EnvironmentTargets(
            plan, places, status, dry_run=self._dry_run, on_write=writes.append
        )
        jobs = KubeJobs(
            tenant.api,
            namespace,
            rollout,
            plan.content_hash,
            spec.job_templates,
            dry_run=self._dry_run,
            active=_jobs_matter(plan, status),
        )
        trust = self._trust()
        people = KubePeople(
            self._api,
            namespace,
            name,
            on_invalid=lambda message: self._event(rollout, "RecordIgnored", message, True, now),
            listed=records,
            trust=trust,
        )
        needs = needs_of(plan, status, now)
        outcome.stage = "observing"
        try:
            seen = observe(
                plan,
                status,
                needs,
                now,
                rollout_uid=str(rollout["metadata"].get("uid", "")),
                metrics=metrics,
                target=target,
                people=people,
                jobs=jobs,
            )
        except KubeError as error:
            return self._refuse_as(tenant, error, rollout, now, outcome)
        except Refused as refusal:
            return self._hold(rollout, refusal.reason, refusal.message, now, outcome)
        seen = dataclasses.replace(
            seen,
            requester=(spec.requested_by or "") if trust.trusted else "",
            carried_baselines=carried,
        )
        outcome.stage = "deciding"
        decision = decide(plan, status, seen, now)
        target.aim(decision.status)
        outcome.wake_at = next_wakeup(plan, decision.status, seen, now)
        try:
            lacking = self._missing_right(decision.actions, target, tenant)
        except Refused as refusal:
            lacking = refusal
        if lacking is not None:
            return self._hold(rollout, lacking.reason, lacking.message, now, outcome)
        new_status = self._runtime_conditions(
            self._extend(decision, status, seen, plan, generation, now), trust, now, generation
        )
        if not self._hooks.may_write():
            outcome.problem = "not the leader: nothing written"
            return True
        if self._dry_run:
            outcome.decision = decision
            actuate(decision.actions, now, target=target, jobs=jobs)
            outcome.writes = writes
            return True
        written: Mapping[str, Any] | None = None
        if _worth_writing(status, new_status, rollout):
            body = {
                **rollout,
                "status": new_status.model_dump(mode="json", by_alias=True, exclude_none=True),
            }
            outcome.stage = "writing status"
            try:
                written = self._api.replace_status(ROLLOUTS, namespace, name, body)
            except KubeError as error:
                if error.conflict:
                    return False
                raise
            outcome.wrote_status = True
        outcome.decision = decision
        outcome.stage = "acting"
        try:
            recorded = actuate(decision.actions, now, target=target, jobs=jobs)
        except KubeError as error:
            return self._refuse_as(tenant, error, written or rollout, now, outcome)
        except Refused as refusal:
            held = written or rollout
            return self._hold(held, refusal.reason, refusal.message, now, outcome)
        self._tell_baselines(rollout, recorded, carry_warnings, read_status, new_status, now)
        outcome.writes = writes
        for event in decision.events:
            reason = event.kind.value.title().replace("_", "")
            self._event(rollout, reason, event.message, event.warning, now)
        if not trust.trusted and _trusted_before(status):
            self._event(rollout, trust.reason, trust.message, True, now)
        self._hooks.decided(namespace, name, decision, new_status)
        return True

    def _tell_baselines(
        self,
        rollout: Mapping[str, Any],
        recorded: Sequence[RecordBaseline],
        warnings: Sequence[str],
        before: RolloutStatus,
        after: RolloutStatus,
        now: datetime,
    ) -> None:
        """An Event per capture, and the carry warnings when the carried baselines change
        (the metric follows the status: `Hooks.decided`)."""
        for action in recorded:
            text = ", ".join(f"{r.signal}={r.value:g} in {r.environment}" for r in action.records)
            self._event(rollout, "BaselineRecorded", f"baselines captured: {text}", False, now)
        carried_before = {s: r for s, r in before.baselines.items() if r.source == "carried"}
        carried_after = {s: r for s, r in after.baselines.items() if r.source == "carried"}
        if warnings and carried_after and carried_after != carried_before:
            self._event(rollout, "BaselinesFromOtherPlan", "; ".join(warnings), True, now)

    def _runtime_conditions(
        self, status: StageRolloutStatus, trust: Trust, now: datetime, generation: int
    ) -> StageRolloutStatus:
        """Reconciled, and RecordsTrusted with why nothing counts when it is False."""
        conditions = trust_condition(status.conditions, trust, now, generation)
        conditions = set_condition(
            conditions, "Reconciled", "True", "Reconciled", "", now, generation
        )
        blockers = status.blockers if trust.trusted else [trust.message, *status.blockers]
        return status.model_copy(update={"conditions": conditions, "blockers": blockers})

    def _failed(
        self, namespace: str, name: str, now: datetime, outcome: Outcome, error: Exception
    ) -> None:
        """Anything a tick raised: this rollout's condition, Event and error metric, no more."""
        message = f"while {outcome.stage}: {type(error).__name__}: {_excerpt(str(error))}"
        outcome.problem = message
        self._hooks.failed(namespace, name, "reconcile", message)
        log.warning("tick failed: %s", message, extra={"rollout": f"{namespace}/{name}"})
        if self._dry_run or not self._hooks.may_write():
            return
        try:
            rollout = self._api.get(ROLLOUTS, namespace, name)
            if rollout is None:
                return
            raw = dict(rollout.get("status") or {})
            previous = [c for c in raw.get("conditions", []) if isinstance(c, dict)]
            updated, flipped = failure_condition(previous, message, now)
            raw["conditions"] = updated
            self._api.replace_status(ROLLOUTS, namespace, name, {**rollout, "status": raw})
            if flipped:
                self._event(rollout, "ReconcileFailed", message, True, now)
        except Exception as again:
            log.warning(
                "tick failure not recorded: %s",
                type(again).__name__,
                extra={"rollout": f"{namespace}/{name}"},
            )

    # pieces -----------------------------------------------------------------------

    def _plan(self, spec: StageRolloutSpec, tenant: Tenant) -> Plan:
        return self._plan_sources.resolve(spec.plan, namespace=tenant.namespace, api=tenant.api)

    def _metrics(self, spec: StageRolloutSpec, plan: Plan, tenant: Tenant) -> MetricsSource:
        if self._metrics_for is not None:
            return self._metrics_for(spec, plan)
        settings = self._endpoints.settings_for(spec.prometheus, tenant)
        if settings is None:
            return NoPrometheus()
        return self._endpoints.source(settings, plan)

    def _spec(self, rollout: Mapping[str, Any]) -> StageRolloutSpec:
        """The validated spec (models are frozen: one copy per rollout version is enough)."""
        return self._parsed(rollout, "spec", StageRolloutSpec)

    def _parsed(self, rollout: Mapping[str, Any], part: str, model: type[_Model]) -> _Model:
        metadata = rollout.get("metadata") or {}
        uid, version = str(metadata.get("uid", "")), str(metadata.get("resourceVersion", ""))
        if not uid or not version:
            return model.model_validate(rollout.get(part) or {})
        kept = self._parsed_parts.get((uid, part))
        if kept is not None and kept[0] == version:
            return kept[1]  # type: ignore[return-value]
        found = model.model_validate(rollout.get(part) or {})
        if len(self._parsed_parts) >= _PARSED_LIMIT:
            self._parsed_parts.clear()
        self._parsed_parts[(uid, part)] = (version, found)  # one version per rollout
        return found

    def _status(self, rollout: Mapping[str, Any], plan: Plan, now: datetime) -> StageRolloutStatus:
        raw = rollout.get("status") or {}
        if raw.get("planHash") and raw.get("step"):
            try:
                return StageRolloutStatus.model_validate(raw)
            except ValidationError:
                log.warning(
                    "unreadable status replaced by a fresh one",
                    extra={"rollout": rollout["metadata"]["name"]},
                )
        fresh = initial_status(plan.content_hash, steps_of(plan).first.id, now)
        return StageRolloutStatus.model_validate(fresh.model_dump())

    def _extend(
        self,
        decision: Decision,
        previous: StageRolloutStatus,
        seen: Observations,
        plan: Plan,
        generation: int,
        now: datetime,
    ) -> StageRolloutStatus:
        core = decision.status
        step = steps_of(plan).get(core.step)
        percent = plan.flag_set.percent(expected_flags(step, core)[0])
        conditions = lifecycle_conditions(
            previous.conditions, core.state, core.reason, now, generation
        )
        problem = seen.target.rollout_problem
        conditions = set_condition(
            conditions,
            "TargetReady",
            "False" if problem else "True",
            "RolloutProblem" if problem else "Observed",
            problem or "",
            now,
            generation,
        )
        conditions = set_condition(conditions, "Valid", "True", "Valid", "", now, generation)
        verdicts = [
            VerdictRecord(
                name=v.name,
                role=role,
                outcome=v.outcome.value,
                reason=v.reason,
                query=v.query,
                window_seconds=v.window.total_seconds(),
                observed=v.observed,
                threshold=v.threshold,
                samples=v.samples,
            )
            for role, group in (("gate", seen.gates), ("trigger", seen.triggers))
            for v in group.values()
        ]
        extras = {
            "observed_generation": generation,
            "enforcement_percent": percent,
            "conditions": conditions,
            "last_verdicts": verdicts,
            "blockers": list(decision.blockers),
            "last_tick_at": now,
            "phase": step.phase_id,
            "environment": step.environment,
            "failed_jobs": _failed_jobs(core, seen),
            "commands_rejected": _rejected_commands(previous, decision, now),
        }
        # The core's fields as they are (models already validated), not dumped and re-parsed.
        return StageRolloutStatus.model_validate({**core.__dict__, **extras})

    def _hold(
        self, rollout: Mapping[str, Any], reason: str, message: str, now: datetime, outcome: Outcome
    ) -> bool:
        """Record an unusable spec or plan as a condition and an Event; change nothing else."""
        outcome.problem = message
        self._hooks.failed(
            rollout["metadata"].get("namespace", ""), rollout["metadata"]["name"], reason, message
        )
        if self._dry_run or not self._hooks.may_write():
            return True
        raw = dict(rollout.get("status") or {})
        generation = int(rollout["metadata"].get("generation", 0))
        existing = [c for c in raw.get("conditions", []) if isinstance(c, dict)]
        try:
            from controller.kube.resources import Condition

            current = [Condition.model_validate(c) for c in existing]
        except ValidationError:
            current = []
        held_already = any(
            c.type == "Valid" and c.status == "False" and c.message == message for c in current
        )
        if held_already and raw.get("observedGeneration") == generation:
            return True  # said already: nothing to write, nothing to tell again
        updated = set_condition(current, "Valid", "False", reason, message, now, generation)
        raw["conditions"] = [
            c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in updated
        ]
        raw["observedGeneration"] = generation
        try:
            self._api.replace_status(
                ROLLOUTS,
                rollout["metadata"]["namespace"],
                rollout["metadata"]["name"],
                {**rollout, "status": raw},
            )
        except KubeError as error:
            if error.conflict:
                return False
            raise
        if not held_already:
            self._event(rollout, reason, message, True, now)
        return True

    def _missing_right(
        self, actions: Sequence[Action], target: EnvironmentTargets, tenant: Tenant
    ) -> Refused | None:
        """The first write of this tick the acting accounts may not make, asked of each
        target's API server before the status moves, so that a refused step writes nothing."""
        wanted: list[tuple[Place, str, Kind, str]] = []
        jobs = False
        for action in actions:
            if isinstance(action, SetFlags | RestartWorkloads):
                wanted += target.writes_for(action)
            elif isinstance(action, StartJob):
                jobs = True
        for place, verb, kind, name in dict.fromkeys(wanted):
            if not target.may(place, verb, kind, name):
                return not_permitted_at(place, verb, kind, name)
        if jobs and not tenant.api.may("create", JOBS, tenant.namespace, None):
            return not_permitted(tenant, "create", JOBS, "")
        return None

    def _refuse_as(
        self,
        tenant: Tenant,
        error: KubeError,
        rollout: Mapping[str, Any],
        now: datetime,
        outcome: Outcome,
    ) -> bool:
        """A 403 met as the rollout's account holds that rollout; any other error propagates."""
        if not error.acting_as:
            raise error
        refusal = forbidden(error, tenant)
        return self._hold(rollout, refusal.reason, refusal.message, now, outcome)

    def _event(
        self, rollout: Mapping[str, Any], reason: str, message: str, warning: bool, now: datetime
    ) -> None:
        if self._dry_run:
            log.info(
                "would record event %s: %s",
                reason,
                message,
                extra={"rollout": rollout["metadata"]["name"]},
            )
            return
        metadata = rollout["metadata"]
        stamp = now.isoformat()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{metadata['name']}.",
                "namespace": metadata["namespace"],
            },
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata.get("uid", ""),
            },
            "reason": reason[:128],
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "stage-rollout-controller"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self._api.create(EVENTS, metadata["namespace"], body)
        except KubeError as error:
            log.warning("event not recorded: %s", error, extra={"rollout": metadata["name"]})


def _worth_writing(
    previous: StageRolloutStatus, new: StageRolloutStatus, rollout: Mapping[str, Any]
) -> bool:
    """Write when the decision changed anything, a condition or verdict flipped, or a blocker
    changed in more than its figures. Liveness is the last-tick metric and the Lease, not a
    status write: a tick that only moves lastTickAt (or a soak's minutes) writes nothing."""
    if not (rollout.get("status") or {}).get("planHash"):
        return True
    if _compared(new) != _compared(previous):
        return True
    if [(c.type, c.status, c.reason) for c in new.conditions] != [
        (c.type, c.status, c.reason) for c in previous.conditions
    ]:
        return True
    if [(v.name, v.role, v.outcome) for v in new.last_verdicts] != [
        (v.name, v.role, v.outcome) for v in previous.last_verdicts
    ]:
        return True
    return [_DIGITS.sub("#", b) for b in new.blockers] != [
        _DIGITS.sub("#", b) for b in previous.blockers
    ]


def _compared(status: StageRolloutStatus) -> dict[str, Any]:
    """The fields compared as they are (frozen models compare by value)."""
    return {k: v for k, v in status.__dict__.items() if k not in _VOLATILE}


def _trusted_before(status: StageRolloutStatus) -> bool:
    """Whether the last status did not already say that records are not trusted."""
    return not any(c.type == "RecordsTrusted" and c.status == "False" for c in status.conditions)


def _excerpt(text: str, limit: int = 160) -> str:
    """A short, escaped excerpt of an error, never a whole answer or file."""
    flat = text.encode("unicode_escape", "replace").decode("ascii", "replace")
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _jobs_matter(plan: Plan, status: StageRolloutStatus) -> bool:
    """Whether this tick needs the rollout's Jobs: its step runs jobs, or started some."""
    step = steps_of(plan).get(status.step)
    return bool(step.jobs) or any(record.step == status.step for record in status.jobs.values())


def _capped(message: str, limit: int = 600) -> str:
    """A plan error as a condition message: the author's text only as a short excerpt."""
    return message if len(message) <= limit else excerpt(message, limit)


def _describe_validation(prefix: str, error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{prefix}.{where}: {str(item['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


_REJECTIONS_KEPT = 10


def _failed_jobs(core: RolloutStatus, seen: Observations) -> list[str]:
    """Jobs of the current step whose current attempt failed: what `stagectl retry` can re-run."""
    return sorted(
        name
        for name, record in core.jobs.items()
        if record.step == core.step
        and (job := seen.jobs.get(name)) is not None
        and job.attempt == record.attempt
        and job.phase is JobPhase.FAILED
    )


def _rejected_commands(
    previous: StageRolloutStatus, decision: Decision, now: datetime
) -> list[RejectedCommand]:
    """The latest rejected commands, so that `status` and `history` show them to people."""
    new = [
        RejectedCommand(at=now, step=event.step, message=event.message)
        for event in decision.events
        if event.kind is EventKind.COMMAND_REJECTED
    ]
    return [*previous.commands_rejected, *new][-_REJECTIONS_KEPT:]
