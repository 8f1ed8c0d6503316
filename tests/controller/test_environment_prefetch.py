"""The operator prefetches each rollout's queries from the Prometheus of the environment
its current step runs in (`Reconciler.plan_tick` hands it the spec as that environment
sees it), so a staging step is never prefetched from production's server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml
from kubernetes import client

from controller.kube.api import KubeApi
from controller.kube.reconciler import Reconciler
from tests.kube.test_environments import ENV_PLAN

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def rollout(step: str | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "api", "namespace": "shop", "uid": "u1"},
        "spec": {
            "plan": {"inline": yaml.safe_load(ENV_PLAN)},
            "serviceAccountName": "stage-rollout",
            **spec,
        },
    }
    if step is not None:
        body["status"] = {
            "planHash": "x",
            "step": step,
            "state": "soaking",
            "stepEnteredAt": NOW.isoformat(),
            "deadlineFrom": NOW.isoformat(),
        }
    return body


ENVIRONMENTS = {
    "staging": {"target": {"configMap": "flags"}, "prometheus": {"url": "http://staging:9090"}},
    "production": {"target": {"configMap": "flags"}, "prometheus": {"url": "http://prod:9090"}},
}


def prefetched_from(reconciler: Reconciler, body: dict[str, Any]) -> str | None:
    planned = reconciler.plan_tick(body, NOW)
    assert planned is not None
    spec, _plan, _needs = planned
    return spec.prometheus.url if spec.prometheus else None


def test_each_step_is_prefetched_from_its_environments_prometheus() -> None:
    reconciler = Reconciler(KubeApi(client.ApiClient(client.Configuration(host="http://x"))))
    assert prefetched_from(reconciler, rollout(None, environments=ENVIRONMENTS)) == (
        "http://staging:9090"
    )
    assert prefetched_from(reconciler, rollout("e@50", environments=ENVIRONMENTS)) == (
        "http://prod:9090"
    )
    only_staging = {"staging": ENVIRONMENTS["staging"]}
    shared = {"url": "http://shared:9090"}
    old_shape = rollout("e@50", target={"configMap": "flags"}, prometheus=shared)
    assert prefetched_from(reconciler, old_shape) == "http://shared:9090"
    mixed = rollout(
        "e@50", target={"configMap": "flags"}, prometheus=shared, environments=only_staging
    )
    assert prefetched_from(reconciler, mixed) == "http://shared:9090"
