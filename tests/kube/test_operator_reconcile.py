"""The operator's reconcile tick against the API server (the emulator, or a real cluster).

Each test checks the state of the world afterwards (status, ConfigMap, Deployment
template, Jobs, Events), not which calls were made.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from controller.kube.api import EVENTS, ROLLOUTS
from controller.kube.reconciler import Hooks, Reconciler
from phases.flags import hash_flags
from tests.kube.operator_world import (
    OPERATOR_USER,
    REAL_CLUSTER,
    World,
    make_world,
    metrics,
    walk_tiny_plan_to_e50,
)
from tests.support.kube_emulator import KubeEmulator
from tests.support.rbac import granted_rules

needs_emulator = pytest.mark.skipif(
    bool(REAL_CLUSTER), reason="injects faults: needs the API-server emulator"
)

WARM = {
    "STAGE_VALIDATION_MODE": "warn",
    "ENFORCE_WRITE_ONLY": "false",
    "ENFORCEMENT_PERCENT": "0",
    "STAGE_VALIDATION_DRY_RUN": "false",
}
E50 = {**WARM, "STAGE_VALIDATION_MODE": "enforce", "ENFORCEMENT_PERCENT": "50"}


@pytest.fixture
def world(kube_emulator: Callable[..., KubeEmulator]) -> World:
    return make_world(None if REAL_CLUSTER else kube_emulator(rollout_delay=0.1, job_delay=0.1))


def test_a_new_rollout_writes_its_status_then_the_flags_and_restarts_the_deployment(
    world: World,
) -> None:
    outcome = world.tick()
    assert outcome.wrote_status and outcome.problem is None
    status = world.status()
    assert (status["step"], status["state"], status["planHash"]) == (
        "warm",
        "applying",
        world.plan.content_hash,
    )
    assert world.flags() == WARM
    assert world.template_hash() == hash_flags(WARM)
    assert status["observedGeneration"] == world.rollout()["metadata"]["generation"]


def test_the_soak_starts_only_when_the_deployment_finished_rolling_out(world: World) -> None:
    if world.emulator is not None:
        world.emulator.rollout_delay = 1.5
    world.tick()
    world.tick()
    assert world.status()["state"] in ("applying", "verifying")
    world.wait_rolled_out()
    world.tick()
    status = world.status()
    assert status["state"] == "soaking"
    assert status["inEffectAt"].startswith("2026-03-02T09:00")


def test_an_approval_record_promotes_and_the_next_flags_are_applied(world: World) -> None:
    walk_tiny_plan_to_e50(world)
    assert world.flags() == E50
    assert world.template_hash() == hash_flags(E50)
    consumed = world.status()["approvalsConsumed"]
    assert len(consumed) == 1 and consumed[0].startswith("approve-warm-")


def test_the_same_flags_never_restart_a_deployment_twice(world: World) -> None:
    world.settle()
    generation = world.api.get(*_deployment(world))["metadata"]["generation"]
    for _ in range(3):
        world.tick(advance=timedelta(minutes=1))
    assert world.api.get(*_deployment(world))["metadata"]["generation"] == generation


def _deployment(world: World) -> tuple:
    from controller.kube.api import DEPLOYMENTS

    return (DEPLOYMENTS, world.namespace, "api")


def test_other_keys_of_the_configmap_are_left_alone(world: World) -> None:
    from controller.kube.api import CONFIGMAPS

    world.api.create(
        CONFIGMAPS,
        world.namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flags"},
            "data": {"OTHER": "kept", "ENFORCEMENT_PERCENT": "77"},
        },
    )
    world.tick()
    assert world.flags() == {**WARM, "OTHER": "kept"}


def test_the_plan_job_is_created_once_with_a_name_bound_to_the_plan(world: World) -> None:
    world.settle()
    for _ in range(3):
        world.tick(advance=timedelta(minutes=1))
    names = world.job_names()
    assert names == [f"api-rollout-prepare-{world.plan.content_hash[:8]}-1"]


@needs_emulator
def test_a_failed_job_holds_and_retry_reruns_it_with_resume_arguments(world: World) -> None:
    assert world.emulator is not None
    world.emulator.fail_jobs("prepare")
    world.settle()
    world.tick(advance=timedelta(minutes=1))
    import time

    time.sleep(0.3)
    world.approve("warm")
    world.tick(advance=timedelta(minutes=15))
    status = world.status()
    assert status["step"] == "warm"
    assert any("prepare attempt 1 failed" in b for b in status["blockers"])
    world.emulator.clear_job_rules()
    world.command("retry", reason="database is back")
    world.tick(advance=timedelta(minutes=1))
    assert world.job_names()[-1].endswith("-2")
    job = world.api.get(
        __import__("controller.kube.api", fromlist=["JOBS"]).JOBS,
        world.namespace,
        world.job_names()[-1],
    )
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["--resume"]


@needs_emulator
def test_a_stuck_deployment_holds_with_a_condition(world: World) -> None:
    assert world.emulator is not None
    world.emulator.stall_deployment(world.namespace, "api")
    world.api.merge_patch(*_deployment(world), {"spec": {"progressDeadlineSeconds": 1}})
    world.tick()
    import time

    time.sleep(1.5)
    world.tick()
    status = world.status()
    assert status["state"] == "verifying"
    ready = next(c for c in status["conditions"] if c["type"] == "TargetReady")
    assert ready["status"] == "False" and "progress deadline" in ready["message"]


def test_an_invalid_spec_becomes_a_condition_and_nothing_is_written(world: World) -> None:
    rollout = world.rollout()
    rollout["spec"]["plan"] = {"name": "stage-validation-v3", "inline": {"name": "x"}}
    world.api.replace(ROLLOUTS, world.namespace, world.name, rollout)
    outcome = world.tick()
    assert (
        outcome.problem
        and "exactly one of plan.name, plan.inline or plan.configMapRef" in outcome.problem
    )
    valid = next(c for c in world.status()["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False" and valid["reason"] == "SpecInvalid"
    assert world.flags() == {}


def test_an_invalid_inline_plan_names_the_field(world: World) -> None:
    rollout = world.rollout()
    rollout["spec"]["plan"]["inline"]["phases"][1]["steps"][0]["flags"]["ENFORCEMENT_PERCENT"] = 150
    world.api.replace(ROLLOUTS, world.namespace, world.name, rollout)
    world.tick()
    valid = next(c for c in world.status()["conditions"] if c["type"] == "Valid")
    assert valid["reason"] == "PlanInvalid"
    assert "phases[1].steps[0].flags.ENFORCEMENT_PERCENT" in valid["message"]


def test_transitions_are_recorded_as_events(world: World) -> None:
    world.settle()
    events, _ = world.api.list(EVENTS, world.namespace)
    reasons = [e["reason"] for e in events if e["involvedObject"]["name"] == world.name]
    assert "Transition" in reasons


def test_dry_run_decides_but_writes_nothing(world: World) -> None:
    outcome = world.tick(world.reconciler(dry_run=True))
    assert outcome.decision is not None and outcome.decision.status.state.value == "applying"
    assert any("would patch" in w or "would create ConfigMap" in w for w in outcome.writes)
    assert world.flags() == {}
    assert "status" not in world.rollout()


@needs_emulator
def test_a_status_write_conflict_rereads_and_decides_again(world: World) -> None:
    assert world.emulator is not None
    world.emulator.inject(
        method="PUT", path_regex=r"/stagerollouts/api-rollout/status$", status=409, times=1
    )
    outcome = world.tick()
    assert outcome.conflicts == 1 and outcome.wrote_status
    assert world.status()["state"] == "applying"


@needs_emulator
@pytest.mark.parametrize("status", [500, 503, 429])
def test_api_errors_hold_the_rollout_without_losing_status(world: World, status: int) -> None:
    assert world.emulator is not None
    world.settle()
    before = world.rollout()["status"]
    world.emulator.inject(method="GET", path_regex=r"/configmaps/flags$", status=status, times=5)
    outcome = world.tick(advance=timedelta(minutes=1))
    assert outcome.problem and f"HTTP {status}" in outcome.problem
    assert not outcome.wrote_status
    assert world.rollout()["status"] == before


class _Follower(Hooks):
    def may_write(self) -> bool:
        return False


def test_a_replica_that_is_not_the_leader_writes_nothing(world: World) -> None:
    outcome = world.tick(world.reconciler(hooks=_Follower()))
    assert outcome.problem == "not the leader: nothing written"
    assert world.flags() == {} and "status" not in world.rollout()


def test_a_degradation_in_effect_rolls_back_to_the_previous_step(world: World) -> None:
    walk_tiny_plan_to_e50(world)
    spike = world.now + timedelta(minutes=5)
    world.source = metrics(
        [
            ("0s", 0.001),
            (f"{int((spike - world.now.replace(hour=9, minute=0)).total_seconds())}s", 0.2),
        ]
    )
    for _ in range(8):
        world.tick(advance=timedelta(minutes=1))
        if world.status()["step"] == "warm":
            break
    status = world.status()
    assert status["step"] == "warm", status.get("blockers")
    rollback = next(h for h in status["history"] if h["trigger"] == "rollback")
    assert (rollback["fromStep"], rollback["toStep"]) == ("e@50", "warm")
    assert "errors-high" in rollback["reason"]
    world.wait_rolled_out()
    world.tick()
    assert world.flags() == WARM


@needs_emulator
def test_the_operator_uses_only_calls_its_rbac_grants(world: World) -> None:
    assert world.emulator is not None
    world.emulator.clear_requests()
    walk_tiny_plan_to_e50(world)
    world.command("pause")
    world.tick(advance=timedelta(minutes=1))
    used = world.emulator.rbac_rules_used(user=OPERATOR_USER)
    assert used, "no request was logged"
    assert used <= granted_rules(), f"calls RBAC does not grant: {used - granted_rules()}"


@needs_emulator
def test_an_api_timeout_holds_the_rollout_without_losing_status(world: World) -> None:
    from controller.kube.api import KubeApi
    from tests.kube.operator_world import OPERATOR_USER

    assert world.emulator is not None
    world.settle()
    before = world.rollout()["status"]
    impatient = Reconciler(
        KubeApi(world.emulator.api_client(user=OPERATOR_USER), timeout_seconds=0.5),
        lambda _spec, _plan: world.source,
    )
    # Until cleared: the client's own urllib3 retries would outlast a few slow answers.
    world.emulator.inject(method="GET", path_regex=r"/configmaps/flags$", delay=2.0, times=None)
    outcome = world.tick(impatient, advance=timedelta(minutes=1))
    world.emulator.clear_faults()
    assert outcome.problem and "did not answer within 0.5s" in outcome.problem
    assert not outcome.wrote_status
    assert world.rollout()["status"] == before
