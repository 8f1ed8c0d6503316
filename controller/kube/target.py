"""The Target port over Kubernetes: the flags ConfigMap and the Deployments that read it.

Writes are idempotent. The ConfigMap is merge-patched with only the flag keys
whose values differ (other keys are never touched); a Deployment is restarted by
setting one pod-template annotation to the hash of the flags, so the same flags
never restart a Deployment twice. A step counts as rolled out only when every
Deployment's controller has observed that template and all replicas are updated
and available.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from controller.kube.api import CONFIGMAPS, DEPLOYMENTS, Kind, KubeApi
from controller.kube.resources import GROUP
from phases.actions import RestartWorkloads, SetFlags
from phases.flags import hash_flags
from phases.observations import TargetState
from phases.plan import KNOWN_FLAGS

FLAGS_HASH_ANNOTATION = f"{GROUP}/flags-hash"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"


class KubeTarget:
    """One rollout's ConfigMap and Deployments in one namespace."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        config_map: str,
        deployments: Sequence[str],
        *,
        dry_run: bool = False,
        on_write: Any = None,
        flag_names: Sequence[str] = KNOWN_FLAGS,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.config_map = config_map
        self.deployments = tuple(deployments)
        self.dry_run = dry_run
        self.flag_names = tuple(flag_names)
        """The plan's flags: the ConfigMap keys hashed (others are never read or written)."""
        self._on_write = on_write or (lambda _message: None)
        self._seen: dict[tuple[str, str], dict[str, Any] | None] = {}

    def _configmap(self) -> dict[str, Any] | None:
        """The ConfigMap as observed this tick: read once, then written against that copy."""
        key = ("configmap", self.config_map)
        if key not in self._seen:
            self._seen[key] = self._api.get(CONFIGMAPS, self.namespace, self.config_map)
        return self._seen[key]

    def _deployment(self, name: str) -> dict[str, Any] | None:
        """A Deployment as observed this tick: read once, then patched against that copy."""
        key = ("deployment", name)
        if key not in self._seen:
            self._seen[key] = self._api.get(DEPLOYMENTS, self.namespace, name)
        return self._seen[key]

    def observe(self, at: datetime) -> TargetState:
        configmap = self._configmap()
        data: Mapping[str, str] = (configmap or {}).get("data") or {}
        flags_hash = (
            hash_flags({k: data[k] for k in self.flag_names})
            if all(k in data for k in self.flag_names)
            else None
        )
        problems: list[str] = []
        rolled_out = flags_hash is not None
        for name in self.deployments:
            deployment = self._deployment(name)
            if deployment is None:
                problems.append(f"Deployment {self.namespace}/{name} does not exist")
                rolled_out = False
                continue
            done, problem = rollout_state(deployment, flags_hash)
            rolled_out = rolled_out and done
            if problem:
                problems.append(problem)
        return TargetState(
            flags_hash=flags_hash,
            rolled_out=rolled_out and not problems,
            rollout_problem="; ".join(problems) or None,
        )

    def apply(self, action: SetFlags | RestartWorkloads, at: datetime) -> None:
        if isinstance(action, SetFlags):
            self._set_flags(action.flags)
        else:
            for name in self.deployments:
                self._restart(name, action.flags_hash)

    def writes_for(self, action: SetFlags | RestartWorkloads) -> list[tuple[str, Kind, str]]:
        """(verb, kind, name) of each write `apply` would make, against this tick's reads."""
        if isinstance(action, SetFlags):
            configmap = self._configmap()
            if configmap is None:
                return [("create", CONFIGMAPS, "")]
            current = configmap.get("data") or {}
            changed = any(current.get(key) != value for key, value in action.flags.items())
            return [("patch", CONFIGMAPS, self.config_map)] if changed else []
        return [
            ("patch", DEPLOYMENTS, name)
            for name in self.deployments
            if (found := self._deployment(name)) is not None
            and _template_hash(found) != action.flags_hash
        ]

    def _set_flags(self, flags: Mapping[str, str]) -> None:
        configmap = self._configmap()
        if configmap is None:
            self._write(f"create ConfigMap {self.namespace}/{self.config_map} with {dict(flags)}")
            if not self.dry_run:
                self._api.create(
                    CONFIGMAPS,
                    self.namespace,
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": self.config_map,
                            "labels": {MANAGED_BY_LABEL: "stage-rollout-controller"},
                        },
                        "data": dict(flags),
                    },
                )
            return
        current = configmap.get("data") or {}
        changed = {key: value for key, value in flags.items() if current.get(key) != value}
        if not changed:
            return
        self._write(f"patch ConfigMap {self.namespace}/{self.config_map}: {changed}")
        if not self.dry_run:
            self._api.merge_patch(CONFIGMAPS, self.namespace, self.config_map, {"data": changed})

    def _restart(self, name: str, flags_hash: str) -> None:
        deployment = self._deployment(name)
        if deployment is None:
            return
        if _template_hash(deployment) == flags_hash:
            return
        self._write(f"restart Deployment {self.namespace}/{name} onto flags {flags_hash}")
        if not self.dry_run:
            patch = {
                "spec": {
                    "template": {"metadata": {"annotations": {FLAGS_HASH_ANNOTATION: flags_hash}}}
                }
            }
            self._api.merge_patch(DEPLOYMENTS, self.namespace, name, patch)

    def _write(self, message: str) -> None:
        self._on_write(("would " if self.dry_run else "") + message)


def _template_hash(deployment: Mapping[str, Any]) -> str | None:
    annotations = (
        deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}
    )
    value = annotations.get(FLAGS_HASH_ANNOTATION)
    return str(value) if value is not None else None


def rollout_state(deployment: Mapping[str, Any], flags_hash: str | None) -> tuple[bool, str | None]:
    """Whether a Deployment finished rolling out the flags, and what is wrong if it is stuck."""
    name = deployment.get("metadata", {}).get("name", "?")
    spec = deployment.get("spec", {})
    status = deployment.get("status") or {}
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return (
                False,
                f"Deployment {name} exceeded its progress deadline: {condition.get('message', '')}".rstrip(
                    ": "
                ),
            )
    if flags_hash is None or _template_hash(deployment) != flags_hash:
        return False, None
    generation = int(deployment.get("metadata", {}).get("generation", 0))
    replicas = int(spec.get("replicas", 1))
    done = (
        int(status.get("observedGeneration", 0)) >= generation
        and int(status.get("updatedReplicas", 0)) >= replicas
        and int(status.get("availableReplicas", 0)) >= replicas
        and int(status.get("replicas", replicas)) <= replicas
    )
    return done, None
