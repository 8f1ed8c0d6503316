"""RBAC authorization and user impersonation, as the kube-apiserver applies them.

Off by default (`KubeEmulator(rbac=True)` or ``emulator.rbac.enabled = True``
turns it on), so tests that are not about permissions need not write Roles.

Covered
    * rbac.authorization.k8s.io/v1 Roles, ClusterRoles, RoleBindings and
      ClusterRoleBindings are served as ordinary objects (CRUD, watch); and, for
      the service accounts and credentials tests need, core/v1 ServiceAccounts
      and Secrets.
    * Each request's attributes (verb get/list/watch/create/update/patch/delete/
      deletecollection, API group, resource, subresource, namespace, name) are
      checked against the rules bound to the user and its groups: a RoleBinding
      grants its Role or ClusterRole in its own namespace only; a
      ClusterRoleBinding grants its ClusterRole everywhere and on cluster-scoped
      resources. Subjects: User, Group, ServiceAccount (namespace defaulting to
      the RoleBinding's). Rules: ``verbs``, ``apiGroups``, ``resources`` and
      ``resourceNames`` with ``*`` wildcards, ``resource/subresource`` and
      ``*/subresource``; a rule with resourceNames never matches a request
      without a name (list, watch, create), as on the real server.
    * Group ``system:masters`` is allowed everything (the real authorizer's
      superuser group). The bootstrap ``system:basic-user`` grant is built in:
      every authenticated user may create selfsubjectreviews,
      selfsubjectaccessreviews and selfsubjectrulesreviews.
    * Impersonation: ``Impersonate-User`` needs ``impersonate`` on ``users``
      (cluster scope, name = the user) or, for ``system:serviceaccount:NS:NAME``,
      on ``serviceaccounts`` in namespace NS with name NAME; each
      ``Impersonate-Group`` needs ``impersonate`` on ``groups``. Impersonating a
      service account without groups gives it ``system:serviceaccounts``,
      ``system:serviceaccounts:NS`` (and ``system:authenticated``), as the real
      impersonation filter does. The request (and a SelfSubjectReview) then acts
      as the impersonated user.
    * ``authorization.k8s.io/v1`` SelfSubjectAccessReviews with
      ``resourceAttributes`` answer ``status.allowed`` for the (impersonated)
      caller, from the same rules.
    * A refusal is a 403 ``Status`` worded like the apiserver's (``deployments.apps
      "coredns" is forbidden: User "..." cannot patch resource "deployments" in
      API group "apps" in the namespace "kube-system"``), with details.

Not covered
    ClusterRole aggregation (``aggregationRule`` is stored, never evaluated),
    non-resource URLs (discovery, /version, /healthz are open to everyone; rules
    with ``nonResourceURLs`` are ignored), the ``escalate`` and ``bind`` checks
    on writing Roles and bindings (anyone allowed to write a Role may grant any
    rule), other authorizers (Node, ABAC, webhook), SubjectAccessReviews for others,
    LocalSubjectAccessReviews, SelfSubjectRulesReviews, ``Impersonate-Uid`` and
    ``Impersonate-Extra-*``, the default bootstrap roles
    other than system:basic-user (cluster-admin, admin, edit, view must be
    created by a test), and token controllers: a ServiceAccount gets no token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ApiError
from .resources import ResourceType

if TYPE_CHECKING:
    from .store import Store

GROUP = "rbac.authorization.k8s.io"
SUPERUSER_GROUP = "system:masters"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
BASIC_USER_RESOURCES = {
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
}


def resource_types() -> list[ResourceType]:
    """The RBAC kinds, ServiceAccounts and Secrets, served as plain stored objects."""
    return [
        ResourceType(GROUP, ("v1",), "roles", "role", "Role", True),
        ResourceType(GROUP, ("v1",), "rolebindings", "rolebinding", "RoleBinding", True),
        ResourceType(GROUP, ("v1",), "clusterroles", "clusterrole", "ClusterRole", False),
        ResourceType(
            GROUP, ("v1",), "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", False
        ),
        ResourceType(
            "", ("v1",), "serviceaccounts", "serviceaccount", "ServiceAccount", True, ("sa",)
        ),
        ResourceType("", ("v1",), "secrets", "secret", "Secret", True),
    ]


@dataclass(frozen=True)
class Attributes:
    """What one request asks to do, in RBAC's terms."""

    user: str
    groups: tuple[str, ...]
    verb: str
    api_group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""


class Authorizer:
    """Decides requests from the Roles and bindings in the store."""

    def __init__(self, store: Store, *, enabled: bool = False) -> None:
        self._store = store
        self.enabled = enabled

    def check(self, request: Attributes) -> None:
        """Nothing when allowed; an ApiError 403 when RBAC is on and nothing grants it."""
        if not self.enabled or self.allows(request):
            return
        raise forbidden(request)

    def allows(self, request: Attributes) -> bool:
        if SUPERUSER_GROUP in request.groups:
            return True
        if (request.api_group, request.resource) in BASIC_USER_RESOURCES:
            return request.verb == "create" and "system:authenticated" in request.groups
        return any(_rule_matches(rule, request) for rule in self._rules_for(request))

    def impersonate(
        self, actor: str, actor_groups: tuple[str, ...], user: str, groups: tuple[str, ...]
    ) -> tuple[str, ...]:
        """The impersonated user's groups, once `actor` may impersonate `user` and `groups`."""
        namespace, name = _service_account(user)
        if namespace is not None:
            self.check(
                Attributes(
                    actor, actor_groups, "impersonate", "", "serviceaccounts", "", namespace, name
                )
            )
        else:
            self.check(Attributes(actor, actor_groups, "impersonate", "", "users", name=user))
        for group in groups:
            self.check(Attributes(actor, actor_groups, "impersonate", "", "groups", name=group))
        if not groups and namespace is not None:
            groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
        return (*groups, "system:authenticated")

    # bindings ---------------------------------------------------------------------

    def _rules_for(self, request: Attributes) -> Iterable[Mapping[str, Any]]:
        for binding, namespace in self._bindings(request.namespace):
            if not any(
                _subject_matches(s, request, namespace) for s in binding.get("subjects") or []
            ):
                continue
            yield from self._role_rules(binding.get("roleRef") or {}, namespace)

    def _bindings(self, namespace: str) -> list[tuple[dict[str, Any], str]]:
        store = self._store
        with store.lock:
            found = [
                (obj, "") for obj in store.iter_stored(self._type("clusterrolebindings"), None)
            ]
            if namespace:
                roles = store.iter_stored(self._type("rolebindings"), namespace)
                found += [(obj, namespace) for obj in roles]
            return found

    def _role_rules(self, ref: Mapping[str, Any], namespace: str) -> list[Mapping[str, Any]]:
        kind, name = ref.get("kind"), str(ref.get("name", ""))
        if kind == "ClusterRole":
            role = self._store.stored(self._type("clusterroles"), "", name)
        elif kind == "Role" and namespace:
            role = self._store.stored(self._type("roles"), namespace, name)
        else:
            role = None
        return [r for r in (role or {}).get("rules") or [] if isinstance(r, dict)]

    def _type(self, plural: str) -> ResourceType:
        found = self._store.find_type(GROUP, "v1", plural)
        assert found is not None
        return found


def _subject_matches(subject: Mapping[str, Any], request: Attributes, namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == request.user
    if kind == "Group":
        return name in request.groups
    if kind == "ServiceAccount":
        account_namespace = subject.get("namespace") or namespace
        return request.user == f"{SERVICE_ACCOUNT_PREFIX}{account_namespace}:{name}"
    return False


def _rule_matches(rule: Mapping[str, Any], request: Attributes) -> bool:
    if rule.get("nonResourceURLs"):
        return False
    verbs = rule.get("verbs") or []
    groups = rule.get("apiGroups") or []
    names = rule.get("resourceNames") or []
    return (
        ("*" in verbs or request.verb in verbs)
        and ("*" in groups or request.api_group in groups)
        and _resource_matches(rule.get("resources") or [], request)
        and (not names or (bool(request.name) and request.name in names))
    )


def _resource_matches(resources: list[str], request: Attributes) -> bool:
    combined = (
        f"{request.resource}/{request.subresource}" if request.subresource else request.resource
    )
    for resource in resources:
        if resource in ("*", combined):
            return True
        if request.subresource and resource == f"*/{request.subresource}":
            return True
    return False


def _service_account(user: str) -> tuple[str | None, str]:
    if not user.startswith(SERVICE_ACCOUNT_PREFIX):
        return None, user
    namespace, _, name = user[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
    return (namespace, name) if namespace and name else (None, user)


def self_subject_access_review(
    authorizer: Authorizer, user: str, groups: tuple[str, ...], body: Any
) -> dict[str, Any]:
    """The answer to a SelfSubjectAccessReview (resource attributes only), for the caller."""
    spec = body.get("spec") if isinstance(body, dict) else None
    attributes = (spec or {}).get("resourceAttributes") if isinstance(spec, dict) else None
    if not isinstance(attributes, dict):
        raise ApiError(
            422,
            "SelfSubjectAccessReview.authorization.k8s.io is invalid: spec.resourceAttributes: "
            "Required value (nonResourceAttributes are not emulated)",
            "Invalid",
        )
    request = Attributes(
        user,
        groups,
        str(attributes.get("verb", "")),
        str(attributes.get("group", "")),
        str(attributes.get("resource", "")),
        str(attributes.get("subresource", "")),
        str(attributes.get("namespace", "")),
        str(attributes.get("name", "")),
    )
    allowed = not authorizer.enabled or authorizer.allows(request)
    return {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": {"allowed": allowed, **({} if allowed else {"reason": ""})},
    }


def forbidden(request: Attributes) -> ApiError:
    """The apiserver's 403 for a request RBAC does not allow."""
    qualified = f"{request.resource}.{request.api_group}" if request.api_group else request.resource
    subject = f'{qualified} "{request.name}"' if request.name else qualified
    resource = (
        f"{request.resource}/{request.subresource}" if request.subresource else request.resource
    )
    scope = (
        f'in the namespace "{request.namespace}"' if request.namespace else "at the cluster scope"
    )
    message = (
        f'{subject} is forbidden: User "{request.user}" cannot {request.verb} resource '
        f'"{resource}" in API group "{request.api_group}" {scope}'
    )
    details: dict[str, Any] = {"kind": request.resource}
    if request.name:
        details["name"] = request.name
    if request.api_group:
        details["group"] = request.api_group
    return ApiError(403, message, "Forbidden", details=details)
