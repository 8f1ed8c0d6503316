"""Sign-offs that mean what they say, on the API-server emulator with the shipped policy.

An approval's approver, a command's author, an approver's groups and a rollout's
requester are only true because the admission policy of
`manifests/base/approval-policy.yaml` (evaluated by the emulator's CEL) refuses
any record that lies. So the operator counts no record while that policy is
missing or changed, and says so in a condition, an Event, a metric and
`stagectl status`; a plan can refuse the requester, robots and outsiders as
approvers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.kube.admission_check import SHIPPED, check_admission, digests_of
from controller.kube.api import (
    ADMISSION_BINDINGS,
    ADMISSION_POLICIES,
    EVENTS,
    ROLLOUTS,
    KubeApi,
    KubeError,
)
from controller.kube.records import describe
from controller.operator import Operator, OperatorSettings
from phases.plan_checks import parse_plan
from tests.kube.operator_world import (
    OPERATOR_USER,
    RBAC_GROUP,
    RBAC_KINDS,
    TINY_PLAN,
    World,
    install_admission_policies,
    make_world,
)
from tests.support.kube_emulator import KubeEmulator
from tests.support.kube_emulator.server import GROUPS_HEADER

REPO = Path(__file__).resolve().parents[2]
POLICY_FILE = REPO / "manifests" / "base" / "approval-policy.yaml"
CI_BOT = "system:serviceaccount:ci:deployer"
APPROVERS = ("mallory", "bob", "carol", "carol@example.com")
"""People of the namespace who may approve (manifests/base/roles.yaml), besides PEOPLE."""
AUTHORS = ("alice", "bob")
"""People who may write StageRollouts in the namespace (as a namespace owner does)."""


@pytest.fixture
def world(kube_emulator: Callable[..., KubeEmulator]) -> World:
    return grant_people(make_world(kube_emulator(rollout_delay=0.05, job_delay=0.05)))


def grant_people(world: World) -> World:
    """RBAC is on: the approvers and the CI robot hold stage-rollout-approver in the
    namespace, and the authors a Role that writes StageRollouts. The policy, not RBAC, is
    what stops them from lying; `world.api` (group system:masters) is the cluster admin."""
    users = [{"kind": "User", "apiGroup": RBAC_GROUP, "name": u} for u in APPROVERS]
    robot = {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "approvers", "namespace": world.namespace},
            "roleRef": {
                "apiGroup": RBAC_GROUP,
                "kind": "ClusterRole",
                "name": "stage-rollout-approver",
            },
            "subjects": [*users, robot],
        },
        {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "Role",
            "metadata": {"name": "rollout-authors", "namespace": world.namespace},
            "rules": [
                {
                    "apiGroups": ["stage.rollout.dev"],
                    "resources": ["stagerollouts"],
                    "verbs": ["get", "list", "create", "update", "patch", "delete"],
                }
            ],
        },
        {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "rollout-authors", "namespace": world.namespace},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "rollout-authors"},
            "subjects": [{"kind": "User", "apiGroup": RBAC_GROUP, "name": u} for u in AUTHORS],
        },
    ]
    for obj in objects:
        world.api.create(RBAC_KINDS[obj["kind"]], world.namespace, obj)
    return world


def person(world: World, user: str, *groups: str) -> KubeApi:
    assert world.emulator is not None
    client = world.emulator.api_client(user=user)
    if groups:
        client.default_headers[GROUPS_HEADER] = ",".join(groups)
    return KubeApi(client)


def awaiting_approval(world: World) -> None:
    world.settle()
    world.tick(advance=timedelta(minutes=1))
    time.sleep(0.3)  # the emulated Job controller completes the job
    world.tick(advance=timedelta(minutes=11))
    assert world.status()["state"] == "awaiting_approval", world.status().get("blockers")


def approve_as(world: World, api: KubeApi, user: str, **spec: Any) -> None:
    saved = world.people
    world.people = api
    try:
        world.approve("warm", approver=user, **spec)
    finally:
        world.people = saved


def trusted_condition(world: World) -> dict[str, Any]:
    return next(c for c in world.status()["conditions"] if c["type"] == "RecordsTrusted")


def warnings(world: World, reason: str) -> list[str]:
    events, _ = world.api.list(EVENTS, world.namespace)
    return [e["message"] for e in events if e["reason"] == reason]


# --- the operator checks the policy it ships -------------------------------------------


def test_the_shipped_digests_are_those_of_the_policy_file() -> None:
    docs = [d for d in yaml.safe_load_all(POLICY_FILE.read_text(encoding="utf-8")) if d]
    assert digests_of(docs) == dict(SHIPPED), (
        "manifests/base/approval-policy.yaml changed: update SHIPPED in "
        "controller/kube/admission_check.py with digests_of(its documents)"
    )


def test_with_the_policy_installed_records_count_and_the_condition_says_so(world: World) -> None:
    awaiting_approval(world)
    assert trusted_condition(world)["status"] == "True"
    world.approve("warm")
    world.tick()
    assert world.status()["step"] == "e@50"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("delete-binding", "PolicyMissing"),
        ("audit-only", "PolicyChanged"),
        ("loosened-expression", "PolicyChanged"),
        ("match-condition-added", "PolicyChanged"),
    ],
)
def test_without_the_policy_no_approval_counts_and_everyone_is_told(
    world: World, tamper: str, reason: str
) -> None:
    awaiting_approval(world)
    admin = world.api
    name = "stageapprovals.stage.rollout.dev"
    if tamper == "delete-binding":
        admin.delete(ADMISSION_BINDINGS, "", name)
    elif tamper == "audit-only":
        binding = admin.get(ADMISSION_BINDINGS, "", name)
        assert binding is not None
        binding["spec"]["validationActions"] = ["Audit"]
        admin.replace(ADMISSION_BINDINGS, "", name, binding)
    else:
        policy = admin.get(ADMISSION_POLICIES, "", name)
        assert policy is not None
        if tamper == "loosened-expression":
            policy["spec"]["validations"][1]["expression"] = "true"
        else:
            policy["spec"]["matchConditions"] = [{"name": "never", "expression": "false"}]
        admin.replace(ADMISSION_POLICIES, "", name, policy)
    # Without the policy, mallory signs as alice.
    approve_as(world, person(world, "mallory"), "alice")
    world.tick()
    status = world.status()
    assert status["step"] == "warm", "an approval counted without the admission policy"
    condition = trusted_condition(world)
    assert (condition["status"], condition["reason"]) == ("False", reason)
    assert "approvals and commands are not counted" in condition["message"]
    assert name in condition["message"]
    assert any("not counted" in m for m in warnings(world, reason)), "no Event said why"
    view = describe(world.rollout(), world.now)
    assert any("approvals and commands are not counted" in b for b in view["blockers"])


def test_without_the_policy_no_command_is_honoured(world: World) -> None:
    awaiting_approval(world)
    world.api.delete(ADMISSION_BINDINGS, "", "stagecommands.stage.rollout.dev")
    world.command("abort", by="someone-else")
    world.tick()
    assert world.status()["state"] == "awaiting_approval"


def test_records_made_while_the_policy_was_away_do_not_count_when_it_returns(
    world: World,
) -> None:
    awaiting_approval(world)
    assert world.emulator is not None
    admin = world.api
    for kind in (ADMISSION_BINDINGS, ADMISSION_POLICIES):
        admin.delete(kind, "", "stageapprovals.stage.rollout.dev")
    approve_as(world, person(world, "mallory"), "alice")
    time.sleep(1.1)  # creation timestamps have a resolution of one second
    install_admission_policies(world.emulator)
    world.tick()
    assert trusted_condition(world)["status"] == "True"
    assert world.status()["step"] == "warm", "a record the policy never vetted counted"


def test_server_defaults_in_the_installed_policy_are_not_a_change(world: World) -> None:
    admin = world.api
    name = "stageapprovals.stage.rollout.dev"
    policy = admin.get(ADMISSION_POLICIES, "", name)
    assert policy is not None
    policy["spec"]["matchConstraints"].update(
        {"matchPolicy": "Equivalent", "namespaceSelector": {}, "objectSelector": {}}
    )
    for rule in policy["spec"]["matchConstraints"]["resourceRules"]:
        rule["scope"] = "*"
    admin.replace(ADMISSION_POLICIES, "", name, policy)
    assert check_admission(world.api).trusted


def test_the_operator_checks_every_pass_and_exports_a_metric(world: World) -> None:
    assert world.emulator is not None
    operator = Operator(
        KubeApi(world.emulator.api_client(user=OPERATOR_USER)),
        OperatorSettings(namespace=world.namespace, metrics_port=0),
        metrics_for=lambda _spec, _plan: world.source,
    )
    operator.tick_all()
    gauge = operator.telemetry.registry.get_sample_value
    assert gauge("stage_rollout_records_trusted") == 1
    world.api.delete(ADMISSION_POLICIES, "", "stagerollouts.stage.rollout.dev")
    operator.tick_all()
    assert gauge("stage_rollout_records_trusted") == 0
    operator.tick_now(world.namespace, world.name)  # the rollout itself is not due yet
    condition = trusted_condition(world)
    assert (condition["status"], condition["reason"]) == ("False", "PolicyMissing")


def test_the_unsafe_flag_trusts_records_and_says_so(world: World) -> None:
    assert world.emulator is not None
    world.api.delete(ADMISSION_BINDINGS, "", "stageapprovals.stage.rollout.dev")
    trust = check_admission(world.api, unsafe_trust=True)
    assert trust.trusted and trust.reason == "TrustedUnsafely"
    assert "--unsafe-trust-records-without-policy" in trust.message


# --- the policy binds groups and requester to the request --------------------------------


def test_an_approver_cannot_claim_a_group_they_are_not_in(world: World) -> None:
    awaiting_approval(world)
    with pytest.raises(KubeError, match="approverGroups"):
        approve_as(world, person(world, "alice", "dev"), "alice", approverGroups=["sre"])
    approve_as(world, person(world, "alice", "sre"), "alice", approverGroups=["sre"])


def test_a_rollout_cannot_name_another_requester_nor_change_it(world: World) -> None:
    body = world.rollout()
    body["metadata"] = {"name": "second", "namespace": world.namespace}
    body.pop("status", None)
    body["spec"]["requestedBy"] = "bob"
    alice = person(world, "alice")
    with pytest.raises(KubeError, match="requestedBy must be the requesting user"):
        alice.create(ROLLOUTS, world.namespace, body)
    body["spec"]["requestedBy"] = "alice"
    created = alice.create(ROLLOUTS, world.namespace, body)
    created["spec"]["requestedBy"] = "bob"
    with pytest.raises(KubeError, match="cannot be added, changed or removed"):
        alice.replace(ROLLOUTS, world.namespace, "second", created)


# --- the plan's rules on who counts ------------------------------------------------------


def strict_world(
    kube_emulator: Callable[..., KubeEmulator], approval: dict[str, Any], requester: str = ""
) -> World:
    """The tiny plan with `warm` asking for `approval`; created by `requester` when given."""
    plan = yaml.safe_load(TINY_PLAN)
    plan["phases"][0]["approval"] = approval
    world = grant_people(
        make_world(kube_emulator(rollout_delay=0.05, job_delay=0.05), plan={"inline": plan})
    )
    world.plan = parse_plan(yaml.safe_dump(plan), source="strict")
    if requester:
        body = world.rollout()
        world.api.delete(ROLLOUTS, world.namespace, world.name)
        body["metadata"] = {"name": world.name, "namespace": world.namespace}
        body["spec"]["requestedBy"] = requester
        person(world, requester).create(ROLLOUTS, world.namespace, body)
    return world


def test_one_person_and_a_ci_service_account_are_not_two_approvers(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    world = strict_world(kube_emulator, {"required": True, "approvers": 2})
    awaiting_approval(world)
    approve_as(world, person(world, "alice"), "alice")
    approve_as(world, person(world, CI_BOT, "system:serviceaccounts"), CI_BOT)
    world.tick()
    assert world.status()["step"] == "warm", "a CI robot counted as the second approver"
    assert any("is a service account" in m for m in warnings(world, "ApprovalIgnored"))
    approve_as(world, person(world, "bob"), "bob")
    world.tick()
    assert world.status()["step"] == "e@50"


def test_the_requester_cannot_approve_their_own_rollout(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    world = strict_world(
        kube_emulator,
        {"required": True, "distinct_from_requester": True, "groups": ["sre"]},
        requester="alice",
    )
    assert world.rollout()["spec"]["requestedBy"] == "alice"
    awaiting_approval(world)
    approve_as(world, person(world, "alice", "sre"), "alice", approverGroups=["sre"])
    approve_as(world, person(world, "bob", "dev"), "bob", approverGroups=["dev"])
    world.tick()
    assert world.status()["step"] == "warm"
    ignored = warnings(world, "ApprovalIgnored")
    assert any("created the rollout" in m for m in ignored), ignored
    assert any("in none of the groups sre" in m for m in ignored), ignored
    approve_as(world, person(world, "carol", "sre"), "carol", approverGroups=["sre"])
    world.tick()
    assert world.status()["step"] == "e@50"


def test_stagectl_approve_records_the_groups_the_api_server_knows(
    world: World, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from controller.cli.main import app

    assert world.emulator is not None
    world.emulator.add_token("carol-token", "carol@example.com", groups=("sre",))
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e", "cluster": {"server": world.emulator.url}}],
        "users": [{"name": "carol", "user": {"token": "carol-token"}}],
        "contexts": [{"name": "e", "context": {"cluster": "e", "user": "carol"}}],
        "current-context": "e",
    }
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config), encoding="utf-8")
    awaiting_approval(world)
    result = CliRunner().invoke(
        app,
        ["approve", world.name, "--reason", "ok", "--kubeconfig", str(kubeconfig), "-n", "shop"],
    )
    assert result.exit_code == 0, result.stderr
    stored = [
        o
        for o in world.emulator.objects("stageapprovals")
        if o["spec"]["approver"] == "carol@example.com"
    ]
    assert stored and "sre" in stored[0]["spec"]["approverGroups"]
