"""A StageRollout is untrusted input: each attack of issue 8 on the emulator, with RBAC on.

The world (tests/kube/operator_world.py) gives the operator exactly the ClusterRole
of manifests/base and the rollout the example ServiceAccount and Role of
manifests/examples, so every refusal below is the one a cluster would give. Each
test checks the state of the world afterwards: what was (not) written where, and
what the rollout's condition says.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.kube.api import CONFIGMAPS, DEPLOYMENTS, EVENTS, JOBS, ROLLOUTS, KubeError
from controller.kube.reconciler import Reconciler
from controller.kube.tenancy import Tenancy
from tests.kube.operator_world import World, make_world
from tests.support.kube_emulator import KubeEmulator

PLANTED = "planted-secret-7f3a9c"
"""Text that must never leave the operator's disk."""


@pytest.fixture
def world(kube_emulator: Callable[..., KubeEmulator]) -> World:
    return make_world(kube_emulator(rollout_delay=0.05, job_delay=0.05))


def valid_condition(world: World) -> dict[str, Any]:
    return next(c for c in world.status().get("conditions", []) if c["type"] == "Valid")


def with_spec(world: World, **changes: Any) -> dict[str, Any]:
    """The rollout as listed, with a spec the API server would not have stored."""
    rollout = copy.deepcopy(world.rollout())
    rollout["spec"].update(changes)
    return rollout


def everything_said(world: World) -> str:
    """The rollout's status and Events, as the namespace's viewer reads them."""
    events, _ = world.api.list(EVENTS, world.namespace)
    return repr(world.status()) + repr([e.get("message") for e in events])


def coredns(world: World) -> dict[str, Any]:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": "kube-system"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "template": {
                "metadata": {"labels": {"k8s-app": "kube-dns"}},
                "spec": {"containers": [{"name": "coredns", "image": "coredns:1.11"}]},
            },
        },
    }
    return world.api.create(DEPLOYMENTS, "kube-system", body)


# plans -----------------------------------------------------------------------------


def test_a_plan_name_that_is_a_path_is_refused_by_the_api_server(
    world: World, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text(f"name: {PLANTED}\n", encoding="utf-8")
    rollout = world.rollout()
    rollout["spec"]["plan"] = {"name": str(token)}
    with pytest.raises(KubeError) as refused:
        world.api.replace(ROLLOUTS, world.namespace, world.name, rollout)
    assert refused.value.status == 422 and "spec.plan.name" in str(refused.value)


@pytest.mark.parametrize("name", ["{path}", "../../{name}", "stage-validation-v3.yaml"])
def test_a_plan_name_is_never_opened_as_a_file(world: World, tmp_path: Path, name: str) -> None:
    """Even when the CRD's schema is missing, a plan name is looked up among bundled plans only."""
    token = tmp_path / "token.yaml"
    token.write_text(f"name: {PLANTED}\nversion: '1'\n", encoding="utf-8")
    forged = with_spec(world, plan={"name": name.format(path=token, name=token.name)})
    outcome = world.reconciler().reconcile(world.namespace, world.name, world.now, listed=forged)
    assert outcome.problem
    valid = valid_condition(world)
    assert valid["status"] == "False" and valid["reason"] in ("SpecInvalid", "PlanNotFound")
    assert "spec.plan.name" in valid["message"]
    assert PLANTED not in everything_said(world)
    assert world.flags() == {}


def test_a_plan_from_a_configmap_of_the_namespace_is_read_as_the_rollouts_account(
    world: World,
) -> None:
    from tests.kube.operator_world import TINY_PLAN

    world.api.create(
        CONFIGMAPS,
        world.namespace,
        {"metadata": {"name": "plans"}, "data": {"tiny.yaml": TINY_PLAN}},
    )
    rollout = world.rollout()
    rollout["spec"]["plan"] = {"configMapRef": {"name": "plans", "key": "tiny.yaml"}}
    world.api.replace(ROLLOUTS, world.namespace, world.name, rollout)
    assert world.emulator is not None
    world.emulator.clear_requests()
    outcome = world.tick()
    assert outcome.wrote_status and outcome.problem is None
    assert world.status()["planHash"] == world.plan.content_hash
    reads = [r for r in world.emulator.requests() if r.path.endswith("/configmaps/plans")]
    assert reads and {r.user for r in reads} == {"system:serviceaccount:shop:stage-rollout"}


def test_an_edited_plan_configmap_is_read_again(world: World) -> None:
    from tests.kube.operator_world import TINY_PLAN

    body = {"metadata": {"name": "plans"}, "data": {"tiny.yaml": TINY_PLAN}}
    world.api.create(CONFIGMAPS, world.namespace, body)
    rollout = world.rollout()
    rollout["spec"]["plan"] = {"configMapRef": {"name": "plans", "key": "tiny.yaml"}}
    world.api.replace(ROLLOUTS, world.namespace, world.name, rollout)
    reconciler = world.reconciler()
    world.tick(reconciler)
    first = world.status()["planHash"]
    edited = TINY_PLAN.replace('version: "1"', 'version: "2"')
    world.api.merge_patch(CONFIGMAPS, world.namespace, "plans", {"data": {"tiny.yaml": edited}})
    world.tick(reconciler)
    assert world.status()["planHash"] not in (first, "")


def test_a_missing_configmap_key_names_the_reference_and_quotes_no_content(world: World) -> None:
    world.api.create(
        CONFIGMAPS,
        world.namespace,
        {"metadata": {"name": "plans"}, "data": {"other": PLANTED}},
    )
    rollout = world.rollout()
    rollout["spec"]["plan"] = {"configMapRef": {"name": "plans", "key": "tiny.yaml"}}
    world.api.replace(ROLLOUTS, world.namespace, world.name, rollout)
    world.tick()
    valid = valid_condition(world)
    assert valid["reason"] == "PlanNotFound"
    assert "spec.plan.configMapRef shop/plans key tiny.yaml" in valid["message"]
    assert PLANTED not in everything_said(world)


# namespaces and accounts ---------------------------------------------------------------


def test_a_target_in_another_namespace_is_refused_and_kube_system_is_untouched(
    world: World,
) -> None:
    before = coredns(world)
    rollout = world.rollout()
    rollout["spec"]["target"] = {
        "configMap": "flags",
        "deployments": ["coredns"],
        "namespace": "kube-system",
    }
    world.api.replace(ROLLOUTS, world.namespace, world.name, rollout)
    world.tick()
    valid = valid_condition(world)
    assert (valid["status"], valid["reason"]) == ("False", "TargetNamespaceRefused")
    after = world.api.get(DEPLOYMENTS, "kube-system", "coredns")
    assert after is not None and after["spec"]["template"] == before["spec"]["template"]
    assert world.api.get(CONFIGMAPS, "kube-system", "flags") is None


def test_a_privileged_job_is_never_created_in_another_namespace(world: World) -> None:
    rollout = world.rollout()
    rollout["spec"]["target"]["namespace"] = "kube-system"
    pod = rollout["spec"]["jobTemplates"]["prepare"]["template"]["spec"]
    pod["serviceAccountName"] = "kube-proxy"
    pod["containers"][0]["securityContext"] = {"privileged": True}
    pod["volumes"] = [{"name": "host", "hostPath": {"path": "/"}}]
    world.api.replace(ROLLOUTS, world.namespace, world.name, rollout)
    for _ in range(3):
        world.tick()
    items, _ = world.api.list(JOBS, "kube-system")
    assert items == []
    assert valid_condition(world)["reason"] == "TargetNamespaceRefused"


def test_without_a_service_account_the_rollout_is_refused_and_nothing_is_written(
    world: World,
) -> None:
    rollout = world.rollout()
    del rollout["spec"]["serviceAccountName"]
    world.api.replace(ROLLOUTS, world.namespace, world.name, rollout)
    world.tick()
    valid = valid_condition(world)
    assert (valid["status"], valid["reason"]) == ("False", "NoServiceAccount")
    assert "spec.serviceAccountName" in valid["message"]
    assert world.flags() == {} and world.template_hash() is None


def test_the_operators_default_service_account_is_used_when_the_spec_names_none(
    world: World,
) -> None:
    rollout = world.rollout()
    del rollout["spec"]["serviceAccountName"]
    world.api.replace(ROLLOUTS, world.namespace, world.name, rollout)
    assert world.operator_api is not None
    reconciler = Reconciler(
        world.operator_api,
        lambda _spec, _plan: world.source,
        tenancy=Tenancy(world.operator_api, default_service_account="stage-rollout"),
    )
    outcome = world.tick(reconciler)
    assert outcome.problem is None and world.flags()["ENFORCEMENT_PERCENT"] == "0"


def test_naming_the_operators_own_account_gives_no_rights(world: World) -> None:
    """The account name is looked up in the rollout's namespace, never the operator's."""
    rollout = world.rollout()
    rollout["spec"]["serviceAccountName"] = "stage-rollout-controller"
    world.api.replace(ROLLOUTS, world.namespace, world.name, rollout)
    world.tick()
    valid = valid_condition(world)
    assert valid["reason"] == "Forbidden"
    assert (
        "system:serviceaccount:shop:stage-rollout-controller may not get configmaps"
        in (valid["message"])
    )
    assert world.flags() == {} and world.template_hash() is None


def set_deployment_verbs(world: World, verbs: list[str]) -> None:
    from controller.kube.api import Kind

    roles = Kind("Role", "rbac.authorization.k8s.io", "v1", "roles")
    role = world.api.get(roles, world.namespace, "stage-rollout")
    assert role is not None
    for rule in role["rules"]:
        if rule["resources"] == ["deployments"]:
            rule["verbs"] = verbs
    world.api.replace(roles, world.namespace, "stage-rollout", role)


def test_a_right_the_account_lacks_becomes_a_condition_naming_verb_and_resource(
    world: World,
) -> None:
    """The example Role without `patch` on deployments: the step would restart `api`, so
    nothing of the step is written, not even the status or the flags."""
    set_deployment_verbs(world, ["get"])
    outcome = world.tick()
    assert not outcome.wrote_status
    valid = valid_condition(world)
    assert (valid["status"], valid["reason"]) == ("False", "Forbidden")
    assert "stage-rollout may not patch deployments.apps api in namespace shop" in valid["message"]
    assert "step" not in world.status()
    assert world.flags() == {} and world.template_hash() is None
    events, _ = world.api.list(EVENTS, world.namespace)
    assert [e["reason"] for e in events] == ["Forbidden"]
    world.tick()
    events, _ = world.api.list(EVENTS, world.namespace)
    assert [e["reason"] for e in events] == ["Forbidden"], "one Event per refusal, not per tick"


def test_once_the_right_is_granted_the_rollout_goes_on(world: World) -> None:
    set_deployment_verbs(world, ["get"])
    world.tick()
    set_deployment_verbs(world, ["get", "patch"])
    outcome = world.tick()
    assert outcome.wrote_status and outcome.problem is None
    assert valid_condition(world)["status"] == "True"
    assert world.flags()["ENFORCEMENT_PERCENT"] == "0" and world.template_hash() is not None


def test_a_refused_write_met_after_the_check_still_holds_the_rollout(world: World) -> None:
    """A right revoked between the access review and the write: the 403 itself is the condition."""
    assert world.emulator is not None
    world.emulator.inject(method="PATCH", path_regex=r"/deployments/api$", status=403, times=1)
    world.tick()
    valid = valid_condition(world)
    assert valid["reason"] == "Forbidden" and "may not patch deployments.apps" in valid["message"]
