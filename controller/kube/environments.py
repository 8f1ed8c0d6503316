"""Where each plan environment of a rollout lives, and the Target port over all of them.

A rollout maps plan environments (staging, production, ...) to targets in
`spec.environments`; an environment it does not list uses `spec.target` and
`spec.prometheus`, so a rollout written before environments existed sends every
environment to its one target. Every access stays the rollout's own:

- in this cluster, an environment is reached as a ServiceAccount of the
  rollout's namespace (impersonated); a target in another namespace works only
  where that namespace granted the account a Role;
- in another cluster, through a kubeconfig in a Secret of the rollout's
  namespace, read as the rollout's account and checked by `kubeconfigs` (no
  plugins, no files); there the kubeconfig's own credentials act.

`EnvironmentTargets` observes the target of the step the tick began in and
writes to the targets `phases.environments.environments_holding` names for the
step the decision left the rollout in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from controller.kube.api import SECRETS, Kind, KubeApi, KubeError
from controller.kube.kubeconfigs import RemoteClients, parse_kubeconfig
from controller.kube.resources import EnvironmentSpec, PrometheusSpec, StageRolloutSpec
from controller.kube.target import KubeTarget
from controller.kube.tenancy import Refused, Tenancy, Tenant, excerpt, write_refused
from controller.redaction import redact
from phases.actions import RestartWorkloads, SetFlags
from phases.environments import environments_holding, step_environment
from phases.observations import TargetState
from phases.plan import Plan
from phases.status import RolloutStatus

_SAID = 300
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Place:
    """One environment as the operator reaches it: the target, its Prometheus, who acts."""

    environment: str
    namespace: str
    config_map: str
    deployments: tuple[str, ...]
    prometheus: PrometheusSpec | None
    api: KubeApi
    user: str
    """Who acts there, for messages: the impersonated account or the kubeconfig's Secret."""
    remote: bool = False
    """In another cluster: its API errors are this rollout's to see, not the operator's."""


class Environments:
    """Resolves a rollout's environments to places; remote clients are shared between ticks."""

    def __init__(self, tenancy: Tenancy, remote: RemoteClients | None = None) -> None:
        self._tenancy = tenancy
        self._remote = remote or RemoteClients()

    def places(self, spec: StageRolloutSpec, plan: Plan, tenant: Tenant) -> dict[str, Place]:
        """Every plan environment's place; Refused when one has none or reaches too far."""
        unknown = sorted(set(spec.environments) - set(plan.environments))
        if unknown:
            raise Refused(
                "EnvironmentRefused",
                f"spec.environments.{excerpt(unknown[0], 40)} is not an environment of plan "
                f"{plan.name} (its environments: {', '.join(plan.environments)})",
            )
        return {name: self._place(name, spec, tenant) for name in plan.environments}

    def _place(self, name: str, spec: StageRolloutSpec, tenant: Tenant) -> Place:
        given = spec.environments.get(name)
        if given is None:
            if spec.target is None:
                raise Refused(
                    "EnvironmentRefused",
                    f"plan environment {name} has no target: add spec.environments.{name} "
                    "or spec.target",
                )
            return Place(
                name,
                tenant.namespace,
                spec.target.config_map,
                tuple(spec.target.deployments),
                spec.prometheus,
                tenant.api,
                tenant.user,
            )
        where = f"spec.environments.{name}"
        namespace = given.target.namespace or tenant.namespace
        if _NAMESPACE.fullmatch(namespace) is None:
            raise Refused(
                "EnvironmentRefused",
                f"{where}.target.namespace {excerpt(namespace)} is not a namespace name",
            )
        prometheus = prometheus_of(spec, name)
        target = given.target
        remote = given.kubeconfig_secret is not None
        if remote:
            api, user = self._remote_api(given, tenant, where)
        else:
            acting = (
                self._tenancy.account(tenant.namespace, given.service_account_name)
                if given.service_account_name
                else tenant
            )
            api, user = acting.api, acting.user
        return Place(
            name,
            namespace,
            target.config_map,
            tuple(target.deployments),
            prometheus,
            api,
            user,
            remote,
        )

    def _remote_api(
        self, given: EnvironmentSpec, tenant: Tenant, where: str
    ) -> tuple[KubeApi, str]:
        ref = given.kubeconfig_secret
        assert ref is not None
        if given.service_account_name is not None:
            raise Refused(
                "EnvironmentRefused",
                f"{where}: serviceAccountName goes with this cluster; in another cluster the "
                "kubeconfig's own credentials act",
            )
        secret_where = f"{where}.kubeconfigSecret {tenant.namespace}/{ref.name}"
        secret = tenant.api.get(SECRETS, tenant.namespace, ref.name)
        if secret is None:
            raise Refused("KubeconfigRefused", f"{secret_where}: the Secret does not exist")
        data = secret.get("data") or {}
        if ref.key not in data:
            raise Refused("KubeconfigRefused", f"{secret_where}: has no key {ref.key}")
        cluster = parse_kubeconfig(data[ref.key], f"{secret_where} key {ref.key}")
        return self._remote.api(cluster), f"the kubeconfig of Secret {tenant.namespace}/{ref.name}"


def prometheus_of(spec: StageRolloutSpec, environment: str) -> PrometheusSpec | None:
    """The Prometheus an environment's gates read: its own, else the rollout's."""
    given = spec.environments.get(environment)
    return (given.prometheus if given is not None else None) or spec.prometheus


def for_environment(spec: StageRolloutSpec, environment: str) -> StageRolloutSpec:
    """The spec as one environment sees it: its Prometheus in spec.prometheus (for the
    metrics source and the operator's prefetch, which read that field)."""
    return spec.model_copy(update={"prometheus": prometheus_of(spec, environment)})


class EnvironmentTargets:
    """The Target port over a rollout's environments (see the module docstring)."""

    def __init__(
        self,
        plan: Plan,
        places: Mapping[str, Place],
        status: RolloutStatus,
        *,
        dry_run: bool = False,
        on_write: Callable[[str], None] | None = None,
    ) -> None:
        self._plan = plan
        self.places = dict(places)
        write = on_write or (lambda _message: None)
        shared: dict[tuple[str, str, int], KubeTarget] = {}
        several = len({_key(p) for p in places.values()}) > 1
        self._targets: dict[str, KubeTarget] = {}
        for name, place in places.items():
            found = shared.get(_key(place))
            if found is None:
                found = shared[_key(place)] = KubeTarget(
                    place.api,
                    place.namespace,
                    place.config_map,
                    place.deployments,
                    dry_run=dry_run,
                    on_write=(lambda m, n=name: write(f"[{n}] {m}")) if several else write,
                    flag_names=plan.flag_set.names,
                )
            self._targets[name] = found
        self.observed = step_environment(plan, status.step)
        self.writing: tuple[str, ...] = (self.observed,)

    def aim(self, status: RolloutStatus) -> None:
        """Write this tick's actions where the decided status says its flags belong."""
        self.writing = environments_holding(self._plan, status)

    def observe(self, at: datetime) -> TargetState:
        with self._answering(self.observed):
            return self._targets[self.observed].observe(at)

    def apply(self, action: SetFlags | RestartWorkloads, at: datetime) -> None:
        for name in self._distinct(self.writing):
            with self._answering(name):
                self._targets[name].apply(action, at)

    def writes_for(self, action: SetFlags | RestartWorkloads) -> list[tuple[Place, str, Kind, str]]:
        """(place, verb, kind, name) of each write `apply` would make."""
        found: list[tuple[Place, str, Kind, str]] = []
        for name in self._distinct(self.writing):
            with self._answering(name):
                writes = self._targets[name].writes_for(action)
            found += [(self.places[name], verb, kind, obj) for verb, kind, obj in writes]
        return found

    def may(self, place: Place, verb: str, kind: Kind, name: str) -> bool:
        """Whether the place's actor may make this write, asked of its API server."""
        with self._answering(place.environment):
            return place.api.may(verb, kind, place.namespace, name or None)

    @contextmanager
    def _answering(self, environment: str) -> Iterator[None]:
        """Another cluster's API errors (refused token, 403, unreachable) as this rollout's
        condition naming the environment; this cluster's go on as they always did."""
        place = self.places[environment]
        try:
            yield
        except KubeError as error:
            if not place.remote:
                raise
            reason = {401: "Unauthorized", 403: "Forbidden"}.get(error.status, "ClusterError")
            # That cluster's answer is anyone's text: escaped, short, with no known secret.
            said = redact(str(error)).encode("unicode_escape", "replace").decode("ascii")
            said = said if len(said) <= _SAID else said[:_SAID] + "…"
            raise Refused(reason, f"environment {environment}, as {place.user}: {said}") from None

    def _distinct(self, names: tuple[str, ...]) -> list[str]:
        """Environments sharing one ConfigMap (an old-shape rollout) are written once."""
        kept: dict[int, str] = {}
        for name in names:
            kept.setdefault(id(self._targets[name]), name)
        return list(kept.values())


def _key(place: Place) -> tuple[str, str, int]:
    return (place.namespace, place.config_map, id(place.api))


def not_permitted_at(place: Place, verb: str, kind: Kind, name: str) -> Refused:
    """A write the target's cluster says its actor may not make, refused before any write."""
    actor = f"environment {place.environment}: {place.user}"
    return write_refused(actor, verb, kind, name, place.namespace, "a Role there")
