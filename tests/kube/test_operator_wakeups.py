"""The running operator ticks a rollout when its decision can change, and when an alert fires.

The pass interval is an hour: the soak ending 4 s after the step took effect can
only be seen in time by the wake-up the decision asked for. The same world with
wake-ups off shows that nothing else would have ticked it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import yaml

from controller.kube.api import ROLLOUTS
from controller.operator import Operator
from phases.plan_checks import parse_plan
from tests.kube.operator_world import (
    QUICK_PLAN,
    TINY_PLAN,
    World,
    make_world,
    operator_arguments,
    operator_running,
)
from tests.support.kube_emulator import KubeEmulator

SOAK = 4
SOAK_PLAN: dict[str, Any] = copy.deepcopy(QUICK_PLAN)
SOAK_PLAN["name"] = "soak"
SOAK_PLAN["phases"][0]["min_duration"] = f"{SOAK}s"
SOAK_PLAN["phases"][0]["approval"] = {"required": False}
SOAK_PLAN["phases"][1]["flags"]["ENFORCEMENT_PERCENT"] = 0


def soaking_world(emulator: KubeEmulator) -> World:
    """A rollout of the soak plan brought (in real time) to soaking at its first step."""
    world = make_world(emulator, plan={"inline": SOAK_PLAN})
    world.plan = parse_plan(yaml.safe_dump(SOAK_PLAN), source="soak")
    world.now = datetime.now(UTC)
    world.settle()
    return world


@contextmanager
def running(world: World, emulator: KubeEmulator, *, wakeups: bool) -> Iterator[Operator]:
    operator = Operator(
        **operator_arguments(
            world,
            emulator,
            world.source,
            interval=timedelta(hours=1),
            wakeups=wakeups,
            wakeup_margin=timedelta(milliseconds=300),
        )
    )
    with operator_running(operator):
        yield operator


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def in_effect_at(world: World) -> datetime:
    return datetime.fromisoformat(world.status()["inEffectAt"])


def test_the_soak_ending_ticks_the_rollout_with_an_hour_long_pass(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    world = soaking_world(emulator)
    soaked_at = in_effect_at(world) + timedelta(seconds=SOAK)
    with running(world, emulator, wakeups=True) as operator:
        assert wait_for(lambda: bool(operator.wakeups.planned), 5), "no wake-up was planned"
        assert wait_for(lambda: world.status().get("step") == "b", SOAK + 5)
    promoted = next(h for h in world.status()["history"] if h["trigger"] == "promote")
    # Woken 0.3 s after the soak ended (the gate's 1 s window was covered before: one more wake-up).
    late = datetime.fromisoformat(promoted["at"]) - soaked_at
    assert timedelta(0) <= late < timedelta(seconds=1.5)


def test_without_wake_ups_the_same_rollout_waits_for_its_pass(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    world = soaking_world(emulator)
    with running(world, emulator, wakeups=False) as operator:
        time.sleep(SOAK + 2)
        assert world.status().get("step") == "a"
        assert operator.wakeups.planned == {}


def test_a_deleted_rollout_leaves_no_wake_up_behind(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    world = soaking_world(emulator)
    with running(world, emulator, wakeups=True) as operator:
        assert wait_for(lambda: bool(operator.wakeups.planned), 5)
        world.api.delete(ROLLOUTS, world.namespace, world.name)
        # A tick may still read the rollout from the cache before the watch tells of the
        # deletion; the DELETED event, or the next tick finding it gone, cancels it.
        operator.tick_now(world.namespace, world.name)
        assert wait_for(lambda: operator.wakeups.planned == {}, 5)
        assert [j.id for j in operator.scheduler.get_jobs() if j.id.startswith("wake:")] == []


class RecordingOperator(Operator):
    """Records which rollouts were ticked at once (the watches' and the webhook's ticks)."""

    ticked: list[tuple[str, str]]

    def tick_now(self, namespace: str, name: str) -> Any:
        self.ticked.append((namespace, name))
        return super().tick_now(namespace, name)


def quiet(operator: RecordingOperator) -> None:
    """Wait until no tick came for a second (both rollouts ticked at least once), then forget them."""
    assert wait_for(lambda: len(set(operator.ticked) | set(operator._last_tick)) >= 2, 10)
    seen = -1
    while seen != len(operator.ticked):
        seen = len(operator.ticked)
        time.sleep(1.0)


def test_the_alertmanager_webhook_ticks_only_the_rollouts_whose_plan_names_the_alert(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    world = make_world(emulator)  # the tiny plan names no alert
    paged_plan = copy.deepcopy(yaml.safe_load(TINY_PLAN))
    paged_plan["phases"][1]["triggers"].append({"alert_firing": "HighErrorRate", "for": "5m"})
    paged = copy.deepcopy(world.rollout())
    paged["metadata"] = {"name": "paged", "namespace": world.namespace}
    paged["spec"]["plan"] = {"inline": paged_plan}
    paged["spec"]["target"]["configMap"] = "paged-flags"
    paged.pop("status", None)
    world.api.create(ROLLOUTS, world.namespace, paged)
    operator = RecordingOperator(
        **operator_arguments(
            world,
            emulator,
            world.source,
            interval=timedelta(hours=1),
            alert_webhook_port=0,
            alert_webhook_token="s3cret",
        )
    )
    operator.ticked = []
    with operator_running(operator):
        assert wait_for(lambda: operator.alert_server is not None, 5)
        quiet(operator)  # the first pass and the watches' first ticks are over
        assert operator.alert_server is not None
        url = f"http://127.0.0.1:{operator.alert_server.server_address[1]}/alertmanager"
        body = {
            "version": "4",
            "status": "firing",
            "alerts": [
                {"status": "firing", "labels": {"alertname": "HighErrorRate"}},
                {"status": "firing", "labels": {"alertname": "NobodyCares"}},
            ],
        }
        operator.ticked.clear()
        refused = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401
        time.sleep(0.5)
        assert operator.ticked == []
        answer = httpx.post(url, json=body, headers={"Authorization": "Bearer s3cret"})
        assert answer.status_code == 200, answer.text
        assert wait_for(lambda: bool(operator.ticked), 5)
        quiet(operator)
        assert operator.ticked == [(world.namespace, "paged")]
