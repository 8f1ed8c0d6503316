"""The ValidatingAdmissionPolicy `manifests/base/approval-policy.yaml` ships, as a cluster runs it.

The policy is loaded from the manifest (not a copy), registered in the kube
emulator with the CRDs from `manifests/crd/`, and its CEL expressions are evaluated
by the emulator (cel-python) on every create and update that reaches it over HTTP
through the official client: an approval or command names its requesting user, or
is refused, and neither can be changed once made.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.kube.api import APPROVALS, COMMANDS, Kind, KubeApi, KubeError
from tests.support.kube_emulator import ApiError, KubeEmulator

REPO = Path(__file__).resolve().parents[2]
POLICY_FILE = REPO / "manifests" / "base" / "approval-policy.yaml"
CRD_DIR = REPO / "manifests" / "crd"
NAMESPACE = "rollouts"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def policy_pairs() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(policy, binding) for every policy in the manifest, paired by spec.policyName."""
    docs = documents(POLICY_FILE)
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"}
    bindings = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    return [(policies[b["spec"]["policyName"]], b) for b in bindings]


@pytest.fixture
def cluster(kube: KubeEmulator) -> Iterator[KubeEmulator]:
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in documents(path):
            kube.register_crd(crd)
    for policy, binding in policy_pairs():
        kube.register_admission_policy(policy, binding)
    yield kube


def api_as(kube: KubeEmulator, user: str) -> KubeApi:
    return KubeApi(kube.api_client(user=user))


def approval(name: str, approver: str) -> dict[str, Any]:
    return {
        "apiVersion": APPROVALS.api_version,
        "kind": APPROVALS.name,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "rollout": {"name": "checkout", "uid": "3f1c-uid"},
            "step": "canary-10",
            "planHash": "abc123",
            "approver": approver,
            "reason": "dashboards are green",
        },
    }


def command(name: str, by: str) -> dict[str, Any]:
    return {
        "apiVersion": COMMANDS.api_version,
        "kind": COMMANDS.name,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "rollout": {"name": "checkout", "uid": "3f1c-uid"},
            "command": "pause",
            "by": by,
            "reason": "incident 42",
        },
    }


def refused(call: Any, *args: Any) -> KubeError:
    with pytest.raises(KubeError) as caught:
        call(*args)
    return caught.value


# --- the manifest --------------------------------------------------------------------


def test_the_policy_manifest_is_valid_for_kubernetes_1_30() -> None:
    docs = documents(POLICY_FILE)
    assert {d["kind"] for d in docs} == {
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_every_policy_is_bound_with_deny_and_covers_every_record() -> None:
    pairs = policy_pairs()
    covered = set()
    for policy, binding in pairs:
        assert binding["spec"]["validationActions"] == ["Deny"]
        assert policy["spec"].get("failurePolicy", "Fail") == "Fail"
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]:
            assert {"CREATE", "UPDATE"} <= set(rule["operations"])
            covered |= set(rule["resources"])
    assert {"stageapprovals", "stagecommands", "stagerollouts"} <= covered


def test_the_policy_is_listed_in_the_kustomization() -> None:
    kustomization = yaml.safe_load(
        (REPO / "manifests" / "base" / "kustomization.yaml").read_text(encoding="utf-8")
    )
    assert "approval-policy.yaml" in kustomization["resources"]


# --- approvals ---------------------------------------------------------------------


def test_an_approval_naming_the_requesting_user_is_accepted(cluster: KubeEmulator) -> None:
    created = api_as(cluster, "alice").create(APPROVALS, NAMESPACE, approval("a1", "alice"))
    assert created["spec"]["approver"] == "alice"
    stored = cluster.get_object("stageapprovals", NAMESPACE, "a1")
    assert stored is not None and stored["spec"]["approver"] == "alice"


def test_a_forged_approver_is_refused(cluster: KubeEmulator) -> None:
    error = refused(api_as(cluster, "alice").create, APPROVALS, NAMESPACE, approval("a1", "bob"))
    assert error.status == 422
    assert error.reason == "Invalid"
    message = str(error)
    assert "ValidatingAdmissionPolicy 'stageapprovals.stage.rollout.dev'" in message
    assert "with binding 'stageapprovals.stage.rollout.dev' denied request" in message
    assert "spec.approver must be the requesting user (alice), not bob" in message
    assert cluster.get_object("stageapprovals", NAMESPACE, "a1") is None


def test_the_user_is_the_authenticated_one_not_the_body(cluster: KubeEmulator) -> None:
    """Bob, authenticated by a bearer token, cannot approve as alice either."""
    cluster.add_token("bob-token", "bob", ["approvers"])
    bob = KubeApi(cluster.api_client("bob-token"))
    error = refused(bob.create, APPROVALS, NAMESPACE, approval("a1", "alice"))
    assert error.status == 422
    assert "must be the requesting user (bob), not alice" in str(error)
    assert bob.create(APPROVALS, NAMESPACE, approval("a2", "bob"))["spec"]["approver"] == "bob"


def test_a_dry_run_forgery_is_refused_too(cluster: KubeEmulator) -> None:
    alice = cluster.api_client(user="alice")
    custom = client.CustomObjectsApi(alice)
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(
            APPROVALS.group,
            APPROVALS.version,
            NAMESPACE,
            APPROVALS.plural,
            approval("a1", "mallory"),
            dry_run="All",
        )
    assert caught.value.status == 422


@pytest.mark.parametrize("how", ["replace", "merge_patch"])
@pytest.mark.parametrize("who", ["alice", "bob"])
def test_no_one_can_change_an_approval(cluster: KubeEmulator, how: str, who: str) -> None:
    created = api_as(cluster, "alice").create(APPROVALS, NAMESPACE, approval("a1", "alice"))
    api = api_as(cluster, who)
    if how == "replace":
        changed = dict(created, spec=dict(created["spec"], approver=who, step="full"))
        error = refused(api.replace, APPROVALS, NAMESPACE, "a1", changed)
    else:
        error = refused(api.merge_patch, APPROVALS, NAMESPACE, "a1", {"spec": {"step": "full"}})
    assert error.status == 422
    assert "approvals are immutable; create a new one" in str(error)
    stored = cluster.get_object("stageapprovals", NAMESPACE, "a1")
    assert stored is not None
    assert stored["spec"] == created["spec"]
    assert stored["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_labels_cannot_be_added_to_an_approval_either(cluster: KubeEmulator) -> None:
    api = api_as(cluster, "alice")
    api.create(APPROVALS, NAMESPACE, approval("a1", "alice"))
    patch = {"metadata": {"labels": {"forged": "yes"}}}
    error = refused(api.merge_patch, APPROVALS, NAMESPACE, "a1", patch)
    assert error.status == 422


def test_an_approval_can_still_be_deleted(cluster: KubeEmulator) -> None:
    api = api_as(cluster, "alice")
    api.create(APPROVALS, NAMESPACE, approval("a1", "alice"))
    api.delete(APPROVALS, NAMESPACE, "a1")
    assert cluster.get_object("stageapprovals", NAMESPACE, "a1") is None


# --- commands ---------------------------------------------------------------------------


def test_a_command_by_the_requesting_user_is_accepted(cluster: KubeEmulator) -> None:
    created = api_as(cluster, "carol").create(COMMANDS, NAMESPACE, command("c1", "carol"))
    assert created["spec"]["by"] == "carol"


def test_a_forged_command_author_is_refused(cluster: KubeEmulator) -> None:
    error = refused(api_as(cluster, "carol").create, COMMANDS, NAMESPACE, command("c1", "dave"))
    assert error.status == 422
    message = str(error)
    assert "ValidatingAdmissionPolicy 'stagecommands.stage.rollout.dev'" in message
    assert "spec.by must be the requesting user (carol), not dave" in message
    assert cluster.get_object("stagecommands", NAMESPACE, "c1") is None


@pytest.mark.parametrize("how", ["replace", "merge_patch"])
def test_a_command_cannot_be_changed(cluster: KubeEmulator, how: str) -> None:
    api = api_as(cluster, "carol")
    created = api.create(COMMANDS, NAMESPACE, command("c1", "carol"))
    if how == "replace":
        changed = dict(created, spec=dict(created["spec"], command="abort"))
        error = refused(api.replace, COMMANDS, NAMESPACE, "c1", changed)
    else:
        error = refused(api.merge_patch, COMMANDS, NAMESPACE, "c1", {"spec": {"command": "abort"}})
    assert error.status == 422
    assert "commands are immutable; create a new one" in str(error)


# --- the emulator's policy support -----------------------------------------------------


def test_other_resources_are_not_affected(cluster: KubeEmulator) -> None:
    configmaps = Kind("ConfigMap", "", "v1", "configmaps")
    api = api_as(cluster, "alice")
    created = api.create(configmaps, NAMESPACE, {"metadata": {"name": "x"}, "data": {"a": "1"}})
    api.merge_patch(configmaps, NAMESPACE, "x", {"data": {"a": "2"}})
    assert created["data"] == {"a": "1"}


def test_without_the_policy_a_forged_approver_is_stored(kube: KubeEmulator) -> None:
    """The refusals above come from the policy, not from anything else in the emulator."""
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in documents(path):
            kube.register_crd(crd)
    created = api_as(kube, "alice").create(APPROVALS, NAMESPACE, approval("a1", "bob"))
    assert created["spec"]["approver"] == "bob"


def test_a_policy_whose_cel_does_not_compile_is_refused(kube: KubeEmulator) -> None:
    policy, _binding = policy_pairs()[0]
    broken = {
        **policy,
        "metadata": {"name": "broken"},
        "spec": {**policy["spec"], "validations": [{"expression": "object.spec.("}]},
    }
    with pytest.raises(ApiError) as caught:
        kube.register_admission_policy(broken)
    assert caught.value.code == 422
    assert "compilation failed" in caught.value.message
