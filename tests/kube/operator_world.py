"""A small world for the operator tests: a cluster, our CRDs, a target and a tiny plan.

By default the cluster is the API-server emulator of `tests/support/kube_emulator`
(real HTTP, the official client, the semantics the operator relies on), with RBAC
enforced: the operator has exactly the ClusterRole and Role of manifests/base, the
rollout acts as the example ServiceAccount of manifests/examples/rollout-rbac.yaml,
people hold the roles of manifests/base/roles.yaml, and the test itself works as a
cluster admin (`World.api`). With
STAGE_TEST_KUBECONFIG set, the same tests run against that real cluster instead
(kind, k3s…); the few that inject faults need the emulator and say so.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from controller.kube.api import (
    APPROVALS,
    COMMANDS,
    CONFIGMAPS,
    DEPLOYMENTS,
    JOBS,
    ROLLOUTS,
    Kind,
    KubeApi,
    load_api_client,
)
from controller.kube.reconciler import Hooks, Outcome, Reconciler
from controller.operator import Operator, OperatorSettings
from controller.ports import MetricsSource
from controller.sim.scenario import parse_scenario
from controller.sim.scripted_metrics import ScriptedMetrics
from phases.plan import Plan
from phases.plan_checks import parse_plan
from tests.support.kube_emulator import KubeEmulator
from tests.support.rbac import EXAMPLE_ROLE_FILE, RBAC_FILE, ROLES_FILE, rbac_objects

REPO = Path(__file__).resolve().parents[2]
REAL_CLUSTER = os.environ.get("STAGE_TEST_KUBECONFIG")
NAMESPACES = Kind("Namespace", "", "v1", "namespaces", namespaced=False)
OPERATOR_USER = "system:serviceaccount:stage-rollout-system:stage-rollout-controller"
ADMIN_USER = "cluster-admin"
ROLLOUT_ACCOUNT = "stage-rollout"
"""The rollouts' ServiceAccount, as manifests/examples/rollout-rbac.yaml names it."""
PEOPLE = ("alice", "alice@example.com")
RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_KINDS = {
    "ServiceAccount": Kind("ServiceAccount", "", "v1", "serviceaccounts"),
    "Role": Kind("Role", RBAC_GROUP, "v1", "roles"),
    "RoleBinding": Kind("RoleBinding", RBAC_GROUP, "v1", "rolebindings"),
}
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

TINY_PLAN = """
name: tiny
version: "1"
signals:
  error_ratio: {query: "sum(rate(errors_total[5m])) / sum(rate(requests_total[5m]))"}
phases:
  - id: warm
    name: Warm
    flags: {STAGE_VALIDATION_MODE: warn, ENFORCE_WRITE_ONLY: false, ENFORCEMENT_PERCENT: 0, STAGE_VALIDATION_DRY_RUN: false}
    min_duration: 10m
    max_duration: 2h
    approval: {required: true}
    on_degradation: pause
    jobs:
      - {name: prepare, template: prepare, args: [--go], resume_args: [--resume]}
    gates:
      - {job_succeeded: prepare}
      - {name: errors-low, signal: error_ratio, comparator: "<", threshold: 0.01, window: 5m}
  - id: "e"
    name: Enforce
    flags: {STAGE_VALIDATION_MODE: enforce, ENFORCE_WRITE_ONLY: false, STAGE_VALIDATION_DRY_RUN: false}
    steps:
      - {id: "e@50", flags: {ENFORCEMENT_PERCENT: 50}}
      - {id: "e@100", flags: {ENFORCEMENT_PERCENT: 100}}
    min_duration: 10m
    approval: {required: true}
    gates:
      - {name: errors-low, signal: error_ratio, comparator: "<", threshold: 0.01, window: 5m}
    triggers:
      - {name: errors-high, signal: error_ratio, comparator: ">", threshold: 0.05, for: 2m}
"""


def tiny_plan() -> Plan:
    return parse_plan(TINY_PLAN, source="tiny")


def metrics(error_ratio: list[tuple[str, float | None]] | None = None) -> ScriptedMetrics:
    points = error_ratio or [("0s", 0.001)]
    text = "name: world\nstart: 2026-03-02T09:00:00Z\nsignals:\n  error_ratio:\n" + "".join(
        f"    - {{at: {at}, value: {'null' if value is None else value}}}\n" for at, value in points
    )
    return ScriptedMetrics(parse_scenario(text, source="world"), timedelta(minutes=1))


@dataclass
class World:
    """A namespace with a Deployment, a rollout of the tiny plan and an operator for it."""

    api: KubeApi
    """The test's own connection, as a cluster admin."""
    emulator: KubeEmulator | None
    namespace: str
    operator_api: KubeApi | None = None
    """The operator's connection (its ServiceAccount); `api` on a real cluster."""
    people: KubeApi | None = None
    """Where approvals and commands are created from: another user than the operator."""
    name: str = "api-rollout"
    now: datetime = T0
    source: ScriptedMetrics = field(default_factory=metrics)
    plan: Plan = field(default_factory=tiny_plan)

    def reconciler(self, *, dry_run: bool = False, hooks: Hooks | None = None) -> Reconciler:
        return Reconciler(
            self.operator_api or self.api,
            lambda _spec, _plan: self.source,
            dry_run=dry_run,
            hooks=hooks,
        )

    def tick(
        self, reconciler: Reconciler | None = None, advance: timedelta = timedelta(0)
    ) -> Outcome:
        self.now += advance
        return (reconciler or self.reconciler()).reconcile(self.namespace, self.name, self.now)

    def rollout(self) -> dict[str, Any]:
        found = self.api.get(ROLLOUTS, self.namespace, self.name)
        assert found is not None
        return found

    def status(self) -> dict[str, Any]:
        return dict(self.rollout().get("status") or {})

    def flags(self) -> dict[str, str]:
        found = self.api.get(CONFIGMAPS, self.namespace, "flags")
        return dict((found or {}).get("data") or {})

    def template_hash(self) -> str | None:
        deployment = self.api.get(DEPLOYMENTS, self.namespace, "api")
        annotations = (deployment or {}).get("spec", {}).get("template", {}).get(
            "metadata", {}
        ).get("annotations") or {}
        return annotations.get("stage.rollout.dev/flags-hash")

    def settle(self) -> None:
        """Tick until the current step is in effect (real time only for the Deployment to roll)."""
        for _ in range(5):
            self.tick()
            if self.status().get("state") == "soaking":
                return
            self.wait_rolled_out()
        raise AssertionError(
            f"not in effect: {self.status().get('state')} {self.status().get('blockers')}"
        )

    def wait_rolled_out(self, timeout: float = 10.0) -> None:
        """Wait (real time) until the Deployment's controller rolled out the current template."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            deployment = self.api.get(DEPLOYMENTS, self.namespace, "api") or {}
            status = deployment.get("status") or {}
            if (
                status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
                and status.get("updatedReplicas", 0) >= deployment["spec"]["replicas"]
                and status.get("availableReplicas", 0) >= deployment["spec"]["replicas"]
            ):
                return
            time.sleep(0.05)
        raise AssertionError("the Deployment did not finish rolling out")

    def approve(self, step: str, approver: str = "alice", **spec: Any) -> dict[str, Any]:
        rollout = self.rollout()
        body = {
            "apiVersion": APPROVALS.api_version,
            "kind": APPROVALS.name,
            "metadata": {"name": f"approve-{step.replace('@', '-')}-{uuid.uuid4().hex[:6]}"},
            "spec": {
                "rollout": {"name": self.name, "uid": rollout["metadata"]["uid"]},
                "step": step,
                "planHash": self.plan.content_hash,
                "approver": approver,
                "reason": "looks good",
                **spec,
            },
        }
        return (self.people or self.api).create(APPROVALS, self.namespace, body)

    def command(self, command: str, **spec: Any) -> dict[str, Any]:
        rollout = self.rollout()
        body = {
            "apiVersion": COMMANDS.api_version,
            "kind": COMMANDS.name,
            "metadata": {"name": f"{command}-{uuid.uuid4().hex[:6]}"},
            "spec": {
                "rollout": {"name": self.name, "uid": rollout["metadata"]["uid"]},
                "command": command,
                "by": "alice",
                **spec,
            },
        }
        return (self.people or self.api).create(COMMANDS, self.namespace, body)

    def job_names(self) -> list[str]:
        items, _ = self.api.list(JOBS, self.namespace)
        return sorted(item["metadata"]["name"] for item in items)


def crds() -> list[dict[str, Any]]:
    return [
        yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted((REPO / "manifests" / "crd").glob("*.yaml"))
    ]


def install_admission_policies(emulator: KubeEmulator) -> None:
    """The policies of manifests/base/approval-policy.yaml: without them no record counts."""
    path = REPO / "manifests" / "base" / "approval-policy.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    bindings = {d["spec"]["policyName"]: d for d in docs if d["kind"].endswith("Binding")}
    for doc in docs:
        if doc["kind"] == "ValidatingAdmissionPolicy":
            emulator.register_admission_policy(doc, bindings.get(doc["metadata"]["name"]))


def make_world(emulator: KubeEmulator | None, **rollout_spec: Any) -> World:
    """Our CRDs, a Deployment `api` (2 replicas) and a StageRollout of the tiny plan."""
    people: KubeApi | None = None
    if REAL_CLUSTER:
        api = KubeApi(load_api_client(REAL_CLUSTER))
        namespace = f"stage-test-{uuid.uuid4().hex[:8]}"
        api.create(
            NAMESPACES,
            "",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
    else:
        assert emulator is not None
        for crd in crds():
            emulator.register_crd(crd)
        install_admission_policies(emulator)
        api = admin_api(emulator)
        people = KubeApi(emulator.api_client(user="alice"))
        namespace = "shop"
        grant_manifests(emulator, namespace)
    grant_rollout_account(api, namespace, ["api"])
    create_deployment(api, namespace, replicas=2)
    operator_api = KubeApi(emulator.api_client(user=OPERATOR_USER)) if emulator else None
    world = World(
        api=api, emulator=emulator, namespace=namespace, operator_api=operator_api, people=people
    )
    spec = {
        "plan": {"inline": yaml.safe_load(TINY_PLAN)},
        "serviceAccountName": ROLLOUT_ACCOUNT,
        "target": {"configMap": "flags", "deployments": ["api"]},
        "jobTemplates": {
            "prepare": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "prepare", "image": "busybox:1.36", "command": ["true"]}
                        ],
                    }
                },
            }
        },
        **rollout_spec,
    }
    api.create(
        ROLLOUTS,
        namespace,
        {
            "apiVersion": ROLLOUTS.api_version,
            "kind": ROLLOUTS.name,
            "metadata": {"name": world.name, "namespace": namespace},
            "spec": spec,
        },
    )
    return world


def create_deployment(api: KubeApi, namespace: str, *, replicas: int = 1) -> None:
    """A Deployment `api` in `namespace`, the target workload of the test rollouts."""
    api.create(
        DEPLOYMENTS,
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "api", "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "api"}},
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"name": "api", "image": "registry.k8s.io/pause:3.9"}]},
                },
            },
        },
    )


def write_alice_kubeconfig(world: World, path: Path) -> Path:
    """A kubeconfig for the person alice (group sre) in namespace shop, as stagectl reads it."""
    assert world.emulator is not None
    world.emulator.add_token("alice-token", "alice@example.com", groups=("sre",))
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": world.emulator.url}}],
        "users": [{"name": "alice", "user": {"token": "alice-token"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "alice", "namespace": "shop"},
            }
        ],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def walk_tiny_plan_to_e50(world: World) -> None:
    """The tiny plan from its start to step e@50: its job done, `warm` approved."""
    world.settle()
    world.tick(advance=timedelta(minutes=1))  # the job is created once in effect
    world.wait_rolled_out()
    time.sleep(0.3)  # the emulated Job controller completes the job
    world.approve("warm")
    world.tick(advance=timedelta(minutes=11))
    assert world.status()["step"] == "e@50", world.status().get("blockers")
    world.settle()


def operator_arguments(
    world: World, emulator: KubeEmulator, metrics: MetricsSource, **settings: Any
) -> dict[str, Any]:
    """What an Operator (or a test's subclass) of the world's namespace is built from.

    It acts as the operator's user and reads `metrics`; passes come every second at a
    one-second granularity with no metrics port, unless `settings` say otherwise.
    """
    chosen = {
        "interval": timedelta(seconds=1),
        "granularity": timedelta(seconds=1),
        "metrics_port": 0,
        **settings,
    }
    return {
        "api": KubeApi(emulator.api_client(user=OPERATOR_USER)),
        "settings": OperatorSettings(namespace=world.namespace, **chosen),
        "metrics_for": lambda _spec, _plan: metrics,
    }


def admin_api(emulator: KubeEmulator) -> KubeApi:
    """A connection in group system:masters, which RBAC allows everything."""
    client = emulator.api_client(user=ADMIN_USER)
    client.default_headers["X-Emulator-Groups"] = "system:masters"
    return KubeApi(client)


def grant_manifests(emulator: KubeEmulator, namespace: str) -> None:
    """The operator's ClusterRole and Lease Role, the people's roles bound in `namespace`
    to PEOPLE, and RBAC enforced from now on."""
    for obj in rbac_objects(RBAC_FILE) + rbac_objects(ROLES_FILE):
        emulator.create(obj)
    emulator.create(
        {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "people", "namespace": namespace},
            "roleRef": {
                "apiGroup": RBAC_GROUP,
                "kind": "ClusterRole",
                "name": "stage-rollout-operator",
            },
            "subjects": [{"kind": "User", "apiGroup": RBAC_GROUP, "name": p} for p in PEOPLE],
        }
    )
    emulator.rbac.enabled = True


def grant_rollout_account(api: KubeApi, namespace: str, deployments: list[str]) -> None:
    """The example ServiceAccount, Role and RoleBinding, in `namespace`, for `deployments`."""
    for obj in rbac_objects(EXAMPLE_ROLE_FILE):
        obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects") or []:
            subject["namespace"] = namespace
        for rule in obj.get("rules") or []:
            if rule["resources"] == ["deployments"]:
                rule["resourceNames"] = deployments
        api.create(RBAC_KINDS[obj["kind"]], namespace, obj)


QUICK_PLAN = {
    "name": "quick",
    "version": "1",
    "signals": {"error_ratio": {"query": "q"}},
    "phases": [
        {
            "id": "a",
            "name": "A",
            "flags": {
                "STAGE_VALIDATION_MODE": "warn",
                "ENFORCE_WRITE_ONLY": False,
                "ENFORCEMENT_PERCENT": 0,
                "STAGE_VALIDATION_DRY_RUN": False,
            },
            "min_duration": "1s",
            "approval": {"required": True},
            "gates": [
                {
                    "name": "ok",
                    "signal": "error_ratio",
                    "comparator": "<",
                    "threshold": 0.01,
                    "window": "1s",
                }
            ],
        },
        {
            "id": "b",
            "name": "B",
            "flags": {
                "STAGE_VALIDATION_MODE": "enforce",
                "ENFORCE_WRITE_ONLY": False,
                "ENFORCEMENT_PERCENT": 10,
                "STAGE_VALIDATION_DRY_RUN": False,
            },
        },
    ],
}


@contextmanager
def quick_operator(emulator: KubeEmulator) -> Iterator[tuple[World, Operator]]:
    """A running operator over one rollout of a one-second plan with healthy metrics."""
    world = make_world(emulator, plan={"inline": QUICK_PLAN})
    world.plan = parse_plan(yaml.safe_dump(QUICK_PLAN), source="quick")
    start = datetime.now(UTC) - timedelta(hours=1)
    healthy = ScriptedMetrics(
        parse_scenario(
            f"name: q\nstart: {start.isoformat()}\nsignals:\n  error_ratio: [{{at: 0s, value: 0.001}}]\n",
            source="q",
        ),
        timedelta(seconds=1),
    )
    operator = Operator(**operator_arguments(world, emulator, healthy))
    with operator_running(operator):
        yield world, operator


@contextmanager
def operator_running(operator: Operator, *, stop_within: float = 10.0) -> Iterator[Operator]:
    """`operator.run` in a thread for the block; an operator that does not stop fails."""
    runner = threading.Thread(target=operator.run, name="operator", daemon=True)
    runner.start()
    try:
        yield operator
    finally:
        operator.stop.set()
        runner.join(timeout=stop_within)
        assert not runner.is_alive(), f"the operator did not stop within {stop_within} s"
        assert gc.get_freeze_count() == 0, "the stopped operator left the heap frozen"


def approve_when_ready(
    world: World, operator: Operator, *, pass_seconds: int, timeout: float
) -> float:
    """Wait for "awaiting approval", slow the passes down, approve; seconds until promoted."""
    deadline = time.monotonic() + 20
    while world.status().get("state") != "awaiting_approval":
        assert time.monotonic() < deadline, world.status().get("blockers")
        time.sleep(0.05)
    operator.scheduler.reschedule_job("tick-all", trigger="interval", seconds=pass_seconds)
    time.sleep(0.5)
    approved = time.monotonic()
    world.approve("a")
    while world.status().get("step") != "b":
        assert time.monotonic() - approved < timeout, "the approval was not acted on"
        time.sleep(0.005)
    return time.monotonic() - approved
