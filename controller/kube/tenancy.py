"""Who the operator acts as for one rollout, and where: its own namespace, as its own account.

A StageRollout is written by a namespace user, so nothing in it may reach past
what that namespace may do. Every read and write of a rollout's target (flags
ConfigMap, Deployments, Jobs, a plan ConfigMap, a credentials Secret) goes
through `Tenant.api`, which impersonates a ServiceAccount of the rollout's own
namespace: the API server then applies that account's RBAC, not the operator's.
This module is the one place that decides which account and namespace that is;
a rollout that names another namespace, or no account at all, is `Refused`.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.kube.api import Kind, KubeApi, KubeError
from controller.kube.resources import StageRolloutSpec

EXCERPT_CHARACTERS = 80


class Refused(Exception):
    """A rollout the operator will not act for: a `Valid=False` reason and a sentence."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Tenant:
    """One rollout's namespace and the impersonated connection that acts in it."""

    namespace: str
    service_account: str
    api: KubeApi

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


class Tenancy:
    """Admits a rollout to act in its namespace as its ServiceAccount, or refuses it."""

    def __init__(self, api: KubeApi, *, default_service_account: str | None = None) -> None:
        self._api = api
        self.default_service_account = default_service_account

    def admit(self, namespace: str, spec: StageRolloutSpec) -> Tenant:
        """The tenant a rollout of `namespace` acts as; Refused when it reaches elsewhere."""
        target = spec.target.namespace if spec.target is not None else None
        if target is not None and target != namespace:
            raise Refused(
                "TargetNamespaceRefused",
                f"spec.target.namespace {excerpt(target)} is not the rollout's namespace "
                f"{namespace}: a rollout acts only in its own namespace",
            )
        account = spec.service_account_name or self.default_service_account
        if account is None:
            raise Refused(
                "NoServiceAccount",
                "no service account to act as: set spec.serviceAccountName (a ServiceAccount "
                "of this namespace) or start the operator with --default-service-account; "
                "nothing was written",
            )
        return self.account(namespace, account)

    def account(self, namespace: str, account: str) -> Tenant:
        """A ServiceAccount of the rollout's namespace, impersonated (never another namespace's)."""
        return Tenant(namespace, account, self._api.as_service_account(namespace, account))


def forbidden(error: KubeError, tenant: Tenant) -> Refused:
    """A 403 met while acting as the tenant, as the condition that names verb and resource."""
    where = f" in namespace {error.namespace}" if error.namespace else ""
    return Refused(
        "Forbidden",
        f"the rollout's service account {tenant.user} may not {error.verb} "
        f"{error.resource}{where}; grant it in a Role (see manifests/examples/"
        f"rollout-rbac.yaml); nothing else was written: {error}",
    )


def not_permitted(tenant: Tenant, verb: str, kind: Kind, name: str) -> Refused:
    """A write the API server says the tenant may not make, refused before anything is written."""
    return write_refused(
        f"the rollout's service account {tenant.user}", verb, kind, name, tenant.namespace, "a Role"
    )


def write_refused(
    actor: str, verb: str, kind: Kind, name: str, namespace: str, role: str
) -> Refused:
    """`actor` may not `verb` the object in `namespace`: nothing was written; grant it in `role`."""
    resource = f"{kind.plural}.{kind.group}" if kind.group else kind.plural
    named = f" {name}" if name else ""
    return Refused(
        "Forbidden",
        f"{actor} may not {verb} {resource}{named} in namespace {namespace}; grant it in "
        f"{role} (see manifests/examples/rollout-rbac.yaml); nothing was written",
    )


def excerpt(text: str, limit: int = EXCERPT_CHARACTERS) -> str:
    """A short, escaped rendering of untrusted text: quoted, control characters escaped."""
    shown = repr(text[:limit])
    return shown + ("..." if len(text) > limit else "")
