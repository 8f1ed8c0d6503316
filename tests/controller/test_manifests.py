"""The manifests: what kustomize builds, valid objects, a hardened HA Deployment, least-privilege RBAC.

The objects checked are the output of the real `kubectl kustomize`, the same that
`kubectl apply -k manifests/base` sends, not a reading of the files by our own loader.

RBAC is checked against the code: every `KubeApi` call in `controller/` is found
in the source (verb and kind). The calls of the modules that act as a rollout's
ServiceAccount (`TENANT_MODULES`) must be exactly what the example Role for that
account grants; all others exactly what the operator's ClusterRole and Role grant.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from controller.kube import api as kube_api
from controller.operator import WATCHED
from tests.support.kubectl import kustomize
from tests.support.rbac import EXAMPLE_ROLE_FILE, granted_rules

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "manifests" / "base"
CRD_DIR = REPO / "manifests" / "crd"
TENANT_MODULES = {
    "controller/kube/target.py",
    "controller/kube/jobs.py",
    "controller/kube/plan_sources.py",
    "controller/kube/prometheus_refs.py",
    "controller/kube/baseline_sources.py",
    "controller/kube/environments.py",
}
"""Modules that are handed only the impersonated connection of a rollout (Tenant.api)."""
VERBS = {
    "get": "get",
    "list": "list",
    "watch": "watch",
    "create": "create",
    "merge_patch": "patch",
    "replace": "update",
    "replace_status": "update",
    "delete": "delete",
}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    """What `kubectl kustomize manifests/base` builds: the objects `apply -k` sends."""
    return kustomize(BASE)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def test_every_object_kustomize_builds_is_valid_for_kubernetes(
    built: list[dict[str, Any]],
) -> None:
    invalid = {}
    for obj in built:
        try:
            kubernetes_validate.validate(obj, "1.30", strict=True)
        except kubernetes_validate.ValidationError as error:
            invalid[f"{obj['kind']}/{obj['metadata']['name']}"] = str(error)
    assert invalid == {}
    kinds = {o["kind"] for o in built}
    assert {"CustomResourceDefinition", "Deployment", "PodDisruptionBudget"} <= kinds


def test_the_base_holds_every_file_of_its_directory(built: list[dict[str, Any]]) -> None:
    """A manifest left out of kustomization.yaml would never be installed."""
    on_disk = {
        (d["kind"], d["metadata"]["name"])
        for path in [*BASE.glob("*.yaml"), *CRD_DIR.glob("*.yaml")]
        if path.name not in ("kustomization.yaml", "cluster-scoped.yaml")
        for d in documents(path)
    }
    assert on_disk == {(o["kind"], o["metadata"]["name"]) for o in built}


def test_only_namespaced_objects_carry_the_namespace(built: list[dict[str, Any]]) -> None:
    cluster_scoped = {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for obj in built:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            assert namespace is None, f"{obj['kind']}/{obj['metadata']['name']}"
        else:
            assert namespace == "stage-rollout-system", obj["kind"]


def test_the_example_overlay_changes_the_image_and_namespace_and_nothing_else(
    built: list[dict[str, Any]],
) -> None:
    overlay = kustomize(REPO / "manifests" / "overlays" / "example")
    assert [(o["kind"], o["metadata"]["name"]) for o in overlay if o["kind"] != "Namespace"] == [
        (o["kind"], o["metadata"]["name"]) for o in built if o["kind"] != "Namespace"
    ]
    assert by_kind(overlay, "Namespace")["metadata"]["name"] == "platform-rollouts"
    container = by_kind(overlay, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/platform/stage-rollout-controller:0.1.1"
    assert "--prometheus-url=http://prometheus.observability.svc:9090" in container["args"]
    for obj in overlay:
        if "namespace" in obj["metadata"]:
            assert obj["metadata"]["namespace"] == "platform-rollouts", obj["kind"]
        for subject in obj.get("subjects") or []:
            if subject["kind"] == "ServiceAccount":
                assert subject["namespace"] == "platform-rollouts", obj["kind"]
    for obj in overlay:
        kubernetes_validate.validate(obj, "1.30", strict=True)


def deployment() -> dict[str, Any]:
    return by_kind(kustomize(BASE), "Deployment")


def test_two_replicas_spread_and_a_disruption_budget_keeps_one(
    built: list[dict[str, Any]],
) -> None:
    deploy = by_kind(built, "Deployment")
    budget = by_kind(built, "PodDisruptionBudget")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["replicas"] == 2
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    terms = deploy["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    # An upgrade adds the new pod before it removes an old one: never below one replica.
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_the_operator_runs_non_root_with_a_read_only_root_filesystem() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert set(container["resources"]) == {"requests", "limits"}


def test_probes_point_at_the_endpoints_the_operator_serves() -> None:
    container = deployment()["spec"]["template"]["spec"]["containers"][0]
    telemetry = (REPO / "controller" / "telemetry.py").read_text(encoding="utf-8")
    for probe in ("livenessProbe", "readinessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert f'"{path}"' in telemetry, f"{probe} {path} is not served"
    assert "--leader-elect" in container["args"]
    env = {e["name"] for e in container["env"]}
    assert {"POD_NAME", "POD_NAMESPACE"} <= env


def calls_in_code(*, tenant: bool = False) -> set[tuple[str, str, str]]:
    """(group, resource, verb) for every KubeApi call on a module-level Kind in controller/,
    of the tenant modules or of all the others."""
    kinds = {
        name: value for name, value in vars(kube_api).items() if isinstance(value, kube_api.Kind)
    }
    found: set[tuple[str, str, str]] = set()
    for path in (REPO / "controller").rglob("*.py"):
        if (str(path.relative_to(REPO)) in TENANT_MODULES) != tenant:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr == "as_service_account":
                found.add(("", "serviceaccounts", "impersonate"))
            verb = VERBS.get(node.func.attr)
            if verb is None or not node.args or not isinstance(node.args[0], ast.Name):
                continue
            kind = kinds.get(node.args[0].id)
            if kind is None:
                continue
            resource = kind.plural + ("/status" if node.func.attr == "replace_status" else "")
            found.add((kind.group, resource, verb))
    if not tenant:
        # The operator's caches list and watch each kind of WATCHED through a variable.
        found |= {(kind.group, kind.plural, verb) for kind in WATCHED for verb in ("list", "watch")}
    return found


def test_rbac_grants_exactly_the_calls_the_code_makes() -> None:
    needed = calls_in_code()
    assert (
        "stage.rollout.dev",
        "stagerollouts/status",
        "update",
    ) in needed  # the scan sees the code
    assert granted_rules() - needed == set(), "RBAC grants more than the code uses"
    assert needed - granted_rules() == set(), "the code makes calls RBAC does not grant"


def test_the_operator_itself_may_not_touch_targets_or_secrets() -> None:
    """Targets are written as the rollout's ServiceAccount; the operator's own roles
    grant no ConfigMap, Deployment, Job or Secret verb anywhere."""
    touched = {resource for _group, resource, _verb in granted_rules()}
    assert touched.isdisjoint({"configmaps", "deployments", "jobs", "secrets", "pods"})
    assert ("", "serviceaccounts", "impersonate") in granted_rules()
    assert not {r for r in granted_rules() if r[1] in ("users", "groups")}


def test_the_example_role_grants_exactly_the_calls_made_as_the_rollout() -> None:
    needed = calls_in_code(tenant=True)
    assert ("apps", "deployments", "patch") in needed  # the scan sees the tenant code
    granted = granted_rules(EXAMPLE_ROLE_FILE)
    assert granted - needed == set(), "the example Role grants more than a rollout uses"
    assert needed - granted == set(), "a rollout makes calls the example Role does not grant"


def test_the_example_role_is_valid_for_kubernetes() -> None:
    for obj in documents(EXAMPLE_ROLE_FILE):
        kubernetes_validate.validate(obj, "1.30", strict=True)


def test_the_lease_role_is_namespaced_and_names_its_lease() -> None:
    role = next(o for o in documents(BASE / "rbac.yaml") if o["kind"] == "Role")
    by_verb = {verb: rule for rule in role["rules"] for verb in rule["verbs"]}
    assert by_verb["update"]["resourceNames"] == ["stage-rollout-controller"]
    assert by_verb["get"]["resourceNames"] == ["stage-rollout-controller"]
