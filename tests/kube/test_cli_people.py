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
from tests.kube.operator_world import PEOPLE, World, make_world, write_alice_kubeconfig
from tests.support.kube_emulator import KubeEmulator

runner = CliRunner()


@pytest.fixture
def world(kube_emulator: Callable[..., KubeEmulator]) -> World:
    return make_world(kube_emulator(rollout_delay=0.05, job_delay=0.05))


@pytest.fixture
def kubeconfig(world: World, tmp_path: Path) -> Path:
    return write_alice_kubeconfig(world, tmp_path / "kubeconfig")


def stagectl(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--kubeconfig", str(kubeconfig), "-n", "shop"])
    return result.exit_code, result.stdout, result.stderr


def awaiting_approval(world: World) -> None:
    world.settle()
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


def test_rollback_disable_write_enforcement_where_it_is_already_off_is_refused_unrecorded(
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
    assert (code, out) == (2, "")
    assert "write enforcement is already off at step warm" in err
    assert recorded_commands(world) == []
    code, _out, err = stagectl(
        kubeconfig, "rollback", "api-rollout", "--to", "warm", "--disable-write-enforcement"
    )
    assert code == 2 and "two different rollbacks" in err


def recorded_commands(world: World) -> list[str]:
    from controller.kube.api import COMMANDS

    items, _ = world.api.list(COMMANDS, world.namespace)
    return [item["spec"]["command"] for item in items]


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


def context_kubeconfig(world: World, tmp_path: Path) -> Path:
    """Two contexts: `shop` (current, the rollout's namespace) and `elsewhere`, no -n given."""
    assert world.emulator is not None
    world.emulator.add_token("alice-token", "alice@example.com", groups=("sre",))
    cluster = {"name": "emulator", "cluster": {"server": world.emulator.url}}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "alice", "user": {"token": "alice-token"}}],
        "contexts": [
            {
                "name": "shop",
                "context": {"cluster": "emulator", "user": "alice", "namespace": "shop"},
            },
            {
                "name": "elsewhere",
                "context": {"cluster": "emulator", "user": "alice", "namespace": "elsewhere"},
            },
        ],
        "current-context": "shop",
    }
    path = tmp_path / "contexts"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def bare(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    """stagectl as people type it: no -n, so the namespace comes from the kubeconfig."""
    result = runner.invoke(app, [*args, "--kubeconfig", str(kubeconfig)])
    return result.exit_code, result.stdout, result.stderr


def test_the_namespace_comes_from_the_kubeconfig_context_as_in_kubectl(
    world: World, tmp_path: Path
) -> None:
    awaiting_approval(world)
    path = context_kubeconfig(world, tmp_path)
    code, out, err = bare(path, "status", "api-rollout", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["namespace"] == "shop"
    code, _out, err = bare(
        path, "approve", "api-rollout", "--context", "elsewhere", "--reason", "x"
    )
    # The context's namespace is asked: alice may not read it (RBAC), and the refusal names it.
    assert code == 2 and "in namespace elsewhere" in err
    code, _out, err = bare(path, "status", "api-rollout", "--context", "elsewhere", "-n", "shop")
    assert code == 0, err  # -n wins over the context's namespace


def view_everywhere(world: World) -> None:
    """The shipped viewer role bound cluster-wide, as -A needs on a real cluster."""
    assert world.emulator is not None
    world.emulator.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "viewers"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "stage-rollout-viewer",
            },
            "subjects": [
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": person}
                for person in PEOPLE
            ],
        }
    )


def test_all_namespaces_lists_rollouts_of_every_namespace_with_their_namespace(
    world: World, tmp_path: Path
) -> None:
    from controller.kube.api import ROLLOUTS
    from tests.kube.operator_world import NAMESPACES

    world.tick()
    rollout = world.rollout()
    world.api.create(
        NAMESPACES, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "blue"}}
    )
    view_everywhere(world)
    world.api.create(
        ROLLOUTS,
        "blue",
        {
            "apiVersion": rollout["apiVersion"],
            "kind": rollout["kind"],
            "metadata": {"name": "api-rollout"},
            "spec": rollout["spec"],
        },
    )
    path = context_kubeconfig(world, tmp_path)
    code, out, err = bare(path, "status")
    assert code == 0, err and len(out.splitlines()) == 2  # the context's namespace only
    code, out, err = bare(path, "status", "-A")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["blue", "api-rollout"],
        ["shop", "api-rollout"],
    ]
    code, _out, err = bare(path, "status", "api-rollout", "-A")
    assert code == 2 and "--all-namespaces" in err


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["rollback", "api-rollout", "--to", "e@100"], "--to e@100 is after the current step warm"),
        (["rollback", "api-rollout", "--to", "warm"], "--to warm is the current step warm"),
        (["rollback", "api-rollout"], "warm is the first step; there is nothing to roll back to"),
        (["rollback", "api-rollout", "--to", "warn"], "warm is the first step"),
        (["retry", "api-rollout"], "no failed job in step warm to retry"),
        (["resume", "api-rollout"], "resume is not possible while step warm is awaiting_approval"),
    ],
    ids=[
        "to-a-later-step",
        "to-the-current-step",
        "at-the-first-step",
        "warn-at-the-first",
        "retry-nothing-failed",
        "resume-not-paused",
    ],
)
def test_an_impossible_command_is_refused_before_it_is_recorded(
    world: World, kubeconfig: Path, args: list[str], reason: str
) -> None:
    awaiting_approval(world)
    code, out, err = stagectl(kubeconfig, *args)
    assert (code, out) == (2, "")
    assert err.startswith(f"stagectl: {args[0]} of api-rollout refused, nothing recorded: ")
    assert reason in err
    assert len(err.strip().splitlines()) == 1
    assert recorded_commands(world) == []


def test_retry_is_recorded_when_a_job_of_the_step_failed(world: World, kubeconfig: Path) -> None:
    assert world.emulator is not None
    world.emulator.fail_jobs("prepare")
    awaiting_job_failure(world)
    assert world.status()["failedJobs"] == ["prepare"]
    code, out, err = stagectl(kubeconfig, "retry", "api-rollout", "--reason", "db is back")
    assert code == 0 and "retry of api-rollout recorded" in out, err
    world.emulator.clear_job_rules()
    world.tick(advance=timedelta(minutes=1))
    assert world.status()["failedJobs"] == []


def awaiting_job_failure(world: World) -> None:
    world.settle()
    world.tick(advance=timedelta(minutes=1))
    time.sleep(0.3)
    world.tick(advance=timedelta(minutes=1))
    assert any("prepare attempt 1 failed" in b for b in world.status()["blockers"])


def test_a_command_the_operator_rejects_is_shown_by_status_and_history(
    world: World, kubeconfig: Path
) -> None:
    awaiting_approval(world)
    # Recorded behind the CLI's back (kubectl create, or a race with another command):
    # the operator is the one that rejects it, and people must be able to read that.
    world.command("rollback", to="e@100", reason="typo")
    world.tick()
    code, out, _err = stagectl(kubeconfig, "status", "api-rollout", "-o", "json")
    rejected = json.loads(out)["commandsRejected"]
    assert [r["message"] for r in rejected] == [
        "rollback by alice: e@100 is not before the current step warm"
    ]
    assert rejected[0]["at"].endswith("+00:00") or rejected[0]["at"].endswith("Z")
    code, out, _err = stagectl(kubeconfig, "status", "api-rollout")
    assert code == 0 and "rejected " in out and "e@100 is not before the current step warm" in out
    _code, out, _err = stagectl(kubeconfig, "history", "api-rollout")
    assert "rejected: rollback by alice: e@100 is not before the current step warm" in out


def test_a_command_after_one_not_yet_handled_is_left_to_the_operator(
    world: World, kubeconfig: Path
) -> None:
    awaiting_approval(world)
    assert stagectl(kubeconfig, "pause", "api-rollout")[0] == 0
    # The pause is not handled yet, so the rollout will be paused when resume meets it.
    assert stagectl(kubeconfig, "resume", "api-rollout")[0] == 0
    assert recorded_commands(world) == ["pause", "resume"]


def test_tables_show_ages_and_json_the_exact_times(world: World, kubeconfig: Path) -> None:
    awaiting_approval(world)
    code, out, _err = stagectl(kubeconfig, "status", "api-rollout")
    transition_lines = [line for line in out.splitlines() if "→" in line]
    assert transition_lines and all(" ago  " in line for line in transition_lines)
    code, out, _err = stagectl(kubeconfig, "history", "api-rollout", "-o", "json")
    assert code == 0
    from datetime import datetime

    for transition in json.loads(out)["transitions"]:
        assert datetime.fromisoformat(transition["at"].replace("Z", "+00:00")).tzinfo is not None
    _code, out, _err = stagectl(kubeconfig, "history", "api-rollout")
    assert all(" ago  " in line for line in out.splitlines())


def test_wait_for_a_reached_step_exits_0_and_a_timeout_exits_3(
    world: World, kubeconfig: Path
) -> None:
    walk_to_e50(world, kubeconfig)
    code, out, err = stagectl(kubeconfig, "status", "api-rollout", "--wait-for", "step=warm")
    assert code == 0, err
    assert "reached step warm (step e@50, soaking)" in out
    code, out, _err = stagectl(
        kubeconfig,
        "status",
        "api-rollout",
        "--wait-for",
        "completed",
        "--timeout",
        "2s",
        "--poll",
        "1s",
    )
    assert code == 3 and "timed out after 2s waiting for completion" in out


@pytest.mark.parametrize(
    ("goal", "message"),
    [
        ("step=9@9", "step '9@9' is not in the plan (warm, e@50, e@100)"),
        ("steps=e@50", "write step=STEP"),
        ("done", "write step=STEP"),
    ],
)
def test_wait_for_refuses_a_goal_that_cannot_be_met(
    world: World, kubeconfig: Path, goal: str, message: str
) -> None:
    world.tick()
    code, out, err = stagectl(kubeconfig, "status", "api-rollout", "--wait-for", goal)
    assert (code, out) == (2, "")
    assert message in err


def test_each_gate_has_one_verdict_with_its_window_coverage(world: World, kubeconfig: Path) -> None:
    world.settle()
    world.tick(advance=timedelta(minutes=2))
    code, out, _err = stagectl(kubeconfig, "status", "api-rollout")
    assert code == 0
    about_gate = [line for line in out.splitlines() if "errors-low" in line]
    # Never "pass … held for 5m" beside "blocked: its window is not yet covered".
    assert len(about_gate) == 1, about_gate
    assert about_gate[0].startswith("  gate errors-low: pending (window not yet covered")
    assert "window 2m of 5m covered by this step" in about_gate[0]
    assert "blocked: soaking: 2m of 10m in effect" in out
