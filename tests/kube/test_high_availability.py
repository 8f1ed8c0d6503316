"""Two replicas with leader election through a leader loss and a rolling upgrade.

Each replica is a whole `Operator` (elector, watches, scheduler, telemetry server on
its own threads) with its own bearer token, so the emulator's request log says which
replica sent each request. Replica "a" reaches the API server through a `Partition`
that the test cuts: a leader that loses the network, not one that politely steps down.
Then each replica is replaced in turn, as a rolling upgrade replaces pods.

What is shown: the standby answers 200 on /readyz (so a Deployment of two is 2/2
ready and an upgrade can proceed); a replica that cannot reach the Lease is not
ready; every write comes from the replica that last wrote the Lease (one writer at a
time); the rollout keeps progressing through every handover, each step applied once.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from controller.kube.api import DEPLOYMENTS, KubeApi
from controller.kube.leadership import LeaderElector
from controller.operator import Operator, OperatorSettings
from controller.sim.scenario import parse_scenario
from controller.sim.scripted_metrics import ScriptedMetrics
from tests.kube.operator_world import OPERATOR_USER, World, make_world
from tests.support.kube_emulator import KubeEmulator
from tests.support.partition import Partition

MODES = [
    ("off", False, False),
    ("warn", False, False),
    ("warn", True, False),
    ("enforce", False, True),
    ("enforce", True, True),
]
HA_PLAN = {
    "name": "ha",
    "version": "1",
    "signals": {"error_ratio": {"query": "q"}},
    "phases": [
        {
            "id": f"p{index}",
            "name": f"P{index}",
            "flags": {
                "STAGE_VALIDATION_MODE": mode,
                "ENFORCE_WRITE_ONLY": write_only,
                "ENFORCEMENT_PERCENT": 0,
                "STAGE_VALIDATION_DRY_RUN": dry_run,
            },
            "min_duration": "2s",
            "gates": [
                {
                    "name": "ok",
                    "signal": "error_ratio",
                    "comparator": "<",
                    "threshold": 0.01,
                    "window": "1s",
                }
            ],
        }
        for index, (mode, write_only, dry_run) in enumerate(MODES, start=1)
    ],
}
STEPS = [phase["id"] for phase in HA_PLAN["phases"]]


@dataclass
class Replica:
    name: str
    operator: Operator
    thread: threading.Thread

    def leading(self) -> bool:
        return self.operator._may_write()

    def readyz(self) -> tuple[int, str]:
        return self.get("/readyz")

    def leader_metric(self) -> str:
        metrics = self.get("/metrics")[1].splitlines()
        return next(line for line in metrics if line.startswith("stage_rollout_leader "))

    def get(self, path: str) -> tuple[int, str]:
        server = self.operator.telemetry_server
        assert server is not None
        url = f"http://127.0.0.1:{server.server_address[1]}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.status, answer.read().decode().strip()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode().strip()

    def stop(self) -> None:
        self.operator.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), f"replica {self.name} did not stop"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


@pytest.fixture
def cluster(kube_emulator: Callable[..., KubeEmulator]) -> Iterator[tuple[KubeEmulator, World]]:
    emulator = kube_emulator(rollout_delay=0.05)
    world = make_world(emulator, plan={"inline": HA_PLAN})
    yield emulator, world


def test_two_replicas_keep_one_writer_and_progress_through_leader_loss_and_upgrade(
    cluster: tuple[KubeEmulator, World],
) -> None:
    emulator, world = cluster
    start = datetime.now(UTC) - timedelta(hours=1)
    healthy = ScriptedMetrics(
        parse_scenario(
            f"name: h\nstart: {start.isoformat()}\nsignals:\n  error_ratio: [{{at: 0s, value: 0.001}}]\n",
            source="h",
        ),
        timedelta(seconds=1),
    )
    partition = Partition("127.0.0.1", emulator.port).start()
    replicas: list[Replica] = []

    def launch(name: str, via: Partition | None = None) -> Replica:
        emulator.add_token(f"token-{name}", OPERATOR_USER)
        client = emulator.api_client(f"token-{name}")
        if via is not None:
            client.configuration.host = via.url
        operator = Operator(
            KubeApi(client),
            OperatorSettings(
                namespace=world.namespace,
                interval=timedelta(seconds=1),
                granularity=timedelta(seconds=1),
                metrics_host="127.0.0.1",
                metrics_port=0,
                leader_elect=True,
                identity=f"replica-{name}",
                lease_duration=timedelta(seconds=3),
                renew_deadline=timedelta(seconds=2),
                retry_period=timedelta(milliseconds=500),
            ),
            metrics_for=lambda _spec, _plan: healthy,
        )
        thread = threading.Thread(target=operator.run, name=f"replica-{name}", daemon=True)
        thread.start()
        replica = Replica(name, operator, thread)
        replicas.append(replica)
        wait_for(lambda: operator.telemetry_server is not None, f"{name} serves")
        return replica

    def step_index() -> int:
        step = world.status().get("step")
        return STEPS.index(step) if step in STEPS else -1

    def progresses(under: Replica) -> None:
        """The rollout moves at least one step on while `under` leads."""
        before = step_index()
        wait_for(
            lambda: step_index() > before or world.status().get("state") == "completed",
            f"the rollout moves past {STEPS[before]} under {under.name}",
        )
        assert under.leading()

    def ready_standby(replica: Replica) -> None:
        wait_for(lambda: replica.readyz()[0] == 200, f"{replica.name} is ready")
        assert replica.readyz() == (200, "ok: standby, ready to lead")
        assert not replica.leading()
        assert replica.leader_metric() == "stage_rollout_leader 0.0"

    try:
        a = launch("a", via=partition)
        wait_for(a.leading, "a leads")
        b = launch("b")
        ready_standby(b)
        # The Lease can come before the first list of the caches: ready only after both.
        wait_for(lambda: a.readyz() == (200, "ok: leading"), "a is ready as the leader")
        assert a.leader_metric() == "stage_rollout_leader 1.0"
        progresses(a)

        partition.cut()  # a loses the network: its Lease runs out, b takes over
        wait_for(b.leading, "b takes the Lease", timeout=10)
        wait_for(lambda: a.readyz()[0] == 503, "a is not ready")
        assert not a.leading()
        progresses(b)
        partition.heal()
        ready_standby(a)

        a.stop()  # the upgrade replaces the standby first...
        a2 = launch("a2")
        ready_standby(a2)
        b.stop()  # ...then the leader, which hands the Lease over as it goes
        wait_for(a2.leading, "a2 takes the Lease", timeout=5)
        b2 = launch("b2")
        ready_standby(b2)
        wait_for(
            lambda: world.status().get("state") == "completed",
            f"the rollout completes (at {world.status().get('step')})",
            timeout=30,
        )
    finally:
        for replica in replicas:
            replica.operator.stop.set()
        for replica in replicas:
            replica.thread.join(timeout=15)
        partition.close()
    assert not [r.name for r in replicas if r.thread.is_alive()], "a replica did not stop"

    holder, holders, writers = "", [], set()
    for record in sorted(emulator.requests(), key=lambda r: r.started):
        if record.method == "GET" or not record.authorization:
            continue
        who = record.authorization.removeprefix("Bearer token-")
        if record.resource == "leases":
            if 200 <= record.status < 300 and who != holder:
                holder = who
                holders.append(who)
            continue
        assert who == holder, f"{record.method} {record.path} from {who} while {holder} leads"
        writers.add(who)
    assert holders == ["a", "b", "a2"]
    assert writers == {"a", "b", "a2"}

    history = world.status()["history"]
    entered = [entry["toStep"] for entry in history if entry["trigger"] == "promote"]
    assert entered == STEPS[1:], history
    deployment = world.api.get(DEPLOYMENTS, world.namespace, "api") or {}
    # Created at generation 1; each step's flags restart it exactly once.
    assert deployment["metadata"]["generation"] == 1 + len(STEPS)


def test_a_standby_is_ready_to_lead_only_while_it_reaches_the_lease(kube: KubeEmulator) -> None:
    clock = {"t": 0.0}
    base = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def elector(identity: str) -> LeaderElector:
        return LeaderElector(
            KubeApi(kube.api_client(user=OPERATOR_USER)),
            "stage-rollout-system",
            "stage-rollout-controller",
            identity,
            now=lambda: base + timedelta(seconds=clock["t"]),
            monotonic=lambda: clock["t"],
        )

    leader, standby = elector("replica-a"), elector("replica-b")
    assert not standby.lease_reachable()  # never asked yet
    assert leader.try_acquire_or_renew()
    assert not standby.try_acquire_or_renew()
    assert standby.lease_reachable() and not standby.holding()
    kube.inject(path_regex=r"/leases", status=503, times=None)
    clock["t"] = 5
    assert not standby.try_acquire_or_renew()
    assert standby.lease_reachable()  # the last answer is 5 s old, within the 10 s deadline
    clock["t"] = 11
    assert not standby.try_acquire_or_renew()
    assert not standby.lease_reachable()
