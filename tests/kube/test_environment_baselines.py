"""A baseline captured in staging, from staging's Prometheus, judges production's
adaptive gate against production's Prometheus: two namespaces, two real servers.

Runbook, phase 2.1: "Compute baseline from staging metrics", then "Export baselines
for production alert thresholds"; and "Formula: `current > max(min_threshold,
baseline * multiplier)`". Each server holds different data, so a baseline read from
the wrong one (or a gate read from the wrong one) changes the verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import yaml

from controller.kube.prometheus_refs import PrometheusEndpoints
from controller.kube.reconciler import Reconciler
from controller.telemetry import Telemetry
from phases.plan_checks import parse_plan
from tests.kube.operator_world import World, make_world
from tests.kube.test_baselines_kube import scrape
from tests.kube.test_environments import (
    ENV_PLAN,
    STAGING,
    history,
    settle,
    staging_namespace,
    verdict,
    with_environments,
)
from tests.support.kube_emulator import KubeEmulator
from tests.support.prometheus import PrometheusServer

# ENV_PLAN with warm (staging) capturing the error ratio, and production's phase gated on
# errors < max(0.0001, baseline × 3) beside its fixed errors < 0.01.
PLAN = ENV_PLAN.replace(
    "    environment: staging\n",
    "    environment: staging\n    baseline: {signals: [error_ratio]}\n",
    1,
).replace(
    "    triggers:\n",
    "      - name: errors-adaptive\n        signal: error_ratio\n"
    '        comparator: "<"\n'
    "        threshold: {min: 0.0001, baseline: error_ratio, multiplier: 3}\n"
    "        window: 5m\n"
    "    triggers:\n",
    1,
)
pytestmark = pytest.mark.prometheus
STAGING_RATIO = 0.002
DERIVED = 0.006  # max(0.0001, 0.002 × 3)


def baseline_world(
    kube: KubeEmulator, staging_prom: PrometheusServer, production_prom: PrometheusServer
) -> World:
    world = make_world(kube, plan={"inline": yaml.safe_load(PLAN)})
    world.plan = parse_plan(PLAN, source="two-places-baselines")
    with_environments(
        world,
        {
            "staging": {**staging_namespace(world), "prometheus": {"url": staging_prom.url}},
            "production": {
                "target": {"configMap": "flags", "deployments": ["api"]},
                "prometheus": {"url": production_prom.url},
            },
        },
    )
    return world


def promote_out_of_staging(world: World, reconciler: Reconciler) -> dict[str, Any]:
    """warm in effect in staging, soaked, approved: the baseline record it captured."""
    settle(world, reconciler, world.api, STAGING)
    world.tick(reconciler, advance=timedelta(minutes=11))
    assert world.status()["state"] == "awaiting_approval", world.status().get("blockers")
    world.approve("warm")
    world.tick(reconciler)
    assert (world.status()["step"], world.status()["environment"]) == ("e@50", "production")
    record: dict[str, Any] = world.status()["baselines"]["error_ratio"]
    return record


@pytest.mark.parametrize(
    ("production_ratio", "outcome"),
    [
        (0.004, "pass"),  # below 0.006
        # Above 0.006, yet below both the fixed 0.01 and 0.024 (production's own 0.008 × 3):
        # only a staging baseline holds it.
        (0.008, "fail"),
    ],
)
def test_a_staging_baseline_drives_production_adaptive_gate(
    kube_emulator: Callable[..., KubeEmulator],
    prometheus_server: Callable[..., PrometheusServer],
    production_ratio: float,
    outcome: str,
) -> None:
    staging_prom = history(prometheus_server, STAGING_RATIO)
    production_prom = history(prometheus_server, production_ratio)
    world = baseline_world(kube_emulator(rollout_delay=0.05), staging_prom, production_prom)
    assert world.operator_api is not None
    telemetry = Telemetry()
    reconciler = Reconciler(world.operator_api, endpoints=PrometheusEndpoints(), hooks=telemetry)

    record = promote_out_of_staging(world, reconciler)
    assert (record["source"], record["environment"], record["step"]) == (
        "captured",
        "staging",
        "warm",
    )
    assert record["value"] == pytest.approx(STAGING_RATIO), "staging's data, not production's"
    assert record["query"] == "max(app_error_ratio)"
    exported = (
        'stage_rollout_baseline{environment="staging",namespace="shop",'
        f'rollout="api-rollout",signal="error_ratio"}} {STAGING_RATIO}'
    )
    assert exported in scrape(telemetry)

    settle(world, reconciler, world.api, "shop")
    world.tick(reconciler, advance=timedelta(minutes=11))
    adaptive = verdict(world, "errors-adaptive")
    assert adaptive["observed"] == pytest.approx(production_ratio), "production's Prometheus"
    assert adaptive["threshold"] == pytest.approx(DERIVED)
    assert f"max(0.0001, baseline {STAGING_RATIO:g} × 3)" in adaptive["reason"]
    assert adaptive["outcome"] == outcome
    assert verdict(world, "errors-low")["outcome"] == "pass"
    status = world.status()
    assert status["step"] == "e@50"
    if outcome == "pass":
        assert status["state"] == "awaiting_approval", status.get("blockers")
    else:
        assert status["state"] == "soaking", status.get("reason")
        assert any("errors-adaptive" in b for b in status.get("blockers", [])), status
        world.tick(reconciler, advance=timedelta(minutes=30))
        assert (world.status()["step"], world.status()["state"]) == ("e@50", "soaking")
    # Production's step keeps exporting the staging baseline for its alert rules.
    assert exported in scrape(telemetry)
