"""A rollout's plan from the places its author owns: a bundled name, inline, or a ConfigMap.

The CLI's catalog opens files by path; a rollout must never, because a plan
name that looks like a path would read the operator's own disk (its service
account token) and echo it into a condition. Here a bundled name is only ever
looked up among the plans shipped in the `phases` package, and a ConfigMap is
read in the rollout's namespace through the tenant's impersonated connection.
Failures name the reference and the reason; they quote the author's text only
as a short escaped excerpt.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from importlib import resources

import yaml

from controller.kube.api import CONFIGMAPS, KubeApi
from controller.kube.resources import ConfigMapKeyRef, PlanSource
from controller.kube.tenancy import Refused, excerpt
from phases.plan import Plan
from phases.plan_checks import parse_plan

MAX_PLAN_BYTES = 256 * 1024


def bundled_plan_names() -> list[str]:
    """The plans shipped with the operator, by name."""
    return list(_bundled_names())


@functools.cache
def _bundled_names() -> tuple[str, ...]:
    """Package data does not change while the operator runs: listed once (every tick asks)."""
    root = resources.files("phases").joinpath("plans")
    return tuple(
        sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))
    )


class PlanSources:
    """Resolves plan references; bundled plans and ConfigMap versions are parsed once."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, ...], tuple[str, Plan]] = {}
        self._lock = threading.Lock()

    def resolve(self, source: PlanSource, *, namespace: str, api: KubeApi) -> Plan:
        """The plan; Refused for a reference that cannot be read, DocumentError for a bad plan."""
        if source.inline is not None:
            try:
                text = yaml.safe_dump(source.inline, sort_keys=False)
            except (RecursionError, ValueError, yaml.YAMLError):
                raise Refused(
                    "PlanInvalid", "spec.plan.inline: the inline plan cannot be read as a document"
                ) from None
            return parse_plan(text, source="spec.plan.inline")
        if source.config_map_ref is not None:
            return self._from_config_map(source.config_map_ref, namespace, api)
        assert source.name is not None
        return self._bundled(source.name)

    def _bundled(self, name: str) -> Plan:
        names = bundled_plan_names()
        if name not in names:
            raise Refused(
                "PlanNotFound",
                f"spec.plan.name {excerpt(name)} is not a bundled plan (bundled: {', '.join(names)}); "
                "use spec.plan.inline or spec.plan.configMapRef for a plan of your own",
            )
        return self._cached(("bundled", name), lambda: _read_bundled(name))

    def _from_config_map(self, ref: ConfigMapKeyRef, namespace: str, api: KubeApi) -> Plan:
        where = f"spec.plan.configMapRef {namespace}/{ref.name} key {ref.key}"
        found = api.get(CONFIGMAPS, namespace, ref.name)
        if found is None:
            raise Refused("PlanNotFound", f"{where}: the ConfigMap does not exist")
        data = found.get("data") or {}
        if ref.key not in data:
            binary = ref.key in (found.get("binaryData") or {})
            why = "is binaryData, not text" if binary else "is not in the ConfigMap"
            raise Refused("PlanNotFound", f"{where}: the key {why}")
        text = data[ref.key]
        if not isinstance(text, str) or len(text.encode("utf-8")) > MAX_PLAN_BYTES:
            raise Refused("PlanInvalid", f"{where}: not a text of at most {MAX_PLAN_BYTES} bytes")
        version = str((found.get("metadata") or {}).get("resourceVersion", ""))
        key = ("configmap", namespace, ref.name, ref.key)
        return self._cached(key, lambda: parse_plan(text, source=where), version)

    def _cached(self, key: tuple[str, ...], load: Callable[[], Plan], version: str = "") -> Plan:
        """One parsed plan per reference, kept while its version is unchanged."""
        with self._lock:
            known = self._parsed.get(key)
        if known is not None and known[0] == version:
            return known[1]
        plan = load()
        with self._lock:
            self._parsed[key] = (version, plan)
        return plan


def _read_bundled(name: str) -> Plan:
    item = resources.files("phases").joinpath("plans", f"{name}.yaml")
    return parse_plan(item.read_text(encoding="utf-8"), source=f"{name} (bundled plan)")
