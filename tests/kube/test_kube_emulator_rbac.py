"""The emulator's RBAC and impersonation, through the official client, as a cluster has them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.kube_emulator import KubeEmulator

RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture
def kube(kube_emulator: Callable[..., KubeEmulator]) -> KubeEmulator:
    return kube_emulator(rbac=True)


def as_user(kube: KubeEmulator, user: str, **headers: str) -> client.ApiClient:
    api = kube.api_client(user=user)
    api.default_headers.update(headers)
    return api


def role(kube: KubeEmulator, name: str, rules: list[dict[str, Any]], namespace: str = "") -> None:
    kind = "Role" if namespace else "ClusterRole"
    metadata: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    kube.create({"apiVersion": RBAC, "kind": kind, "metadata": metadata, "rules": rules})


def bind(
    kube: KubeEmulator,
    name: str,
    ref: tuple[str, str],
    subjects: list[dict[str, str]],
    namespace: str = "",
) -> None:
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    metadata: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    kube.create(
        {
            "apiVersion": RBAC,
            "kind": kind,
            "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref[0], "name": ref[1]},
            "subjects": subjects,
        }
    )


def refusal(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as refused:
        call()
    assert refused.value.status == 403
    return dict(json.loads(refused.value.body))


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def test_a_role_grants_its_verbs_in_its_namespace_only(kube: KubeEmulator) -> None:
    role(
        kube,
        "reader",
        [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        "team-a",
    )
    bind(kube, "reader", ("Role", "reader"), [user("carol")], "team-a")
    core = client.CoreV1Api(as_user(kube, "carol"))
    assert core.list_namespaced_config_map("team-a").items == []
    body = refusal(lambda: core.list_namespaced_config_map("team-b"))
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps is forbidden: User "carol" cannot list resource "configmaps" in API group "" in the namespace "team-b"',
        "reason": "Forbidden",
        "details": {"kind": "configmaps"},
        "code": 403,
    }
    body = refusal(lambda: core.create_namespaced_config_map("team-a", {"metadata": {"name": "x"}}))
    assert 'cannot create resource "configmaps"' in body["message"]


def test_a_cluster_role_through_a_role_binding_stays_in_the_binding_namespace(
    kube: KubeEmulator,
) -> None:
    role(kube, "deployer", [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}])
    bind(kube, "deployer", ("ClusterRole", "deployer"), [user("dan")], "team-a")
    apps = client.AppsV1Api(as_user(kube, "dan"))
    assert apps.list_namespaced_deployment("team-a").items == []
    body = refusal(lambda: apps.patch_namespaced_deployment("coredns", "kube-system", {}))
    assert body["message"] == (
        'deployments.apps "coredns" is forbidden: User "dan" cannot patch resource '
        '"deployments" in API group "apps" in the namespace "kube-system"'
    )
    assert body["details"] == {"name": "coredns", "group": "apps", "kind": "deployments"}
    refusal(lambda: apps.list_deployment_for_all_namespaces())


def test_a_cluster_role_binding_grants_everywhere_and_cluster_scoped(kube: KubeEmulator) -> None:
    role(kube, "ns-reader", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["list"]}])
    bind(kube, "ns-reader", ("ClusterRole", "ns-reader"), [{"kind": "Group", "name": "auditors"}])
    core = client.CoreV1Api(as_user(kube, "erin", **{"X-Emulator-Groups": "auditors"}))
    assert core.list_namespace().items
    assert core.list_config_map_for_all_namespaces().items is not None
    body = refusal(lambda: core.read_namespace("default"))
    assert body["message"].endswith(
        'cannot get resource "namespaces" in API group "" at the cluster scope'
    )


def test_resource_names_match_only_requests_for_that_name(kube: KubeEmulator) -> None:
    kube.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags", "namespace": "a"}}
    )
    kube.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "namespace": "a"}}
    )
    rules = [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["flags"],
            "verbs": ["get", "list"],
        }
    ]
    role(kube, "one", rules, "a")
    bind(kube, "one", ("Role", "one"), [user("fay")], "a")
    core = client.CoreV1Api(as_user(kube, "fay"))
    assert core.read_namespaced_config_map("flags", "a").metadata.name == "flags"
    refusal(lambda: core.read_namespaced_config_map("other", "a"))
    refusal(lambda: core.list_namespaced_config_map("a"))


def test_a_subresource_needs_its_own_rule(kube: KubeEmulator) -> None:
    kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "a"},
            "spec": {
                "selector": {"matchLabels": {"app": "api"}},
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"name": "api", "image": "pause"}]},
                },
            },
        }
    )
    role(
        kube, "main", [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}], "a"
    )
    bind(kube, "main", ("Role", "main"), [user("gus")], "a")
    apps = client.AppsV1Api(as_user(kube, "gus"))
    apps.read_namespaced_deployment("api", "a")
    body = refusal(lambda: apps.read_namespaced_deployment_status("api", "a"))
    assert 'cannot get resource "deployments/status"' in body["message"]
    role(
        kube, "status", [{"apiGroups": ["apps"], "resources": ["*/status"], "verbs": ["get"]}], "a"
    )
    bind(kube, "status", ("Role", "status"), [user("gus")], "a")
    apps.read_namespaced_deployment_status("api", "a")


def test_a_service_account_subject_defaults_to_the_binding_namespace(kube: KubeEmulator) -> None:
    role(kube, "r", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}], "a")
    bind(kube, "r", ("Role", "r"), [{"kind": "ServiceAccount", "name": "bot"}], "a")
    allowed = client.CoreV1Api(as_user(kube, "system:serviceaccount:a:bot"))
    assert allowed.list_namespaced_config_map("a").items == []
    other = client.CoreV1Api(as_user(kube, "system:serviceaccount:b:bot"))
    refusal(lambda: other.list_namespaced_config_map("a"))


def test_impersonation_needs_the_impersonate_permission(kube: KubeEmulator) -> None:
    role(kube, "r", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}], "a")
    bind(kube, "r", ("Role", "r"), [{"kind": "ServiceAccount", "name": "bot"}], "a")
    headers = {"Impersonate-User": "system:serviceaccount:a:bot"}
    core = client.CoreV1Api(as_user(kube, "operator", **headers))
    body = refusal(lambda: core.list_namespaced_config_map("a"))
    assert body["message"] == (
        'serviceaccounts "bot" is forbidden: User "operator" cannot impersonate resource '
        '"serviceaccounts" in API group "" in the namespace "a"'
    )
    role(
        kube,
        "imp",
        [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}],
    )
    bind(kube, "imp", ("ClusterRole", "imp"), [user("operator")])
    assert core.list_namespaced_config_map("a").items == []
    refusal(
        lambda: core.list_namespaced_config_map("b")
    )  # the account's rights, not the operator's
    kube.clear_requests()
    core.list_namespaced_config_map("a")
    assert kube.requests()[-1].user == "system:serviceaccount:a:bot"
    assert kube.requests()[-1].impersonated_by == "operator"


def test_an_impersonated_service_account_has_its_groups_and_sees_itself(
    kube: KubeEmulator,
) -> None:
    role(
        kube,
        "imp",
        [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}],
    )
    bind(kube, "imp", ("ClusterRole", "imp"), [user("operator")])
    api = as_user(kube, "operator", **{"Impersonate-User": "system:serviceaccount:a:bot"})
    review = client.AuthenticationV1Api(api).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    assert review.status.user_info.username == "system:serviceaccount:a:bot"
    assert review.status.user_info.groups == [
        "system:serviceaccounts",
        "system:serviceaccounts:a",
        "system:authenticated",
    ]


def test_impersonating_a_group_needs_impersonate_on_groups(kube: KubeEmulator) -> None:
    role(kube, "imp", [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]}])
    bind(kube, "imp", ("ClusterRole", "imp"), [user("operator")])
    api = as_user(kube, "operator", **{"Impersonate-User": "mallory"})
    api.default_headers["Impersonate-Group"] = "system:masters"
    body = refusal(lambda: client.CoreV1Api(api).list_namespace())
    assert 'cannot impersonate resource "groups"' in body["message"]
    assert '"system:masters" is forbidden' in body["message"]


def test_system_masters_may_do_anything(kube: KubeEmulator) -> None:
    api = as_user(kube, "root", **{"X-Emulator-Groups": "system:masters"})
    client.CoreV1Api(api).create_namespaced_config_map("a", {"metadata": {"name": "x"}})
    assert client.CoreV1Api(api).list_config_map_for_all_namespaces().items


def test_a_self_subject_access_review_answers_for_the_impersonated_account(
    kube: KubeEmulator,
) -> None:
    role(
        kube,
        "imp",
        [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}],
    )
    bind(kube, "imp", ("ClusterRole", "imp"), [user("operator")])
    role(
        kube, "r", [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]}], "a"
    )
    bind(kube, "r", ("Role", "r"), [{"kind": "ServiceAccount", "name": "bot"}], "a")
    api = as_user(kube, "operator", **{"Impersonate-User": "system:serviceaccount:a:bot"})
    reviews = client.AuthorizationV1Api(api)

    def allowed(namespace: str, verb: str) -> bool:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": verb,
                    "group": "apps",
                    "resource": "deployments",
                    "name": "api",
                }
            },
        }
        return bool(reviews.create_self_subject_access_review(body).status.allowed)

    assert allowed("a", "patch")
    assert not allowed("a", "delete")
    assert not allowed("kube-system", "patch")
