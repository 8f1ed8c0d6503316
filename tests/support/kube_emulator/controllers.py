"""Stand-ins for the deployment and job controllers of kube-controller-manager.

No pods or ReplicaSets exist; the controllers write only what a client of the
Deployment or Job sees: ``status`` (through the status path, so resourceVersion
moves and watches see MODIFIED events, generation does not) and the Deployment's
``deployment.kubernetes.io/revision`` annotation.

Deployments: when a new generation appears the controller first records it as
observed with a rollout in progress (``observedGeneration`` = generation,
``updatedReplicas`` below ``spec.replicas``, condition Progressing=True reason
ReplicaSetUpdated or NewReplicaSetCreated), then, ``rollout_delay`` seconds later,
reports it complete (all replica counts = ``spec.replicas``, Available=True,
Progressing=True reason NewReplicaSetAvailable). A stalled deployment never
completes and, ``spec.progressDeadlineSeconds`` after its rollout began, gets
Progressing=False reason ProgressDeadlineExceeded. A paused deployment is observed
but not rolled (Progressing=Unknown reason DeploymentPaused).

Jobs: a new job gets ``startTime`` and ``active``; ``job_delay`` seconds later it
succeeds (``succeeded`` = completions, SuccessCriteriaMet and Complete conditions,
``completionTime``) or, if its name matches a `fail_jobs` pattern, fails
(``failed`` = backoffLimit + 1, FailureTarget and Failed conditions, reason
BackoffLimitExceeded). Jobs matching a `hold_jobs` pattern stay active, and
suspended jobs do not start.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from .resources import ResourceType
from .store import Store, now_rfc3339

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def pod_template_hash(template: Any) -> str:
    """A stable 10-character hash of a pod template, shaped like the real pod-template-hash."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_HASH_ALPHABET[byte % len(_HASH_ALPHABET)] for byte in digest[:10])


def _scaled(value: Any, replicas: int, *, round_up: bool, default: str) -> int:
    value = default if value is None else value
    if isinstance(value, str) and value.endswith("%"):
        fraction = replicas * int(value[:-1]) / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(value)


@dataclass
class _Rollout:
    generation: int
    template_hash: str
    started: float
    previous_available: int
    fresh: bool
    template_changed: bool
    done: bool = False
    deadline_reported: bool = False


@dataclass
class _JobRun:
    started: float


def _set_condition(
    conditions: list[dict[str, Any]],
    kind: str,
    status: str,
    reason: str,
    message: str,
    *,
    update_time: bool = False,
    probe_time: bool = False,
) -> None:
    now = now_rfc3339()
    for condition in conditions:
        if condition.get("type") == kind:
            if condition.get("status") != status:
                condition["lastTransitionTime"] = now
            if update_time and (condition.get("reason"), condition.get("message")) != (
                reason,
                message,
            ):
                condition["lastUpdateTime"] = now
            condition.update({"status": status, "reason": reason, "message": message})
            return
    entry: dict[str, Any] = {"type": kind, "status": status}
    if probe_time:
        entry["lastProbeTime"] = now
    if update_time:
        entry["lastUpdateTime"] = now
    entry.update({"lastTransitionTime": now, "reason": reason, "message": message})
    conditions.append(entry)


def _counts(status: dict[str, Any], **counts: int) -> None:
    for key, value in counts.items():
        if value:
            status[key] = value
        else:
            status.pop(key, None)  # the Go types have omitempty on every count


class Controllers:
    """The deployment and job controllers, on one background thread."""

    def __init__(self, store: Store, *, rollout_delay: float = 0.2, job_delay: float = 0.2) -> None:
        self.store = store
        self.rollout_delay = rollout_delay
        self.job_delay = job_delay
        self.tick = 0.02
        self._stalled: set[tuple[str, str]] = set()
        self._fail_patterns: list[re.Pattern[str]] = []
        self._hold_patterns: list[re.Pattern[str]] = []
        self._rollouts: dict[str, _Rollout] = {}
        self._jobs: dict[str, _JobRun] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deployments = store.resolve_type("deployments", "apps")
        self._job_type = store.resolve_type("jobs", "batch")

    # --- knobs -------------------------------------------------------------------------

    def stall(self, namespace: str, name: str) -> None:
        with self.store.lock:
            self._stalled.add((namespace, name))
            self.store.changed.notify_all()

    def unstall(self, namespace: str, name: str) -> None:
        with self.store.lock:
            self._stalled.discard((namespace, name))
            self.store.changed.notify_all()

    def fail_jobs(self, pattern: str) -> None:
        with self.store.lock:
            self._fail_patterns.append(re.compile(pattern))

    def hold_jobs(self, pattern: str) -> None:
        with self.store.lock:
            self._hold_patterns.append(re.compile(pattern))

    def release_jobs(self) -> None:
        with self.store.lock:
            self._hold_patterns.clear()
            self.store.changed.notify_all()

    def clear_job_rules(self) -> None:
        with self.store.lock:
            self._fail_patterns.clear()
            self._hold_patterns.clear()
            self.store.changed.notify_all()

    # --- thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="kube-emulator-controllers", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self.store.lock:
            self.store.changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.store.changed:
                self.reconcile()
                self.store.changed.wait(self.tick)

    def reconcile(self) -> None:
        """One pass over all deployments and jobs (called with the store lock held)."""
        now = time.monotonic()
        seen: set[str] = set()
        for deployment in list(self.store.iter_stored(self._deployments, None)):
            seen.add(deployment["metadata"]["uid"])
            self._reconcile_deployment(deployment, now)
        for job in list(self.store.iter_stored(self._job_type, None)):
            seen.add(job["metadata"]["uid"])
            self._reconcile_job(job, now)
        for uid in [uid for uid in self._rollouts if uid not in seen]:
            del self._rollouts[uid]
        for uid in [uid for uid in self._jobs if uid not in seen]:
            del self._jobs[uid]

    # --- deployments -------------------------------------------------------------------------

    def _write(self, rtype: ResourceType, obj: dict[str, Any], mutate: Any) -> None:
        meta = obj["metadata"]
        self.store.system_update(rtype, meta.get("namespace", ""), meta["name"], mutate)

    def _reconcile_deployment(self, deployment: dict[str, Any], now: float) -> None:
        meta = deployment["metadata"]
        if meta.get("deletionTimestamp"):
            return
        spec = deployment.get("spec") or {}
        uid, generation = meta["uid"], int(meta.get("generation", 1))
        state = self._rollouts.get(uid)
        if state is not None and state.generation == generation and state.done:
            # Settled: nothing to do, and no need to hash the template (this runs after every write).
            return
        template_hash = pod_template_hash(spec.get("template"))
        if state is None or state.generation != generation:
            previous_available = int((deployment.get("status") or {}).get("availableReplicas") or 0)
            template_changed = state is None or state.template_hash != template_hash
            state = _Rollout(
                generation,
                template_hash,
                now,
                previous_available,
                fresh=state is None,
                template_changed=template_changed,
            )
            self._rollouts[uid] = state
            self._write(self._deployments, deployment, lambda obj: self._observe(obj, state))
            return
        if state.done:
            return
        stalled = (meta.get("namespace", ""), meta["name"]) in self._stalled
        if not stalled and now - state.started >= self.rollout_delay:
            state.done = True
            self._write(self._deployments, deployment, lambda obj: self._complete(obj, state))
        elif stalled and not state.deadline_reported:
            deadline = spec.get("progressDeadlineSeconds")
            if isinstance(deadline, int) and now - state.started >= deadline:
                state.deadline_reported = True
                self._write(self._deployments, deployment, lambda obj: self._deadline(obj, state))

    @staticmethod
    def _replica_set(obj: dict[str, Any], state: _Rollout) -> str:
        return f"{obj['metadata']['name']}-{state.template_hash}"

    def _observe(self, obj: dict[str, Any], state: _Rollout) -> None:
        spec = obj.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        annotations = obj["metadata"].setdefault("annotations", {})
        revision = int(annotations.get(REVISION_ANNOTATION, "0"))
        if state.template_changed or not revision:
            annotations[REVISION_ANNOTATION] = str(revision + 1)
        status = obj.setdefault("status", {})
        status["observedGeneration"] = state.generation
        conditions = status.setdefault("conditions", [])
        replica_set = self._replica_set(obj, state)
        if spec.get("paused"):
            state.done = True
            _set_condition(
                conditions,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                update_time=True,
            )
            return
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        surge = _scaled(rolling.get("maxSurge"), replicas, round_up=True, default="25%")
        unavailable_allowed = _scaled(
            rolling.get("maxUnavailable"), replicas, round_up=False, default="25%"
        )
        if surge == 0 and unavailable_allowed == 0:
            unavailable_allowed = 1
        available = min(state.previous_available, replicas)
        if state.fresh or available == 0:
            updated, total = replicas, replicas
            available = 0
        elif state.template_changed:
            updated = min(replicas, max(surge, 1))
            total = available + updated
        else:  # a scale: same pods, different count
            updated, total = replicas, max(replicas, available)
        _counts(
            status,
            replicas=total,
            updatedReplicas=updated,
            readyReplicas=available,
            availableReplicas=available,
            unavailableReplicas=max(0, replicas - available),
        )
        if available >= replicas - unavailable_allowed:
            _set_condition(
                conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                update_time=True,
            )
        else:
            _set_condition(
                conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                update_time=True,
            )
        if state.fresh:
            reason, message = "NewReplicaSetCreated", f'Created new replica set "{replica_set}"'
        else:
            reason, message = "ReplicaSetUpdated", f'ReplicaSet "{replica_set}" is progressing.'
        _set_condition(conditions, "Progressing", "True", reason, message, update_time=True)

    def _complete(self, obj: dict[str, Any], state: _Rollout) -> None:
        replicas = int((obj.get("spec") or {}).get("replicas", 1))
        status = obj.setdefault("status", {})
        status["observedGeneration"] = state.generation
        _counts(
            status,
            replicas=replicas,
            updatedReplicas=replicas,
            readyReplicas=replicas,
            availableReplicas=replicas,
            unavailableReplicas=0,
        )
        conditions = status.setdefault("conditions", [])
        _set_condition(
            conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            update_time=True,
        )
        _set_condition(
            conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{self._replica_set(obj, state)}" has successfully progressed.',
            update_time=True,
        )

    def _deadline(self, obj: dict[str, Any], state: _Rollout) -> None:
        conditions = obj.setdefault("status", {}).setdefault("conditions", [])
        _set_condition(
            conditions,
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            f'ReplicaSet "{self._replica_set(obj, state)}" has timed out progressing.',
            update_time=True,
        )

    # --- jobs -----------------------------------------------------------------------------

    def _reconcile_job(self, job: dict[str, Any], now: float) -> None:
        meta = job["metadata"]
        if meta.get("deletionTimestamp"):
            return
        status = job.get("status") or {}
        if any(
            condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True"
            for condition in status.get("conditions") or []
        ):
            return
        spec = job.get("spec") or {}
        if spec.get("suspend"):
            return
        run = self._jobs.get(meta["uid"])
        if run is None:
            self._jobs[meta["uid"]] = _JobRun(now)
            parallelism = int(spec.get("parallelism", 1))

            def start(obj: dict[str, Any]) -> None:
                job_status = obj.setdefault("status", {})
                job_status.setdefault("startTime", now_rfc3339())
                _counts(job_status, active=parallelism)
                job_status["ready"] = 0
                job_status["terminating"] = 0
                job_status.setdefault("uncountedTerminatedPods", {})

            self._write(self._job_type, job, start)
            return
        name = meta["name"]
        if now - run.started < self.job_delay or any(p.search(name) for p in self._hold_patterns):
            return
        fails = any(pattern.search(name) for pattern in self._fail_patterns)
        self._write(self._job_type, job, self._fail if fails else self._succeed)

    @staticmethod
    def _succeed(obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        status = obj.setdefault("status", {})
        status.pop("active", None)
        status["succeeded"] = int(spec.get("completions") or 1)
        status["ready"] = 0
        status["completionTime"] = now_rfc3339()
        conditions = status.setdefault("conditions", [])
        for kind in ("SuccessCriteriaMet", "Complete"):
            _set_condition(
                conditions,
                kind,
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                probe_time=True,
            )

    @staticmethod
    def _fail(obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        status = obj.setdefault("status", {})
        status.pop("active", None)
        status["failed"] = int(spec.get("backoffLimit", 6)) + 1
        status["ready"] = 0
        conditions = status.setdefault("conditions", [])
        for kind in ("FailureTarget", "Failed"):
            _set_condition(
                conditions,
                kind,
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                probe_time=True,
            )
