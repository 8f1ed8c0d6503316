"""Simulation with one world per environment: staging's timelines are not production's.

The runbook's 2.1 runs in staging ("Compute baseline from staging metrics"), the later
phases in production. A scenario gives an environment its own timelines under
`environments`; whatever it leaves out reads the scenario's own, so a scenario with
one timeline per signal runs as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.catalog import load_plan
from controller.driving import World, drive
from controller.sim.environment_targets import InMemoryEnvironments, in_memory_target
from controller.sim.scenario import parse_scenario
from controller.sim.scripted_metrics import ScriptedMetrics
from controller.sim.scripted_world import ScriptedJobs, ScriptedPeople
from controller.sim.simulation import SimulationResult, simulate
from phases.documents import DocumentError

REPO = Path(__file__).resolve().parents[2]
PLAN = load_plan("stage-validation-v3")
HAPPY = yaml.safe_load(
    (
        __import__("pathlib").Path(__file__).resolve().parents[2]
        / "controller/sim/scenarios/happy-path.yaml"
    ).read_text()
)


def scenario(environments: dict[str, Any] | None = None, **changes: Any) -> str:
    document = {key: value for key, value in {**HAPPY, **changes}.items() if key != "forecast"}
    if environments is not None:
        document["environments"] = environments
    return yaml.safe_dump(document)


def run(text: str) -> SimulationResult:
    parsed = parse_scenario(
        text, source="test", known_signals=set(PLAN.signals), known_environments=PLAN.environments
    )
    return simulate(PLAN, parsed)


def test_an_old_scenario_with_one_timeline_per_signal_still_completes() -> None:
    result = run(scenario())
    assert (result.final.step, result.final.state.value) == ("4", "completed")
    entered = {t.to_step: t.environment for t in result.transitions if t.from_step != t.to_step}
    assert entered["2.4"] == "production" and entered["4"] == "production"


def test_staging_errors_hold_the_baseline_bootstrap_while_production_is_healthy() -> None:
    """2.1's "Baseline error rate <1%" is judged on staging's metrics only."""
    text = scenario({"staging": {"signals": {"error_ratio": [{"at": "0s", "value": 0.02}]}}})
    result = run(text)
    assert result.final.step == "2.1"
    assert not any(t.to_step == "2.4" for t in result.transitions)


def test_production_errors_stop_production_after_a_clean_staging_phase() -> None:
    """Staging is clean, so 2.1 promotes; production's errors over 5 % then trip the
    trigger of 2.4, which the bundled plan answers with a pause."""
    text = scenario({"production": {"signals": {"error_ratio": [{"at": "0s", "value": 0.08}]}}})
    result = run(text)
    promoted = next(t for t in result.transitions if t.trigger == "promote")
    assert (promoted.from_step, promoted.to_step, promoted.environment) == (
        "2.1",
        "2.4",
        "production",
    )
    stopped = result.transitions[-1]
    assert (stopped.to_step, stopped.to_state.value) == ("2.4", "paused")
    assert "error-rate-above-5pct" in stopped.reason and "least 0.08" in stopped.reason


def test_the_same_errors_at_the_top_level_never_let_2_1_promote() -> None:
    """The control for the test above: without `environments`, staging reads 8 % too."""
    signals = {**HAPPY["signals"], "error_ratio": [{"at": "0s", "value": 0.08}]}
    result = run(scenario(signals=signals))
    assert not any(t.trigger == "promote" for t in result.transitions)


def test_an_environment_the_plan_lacks_is_a_problem_naming_it() -> None:
    with pytest.raises(DocumentError) as caught:
        run(scenario({"qa": {"signals": {"error_ratio": [{"at": "0s", "value": 0.0}]}}}))
    assert "environments.qa" in str(caught.value)
    assert "no environment 'qa'" in str(caught.value)


def test_an_environment_timeline_is_checked_like_the_scenario_s_own() -> None:
    backwards = [{"at": "1h", "value": 0.0}, {"at": "30m", "value": 0.1}]
    with pytest.raises(
        DocumentError, match=r"environments\.staging\.signals\.error_ratio\[1\]\.at"
    ):
        run(scenario({"staging": {"signals": {"error_ratio": backwards}}}))


def drive_happy(commands: list[dict[str, Any]]) -> InMemoryEnvironments:
    """The happy path with scripted commands, driven tick by tick; its targets."""
    parsed = parse_scenario(scenario(commands=commands), source="test")
    target = in_memory_target(PLAN, parsed.target.rollout_delay)
    assert isinstance(target, InMemoryEnvironments)
    people = ScriptedPeople(parsed, PLAN.content_hash)
    world = World(
        rollout_uid=parsed.rollout_uid,
        metrics=ScriptedMetrics(parsed, PLAN.evaluation.resolution),
        target=target,
        people=people,
        jobs=ScriptedJobs(parsed.jobs),
        watchers=(people,),
    )
    drive(PLAN, world, start=parsed.start, end=parsed.start + parsed.duration, tick=parsed.tick)
    return target


WARN = {
    "STAGE_VALIDATION_MODE": "warn",
    "ENFORCE_WRITE_ONLY": "false",
    "ENFORCEMENT_PERCENT": "0",
    "STAGE_VALIDATION_DRY_RUN": "false",
    "STAGE_VALIDATION_ENDPOINT_MODES": "{}",
}


def test_each_environment_has_its_own_simulated_target() -> None:
    """Staging keeps 2.1's flags; production ends at 4's."""
    targets = drive_happy([]).targets
    assert targets["staging"].flags == WARN
    assert targets["production"].flags["ENFORCEMENT_PERCENT"] == "100"
    assert targets["staging"].restarts == 1


def test_a_rollback_from_production_into_2_1_restores_production_too() -> None:
    """ "Scenario 3: Full Rollback to Warn": production goes back to 2.1's flags."""
    rollback = {"at": "40h", "kind": "rollback", "to": "2.1", "by": "bob", "reason": "undo"}
    pause = {"at": "41h", "kind": "pause", "by": "bob", "reason": "hold at 2.1"}
    targets = drive_happy([rollback, pause]).targets
    assert targets["production"].flags == WARN
    assert targets["staging"].flags == WARN
