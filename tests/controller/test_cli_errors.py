"""`stagectl` on bad input: exit status 2, one message on stderr, nothing on stdout."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.catalog import bundled_plans, bundled_scenarios, load_plan
from controller.cli.main import app

PLAN_TEXT = resources.files("phases").joinpath("plans", "stage-validation-v3.yaml").read_text()
SCENARIO_TEXT = (
    resources.files("controller.sim").joinpath("scenarios", "happy-path.yaml").read_text()
)
RUN_STAGECTL = "from controller.cli.main import run; run()"

# One plan mistake and one scenario mistake, with the lines they are on.
BAD_PERCENT = '{id: "3@25", flags: {ENFORCEMENT_PERCENT: 150}}'
BAD_PLAN = PLAN_TEXT.replace('{id: "3@25", flags: {ENFORCEMENT_PERCENT: 25}}', BAD_PERCENT)
BAD_PLAN_LINE = BAD_PLAN.splitlines().index(f"      - {BAD_PERCENT}") + 1
BAD_PLAN_PROBLEM = (
    f"  phases[4].steps[1].flags.ENFORCEMENT_PERCENT, line {BAD_PLAN_LINE}: "
    "ENFORCEMENT_PERCENT must be from 0 to 100, not 150"
)
BAD_SCENARIO = SCENARIO_TEXT.replace("tick: 1m\n", "tick: 0s\n")
BAD_SCENARIO_LINE = BAD_SCENARIO.splitlines().index("tick: 0s") + 1
BAD_SCENARIO_PROBLEM = f"  tick, line {BAD_SCENARIO_LINE}: tick must be longer than 0s"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding bad.yaml (the bad plan) and bad-scenario.yaml."""
    (tmp_path / "bad.yaml").write_text(BAD_PLAN, encoding="utf-8")
    (tmp_path / "bad-scenario.yaml").write_text(BAD_SCENARIO, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def stagectl(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_one_message(stderr: str, first_line: str, *lines: str) -> None:
    """stderr holds exactly one `stagectl:` message, starting and continuing as given."""
    assert stderr.count("stagectl:") == 1, stderr
    assert stderr.splitlines()[0] == f"stagectl: {first_line}", stderr
    assert stderr.splitlines()[1:] == list(lines), stderr


def test_plan_validate_bad_plan(workdir: Path) -> None:
    status, stdout, stderr = stagectl("plan", "validate", "bad.yaml")
    assert (status, stdout) == (2, "")
    assert_one_message(stderr, "bad.yaml: invalid plan (1 problem)", BAD_PLAN_PROBLEM)


def test_plan_show_bad_plan(workdir: Path) -> None:
    status, stdout, stderr = stagectl("plan", "show", "bad.yaml")
    assert (status, stdout) == (2, "")
    assert_one_message(stderr, "bad.yaml: invalid plan (1 problem)", BAD_PLAN_PROBLEM)


def test_plan_validate_yaml_syntax_error(workdir: Path) -> None:
    text = PLAN_TEXT.replace("    name: Index creation\n", "    name: Index creation: again\n")
    (workdir / "syntax.yaml").write_text(text, encoding="utf-8")
    line = text.splitlines().index("    name: Index creation: again") + 1
    status, stdout, stderr = stagectl("plan", "validate", "syntax.yaml")
    assert (status, stdout) == (2, "")
    assert_one_message(
        stderr,
        "syntax.yaml: invalid plan (1 problem)",
        f"  (document), line {line}: YAML syntax: mapping values are not allowed here",
    )


def test_simulate_bad_plan(workdir: Path) -> None:
    status, stdout, stderr = stagectl("simulate", "--plan", "bad.yaml")
    assert (status, stdout) == (2, "")
    assert_one_message(stderr, "bad.yaml: invalid plan (1 problem)", BAD_PLAN_PROBLEM)


def test_simulate_bad_scenario(workdir: Path) -> None:
    status, stdout, stderr = stagectl("simulate", "--scenario", "bad-scenario.yaml")
    assert (status, stdout) == (2, "")
    assert_one_message(
        stderr, "bad-scenario.yaml: invalid scenario (1 problem)", BAD_SCENARIO_PROBLEM
    )


def test_unknown_plan_name_lists_the_bundled_plans(workdir: Path) -> None:
    status, stdout, stderr = stagectl("plan", "validate", "stage-validation-v9")
    assert (status, stdout) == (2, "")
    assert bundled_plans() == ["cache-backend-migration", "stage-validation-v3"]
    assert_one_message(
        stderr,
        "no plan called 'stage-validation-v9': not a file, and the bundled plans are "
        "cache-backend-migration, stage-validation-v3",
    )


def test_unknown_scenario_name_lists_the_bundled_scenarios(workdir: Path) -> None:
    status, stdout, stderr = stagectl("simulate", "--scenario", "sad-path")
    assert (status, stdout) == (2, "")
    names = bundled_scenarios()
    assert {"happy-path", "degrade-at-50", "prometheus-outage"} <= set(names)
    assert_one_message(
        stderr,
        "no scenario called 'sad-path': not a file, and the bundled scenarios are "
        + ", ".join(names),
    )


def test_missing_plan_file(workdir: Path) -> None:
    status, stdout, stderr = stagectl("plan", "validate", "missing.yaml")
    assert (status, stdout) == (2, "")
    assert_one_message(stderr, "plan file missing.yaml does not exist")


def test_missing_scenario_file(workdir: Path) -> None:
    status, stdout, stderr = stagectl("simulate", "--scenario", "missing.yaml")
    assert (status, stdout) == (2, "")
    assert_one_message(stderr, "scenario file missing.yaml does not exist")


def test_bad_output_value(workdir: Path) -> None:
    status, stdout, stderr = stagectl("simulate", "--output", "xml")
    assert (status, stdout) == (2, "")
    # Click's usage error, drawn in a box by rich when it is installed: compare the words.
    words = " ".join(re.sub(r"[│╭╮╰╯─]", " ", stderr).split())
    assert words.count("Error") == 1, stderr
    assert words.startswith("Usage: stagectl simulate [OPTIONS]"), stderr
    assert re.search(
        r"Invalid value for '--output' / '-o':.* 'xml' is not one of 'table', 'json'", words
    ), stderr


def test_bad_plot_extension(workdir: Path) -> None:
    status, stdout, stderr = stagectl("simulate", "--plot", "run.svg")
    assert (status, stdout) == (2, "")
    assert_one_message(
        stderr, "--plot run.svg: the plot is written as PNG; give a file name ending in .png"
    )
    assert not (workdir / "run.svg").exists()


def _scenario_with_unknown_signal(workdir: Path) -> None:
    text = SCENARIO_TEXT.replace("signals:\n", "signals:\n  latency_ms: [{at: 0s, value: 3}]\n", 1)
    (workdir / "extra-signal.yaml").write_text(text, encoding="utf-8")


def test_scenario_scripting_a_signal_the_plan_lacks_names_file_path_and_line(workdir: Path) -> None:
    _scenario_with_unknown_signal(workdir)
    status, stdout, stderr = stagectl("simulate", "--scenario", "extra-signal.yaml")
    assert (status, stdout) == (2, "")
    assert stderr.count("stagectl:") == 1, stderr
    assert stderr.startswith("stagectl: extra-signal.yaml: invalid scenario (1 problem)\n")
    assert "  signals.latency_ms, line 8: the plan defines no signal 'latency_ms'" in stderr
    assert f"(its signals: {', '.join(sorted(load_plan().signals))})" in stderr


def test_plan_validate_bundled_plan_prints_its_hash(workdir: Path) -> None:
    status, stdout, stderr = stagectl("plan", "validate", "stage-validation-v3")
    assert (status, stderr) == (0, "")
    plan = load_plan("stage-validation-v3")
    assert re.fullmatch(r"[0-9a-f]{64}", plan.content_hash)
    assert stdout == (
        f"stage-validation-v3: valid plan stage-validation-v3 v3.0, 9 steps, "
        f"hash {plan.content_hash}\n"
    )


# --- through a real process: the exit status and streams the shell sees ---


def run_stagectl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_STAGECTL, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_process_plan_validate_bad_plan(workdir: Path) -> None:
    done = run_stagectl(workdir, "plan", "validate", "bad.yaml")
    assert (done.returncode, done.stdout) == (2, "")
    assert_one_message(done.stderr, "bad.yaml: invalid plan (1 problem)", BAD_PLAN_PROBLEM)


def test_process_simulate_unknown_scenario(workdir: Path) -> None:
    done = run_stagectl(workdir, "simulate", "--scenario", "sad-path")
    assert (done.returncode, done.stdout) == (2, "")
    assert_one_message(
        done.stderr,
        "no scenario called 'sad-path': not a file, and the bundled scenarios are "
        + ", ".join(bundled_scenarios()),
    )


def test_process_simulate_bad_scenario(workdir: Path) -> None:
    done = run_stagectl(workdir, "simulate", "-s", "bad-scenario.yaml")
    assert (done.returncode, done.stdout) == (2, "")
    assert_one_message(
        done.stderr, "bad-scenario.yaml: invalid scenario (1 problem)", BAD_SCENARIO_PROBLEM
    )


def test_process_plan_validate_bundled_plan(workdir: Path) -> None:
    done = run_stagectl(workdir, "plan", "validate", "stage-validation-v3")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.rstrip("\n").endswith(f"hash {load_plan().content_hash}")
