"""The Jobs port over Kubernetes: plan jobs created from the rollout's templates.

A job's name is derived from the rollout, the plan job, the plan hash and the
attempt, so creating it again is a harmless AlreadyExists: a job is never run
twice for the same attempt, and a plan change never reuses an old plan's job.
`stagectl retry` asks for a new attempt, which runs with the job's resume
arguments (the runbook's migration `--resume`).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from controller.kube.api import JOBS, KubeApi, KubeError
from controller.kube.resources import API_VERSION, GROUP, KIND
from phases.actions import StartJob
from phases.observations import JobObservation, JobPhase

ROLLOUT_LABEL = f"{GROUP}/rollout"
JOB_LABEL = f"{GROUP}/job"
ATTEMPT_LABEL = f"{GROUP}/attempt"


def job_name(rollout: str, job: str, plan_hash: str, attempt: int) -> str:
    """A DNS-1123 name unique per (rollout, job, plan, attempt), at most 63 characters."""
    suffix = f"-{plan_hash[:8]}-{attempt}"
    base = re.sub(r"[^a-z0-9-]", "-", f"{rollout}-{job}".lower()).strip("-")
    if len(base) + len(suffix) > 63:
        digest = hashlib.sha256(base.encode()).hexdigest()[:6]
        base = base[: 63 - len(suffix) - 7].rstrip("-") + "-" + digest
    return base + suffix


class KubeJobs:
    """One rollout's plan jobs in one namespace."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        rollout: Mapping[str, Any],
        plan_hash: str,
        templates: Mapping[str, Mapping[str, Any]],
        *,
        dry_run: bool = False,
        active: bool = True,
    ) -> None:
        self._api = api
        self._active = active
        self._namespace = namespace
        self._rollout_name = str(rollout["metadata"]["name"])
        self._rollout_uid = str(rollout["metadata"].get("uid", ""))
        self._plan_hash = plan_hash
        self._templates = templates
        self._dry_run = dry_run
        self._missing: dict[str, JobObservation] = {}

    def observe(self, at: datetime) -> Mapping[str, JobObservation]:
        if not self._active:
            return {}
        items, _ = self._api.list(JOBS, self._namespace, f"{ROLLOUT_LABEL}={self._rollout_name}")
        seen: dict[str, JobObservation] = dict(self._missing)
        for item in items:
            labels = item.get("metadata", {}).get("labels") or {}
            name, attempt = labels.get(JOB_LABEL), int(labels.get(ATTEMPT_LABEL, "0"))
            if not name or not item["metadata"]["name"].endswith(
                f"-{self._plan_hash[:8]}-{attempt}"
            ):
                continue
            if name in seen and seen[name].attempt > attempt:
                continue
            seen[name] = JobObservation(name, attempt, *job_phase(item))
        return seen

    def start(self, action: StartJob, at: datetime) -> None:
        template = self._templates.get(action.template or action.name)
        if template is None:
            known = ", ".join(sorted(self._templates)) or "none"
            self._missing[action.name] = JobObservation(
                action.name,
                action.attempt,
                JobPhase.FAILED,
                f"no job template {action.template or action.name!r} in spec.jobTemplates (templates: {known})",
            )
            return
        self._missing.pop(action.name, None)
        if self._dry_run:
            return
        try:
            self._api.create(JOBS, self._namespace, self._job(action, template))
        except KubeError as error:
            if error.status != 409:
                raise

    def _job(self, action: StartJob, template: Mapping[str, Any]) -> dict[str, Any]:
        spec = copy.deepcopy(dict(template))
        containers = spec.get("template", {}).get("spec", {}).get("containers") or []
        if containers and action.args:
            containers[0]["args"] = [*containers[0].get("args", []), *action.args]
        labels = {
            ROLLOUT_LABEL: self._rollout_name,
            JOB_LABEL: action.name,
            ATTEMPT_LABEL: str(action.attempt),
        }
        spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {}).update(
            labels
        )
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": job_name(self._rollout_name, action.name, self._plan_hash, action.attempt),
                "labels": labels,
                "annotations": {
                    f"{GROUP}/step": action.step,
                    f"{GROUP}/plan-hash": self._plan_hash,
                },
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": KIND,
                        "name": self._rollout_name,
                        "uid": self._rollout_uid,
                    }
                ],
            },
            "spec": spec,
        }


def job_phase(job: Mapping[str, Any]) -> tuple[JobPhase, str]:
    """Running, succeeded or failed, from a Job's status and conditions."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return JobPhase.SUCCEEDED, ""
        if condition.get("type") == "Failed":
            return JobPhase.FAILED, str(
                condition.get("message") or condition.get("reason") or "failed"
            )
    if int(status.get("succeeded", 0)) > 0:
        return JobPhase.SUCCEEDED, ""
    return JobPhase.RUNNING, ""
