"""Baselines on the API server: captured into the status, shown by the CLI, exported as
a metric, and carried to another rollout of the namespace (read as its account).

Runbook, phase 2.1: "Export baselines for production alert thresholds".
"""

from __future__ import annotations

import copy
import json
import time
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from controller.cli.main import app
from controller.kube.api import EVENTS, ROLLOUTS, KubeError
from controller.kube.records import baseline_export
from controller.telemetry import Telemetry
from phases.baselines import MIGRATED_REASON
from phases.plan_checks import parse_plan
from tests.kube.operator_world import (
    RBAC_KINDS,
    ROLLOUT_ACCOUNT,
    TINY_PLAN,
    World,
    crds,
    make_world,
    metrics,
    write_alice_kubeconfig,
)
from tests.support.kube_emulator import KubeEmulator

runner = CliRunner()
QUERY = "sum(rate(errors_total[5m])) / sum(rate(requests_total[5m]))"

# The tiny plan with warm in staging capturing the error ratio, and an adaptive gate
# in production: errors < max(0.0001, baseline × 3).
PLAN = (
    TINY_PLAN.replace("phases:\n", "environments: [staging, production]\nphases:\n", 1)
    .replace(
        "    name: Warm\n",
        "    name: Warm\n    environment: staging\n    baseline: {signals: [error_ratio]}\n",
    )
    .replace("    name: Enforce\n", "    name: Enforce\n    environment: production\n")
    .replace(
        '    triggers:\n      - {name: errors-high, signal: error_ratio, comparator: ">", '
        "threshold: 0.05, for: 2m}\n",
        "      - name: errors-adaptive\n        signal: error_ratio\n"
        '        comparator: "<"\n'
        "        threshold: {min: 0.0001, baseline: error_ratio, multiplier: 3}\n"
        "        window: 5m\n"
        '    triggers:\n      - {name: errors-high, signal: error_ratio, comparator: ">", '
        "threshold: 0.05, for: 2m}\n",
    )
)


@pytest.fixture
def world(kube_emulator: Callable[..., KubeEmulator]) -> World:
    made = make_world(
        kube_emulator(rollout_delay=0.05, job_delay=0.05), plan={"inline": yaml.safe_load(PLAN)}
    )
    made.plan = parse_plan(PLAN, source="baselines")
    made.source = metrics([("0s", 0.002)])
    return made


@pytest.fixture
def kubeconfig(world: World, tmp_path: Path) -> Path:
    return write_alice_kubeconfig(world, tmp_path / "kubeconfig")


def stagectl(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--kubeconfig", str(kubeconfig), "-n", "shop"])
    return result.exit_code, result.stdout, result.stderr


def leave_warm(world: World, telemetry: Telemetry) -> None:
    reconciler = world.reconciler(hooks=telemetry)
    world.settle()
    world.tick(reconciler, advance=timedelta(minutes=1))  # the job is created once in effect
    world.wait_rolled_out()
    time.sleep(0.3)  # the emulated Job controller completes the job
    world.approve("warm")
    world.tick(reconciler, advance=timedelta(minutes=11))
    assert world.status()["step"] == "e@50", world.status().get("blockers")


def scrape(telemetry: Telemetry) -> str:
    server = telemetry.serve("127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return str(answer.read().decode())
    finally:
        server.shutdown()


def test_a_capture_reaches_the_status_the_events_the_metric_and_the_cli(
    world: World, kubeconfig: Path
) -> None:
    telemetry = Telemetry()
    leave_warm(world, telemetry)
    record = world.status()["baselines"]["error_ratio"]
    assert record["value"] == pytest.approx(0.002)
    assert (record["source"], record["environment"], record["step"]) == (
        "captured",
        "staging",
        "warm",
    )
    assert record["query"] == QUERY
    assert record["planHash"] == world.plan.content_hash
    assert record["windowFrom"] < record["windowTo"] == record["capturedAt"]
    events, _ = world.api.list(EVENTS, world.namespace)
    assert any(
        e["reason"] == "BaselineRecorded" and "error_ratio=0.002 in staging" in e["message"]
        for e in events
    )
    body = scrape(telemetry)
    assert (
        'stage_rollout_baseline{environment="staging",namespace="shop",'
        'rollout="api-rollout",signal="error_ratio"} 0.002'
    ) in body

    # Captured in staging, it drives production's adaptive gate: max(0.0001, 0.002 × 3).
    world.settle()
    world.tick(advance=timedelta(minutes=6))
    verdicts = {v["name"]: v for v in world.status()["lastVerdicts"]}
    adaptive = verdicts["errors-adaptive"]
    assert (adaptive["outcome"], adaptive["threshold"]) == ("pass", pytest.approx(0.006))
    assert "max(0.0001, baseline 0.002 × 3)" in adaptive["reason"]

    code, out, err = stagectl(kubeconfig, "status", "api-rollout")
    assert code == 0, err
    assert "baseline error_ratio = 0.002  captured in staging step warm, averaged over " in out
    code, out, err = stagectl(kubeconfig, "history", "api-rollout")
    assert code == 0, err
    assert "baseline error_ratio = 0.002  captured in staging" in out
    code, out, err = stagectl(kubeconfig, "status", "api-rollout", "-o", "json")
    assert json.loads(out)["baselines"][0]["windowTo"] == record["windowTo"]

    code, out, err = stagectl(kubeconfig, "baseline", "export", "api-rollout")
    assert code == 0, err
    exported = yaml.safe_load(out)
    assert exported["kind"] == "BaselineExport" and exported["rollout"] == "api-rollout"
    assert exported["plan"]["hash"] == world.plan.content_hash
    assert exported["baselines"] == [record]


def test_export_of_a_rollout_without_baselines_is_one_clear_line(
    world: World, kubeconfig: Path
) -> None:
    world.settle()
    code, out, err = stagectl(kubeconfig, "baseline", "export", "api-rollout")
    assert code == 2
    assert "rollout api-rollout holds no baselines yet" in err
    assert "Traceback" not in err + out
    code, _, err = stagectl(kubeconfig, "baseline", "export", "nope")
    assert code == 2 and "nope" in err


def second_rollout(world: World, name: str, baselines: dict[str, Any]) -> None:
    rollout = world.rollout()
    spec = {**rollout["spec"], "baselines": baselines}
    world.api.create(
        ROLLOUTS,
        world.namespace,
        {
            "apiVersion": ROLLOUTS.api_version,
            "kind": ROLLOUTS.name,
            "metadata": {"name": name, "namespace": world.namespace},
            "spec": spec,
        },
    )


def grant_reading(world: World, rollout: str) -> None:
    """Let the rollouts' account `get` one StageRollout (the source of its baselines)."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "read-baselines"},
        "rules": [
            {
                "apiGroups": ["stage.rollout.dev"],
                "resources": ["stagerollouts"],
                "resourceNames": [rollout],
                "verbs": ["get"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "read-baselines"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": ROLLOUT_ACCOUNT, "namespace": world.namespace}
        ],
    }
    world.api.create(RBAC_KINDS["Role"], world.namespace, role)
    world.api.create(RBAC_KINDS["RoleBinding"], world.namespace, binding)


def test_a_rollout_carries_the_baselines_of_another_read_as_its_own_account(
    world: World,
) -> None:
    leave_warm(world, Telemetry())
    second_rollout(world, "api-production", {"from": {"rollout": "api-rollout"}})
    world.tick()  # only the admin's rollout moved: the second has not started
    telemetry = Telemetry()
    reconciler = world.reconciler(hooks=telemetry)
    # The account may not read the other rollout: held, with the API's refusal.
    reconciler.reconcile(world.namespace, "api-production", world.now)
    held = world.api.get(ROLLOUTS, world.namespace, "api-production") or {}
    assert "baselines" not in (held.get("status") or {})
    valid = {c["type"]: c for c in held["status"]["conditions"]}["Valid"]
    assert (valid["status"], valid["reason"]) == ("False", "Forbidden")
    assert "may not get stagerollouts.stage.rollout.dev in namespace shop" in valid["message"]
    grant_reading(world, "api-rollout")
    reconciler.reconcile(world.namespace, "api-production", world.now)
    status = (world.api.get(ROLLOUTS, world.namespace, "api-production") or {})["status"]
    record = status["baselines"]["error_ratio"]
    assert (record["source"], record["carriedFrom"], record["environment"]) == (
        "carried",
        "api-rollout",
        "staging",
    )
    assert record["value"] == pytest.approx(0.002)
    assert 'rollout="api-production",signal="error_ratio"} 0.002' in scrape(telemetry)


def test_a_hostile_inline_export_holds_the_rollout_with_one_line(world: World) -> None:
    leave_warm(world, Telemetry())
    document = {
        "apiVersion": "stage.example.com/v1",
        "kind": "BaselineExport",
        "rollout": "elsewhere",
        "plan": {"name": "tiny", "version": "1", "hash": "0" * 64},
        "exportedAt": "2026-03-01T00:00:00Z",
        "baselines": [
            {"signal": "error_ratio", "value": 1e-9, "query": "vector(0)", "planHash": "0" * 64}
        ],
    }
    second_rollout(world, "api-production", {"document": document})
    world.reconciler().reconcile(world.namespace, "api-production", world.now)
    held = world.api.get(ROLLOUTS, world.namespace, "api-production") or {}
    status = held.get("status") or {}
    assert "baselines" not in status and "step" not in status
    message = json.dumps(status)
    assert "BaselinesRefused" in message
    assert "measured by query 'vector(0)'" in message


def test_an_export_of_another_plan_version_is_carried_with_a_warning_event(world: World) -> None:
    leave_warm(world, Telemetry())
    exported = baseline_export(world.api, world.namespace, world.name, world.now)
    exported["plan"] = {**exported["plan"], "version": "0.9", "hash": "f" * 64}
    second_rollout(world, "api-production", {"document": exported})
    world.reconciler().reconcile(world.namespace, "api-production", world.now)
    status = (world.api.get(ROLLOUTS, world.namespace, "api-production") or {})["status"]
    assert status["baselines"]["error_ratio"]["carriedFrom"] == "api-rollout"
    events, _ = world.api.list(EVENTS, world.namespace)
    warned = [e for e in events if e["reason"] == "BaselinesFromOtherPlan"]
    assert len(warned) == 1
    assert (
        "captured under plan tiny 0.9 (ffffffffffff), not this plan tiny 1" in warned[0]["message"]
    )
    world.reconciler().reconcile(world.namespace, "api-production", world.now)
    events, _ = world.api.list(EVENTS, world.namespace)
    assert len([e for e in events if e["reason"] == "BaselinesFromOtherPlan"]) == 1


def old_crd(crd: dict[str, Any]) -> dict[str, Any]:
    """The StageRollout CRD as it was when status.baselines held bare numbers."""
    old = copy.deepcopy(crd)
    status = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    status["properties"]["baselines"]["additionalProperties"] = {"type": "number"}
    return old


def test_a_rollout_whose_status_holds_bare_numbers_keeps_working(world: World) -> None:
    leave_warm(world, Telemetry())
    world.settle()
    assert world.emulator is not None
    current = next(c for c in crds() if c["spec"]["names"]["kind"] == "StageRollout")
    rollout = world.rollout()
    rollout["status"]["baselines"] = {"error_ratio": 0.004}
    with pytest.raises(KubeError):  # today's schema no longer takes a bare number
        world.api.replace_status(ROLLOUTS, world.namespace, world.name, rollout)
    world.emulator.register_crd(old_crd(current))
    world.api.replace_status(ROLLOUTS, world.namespace, world.name, rollout)
    world.emulator.register_crd(current)

    world.tick(advance=timedelta(minutes=6))
    record = world.status()["baselines"]["error_ratio"]
    assert (record["value"], record["source"]) == (0.004, "captured")
    assert record["reason"] == MIGRATED_REASON
    verdicts = {v["name"]: v for v in world.status()["lastVerdicts"]}
    assert verdicts["errors-adaptive"]["threshold"] == pytest.approx(0.012)  # 0.004 × 3
    assert verdicts["errors-adaptive"]["outcome"] == "pass"


def test_a_rollout_carrying_from_itself_is_held(world: World) -> None:
    second_rollout(world, "api-self", {"from": {"rollout": "api-self"}})
    world.reconciler().reconcile(world.namespace, "api-self", world.now)
    status = (world.api.get(ROLLOUTS, world.namespace, "api-self") or {}).get("status") or {}
    valid = {c["type"]: c for c in status["conditions"]}["Valid"]
    assert (valid["status"], valid["reason"]) == ("False", "BaselinesRefused")
    assert valid["message"] == "spec.baselines: from: names rollout api-self itself"
