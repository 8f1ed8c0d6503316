"""`stagectl simulate` and `stagectl plan …` as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from controller.cli.main import app

runner = CliRunner()


def test_simulate_defaults_print_the_happy_path_timeline_ending_at_4() -> None:
    result = runner.invoke(app, ["simulate"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("simulating plan stage-validation-v3")
    assert lines[1].split() == ["time", "from", "to", "trigger", "why"]
    assert re.search(
        r"\n\+\d+d \d\d:\d\d +3@50 \(awaiting_approval\) +3@100 \(applying\) \[production\] +promote +all gates passed; approved by alice@example.com",
        result.output,
    )
    assert "tick 1m" in lines[0]
    assert (
        lines[-1].startswith("ended at +15d")
        and "step 4, completed, ENFORCEMENT_PERCENT=100" in lines[-1]
    )


def test_simulate_json_shows_the_rollback_from_50_to_25() -> None:
    result = runner.invoke(app, ["simulate", "--scenario", "degrade-at-50", "--output", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["final_step"] == "3@25"
    assert document["final_status"] == "soaking"
    rollbacks = [t for t in document["transitions"] if t["trigger"] == "rollback"]
    assert len(rollbacks) == 1
    assert (rollbacks[0]["from"], rollbacks[0]["to"]) == ("3@50", "3@25")
    assert set(rollbacks[0]) >= {"at_seconds", "from", "to", "trigger", "reason"}
    assert 220 * 3600 < rollbacks[0]["at_seconds"] < 221 * 3600


def test_simulate_writes_a_png_plot(tmp_path: Path) -> None:
    target = tmp_path / "timeline.png"
    result = runner.invoke(app, ["simulate", "--scenario", "degrade-at-50", "--plot", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_size > 20_000


def test_plan_show_lists_every_step_with_its_flags() -> None:
    result = runner.invoke(app, ["plan", "show"])
    assert result.exit_code == 0
    for step in ["2.1", "2.4", "2.5", "2.7", "3@10", "3@25", "3@50", "3@100", "4"]:
        assert f"\nstep {step}  (" in result.output
    assert "ENFORCEMENT_PERCENT=50" in result.output
    assert "canary-error-rate: error_ratio < 0.001 for 30m" in result.output


def test_plan_show_yaml_round_trips_to_the_same_hash(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "show", "-o", "yaml"])
    assert result.exit_code == 0
    copy = tmp_path / "copy.yaml"
    copy.write_text(result.output, encoding="utf-8")
    validated = runner.invoke(app, ["plan", "validate", str(copy)])
    assert validated.exit_code == 0, validated.output
    expected_hash = result.output.splitlines()[0].removeprefix("# plan hash ")
    assert expected_hash in validated.output


def test_plan_graph_mermaid_and_dot_carry_the_promote_and_rollback_edges() -> None:
    mermaid = runner.invoke(app, ["plan", "graph", "--format", "mermaid"]).output
    assert mermaid.startswith("stateDiagram-v2")
    assert "s4 --> s5: promote (approval)" in mermaid  # 3@10 → 3@25
    assert "s6 --> s5: rollback" in mermaid  # 3@50 → 3@25
    assert "s1 --> s0: rollback (by command)" in mermaid  # 2.4 pauses on degradation
    dot = runner.invoke(app, ["plan", "graph", "-f", "dot"]).output
    assert dot.startswith('digraph "stage-validation-v3"')
    assert '"3@50" -> "3@25" [label="rollback", style=dashed];' in dot


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["plan", "--help"],
        ["plan", "show", "--help"],
        ["plan", "validate", "--help"],
        ["plan", "graph", "--help"],
        ["simulate", "--help"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0
        assert "Usage:" in result.output


def test_the_console_script_runs_as_kubectl_plugin_too() -> None:
    code = "from controller.cli.main import run; import sys; sys.argv = ['kubectl-stage', 'plan', 'validate', 'stage-validation-v3']; run()"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert "valid plan stage-validation-v3" in completed.stdout


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (
        0,
        f"stagectl {version('stage-rollout-controller')}\n",
    )


STAGECTL = str(Path(sys.executable).parent / "stagectl")  # the console script, named as installed


def test_shell_completion_completes_commands_and_options() -> None:
    import os

    script = subprocess.run(
        [STAGECTL, "--show-completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "_STAGECTL_COMPLETE=complete_bash" in script
    env = {
        **os.environ,
        "_STAGECTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "stagectl status --wa",
        "COMP_CWORD": "2",
    }
    completed = subprocess.run(
        [STAGECTL],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    assert {"--watch", "--wait-for"} <= set(completed)
