"""Declared flags through the operator: an endpoint override reaches the ConfigMap and the app.

The tiny plan here declares the runbook's four flags and the endpoint overrides
(`STAGE_VALIDATION_ENDPOINT_MODES`, one JSON object). The operator writes exactly the
declared keys, counts a step rolled out by the hash of exactly those keys, and the
reference app, reading the ConfigMap as its environment, validates a request to an
overridden endpoint in that endpoint's mode.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
import yaml

from controller.kube.api import CONFIGMAPS
from examples.reference_app.server import ReferenceApp
from examples.reference_app.validation import AppConfig
from phases.flags import hash_flags
from phases.plan_checks import parse_plan
from tests.kube.operator_world import (
    REAL_CLUSTER,
    TINY_PLAN,
    World,
    make_world,
    walk_tiny_plan_to_e50,
)
from tests.support.kube_emulator import KubeEmulator

OVERRIDES = {"/api/monte-carlo/simulate": "warn", "/api/portfolio/strategies": "enforce"}
DECLARED = (
    TINY_PLAN.replace(
        "phases:\n",
        "flags:\n"
        "  STAGE_VALIDATION_MODE: {type: enum, values: ['off', warn, enforce], safe: warn}\n"
        "  ENFORCE_WRITE_ONLY: {type: boolean, safe: false}\n"
        "  ENFORCEMENT_PERCENT: {type: integer, min: 0, max: 100, exposure: true, safe: 0}\n"
        "  STAGE_VALIDATION_DRY_RUN: {type: boolean, safe: false}\n"
        "  STAGE_VALIDATION_ENDPOINT_MODES: {type: json_object, approval_to_change: true, safe: {}}\n"
        "phases:\n",
        1,
    )
    .replace(
        "ENFORCEMENT_PERCENT: 0, STAGE_VALIDATION_DRY_RUN: false}",
        "ENFORCEMENT_PERCENT: 0, STAGE_VALIDATION_DRY_RUN: false, STAGE_VALIDATION_ENDPOINT_MODES: {}}",
        1,
    )
    .replace(
        "{STAGE_VALIDATION_MODE: enforce, ENFORCE_WRITE_ONLY: false, STAGE_VALIDATION_DRY_RUN: false}",
        "{STAGE_VALIDATION_MODE: enforce, ENFORCE_WRITE_ONLY: false, STAGE_VALIDATION_DRY_RUN: false, "
        f"STAGE_VALIDATION_ENDPOINT_MODES: {json.dumps(OVERRIDES)}}}",
        1,
    )
)
INVALID = {"fundId": 1, "stageDistribution": [{"stage": "invalid", "weight": 1.0}]}


@pytest.fixture
def world(kube_emulator: Callable[..., KubeEmulator]) -> World:
    emulator = None if REAL_CLUSTER else kube_emulator(rollout_delay=0.1, job_delay=0.1)
    built = make_world(emulator, plan={"inline": yaml.safe_load(DECLARED)})
    built.plan = parse_plan(DECLARED, source="declared")
    return built


def test_an_endpoint_override_reaches_the_configmap_and_the_reference_app(
    world: World, reference_app: Callable[..., ReferenceApp]
) -> None:
    world.settle()
    assert world.flags()["STAGE_VALIDATION_ENDPOINT_MODES"] == "{}"
    walk_tiny_plan_to_e50(world)
    flags = world.flags()
    assert set(flags) == set(world.plan.flag_set.names)
    assert json.loads(flags["STAGE_VALIDATION_ENDPOINT_MODES"]) == OVERRIDES
    assert world.template_hash() == hash_flags(flags)
    # The leaving of warm changed the overrides, which the plan marks approval_to_change.
    assert world.status()["approvedFlags"] == {
        "STAGE_VALIDATION_ENDPOINT_MODES": flags["STAGE_VALIDATION_ENDPOINT_MODES"]
    }
    app = reference_app(AppConfig.from_env(flags))
    client = httpx.Client(timeout=5)
    simulate = [
        client.post(
            app.url + "/api/monte-carlo/simulate", json=INVALID, headers={"X-Request-Id": f"r{n}"}
        )
        for n in range(40)
    ]
    # At enforce 50 % about half the reads elsewhere are rejected; the simulation stays in warn.
    assert {r.status_code for r in simulate} == {200}
    assert {r.json()["mode"] for r in simulate} == {"warn"}


def test_a_key_the_plan_does_not_declare_is_neither_written_nor_hashed(world: World) -> None:
    world.api.create(
        CONFIGMAPS,
        world.namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flags", "namespace": world.namespace},
            "data": {"OTHER": "kept"},
        },
    )
    world.settle()
    flags = world.flags()
    assert flags.pop("OTHER") == "kept"
    assert set(flags) == set(world.plan.flag_set.names)
    assert world.template_hash() == hash_flags(flags)
