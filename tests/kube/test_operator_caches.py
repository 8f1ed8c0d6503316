"""The cache-backed operator (issue 13): a steady pass costs the API server nothing.

Requests are counted where they arrive, at the emulator. The world is the usual
one (RBAC enforced, the operator with exactly its ClusterRole, the rollout acting
as the example ServiceAccount); where a test wants the target cached, the
namespace's owner additionally grants that account list and watch on ConfigMaps
and Deployments of the namespace, which is what the README tells people to do.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from controller.kube import records
from controller.kube.api import APPROVALS, COMMANDS, DEPLOYMENTS, ROLLOUTS, KubeApi
from controller.kube.caches import Informer
from controller.kube.target import rollout_state
from controller.operator import Operator
from controller.sim.scenario import parse_scenario
from controller.sim.scripted_metrics import ScriptedMetrics
from phases.plan_checks import parse_plan
from tests.kube.operator_world import (
    OPERATOR_USER,
    QUICK_PLAN,
    RBAC_GROUP,
    RBAC_KINDS,
    ROLLOUT_ACCOUNT,
    World,
    make_world,
    operator_arguments,
)
from tests.support.kube_emulator import KubeEmulator, RequestRecord

ACCOUNT_USER = f"system:serviceaccount:shop:{ROLLOUT_ACCOUNT}"


def healthy_metrics() -> ScriptedMetrics:
    start = datetime.now(UTC) - timedelta(hours=1)
    text = f"name: q\nstart: {start.isoformat()}\nsignals:\n  error_ratio: [{{at: 0s, value: 0.001}}]\n"
    return ScriptedMetrics(parse_scenario(text, source="q"), timedelta(seconds=1))


def let_account_watch(world: World) -> None:
    """The namespace owner lets the rollout's account list and watch its target kinds."""
    rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch"]},
    ]
    meta = {"name": "stage-rollout-watch", "namespace": world.namespace}
    world.api.create(RBAC_KINDS["Role"], world.namespace, {"metadata": meta, "rules": rules})
    world.api.create(
        RBAC_KINDS["RoleBinding"],
        world.namespace,
        {
            "metadata": meta,
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": meta["name"]},
            "subjects": [
                {"kind": "ServiceAccount", "name": ROLLOUT_ACCOUNT, "namespace": world.namespace}
            ],
        },
    )


@contextmanager
def cached_operator(
    emulator: KubeEmulator, *, watchable: bool = True, **settings: Any
) -> Iterator[tuple[World, Operator]]:
    """A world of the quick plan and an operator with its caches started, not yet passing."""
    world = make_world(emulator, plan={"inline": QUICK_PLAN})
    world.plan = parse_plan(yaml.safe_dump(QUICK_PLAN), source="quick")
    if watchable:
        let_account_watch(world)
    metrics = healthy_metrics()
    operator = Operator(**operator_arguments(world, emulator, metrics, **settings))
    operator.start_caches()
    try:
        yield world, operator
    finally:
        operator.stop.set()
        operator._pool.shutdown(wait=True)


def pass_until_steady(world: World, operator: Operator, state: str = "awaiting_approval") -> None:
    """Passes until the rollout is in `state` and a pass wrote nothing at all."""
    deadline = time.monotonic() + 20
    while True:
        assert time.monotonic() < deadline, world.status().get("blockers")
        time.sleep(1.05)
        outcomes = operator.tick_all()
        quiet = all(not o.wrote_status and not o.writes for o in outcomes)
        if outcomes and quiet and world.status().get("state") == state:
            return


def passing_until(operator: Operator, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(1.05)
        operator.tick_all()


def served(emulator: KubeEmulator, since: float) -> list[RequestRecord]:
    """Requests other than the caches' long watches, since `since` (monotonic)."""
    return [r for r in emulator.requests() if r.started >= since and r.verb != "watch"]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def test_a_steady_pass_reads_nothing_and_writes_nothing(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    with cached_operator(emulator) as (world, operator):
        pass_until_steady(world, operator)
        before = world.status()
        since = time.monotonic()
        for _ in range(2):
            time.sleep(1.05)
            outcomes = operator.tick_all()
            assert [o.name for o in outcomes if o.state is not None] == [world.name]
            # What the pass holds of each rollout until it ends: not the decision's status.
            assert outcomes[0].decision is None and outcomes[0].step == before["step"]
        assert served(emulator, since) == []
        # Nothing written, not even lastTickAt: liveness is the metric instead.
        assert world.status() == before
        metric = operator.telemetry.registry.get_sample_value(
            "stage_rollout_last_tick_timestamp_seconds",
            {"namespace": world.namespace, "rollout": world.name},
        )
        assert (
            metric is not None and metric > datetime.fromisoformat(before["lastTickAt"]).timestamp()
        )
    # The target caches were filled and kept by the rollout's account, never the operator's.
    target = {
        (r.user, r.verb, r.status)
        for r in emulator.requests()
        if r.resource in ("configmaps", "deployments") and r.verb in ("list", "watch")
    }
    assert target == {(ACCOUNT_USER, "list", 200), (ACCOUNT_USER, "watch", 200)}, target


def test_targets_are_read_as_the_rollouts_account_and_directly_when_it_may_not_watch(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    """The operator's own rights never reach a target: with the example Role (get only),
    the steady pass reads the ConfigMap and the Deployment as the rollout's account,
    one GET each, and the operator lists no ConfigMap or Deployment as itself."""
    emulator = kube_emulator(rollout_delay=0.05)
    with cached_operator(emulator, watchable=False) as (world, operator):
        pass_until_steady(world, operator)
        since = time.monotonic()
        time.sleep(1.05)
        operator.tick_all()
        reads = sorted((r.verb, r.resource, r.name, r.user) for r in served(emulator, since))
        assert reads == [
            ("get", "configmaps", "flags", ACCOUNT_USER),
            ("get", "deployments", "api", ACCOUNT_USER),
        ]
    as_operator = {
        r.resource for r in emulator.requests() if r.user == OPERATOR_USER and r.verb != "create"
    }
    assert as_operator.isdisjoint({"configmaps", "deployments", "jobs", "secrets"}), as_operator


def test_an_approval_event_ticks_the_rollout_without_a_relist(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    with cached_operator(emulator) as (world, operator):
        pass_until_steady(world, operator)
        since = time.monotonic()
        world.approve("a")  # no pass runs from here on: only the watch can promote
        wait_for(lambda: world.status().get("step") == "b", "the approval promotes")
        made = [r.rbac_rule[1:] for r in served(emulator, since) if r.user == OPERATOR_USER]
        assert ("stagerollouts", "list") not in made and ("stageapprovals", "list") not in made
        assert ("stagerollouts", "get") not in made
        assert ("stagerollouts/status", "update") in made


def test_a_watch_that_meets_410_gone_relists_and_misses_nothing(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    world = make_world(emulator, plan={"inline": QUICK_PLAN})
    world.plan = parse_plan(yaml.safe_dump(QUICK_PLAN), source="quick")
    kept = world.approve("a")
    seen: list[tuple[str, str]] = []

    def record(_kind: Any, event: str, obj: Mapping[str, Any]) -> None:
        seen.append((event, obj["metadata"]["name"]))

    stop = threading.Event()
    informer = Informer(
        KubeApi(emulator.api_client(user=OPERATOR_USER)),
        APPROVALS,
        world.namespace,
        on_event=record,
        index=lambda o: (o.get("spec") or {}).get("rollout", {}).get("name"),
    )
    informer.sync()
    informer.start(stop)
    try:
        # Streaming (status 200): the first watch has passed the faults, and is one that
        # close_watches ends.
        wait_for(
            lambda: any(r.verb == "watch" and r.status == 200 for r in emulator.requests()),
            "the watch is up",
        )
        assert informer.lists == 1 and seen == []  # the first list is not news
        # The resumed watch is held until two approvals have come and one has gone and
        # the history they were in is compacted: it asks for a resourceVersion that is
        # gone and gets 410. (Had it run meanwhile, it would have been sent the three
        # changes as events, and there would have been nothing to re-list for.)
        held = emulator.inject(method="GET", path_regex="stageapprovals", hold=True, times=1)
        emulator.close_watches()
        wait_for(lambda: held.hits == 1, "the resumed watch arrives")
        added = [world.approve("a") for _ in range(2)]
        world.api.delete(APPROVALS, world.namespace, kept["metadata"]["name"])
        emulator.compact()
        held.release()
        wait_for(lambda: informer.lists == 2, "the informer re-lists")
        wait_for(lambda: len(seen) == 3, "the changes are delivered")
    finally:
        stop.set()
    assert sorted(seen) == sorted(
        [("ADDED", a["metadata"]["name"]) for a in added] + [("DELETED", kept["metadata"]["name"])]
    )
    assert sorted(o["metadata"]["name"] for o in informer.indexed(world.name)) == sorted(
        a["metadata"]["name"] for a in added
    )


def test_cached_objects_equal_what_was_served_and_share_their_strings(
    kube: KubeEmulator,
) -> None:
    """Every response decodes its own copy of each string; the cache keeps one."""
    informer = Informer(KubeApi(kube.api_client(user=OPERATOR_USER)), ROLLOUTS, None)
    query = "sum(rate(stage_validation_errors_total[5m])) / sum(rate(http_requests_total[5m]))"

    def served(name: str) -> dict[str, Any]:
        status = {"step": "2.1", "lastVerdicts": [{"name": "errors", "query": query}]}
        text = json.dumps(
            {
                "metadata": {
                    "namespace": "shop",
                    "name": name,
                    "uid": name,
                    "resourceVersion": "7",
                    "managedFields": [{}],
                },
                "status": status,
            }
        )
        return json.loads(text)  # type: ignore[no-any-return]

    first, second = served("a"), served("b")
    assert (
        first["status"]["lastVerdicts"][0]["query"]
        is not second["status"]["lastVerdicts"][0]["query"]
    )
    for obj in (first, second):
        informer.apply("ADDED", obj)
    a, b = informer.get("shop", "a"), informer.get("shop", "b")
    assert a is not None and b is not None
    assert a == {
        **first,
        "metadata": {k: v for k, v in first["metadata"].items() if k != "managedFields"},
    }
    assert a["status"]["lastVerdicts"][0]["query"] is b["status"]["lastVerdicts"][0]["query"]
    assert next(k for k in a["status"] if k == "lastVerdicts") is next(
        k for k in b["status"] if k == "lastVerdicts"
    )


def test_a_cached_deployment_keeps_what_a_tick_reads_not_its_pod_spec(kube: KubeEmulator) -> None:
    informer = Informer(KubeApi(kube.api_client(user=OPERATOR_USER)), DEPLOYMENTS, "shop")
    template = {"metadata": {"annotations": {"stage/restartedAt": "t"}}, "spec": {"containers": []}}
    progressing = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": "ReplicaSet api-1 has timed out progressing.",
    }
    full = {
        "metadata": {"namespace": "shop", "name": "api", "resourceVersion": "3"},
        "spec": {
            "replicas": 2,
            "template": template,
            "selector": {"matchLabels": {"app": "api"}},
            "strategy": {"type": "RollingUpdate"},
        },
        "status": {
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "conditions": [
                {"type": "Available", "status": "True", "message": "minimum availability"},
                progressing,
            ],
        },
    }
    informer.apply("ADDED", full)
    kept = informer.get("shop", "api")
    assert kept == {
        "metadata": {"namespace": "shop", "name": "api", "resourceVersion": "3"},
        "spec": {"replicas": 2, "template": {"metadata": template["metadata"]}},
        "status": {"updatedReplicas": 2, "conditions": [progressing]},
    }
    # What a tick makes of it is what it makes of the whole object, stuck or not.
    assert kept is not None
    assert rollout_state(kept, None) == rollout_state(full, None)
    assert "progress deadline" in str(rollout_state(kept, None)[1])
    healthy, whole = json.loads(json.dumps(kept)), json.loads(json.dumps(full))
    healthy["status"]["conditions"] = whole["status"]["conditions"] = []
    for flags_hash in (None, "t", "other"):
        assert rollout_state(healthy, flags_hash) == rollout_state(whole, flags_hash)


def test_a_status_conflict_rereads_and_loses_no_update(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    with cached_operator(emulator) as (world, operator):
        pass_until_steady(world, operator)
        operator._pool = _Held()  # type: ignore[assignment]  # events tick nothing now
        stale = operator._cached(ROLLOUTS).get(world.namespace, world.name)  # type: ignore[union-attr]
        assert stale is not None
        # Someone changes the spec (a new generation) after the cache was read...
        fresh = world.rollout()
        world.api.replace(
            ROLLOUTS,
            world.namespace,
            world.name,
            {**fresh, "spec": {**fresh["spec"], "interval": "2s"}},
        )
        approval = world.approve("a")
        approvals = operator._cached(APPROVALS)
        assert approvals is not None
        wait_for(lambda: approvals.get("shop", approval["metadata"]["name"]) is not None, "cached")
        since, now = time.monotonic(), operator.clock.now()
        # ...and the tick works from the stale copy: its status write is refused.
        outcome = operator._reconcile(
            world.namespace, world.name, now, stale, operator._records(stale, now)
        )
        assert outcome.conflicts == 1 and outcome.wrote_status, outcome
        rereads = [
            r for r in served(emulator, since) if (r.verb, r.resource) == ("get", "stagerollouts")
        ]
        assert len(rereads) == 1
        status = world.status()
        assert status["step"] == "b"  # the approval's promotion landed
        assert status["observedGeneration"] == fresh["metadata"]["generation"] + 1
        assert world.rollout()["spec"]["interval"] == "2s"  # the other writer's change stays


class _Held:
    """A pool that runs nothing: what watch events would tick waits here."""

    def __init__(self) -> None:
        self.held: list[Any] = []

    def submit(self, *call: Any) -> None:
        self.held.append(call)

    def shutdown(self, wait: bool = True) -> None:
        pass


def ten_approvals_cached(world: World, operator: Operator, step: str, **fields: Any) -> Informer:
    """Ten approvals of `step` made and seen by the operator's cache: the cache."""
    for number in range(10):
        world.approve(step, reason=f"old approval {number}", **fields)
    approvals = operator._cached(APPROVALS)
    assert approvals is not None
    wait_for(lambda: len(approvals.indexed(f"shop/{world.name}")) == 10, "the cache has them")
    return approvals


def test_old_approvals_do_not_change_what_a_pass_costs(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    with cached_operator(emulator) as (world, operator):
        pass_until_steady(world, operator)
        ten_approvals_cached(world, operator, "b", approver="alice")
        time.sleep(1.05)
        operator.tick_all()  # they are news once (for step b, the rollout is at a)
        since = time.monotonic()
        time.sleep(1.05)
        outcomes = operator.tick_all()
        assert outcomes and outcomes[0].state is not None
        assert served(emulator, since) == []
        assert world.status()["step"] == "a"


def test_a_steady_pass_looks_at_no_old_approval_and_a_new_one_is_seen_at_once(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    with cached_operator(emulator) as (world, operator):
        pass_until_steady(world, operator)
        approvals = ten_approvals_cached(world, operator, "a", planHash="0" * 64)
        time.sleep(1.05)
        operator.tick_all()  # news once: reported as ignored (another plan version)
        assert len(world.status()["approvalsIgnored"]) == 10
        time.sleep(1.05)
        operator.tick_all()  # the status that lists them is the rollout's new version
        looked_at = approvals.examined
        for _ in range(2):
            time.sleep(1.05)
            outcomes = operator.tick_all()
            assert outcomes and outcomes[0].state is not None
        assert approvals.examined == looked_at  # not one of the ten was handed out again
        assert world.status()["step"] == "a"
        world.approve("a")  # one that counts changes the bucket: it is looked at, and promotes
        passing_until(operator, lambda: world.status().get("step") == "b", "the approval promotes")
        assert approvals.examined > looked_at


def test_retention_deletes_spent_records_and_history_keeps_the_trail(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    retention = timedelta(seconds=3)
    with cached_operator(emulator, record_retention=retention) as (world, operator):
        pass_until_steady(world, operator)
        pause = world.command("pause")
        time.sleep(1.05)
        operator.tick_all()
        resume = world.command("resume")
        time.sleep(1.05)
        operator.tick_all()
        approval = world.approve("a")
        passing_until(operator, lambda: world.status().get("step") == "b", "the approval promotes")
        for record in (pause, resume, approval):
            assert world.api.get(record_kind(record), "shop", record["metadata"]["name"])
        time.sleep(retention.total_seconds())
        young = world.approve("b")  # spent soon (the last step consumes it), but young
        passing_until(
            operator,
            lambda: any(a.startswith(young["metadata"]["name"]) for a in consumed(world)),
            "the young approval is consumed",
        )
        assert operator.prune_records() == 3
        for record in (pause, resume, approval):
            assert world.api.get(record_kind(record), "shop", record["metadata"]["name"]) is None
        assert world.api.get(APPROVALS, "shop", young["metadata"]["name"]) is not None
        promoted = [t for t in world.status()["history"] if t["trigger"] == "promote"]
        approval_id = f"{approval['metadata']['name']}/{approval['metadata']['uid']}"
        assert promoted and promoted[-1]["approvals"] == [approval_id]
        assert promoted[-1]["by"] == "alice"
        assert operator.prune_records() == 0


def consumed(world: World) -> list[str]:
    return list(world.status().get("approvalsConsumed") or [])


def record_kind(record: Mapping[str, Any]) -> Any:
    return COMMANDS if record["kind"] == COMMANDS.name else APPROVALS


def test_records_made_by_stagectl_belong_to_the_rollout_and_go_with_it(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    with cached_operator(emulator) as (world, operator):
        pass_until_steady(world, operator)
        assert world.people is not None
        approval = records.approve(
            world.people, "shop", world.name, step=None, reason="ok", now=datetime.now(UTC)
        )
        rollout = world.rollout()
        assert approval["metadata"]["ownerReferences"] == [
            {
                "apiVersion": ROLLOUTS.api_version,
                "kind": ROLLOUTS.name,
                "name": world.name,
                "uid": rollout["metadata"]["uid"],
            }
        ]
        world.api.delete(ROLLOUTS, "shop", world.name)
        assert world.api.get(APPROVALS, "shop", approval["metadata"]["name"]) is None


def test_an_account_that_loses_its_watch_right_leaves_no_cache_behind(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    """What the account was shown is dropped when it may no longer watch: the next
    pass reads the target directly, as the account, or not at all."""
    emulator = kube_emulator(rollout_delay=0.05)
    with cached_operator(emulator) as (world, operator):
        pass_until_steady(world, operator)
        assert operator.caches is not None
        cached = [i for i in operator.caches.informers() if i.api.impersonating == ACCOUNT_USER]
        assert {i.kind.plural for i in cached} == {"configmaps", "deployments"}
        world.api.delete(RBAC_KINDS["RoleBinding"], world.namespace, "stage-rollout-watch")
        emulator.close_watches()
        wait_for(lambda: not any(i.synced.is_set() for i in cached), "the caches are dropped")
        assert all(i.items() == [] for i in cached)
        since = time.monotonic()
        time.sleep(1.05)
        operator.tick_all()
        reads = sorted((r.verb, r.resource, r.user, r.status) for r in served(emulator, since))
        assert ("get", "configmaps", ACCOUNT_USER, 200) in reads
        assert ("get", "deployments", ACCOUNT_USER, 200) in reads
        assert not any(verb in ("list", "watch") for verb, *_ in reads)


def test_a_deleted_rollouts_series_leave_the_metrics_through_the_watch(
    kube_emulator: Callable[..., KubeEmulator],
) -> None:
    emulator = kube_emulator(rollout_delay=0.05)
    with cached_operator(emulator) as (world, operator):
        pass_until_steady(world, operator)
        registry = operator.telemetry.registry
        of_rollout = {"namespace": world.namespace, "rollout": world.name}
        assert registry.get_sample_value("stage_rollout_enforcement_percent", of_rollout) == 0

        def exported() -> set[str]:
            return {
                sample.name
                for family in registry.collect()
                for sample in family.samples
                if sample.labels.get("rollout") == world.name
            }

        assert "stage_rollout_step_info" in exported()
        world.api.delete(ROLLOUTS, world.namespace, world.name)
        wait_for(lambda: not exported(), "the deletion event takes the rollout's series")
