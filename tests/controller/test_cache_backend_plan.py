"""The second bundled plan: a cache backend migration, with flags of its own.

Nothing of stage validation is in it (no STAGE_VALIDATION_MODE, no
ENFORCEMENT_PERCENT): its exposure percentage is CACHE_READ_PERCENT, its observed
flag CACHE_BACKEND, and changing CACHE_BACKEND needs a sign-off. These tests run it
through the simulator to completion and into a rollback, and check that the target
only ever holds the plan's own keys.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
from typer.testing import CliRunner

from controller.catalog import load_plan, load_scenario, scenarios_for
from controller.cli.main import app
from controller.sim.scenario import parse_scenario
from controller.sim.simulation import SimulationResult, simulate
from phases.status import RolloutStatus, StepState
from phases.steps import steps_of
from tests.support import REPO_ROOT

PLAN = load_plan("cache-backend-migration")
SCENARIO = REPO_ROOT / "controller" / "sim" / "scenarios" / "cache-cutover.yaml"
STEPS = ["dual-write", "reads@5", "reads@25", "reads@50", "reads@100", "cutover"]


def flag_sets(result: SimulationResult) -> list[dict[str, str]]:
    return [dict(steps_of(PLAN).get(t.to_step).flags) for t in result.transitions]


def test_the_cache_scenario_is_bundled_for_the_cache_plan() -> None:
    assert scenarios_for("cache-backend-migration") == ["cache-cutover"]
    assert "cache-cutover" not in scenarios_for()


def test_the_cache_migration_simulates_to_completion() -> None:
    result = simulate(PLAN, load_scenario("cache-cutover", PLAN))
    promotions = [(t.from_step, t.to_step) for t in result.transitions if t.trigger == "promote"]
    assert promotions == list(pairwise(STEPS))
    assert result.final.step == "cutover"
    assert result.final.state is StepState.COMPLETED
    # The exposure flag is the plan's own: reads moved 0 → 5 → 25 → 50 → 100 %.
    assert [p for _, p in result.percent_changes] == [0, 5, 25, 50, 100]
    assert result.final_percent == 100
    assert result.final.approved_percent == 100
    # The cutover changed CACHE_BACKEND, which the plan marks approval_to_change.
    assert result.final.approved_flags == {"CACHE_BACKEND": "redis-cluster"}
    # The baseline of the dual-write day fed the adaptive latency gate.
    assert {name: record.value for name, record in result.final.baselines.items()} == {
        "read_p99_seconds": pytest.approx(0.0012)
    }
    # dual-write→reads@5 also changes the client options: six flag sets, six restarts.
    assert result.restarts == 6


def test_the_target_only_ever_holds_the_plans_own_keys() -> None:
    seen: set[str] = set()
    result = simulate(PLAN, load_scenario("cache-cutover", PLAN))
    for flags in flag_sets(result):
        seen |= set(flags)
    assert seen == set(PLAN.flag_set.names)
    assert not {k for k in seen if k.startswith(("STAGE_", "ENFORCE"))}
    cutover = steps_of(PLAN).get("cutover").flags
    assert cutover["CACHE_BACKEND"] == "redis-cluster"
    assert cutover["CACHE_CLIENT_OPTIONS"] == '{"pool_size":64,"timeout_ms":50}'


def test_errors_after_the_increase_to_25_roll_back_to_5() -> None:
    """Errors on the cluster within 30 minutes of reads@25 taking effect send the reads back."""
    text = SCENARIO.read_text(encoding="utf-8")
    # reads@25 takes effect at about +1d 06:48 (see the completion test's timeline).
    spiked = text.replace(
        "new_backend_error_ratio: [{at: 0s, value: 0.0002}]",
        "new_backend_error_ratio:\n"
        "    - {at: 0s, value: 0.0002}\n"
        "    - {at: 30h55m, value: 0.01}\n"
        "    - {at: 31h20m, value: 0.0002}",
    )
    assert spiked != text
    scenario = parse_scenario(spiked, source="cache-errors.yaml", known_signals=set(PLAN.signals))
    result = simulate(PLAN, scenario)
    rollbacks = [t for t in result.transitions if t.trigger == "rollback"]
    assert [(t.from_step, t.to_step) for t in rollbacks] == [("reads@25", "reads@5")]
    assert "errors-after-increase" in rollbacks[0].reason
    assert [p for _, p in result.percent_changes][:4] == [0, 5, 25, 5]
    # Going back lowers the ceiling; leaving reads@5 again needs a new approval, and
    # the automatic approver gives it: the migration still completes.
    assert result.final.state is StepState.COMPLETED
    assert result.final.rollbacks == 1


def test_rollback_to_warn_sets_every_flag_at_its_safe_value() -> None:
    """`stagectl rollback --to warn` is the plan's safe values, here memcached and 0 %."""
    text = SCENARIO.read_text(encoding="utf-8")
    commanded = text.replace(
        "expect:",
        "commands:\n  - {at: 40h, kind: rollback, to: warn, reason: cluster incident}\nexpect:",
    )
    scenario = parse_scenario(commanded, source="cache-warn.yaml", known_signals=set(PLAN.signals))
    overrides: list[dict[str, str]] = []

    def watch(_now: object, status: RolloutStatus) -> None:
        if status.rollbacks and status.step == "dual-write":
            overrides.append(dict(status.flag_overrides))

    result = simulate(PLAN, scenario, on_tick=watch)
    rollback = next(t for t in result.transitions if t.trigger == "rollback")
    assert rollback.to_step == "dual-write"
    # No step of the plan is all safe values (dual-write writes both), so the first
    # step is restored with the safe values over it.
    assert overrides and overrides[0] == dict(PLAN.flag_set.safe or {})
    assert overrides[0]["CACHE_BACKEND"] == "memcached"
    assert overrides[0]["CACHE_READ_PERCENT"] == "0"


def test_stagectl_simulate_runs_a_scenario_against_the_plan_it_names() -> None:
    result = CliRunner().invoke(app, ["simulate", "--scenario", "cache-cutover"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("simulating plan cache-backend-migration")
    assert "step cutover, completed, CACHE_READ_PERCENT=100" in lines[-1]
    # An explicit --plan still wins, and the scenario's signals are checked against it.
    other = CliRunner().invoke(
        app, ["simulate", "--scenario", "cache-cutover", "--plan", "stage-validation-v3"]
    )
    assert other.exit_code == 2
    assert "the plan defines no signal 'new_backend_error_ratio'" in other.output
