"""A rollout across environments: staging and production in two namespaces, or production
in another cluster reached through a kubeconfig Secret, each read from its own Prometheus.

The runbook runs 2.1 elsewhere: "Deploy to staging with `STAGE_VALIDATION_MODE=warn`",
then the later phases in production. Here `warm` is the staging step and `e@50` the
first production one; the promotion between them is gated and approved like any
other, each step's flags reach its own environment's ConfigMap, and each gate reads
its own environment's Prometheus (two real servers with different histories).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.kube.api import CONFIGMAPS, DEPLOYMENTS, ROLLOUTS, SECRETS, KubeApi
from controller.kube.prometheus_refs import PrometheusEndpoints
from controller.kube.reconciler import Reconciler
from controller.kube.resources import StageRolloutSpec
from controller.ports import MetricsSource
from phases.plan import Plan
from phases.plan_checks import parse_plan
from tests.kube.operator_world import (
    RBAC_GROUP,
    RBAC_KINDS,
    ROLLOUT_ACCOUNT,
    T0,
    World,
    create_deployment,
    make_world,
    metrics,
)
from tests.support.backfill import Series
from tests.support.kube_emulator import KubeEmulator
from tests.support.prometheus import PrometheusServer

ENV_PLAN = """
name: two-places
version: "1"
environments: [staging, production]
signals:
  error_ratio: {query: "max(app_error_ratio)"}
phases:
  - id: warm
    name: Warm
    environment: staging
    flags: {STAGE_VALIDATION_MODE: warn, ENFORCE_WRITE_ONLY: false, ENFORCEMENT_PERCENT: 0, STAGE_VALIDATION_DRY_RUN: false}
    min_duration: 10m
    approval: {required: true}
    gates:
      - {name: errors-low, signal: error_ratio, comparator: "<", threshold: 0.01, window: 5m}
  - id: "e"
    name: Enforce
    environment: production
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
WARM = {
    "STAGE_VALIDATION_MODE": "warn",
    "ENFORCE_WRITE_ONLY": "false",
    "ENFORCEMENT_PERCENT": "0",
    "STAGE_VALIDATION_DRY_RUN": "false",
}
E50 = {**WARM, "STAGE_VALIDATION_MODE": "enforce", "ENFORCEMENT_PERCENT": "50"}
STAGING = "shop-staging"
REMOTE_TOKEN = "remote-cluster-token-7c2e"


def env_world(kube: KubeEmulator, **spec: Any) -> World:
    world = make_world(kube, plan={"inline": yaml.safe_load(ENV_PLAN)}, **spec)
    world.plan = parse_plan(ENV_PLAN, source="two-places")
    return world


def grant(
    api: KubeApi, namespace: str, name: str, rules: list[dict[str, Any]], subject: dict[str, Any]
) -> None:
    """A Role of `rules` in `namespace` bound to `subject`."""
    api.create(
        RBAC_KINDS["Role"],
        namespace,
        {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": rules,
        },
    )
    api.create(
        RBAC_KINDS["RoleBinding"],
        namespace,
        {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": name},
            "subjects": [subject],
        },
    )


TARGET_RULES = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "resourceNames": ["api"],
        "verbs": ["get", "patch"],
    },
]
ROLLOUT_SA = {"kind": "ServiceAccount", "name": ROLLOUT_ACCOUNT, "namespace": "shop"}


def staging_namespace(world: World) -> dict[str, Any]:
    """shop-staging, with the Deployment and a Role for the rollout's account (of shop)."""
    create_deployment(world.api, STAGING)
    grant(world.api, STAGING, "stage-rollout", TARGET_RULES, ROLLOUT_SA)
    return {"target": {"configMap": "flags", "deployments": ["api"], "namespace": STAGING}}


def flags(api: KubeApi, namespace: str) -> dict[str, str] | None:
    found = api.get(CONFIGMAPS, namespace, "flags")
    return None if found is None else dict(found.get("data") or {})


def settle(world: World, reconciler: Reconciler, api: KubeApi, namespace: str) -> None:
    """Tick until the step is in effect, waiting (real time) for `namespace`'s Deployment."""
    for _ in range(8):
        world.tick(reconciler)
        if world.status().get("state") == "soaking":
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = api.get(DEPLOYMENTS, namespace, "api") or {}
            status = found.get("status") or {}
            if (
                status.get("observedGeneration", 0) >= found["metadata"].get("generation", 0)
                and status.get("availableReplicas", 0) >= 1
            ):
                break
            time.sleep(0.05)
        time.sleep(0.1)
    raise AssertionError(
        f"not in effect: {world.status().get('state')} {world.status().get('blockers')}"
    )


def verdict(world: World, name: str) -> dict[str, Any]:
    return next(v for v in world.status()["lastVerdicts"] if v["name"] == name)


def condition(world: World, kind: str) -> dict[str, Any]:
    return next(c for c in world.status().get("conditions", []) if c["type"] == kind)


def history(prometheus: Callable[..., PrometheusServer], value: float) -> PrometheusServer:
    start = (T0 - timedelta(hours=1)).timestamp()
    samples = [(start + 15 * n, value) for n in range(4 * 60 * 6)]
    return prometheus(history=[Series("app_error_ratio", {"job": "app"}, samples)])


def test_staging_and_production_in_two_namespaces_read_their_own_prometheus(
    kube_emulator: Callable[..., KubeEmulator], prometheus_server: Callable[..., PrometheusServer]
) -> None:
    staging_prom, production_prom = (
        history(prometheus_server, 0.001),
        history(prometheus_server, 0.2),
    )
    world = env_world(kube_emulator(rollout_delay=0.05))
    world.api.replace(
        ROLLOUTS,
        world.namespace,
        world.name,
        {
            **world.rollout(),
            "spec": {
                **world.rollout()["spec"],
                "target": None,
                "environments": {
                    "staging": {
                        **staging_namespace(world),
                        "prometheus": {"url": staging_prom.url},
                    },
                    "production": {
                        "target": {"configMap": "flags", "deployments": ["api"]},
                        "prometheus": {"url": production_prom.url},
                    },
                },
            },
        },
    )
    assert world.operator_api is not None
    reconciler = Reconciler(world.operator_api, endpoints=PrometheusEndpoints())

    settle(world, reconciler, world.api, STAGING)
    assert flags(world.api, STAGING) == WARM
    assert flags(world.api, "shop") is None, "production is not touched by the staging step"
    assert world.status()["environment"] == "staging"

    world.tick(reconciler, advance=timedelta(minutes=11))
    assert world.status()["state"] == "awaiting_approval", world.status().get("blockers")
    assert verdict(world, "errors-low")["observed"] == pytest.approx(0.001)

    # "Moving from the last staging step to the first production step is a promotion like
    # any other": without an approval it waits.
    world.tick(reconciler, advance=timedelta(minutes=1))
    assert world.status()["step"] == "warm"
    world.approve("warm")
    world.tick(reconciler)
    status = world.status()
    assert (status["step"], status["environment"]) == ("e@50", "production")
    promoted = next(r for r in status["history"] if r["trigger"] == "promote")
    assert promoted["environment"] == "production"
    assert flags(world.api, "shop") == E50
    assert flags(world.api, STAGING) == WARM, "staging keeps 2.1's flags"

    # Production's Prometheus says errors are high; staging's never did.
    settle(world, reconciler, world.api, "shop")
    for _ in range(4):
        world.tick(reconciler, advance=timedelta(minutes=1))
        if world.status()["step"] == "warm":
            break
    status = world.status()
    assert status["step"] == "warm", status.get("blockers")
    back = next(r for r in reversed(status["history"]) if r["trigger"] == "rollback")
    assert back["fromStep"] == "e@50"
    assert back["environment"] == "staging" and "errors-high" in back["reason"]
    # The rollback takes production off e@50 too: it holds warm's flags again.
    assert flags(world.api, "shop") == WARM
    assert flags(world.api, STAGING) == WARM


def remote_cluster(kube_emulator: Callable[..., KubeEmulator]) -> tuple[KubeEmulator, KubeApi]:
    """Another cluster whose user `deployer` (a token) may change shop's flags and api only."""
    remote = kube_emulator(rollout_delay=0.05)
    remote.add_token(REMOTE_TOKEN, "deployer")
    admin_client = remote.api_client(user="cluster-admin")
    admin_client.default_headers["X-Emulator-Groups"] = "system:masters"
    admin = KubeApi(admin_client)
    create_deployment(admin, "shop")
    grant(
        admin,
        "shop",
        "deployer",
        TARGET_RULES,
        {"kind": "User", "apiGroup": RBAC_GROUP, "name": "deployer"},
    )
    remote.rbac.enabled = True
    return remote, admin


def kubeconfig_secret(world: World, name: str, document: dict[str, Any]) -> None:
    text = yaml.safe_dump(document)
    world.api.create(
        SECRETS,
        world.namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "data": {"kubeconfig": base64.b64encode(text.encode()).decode()},
        },
    )
    grant(
        world.api,
        world.namespace,
        f"read-{name}",
        [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [name], "verbs": ["get"]}],
        ROLLOUT_SA,
    )


def kubeconfig(server: str, user: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "prod",
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "deployer"}}],
        "clusters": [{"name": "prod", "cluster": {"server": server}}],
        "users": [{"name": "deployer", "user": user}],
    }


def with_environments(world: World, environments: dict[str, Any]) -> None:
    rollout = world.rollout()
    spec = {**rollout["spec"], "target": None, "environments": environments}
    world.api.replace(ROLLOUTS, world.namespace, world.name, {**rollout, "spec": spec})


def test_production_in_another_cluster_is_reached_through_the_kubeconfig_secret(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    world = env_world(kube_emulator(rollout_delay=0.05))
    remote, remote_admin = remote_cluster(kube_emulator)
    kubeconfig_secret(world, "prod-cluster", kubeconfig(remote.url, {"token": REMOTE_TOKEN}))
    with_environments(
        world,
        {
            "staging": staging_namespace(world),
            "production": {
                "target": {"configMap": "flags", "deployments": ["api"]},
                "kubeconfigSecret": {"name": "prod-cluster"},
            },
        },
    )
    world.source = metrics([("0s", 0.001)])
    reconciler = world.reconciler()
    before = len(remote.requests())

    settle(world, reconciler, world.api, STAGING)
    world.tick(reconciler, advance=timedelta(minutes=11))
    world.approve("warm")
    world.tick(reconciler)
    assert world.status()["step"] == "e@50", world.status().get("blockers")
    settle(world, reconciler, remote_admin, "shop")

    assert flags(remote_admin, "shop") == E50
    assert flags(world.api, "shop") is None, "the rollout's own cluster holds no production flags"
    assert flags(world.api, STAGING) == WARM
    remote_users = {
        r.user
        for r in remote.requests()[before:]
        if r.resource in ("configmaps", "deployments") and r.method in ("POST", "PATCH")
    }
    assert remote_users == {"deployer"}, "the kubeconfig's own credentials act there"


@pytest.mark.parametrize(
    ("user", "named"),
    [
        (
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "touch"}},
            "'exec' refused",
        ),
        (
            {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"},
            "'tokenFile' refused",
        ),
        ({"token": REMOTE_TOKEN, "client-key": "/etc/operator/tls.key"}, "'client-key' refused"),
    ],
)
def test_a_hostile_kubeconfig_holds_the_rollout_before_anything_is_written(
    kube_emulator: Callable[..., KubeEmulator], tmp_path: Path, user: dict[str, Any], named: str
) -> None:
    world = env_world(kube_emulator(rollout_delay=0.05))
    planted = tmp_path / "ran"
    if "exec" in user:
        user["exec"]["args"] = [str(planted)]
    kubeconfig_secret(world, "prod-cluster", kubeconfig("https://prod.example:6443", user))
    with_environments(
        world,
        {
            "staging": staging_namespace(world),
            "production": {
                "target": {"configMap": "flags"},
                "kubeconfigSecret": {"name": "prod-cluster"},
            },
        },
    )
    outcome = world.tick()
    valid = condition(world, "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "KubeconfigRefused")
    assert named in valid["message"] and "prod-cluster" in valid["message"]
    assert outcome.problem == valid["message"]
    assert flags(world.api, STAGING) is None, "not even the staging step was applied"
    assert not planted.exists()


def test_an_environment_the_plan_lacks_or_one_left_without_target_is_refused(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    world = env_world(kube_emulator(rollout_delay=0.05))
    with_environments(
        world, {"staging": staging_namespace(world), "qa": {"target": {"configMap": "flags"}}}
    )
    world.tick()
    valid = condition(world, "Valid")
    assert valid["reason"] == "EnvironmentRefused"
    assert "spec.environments.'qa' is not an environment of plan two-places" in valid["message"]

    with_environments(world, {"staging": staging_namespace_spec()})
    world.tick()
    assert "plan environment production has no target" in condition(world, "Valid")["message"]
    assert flags(world.api, STAGING) is None


def staging_namespace_spec() -> dict[str, Any]:
    return {"target": {"configMap": "flags", "deployments": ["api"], "namespace": STAGING}}


def test_a_staging_namespace_that_granted_the_account_nothing_is_refused_by_its_api_server(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    world = env_world(kube_emulator(rollout_delay=0.05))
    create_deployment(world.api, STAGING)
    with_environments(
        world,
        {"staging": staging_namespace_spec(), "production": {"target": {"configMap": "flags"}}},
    )
    world.tick()
    valid = condition(world, "Valid")
    assert valid["reason"] == "Forbidden"
    assert f"may not get configmaps in namespace {STAGING}" in valid["message"]
    assert "system:serviceaccount:shop:stage-rollout" in valid["message"]
    assert flags(world.api, STAGING) is None


def spec_of(world: World) -> dict[str, Any]:
    return dict(world.rollout()["spec"])


def test_an_old_shape_rollout_sends_every_environment_to_its_one_target(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    """Migration: a rollout written before environments (one target, one Prometheus) on the
    new CRD and operator: nothing pruned, both environments go to its ConfigMap, it
    promotes, and a status written before `environment` existed still reads."""
    world = env_world(kube_emulator(rollout_delay=0.05))
    spec = spec_of(world)
    assert (
        spec["target"] == {"configMap": "flags", "deployments": ["api"]}
        and "environments" not in spec
    )
    seen: list[str | None] = []

    def metrics_for(given: StageRolloutSpec, _plan: Plan) -> MetricsSource:
        seen.append(given.target.config_map if given.target else None)
        return world.source

    reconciler = Reconciler(world.operator_api or world.api, metrics_for)
    settle(world, reconciler, world.api, "shop")
    assert world.flags() == WARM and world.status()["environment"] == "staging"

    # The status as the previous operator wrote it: no environment anywhere.
    rollout = world.rollout()
    old = {k: v for k, v in rollout["status"].items() if k != "environment"}
    old["history"] = [{k: v for k, v in r.items() if k != "environment"} for r in old["history"]]
    world.api.replace_status(ROLLOUTS, world.namespace, world.name, {**rollout, "status": old})

    world.tick(reconciler, advance=timedelta(minutes=11))
    assert world.status()["state"] == "awaiting_approval", world.status().get("blockers")
    world.approve("warm")
    world.tick(reconciler)
    assert world.status()["step"] == "e@50"
    assert world.flags() == E50
    assert set(seen) == {"flags"}


def cli_kubeconfig(world: World, tmp_path: Path) -> Path:
    assert world.emulator is not None
    world.emulator.add_token("alice-token", "alice@example.com", groups=("sre",))
    path = tmp_path / "kubeconfig"
    document = kubeconfig(world.emulator.url, {"token": "alice-token"})
    document["contexts"][0]["context"]["namespace"] = "shop"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_status_and_history_show_where_each_step_ran(
    kube_emulator: Callable[..., KubeEmulator], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from controller.cli.main import app

    world = env_world(kube_emulator(rollout_delay=0.05))
    with_environments(
        world,
        {"staging": staging_namespace(world), "production": {"target": {"configMap": "flags"}}},
    )
    reconciler = world.reconciler()
    settle(world, reconciler, world.api, STAGING)
    world.tick(reconciler, advance=timedelta(minutes=11))
    world.approve("warm")
    world.tick(reconciler)
    config = cli_kubeconfig(world, tmp_path)

    def stagectl(*args: str) -> str:
        result = CliRunner().invoke(app, [*args, "--kubeconfig", str(config), "-n", "shop"])
        assert result.exit_code == 0, result.stderr
        return result.stdout

    shown = stagectl("status", "api-rollout")
    row = next(line for line in shown.splitlines() if line.startswith("api-rollout"))
    assert "e@50 [production]" in row
    assert "warm (awaiting_approval) → e@50 (applying) [production]  promote" in shown
    lines = stagectl("history", "api-rollout").splitlines()
    assert any("warm → e@50 [production]  promote" in line for line in lines)
    assert any("→ warm [staging]" in line for line in lines)
    assert json.loads(stagectl("status", "api-rollout", "-o", "json"))["environment"] == (
        "production"
    )


@pytest.mark.parametrize(
    ("token", "stopped", "reason", "said"),
    [
        ("a-token-the-remote-cluster-never-issued", False, "Unauthorized", "not accepted"),
        (REMOTE_TOKEN, True, "ClusterError", "no cluster reachable"),
    ],
)
def test_another_cluster_refusing_or_gone_is_a_condition_naming_the_environment(
    kube_emulator: Callable[..., KubeEmulator], token: str, stopped: bool, reason: str, said: str
) -> None:
    world = env_world(kube_emulator(rollout_delay=0.05))
    remote, _admin = remote_cluster(kube_emulator)
    kubeconfig_secret(world, "prod-cluster", kubeconfig(remote.url, {"token": token}))
    production = {"target": {"configMap": "flags"}, "kubeconfigSecret": {"name": "prod-cluster"}}
    with_environments(world, {"staging": staging_namespace(world), "production": production})
    world.source = metrics([("0s", 0.001)])
    reconciler = world.reconciler()
    settle(world, reconciler, world.api, STAGING)
    world.tick(reconciler, advance=timedelta(minutes=11))
    world.approve("warm")
    if stopped:
        remote.stop()
    world.tick(reconciler)
    valid = condition(world, "Valid")
    assert (valid["status"], valid["reason"]) == ("False", reason), valid
    assert valid["message"].startswith(
        "environment production, as the kubeconfig of Secret shop/prod-cluster: "
    )
    assert said in valid["message"] and token not in valid["message"]
    assert world.status()["step"] == "warm", "the promotion waits for production to answer"
    assert flags(world.api, STAGING) == WARM
