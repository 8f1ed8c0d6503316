"""The operator as a process: crashes between writes, racing replicas, telemetry, watches."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.kube.api import DEPLOYMENTS, KubeApi
from controller.kube.leadership import LeaderElector
from controller.operator import Operator
from controller.telemetry import Telemetry
from phases.flags import hash_flags
from tests.kube.operator_world import (
    World,
    approve_when_ready,
    make_world,
    operator_arguments,
    quick_operator,
)
from tests.support.kube_emulator import KubeEmulator

E50 = {
    "STAGE_VALIDATION_MODE": "enforce",
    "ENFORCE_WRITE_ONLY": "false",
    "ENFORCEMENT_PERCENT": "50",
    "STAGE_VALIDATION_DRY_RUN": "false",
}


def ready_to_promote(world: World) -> None:
    """Warm in effect, its job done, approved, soaked: the next tick promotes to e@50."""
    world.settle()
    world.tick(advance=timedelta(minutes=1))
    time.sleep(0.3)
    world.approve("warm")
    world.now += timedelta(minutes=11)


def finish(world: World) -> dict[str, Any]:
    """Tick until the rollout is in effect at e@50; the world as a user would check it."""
    for _ in range(6):
        world.tick(advance=timedelta(seconds=30))
        world.wait_rolled_out()
        if world.status().get("state") == "soaking" and world.status().get("step") == "e@50":
            break
    deployment = world.api.get(DEPLOYMENTS, world.namespace, "api") or {}
    status = world.status()
    return {
        "step": status["step"],
        "state": status["state"],
        "flags": world.flags(),
        "template": world.template_hash(),
        "generation": deployment["metadata"]["generation"],
        "consumed": len(status["approvalsConsumed"]),
        "promotions": sum(1 for h in status["history"] if h["trigger"] == "promote"),
    }


WRITES = [
    ("PUT", r"/stagerollouts/api-rollout/status$"),
    ("PATCH", r"/configmaps/flags$"),
    ("PATCH", r"/deployments/api$"),
    ("POST", r"/events$"),
]


@pytest.mark.parametrize(("method", "path"), WRITES, ids=["status", "flags", "restart", "event"])
def test_a_crash_at_any_write_of_a_promotion_converges_to_the_uninterrupted_result(
    kube_emulator: Callable[..., KubeEmulator], method: str, path: str
) -> None:
    clean = make_world(kube_emulator(rollout_delay=0.05, job_delay=0.05))
    ready_to_promote(clean)
    expected = finish(clean)
    assert (expected["step"], expected["flags"], expected["template"]) == (
        "e@50",
        E50,
        hash_flags(E50),
    )

    emulator = kube_emulator(rollout_delay=0.05, job_delay=0.05)
    crashed = make_world(emulator)
    ready_to_promote(crashed)
    emulator.inject(method=method, path_regex=path, status=500, times=1)
    crashed.tick()  # the process "dies" at this write: nothing after it happens
    emulator.clear_faults()
    assert finish(crashed) == expected


def elector(api: KubeApi, identity: str, clock: dict[str, float]) -> LeaderElector:
    base = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    return LeaderElector(
        api,
        "stage-rollout-system",
        "stage-rollout-controller",
        identity,
        now=lambda: base + timedelta(seconds=clock["t"]),
        monotonic=lambda: clock["t"],
    )


def test_two_replicas_racing_for_the_lease_leave_one_writer(kube: KubeEmulator) -> None:
    clock = {"t": 0.0}
    first = elector(KubeApi(kube.api_client(user="a")), "replica-a", clock)
    second = elector(KubeApi(kube.api_client(user="b")), "replica-b", clock)
    results: dict[str, bool] = {}
    barrier = threading.Barrier(2)

    def race(who: LeaderElector) -> None:
        barrier.wait()
        results[who.identity] = who.try_acquire_or_renew()

    threads = [threading.Thread(target=race, args=(e,)) for e in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()) == [False, True]
    assert first.holding() != second.holding()


def test_a_replica_that_loses_the_lease_stops_writing_at_once(kube: KubeEmulator) -> None:
    clock = {"t": 0.0}
    first = elector(KubeApi(kube.api_client(user="a")), "replica-a", clock)
    second = elector(KubeApi(kube.api_client(user="b")), "replica-b", clock)
    assert first.try_acquire_or_renew() and not second.try_acquire_or_renew()
    clock["t"] = 5
    assert first.try_acquire_or_renew()
    clock["t"] = 21  # replica-a stopped renewing; its 15 s lease has expired
    assert second.try_acquire_or_renew()
    assert not first.try_acquire_or_renew()
    assert not first.holding() and second.holding()


def test_a_leader_that_cannot_renew_stops_after_its_renew_deadline(kube: KubeEmulator) -> None:
    clock = {"t": 0.0}
    leader = elector(KubeApi(kube.api_client(user="a")), "replica-a", clock)
    assert leader.try_acquire_or_renew()
    kube.inject(path_regex=r"/leases", status=503, times=None)
    clock["t"] = 5
    assert leader.try_acquire_or_renew()  # still within the 10 s renew deadline
    clock["t"] = 11
    assert not leader.try_acquire_or_renew()
    assert not leader.holding()


def test_metrics_and_probes_are_served(kube: KubeEmulator) -> None:
    telemetry = Telemetry()
    server = telemetry.serve("127.0.0.1", 0)
    port = server.server_address[1]
    try:

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                    return answer.status, answer.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()

        assert get("/healthz")[0] == 503 and get("/readyz")[0] == 503
        telemetry.alive.set()
        telemetry.ready.set()
        telemetry.leadership(True)
        telemetry.failed("shop", "r", "api", "boom")
        assert get("/healthz") == (200, "ok\n") and get("/readyz")[0] == 200
        code, body = get("/metrics")
        assert code == 200
        assert "stage_rollout_leader 1.0" in body
        assert 'stage_rollout_errors_total{kind="api"} 1.0' in body
    finally:
        server.shutdown()


def test_an_approval_is_acted_on_through_the_watch_long_before_the_next_pass(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    with quick_operator(kube_emulator(rollout_delay=0.05)) as (world, operator):
        # Passes only every minute once waiting: a quick promotion is the watch's doing.
        latency = approve_when_ready(world, operator, pass_seconds=60, timeout=5)
    assert latency < 2.0, latency


class _Recording:
    """A notifier at the port boundary: it keeps what the operator hands it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[str]]] = []

    def notify(self, namespace: str, rollout: str, events: Any, at: datetime) -> int:
        self.calls.append((namespace, rollout, [e.kind.value for e in events]))
        return len(events)

    def close(self, timeout: float = 5.0) -> bool:
        return True


def test_the_operator_hands_each_decisions_events_to_the_notifier(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    world = make_world(emulator)
    recording = _Recording()
    operator = Operator(
        **operator_arguments(world, emulator, world.source),
        notifier=recording,  # type: ignore[arg-type]
    )
    for _ in range(4):
        operator.tick_all()
        world.wait_rolled_out()
        time.sleep(1.1)
    kinds = [kind for _ns, _name, found in recording.calls for kind in found]
    assert "transition" in kinds
    assert {(ns, name) for ns, name, _ in recording.calls} == {(world.namespace, world.name)}


class _PassMoments(Operator):
    """Records the moment each pass stands at."""

    moments: list[datetime]

    def tick_all(self, at: datetime | None = None) -> list[Any]:
        self.moments.append(at if at is not None else self.clock.now())
        return []


def test_scheduled_passes_stand_on_the_granularity_grid_so_windows_line_up(
    kube: KubeEmulator,
) -> None:
    """Passes 30s apart, each fired a little late, read at moments a whole number of
    seconds apart: every other one is a whole 1m resolution step after the last but one."""
    world = make_world(kube)
    now = {"t": datetime(2026, 12, 2, 4, 0, 0, tzinfo=UTC)}

    class Late:
        def now(self) -> datetime:
            return now["t"]

        def monotonic(self) -> float:
            return time.monotonic()

    operator = _PassMoments(
        **operator_arguments(world, kube, world.source, granularity=timedelta(seconds=5)),
        clock=Late(),  # type: ignore[arg-type]
    )
    operator.moments = []
    for k, late_ms in enumerate((3, 250, 17, 4_999, 1)):
        now["t"] = datetime(2026, 12, 2, 4, 0, 5, tzinfo=UTC) + k * timedelta(seconds=30)
        now["t"] += timedelta(milliseconds=late_ms)
        operator.scheduled_pass()
    start = datetime(2026, 12, 2, 4, 0, 5, tzinfo=UTC)
    assert operator.moments == [start + k * timedelta(seconds=30) for k in range(5)]
