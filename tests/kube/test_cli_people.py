"""`stagectl status/approve/pause/rollback/history` against the API server, as a user."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from controller.cli.main import app
from controller.kube.api import EVENTS
from tests.kube.operator_world import World, make_world
from tests.support.kube_emulator import KubeEmulator

runner = CliRunner()


@pytest.fixture
def world(kube_emulator: Callable[..., KubeEmulator]) -> World:
    return make_world(kube_emulator(rollout_delay=0.05, job_delay=0.05))


@pytest.fixture
def kubeconfig(world: World, tmp_path: Path) -> Path:
    assert world.emulator is not None
    world.emulator.add_token("alice-token", "alice@example.com", groups=("sre",))
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": world.emulator.url}}],
        "users": [{"name": "alice", "user": {"token": "alice-token"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "alice", "namespace": "shop"},
            }
        ],
        "current-context": "emulator",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def stagectl(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--kubeconfig", str(kubeconfig), "-n", "shop"])
    return result.exit_code, result.stdout, result.stderr


def awaiting_approval(world: World) -> None:
    for _ in range(5):
        world.tick()
        if world.status().get("state") == "soaking":
            break
        world.wait_rolled_out()
    world.tick(advance=timedelta(minutes=1))
    time.sleep(0.3)
    world.tick(advance=timedelta(minutes=11))
    assert world.status()["state"] == "awaiting_approval", world.status().get("blockers")


def test_approve_records_the_caller_as_approver_and_the_next_tick_promotes(
    world: World, kubeconfig: Path
) -> None:
    awaiting_approval(world)
    code, out, err = stagectl(
        kubeconfig, "approve", "api-rollout", "--step", "warm", "--reason", "indexes verified"
    )
    assert code == 0, err
    assert out.startswith("approved leaving warm of api-rollout as alice@example.com")
    world.tick()
    assert world.status()["step"] == "e@50"
    assert world.status()["history"][-1]["by"] == "alice@example.com"


def test_approving_another_step_is_refused(world: World, kubeconfig: Path) -> None:
    awaiting_approval(world)
    code, out, err = stagectl(
        kubeconfig, "approve", "api-rollout", "--step", "e@50", "--reason", "x"
    )
    assert (code, out) == (2, "")
    assert "rollout api-rollout is at step warm, not e@50" in err


def test_approving_twice_is_refused(world: World, kubeconfig: Path) -> None:
    awaiting_approval(world)
    assert stagectl(kubeconfig, "approve", "api-rollout", "--reason", "ok")[0] == 0
    code, _out, err = stagectl(kubeconfig, "approve", "api-rollout", "--reason", "again")
    assert code == 2 and "alice@example.com already approved leaving warm" in err


def test_an_unknown_rollout_lists_the_ones_that_exist(world: World, kubeconfig: Path) -> None:
    code, _out, err = stagectl(kubeconfig, "approve", "nope", "--reason", "x")
    assert (
        code == 2
        and "no StageRollout 'nope' in namespace shop (rollouts there: api-rollout)" in err
    )


def test_a_refused_approval_names_the_role_needed(world: World, kubeconfig: Path) -> None:
    awaiting_approval(world)
    assert world.emulator is not None
    world.emulator.inject(method="POST", path_regex=r"/stageapprovals$", status=403, times=1)
    code, _out, err = stagectl(kubeconfig, "approve", "api-rollout", "--reason", "x")
    assert code == 2 and "needs the stage-rollout-approver role" in err


def test_no_cluster_reachable_is_one_clear_error(tmp_path: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    code, out, err = stagectl(path, "status")
    assert (code, out) == (2, "")
    assert err.startswith("stagectl: no cluster reachable")


def test_status_shows_what_blocks_promotion(world: World, kubeconfig: Path) -> None:
    awaiting_approval(world)
    code, out, _err = stagectl(kubeconfig, "status", "api-rollout", "-o", "json")
    assert code == 0
    view = json.loads(out)
    assert (view["step"], view["state"], view["percent"]) == ("warm", "awaiting_approval", 0)
    assert "waiting for approval to leave warm (0 of 1)" in view["blockers"]
    assert [(v["name"], v["outcome"]) for v in view["verdicts"]] == [("errors-low", "pass")]
    code, table, _err = stagectl(kubeconfig, "status")
    assert code == 0 and table.splitlines()[1].split()[:3] == [
        "api-rollout",
        "warm",
        "awaiting_approval",
    ]


def test_pause_is_recorded_with_who_gave_it_and_honoured(world: World, kubeconfig: Path) -> None:
    awaiting_approval(world)
    code, out, _err = stagectl(kubeconfig, "pause", "api-rollout", "--reason", "incident 42")
    assert code == 0 and "recorded as alice@example.com" in out
    world.tick()
    assert world.status()["state"] == "paused"
    code, out, _err = stagectl(kubeconfig, "history", "api-rollout", "-o", "json")
    commands = json.loads(out)["commands"]
    assert [(c["command"], c["by"], c["reason"]) for c in commands] == [
        ("pause", "alice@example.com", "incident 42")
    ]


def test_rollback_to_an_unknown_step_is_refused(world: World, kubeconfig: Path) -> None:
    awaiting_approval(world)
    code, _out, err = stagectl(kubeconfig, "rollback", "api-rollout", "--to", "9@9")
    assert code == 2 and "--to '9@9' is not a step of the plan (warm, e@50, e@100) nor warn" in err


def role_rules(name: str) -> set[tuple[str, str, str]]:
    path = Path(__file__).resolve().parents[2] / "manifests" / "base" / "roles.yaml"
    role = next(
        d
        for d in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if d["metadata"]["name"] == name
    )
    return {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def test_approving_uses_only_what_the_approver_role_grants(world: World, kubeconfig: Path) -> None:
    awaiting_approval(world)
    assert world.emulator is not None
    world.emulator.clear_requests()
    assert stagectl(kubeconfig, "status", "api-rollout")[0] == 0
    assert stagectl(kubeconfig, "approve", "api-rollout", "--reason", "ok")[0] == 0
    used = world.emulator.rbac_rules_used(user="alice@example.com")
    assert ("stage.rollout.dev", "stageapprovals", "create") in used
    assert used <= role_rules("stage-rollout-approver"), used - role_rules("stage-rollout-approver")
    assert not {
        rule
        for rule in role_rules("stage-rollout-approver")
        if rule[1].startswith("stagerollouts") and rule[2] not in ("get", "list", "watch")
    }


def test_commands_use_only_what_the_operator_role_grants(world: World, kubeconfig: Path) -> None:
    awaiting_approval(world)
    assert world.emulator is not None
    world.emulator.clear_requests()
    for args in (
        ["pause", "api-rollout"],
        ["resume", "api-rollout"],
        ["rollback", "api-rollout", "--to", "warn"],
        ["history", "api-rollout"],
    ):
        assert stagectl(kubeconfig, *args)[0] == 0, args
    used = world.emulator.rbac_rules_used(user="alice@example.com")
    assert used <= role_rules("stage-rollout-operator"), used - role_rules("stage-rollout-operator")
    assert ("stage.rollout.dev", "stagecommands", "create") not in role_rules(
        "stage-rollout-approver"
    )


@pytest.mark.parametrize(
    ("forgery", "phrase"),
    [
        ({"rollout": {"name": "api-rollout", "uid": "another-uid"}}, "is for another rollout"),
        ({"planHash": "0" * 64}, "was given for plan version"),
        ({"expiresAt": "2020-01-01T00:00:00Z"}, "expired"),
    ],
    ids=["other-uid", "old-plan-hash", "expired"],
)
def test_an_approval_that_does_not_count_does_not_promote_and_says_why(
    world: World, forgery: dict, phrase: str
) -> None:
    awaiting_approval(world)
    world.approve("warm", **forgery)
    world.tick()
    assert world.status()["step"] == "warm"
    events, _ = world.api.list(EVENTS, world.namespace)
    ignored = [e["message"] for e in events if e["reason"] == "ApprovalIgnored"]
    assert any(phrase in message for message in ignored), ignored


def test_an_approval_is_used_once(world: World, kubeconfig: Path) -> None:
    awaiting_approval(world)
    assert stagectl(kubeconfig, "approve", "api-rollout", "--reason", "ok")[0] == 0
    world.tick()
    assert world.status()["step"] == "e@50"
    world.command("rollback")
    world.tick()
    world.wait_rolled_out()
    for _ in range(3):
        world.tick(advance=timedelta(minutes=20))
    status = world.status()
    assert status["step"] == "warm" and status["holdForApproval"]
    assert status["state"] == "awaiting_approval"  # the approval already used does not count again


def test_rollback_disable_write_enforcement_is_recorded_and_refused_where_it_is_already_off(
    world: World, kubeconfig: Path
) -> None:
    awaiting_approval(world)
    code, out, err = stagectl(
        kubeconfig,
        "rollback",
        "api-rollout",
        "--disable-write-enforcement",
        "--reason",
        "too strict",
    )
    assert (
        code == 0
        and "rollback of api-rollout to write-enforcement-off recorded as alice@example.com" in out
    ), err
    world.tick()
    events, _ = world.api.list(EVENTS, world.namespace)
    assert any("write enforcement is already off at step warm" in e["message"] for e in events)
    code, _out, err = stagectl(
        kubeconfig, "rollback", "api-rollout", "--to", "warm", "--disable-write-enforcement"
    )
    assert code == 2 and "two different rollbacks" in err


def walk_to_e50(world: World, kubeconfig: Path) -> None:
    awaiting_approval(world)
    assert stagectl(kubeconfig, "approve", "api-rollout", "--reason", "ok")[0] == 0
    world.tick()
    world.wait_rolled_out()
    world.tick()
    assert (world.status()["step"], world.status()["state"]) == ("e@50", "soaking")


def test_rollback_to_warn_leaves_exactly_the_runbooks_full_rollback_flags(
    world: World, kubeconfig: Path
) -> None:
    walk_to_e50(world, kubeconfig)
    assert (
        stagectl(kubeconfig, "rollback", "api-rollout", "--to", "warn", "--reason", "scenario 3")[0]
        == 0
    )
    world.tick()
    assert world.flags() == {
        "STAGE_VALIDATION_MODE": "warn",
        "ENFORCE_WRITE_ONLY": "false",
        "ENFORCEMENT_PERCENT": "0",
        "STAGE_VALIDATION_DRY_RUN": "false",
    }
    assert world.status()["step"] == "warm"


def test_pause_during_the_soak_stops_its_clock_and_resume_restarts_it(
    world: World, kubeconfig: Path
) -> None:
    from controller.kube.resources import StageRolloutStatus

    walk_to_e50(world, kubeconfig)
    world.tick(advance=timedelta(minutes=4))
    assert stagectl(kubeconfig, "pause", "api-rollout")[0] == 0
    world.tick()
    paused = StageRolloutStatus.model_validate(world.status())
    soaked = paused.soak_elapsed(world.now)
    world.tick(advance=timedelta(hours=3))
    assert StageRolloutStatus.model_validate(world.status()).soak_elapsed(world.now) == soaked
    assert stagectl(kubeconfig, "resume", "api-rollout")[0] == 0
    world.tick()
    world.tick(advance=timedelta(minutes=1))
    resumed = StageRolloutStatus.model_validate(world.status())
    assert resumed.state.value == "soaking"
    assert resumed.soak_elapsed(world.now) == soaked + timedelta(minutes=1)


def test_status_watch_redraws_until_interrupted(world: World, kubeconfig: Path) -> None:
    import signal
    import subprocess
    import sys

    world.tick()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from controller.cli.main import run; run()",
            "status",
            "--watch",
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            "shop",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(5)
    process.send_signal(signal.SIGINT)
    out, _err = process.communicate(timeout=10)
    # Not a terminal: the clear-screen code is left out and each frame follows the last.
    assert out.count("NAME ") >= 2 and out.count("api-rollout") >= 2
    assert "\033[" not in out
