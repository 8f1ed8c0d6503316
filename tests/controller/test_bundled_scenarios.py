"""Each bundled scenario ends the way its description says, for the reasons it says."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import pytest

from controller.catalog import DEFAULT_PLAN, bundled_scenarios, load_plan, load_scenario
from controller.sim.scenario import parse_scenario
from controller.sim.simulation import SimulationResult, simulate
from phases.status import StepState
from tests.support import REPO_ROOT

PLAN = load_plan()


def run(name: str) -> SimulationResult:
    return simulate(PLAN, load_scenario(name))


def hours(result: SimulationResult, seconds: float) -> float:
    return seconds / 3600


def moves(result: SimulationResult) -> list[tuple[str, str, str]]:
    return [
        (t.from_step, t.to_step, t.trigger)
        for t in result.transitions
        if t.trigger in ("promote", "rollback", "complete", "stall")
    ]


@pytest.mark.parametrize("name", bundled_scenarios())
def test_every_bundled_scenario_meets_its_documented_expectation(name: str) -> None:
    scenario = load_scenario(name)
    result = simulate(load_plan(scenario.plan or DEFAULT_PLAN), scenario)
    assert scenario.expect, f"{name} documents no expected outcome"
    assert result.final.step == scenario.expect["final_step"]
    assert result.final.state.value == scenario.expect["final_status"]


def test_happy_path_walks_every_step_in_order_and_completes() -> None:
    result = run("happy-path")
    steps = ["2.1", "2.4", "2.5", "2.7", "3@10", "3@25", "3@50", "3@100", "4"]
    promotions = [(a, b) for a, b, trigger in moves(result) if trigger == "promote"]
    assert promotions == list(pairwise(steps))
    assert moves(result)[-1] == ("4", "4", "complete")
    assert [p for _, p in result.percent_changes] == [0, 10, 25, 50, 100]
    # 2.1 runs in staging (one restart there); production restarts for each of its
    # seven distinct flag sets from 2.4 on (3@100→4 clears the endpoint overrides).
    assert result.restarts == 9
    assert sorted(result.jobs_created) == [
        ("create-indexes", 1),
        ("migrate-stages", 1),
        ("verify-migration", 1),
    ]
    values = {signal: record.value for signal, record in result.final.baselines.items()}
    assert values == {
        "error_ratio": pytest.approx(0.0004),
        "p99_latency_seconds": pytest.approx(0.0006),
    }


def test_each_percentage_increase_was_approved_and_soaked_48h() -> None:
    result = run("happy-path")
    entered: dict[str, float] = {}
    for t in result.transitions:
        if t.trigger == "verified":
            entered.setdefault(t.to_step, t.at.timestamp())
        if t.trigger == "promote" and t.to_step.startswith("3@"):
            assert t.approvals, f"{t.from_step}→{t.to_step} promoted without an approval"
        if t.trigger == "promote" and t.from_step.startswith("3@"):
            assert t.at.timestamp() - entered[t.from_step] >= timedelta(hours=48).total_seconds()


def test_degrade_at_50_rolls_back_to_25_and_then_holds() -> None:
    result = run("degrade-at-50")
    rollbacks = [t for t in result.transitions if t.trigger == "rollback"]
    assert [(t.from_step, t.to_step) for t in rollbacks] == [("3@50", "3@25")]
    assert "canary-error-rate-degraded" in rollbacks[0].reason
    after = [t for t in result.transitions if t.at > rollbacks[0].at and t.trigger == "promote"]
    assert after == []
    assert result.final.hold_for_approval
    assert result.final_percent == 25
    assert rollbacks[0].at - result.start < timedelta(hours=220, minutes=10)


def test_shadow_blast_radius_never_leaves_2_7_and_stalls_after_72h() -> None:
    result = run("shadow-blast-radius")
    assert all(t.from_step != "2.7" or t.to_step == "2.7" for t in result.transitions)
    stall = [t for t in result.transitions if t.trigger == "stall"]
    assert len(stall) == 1 and "blast-radius: fail" in stall[0].reason
    entered_2_7 = next(
        t.at for t in result.transitions if t.to_step == "2.7" and t.trigger == "promote"
    )
    assert stall[0].at - entered_2_7 > timedelta(hours=72)
    assert result.final_percent == 0


def test_prometheus_outage_neither_promotes_nor_rolls_back_while_blind() -> None:
    scenario = load_scenario("prometheus-outage")
    result = simulate(PLAN, scenario)
    outage = scenario.outages[0]
    blind_from, blind_to = scenario.start + outage.start, scenario.start + outage.end
    during = [t for t in result.transitions if blind_from <= t.at < blind_to]
    assert during == []
    assert "rollback" not in [t.trigger for t in result.transitions]
    left_2_7 = next(
        t for t in result.transitions if t.from_step == "2.7" and t.trigger == "promote"
    )
    # the blast-radius gate needs 48 gap-free hours after the outage
    assert left_2_7.at >= blind_to + timedelta(hours=48)
    assert result.final.state is StepState.COMPLETED


def test_approval_withheld_waits_at_25_without_raising_the_percentage() -> None:
    result = run("approval-withheld")
    assert max(p for _, p in result.percent_changes) == 25
    assert result.final.state is StepState.AWAITING_APPROVAL
    assert "waiting for approval to leave 3@25" in result.transitions[-1].reason


def test_a_long_spike_walks_the_same_steps_whatever_the_tick() -> None:
    """Runbook: "rollback to previous percentage". Errors at 8 % for two hours after 3@50
    that do not react to the rollbacks (as in a replayed past): every further rollback
    needs fresh evidence at the restored step, so the steps walked and the final step do
    not depend on how often the rollout is looked at."""
    source = (REPO_ROOT / "controller" / "sim" / "scenarios" / "degrade-at-50.yaml").read_text(
        encoding="utf-8"
    )
    spiked = source.replace("{at: 220h, value: 0.02}", "{at: 221h, value: 0.08}").replace(
        "{at: 220h15m, value: 0.0004}", "{at: 223h, value: 0.0004}"
    )
    walks = {}
    for tick in ("1m", "5m"):
        scenario = parse_scenario(spiked.replace("tick: 1m", f"tick: {tick}"), source="spike.yaml")
        result = simulate(PLAN, scenario)
        rollbacks = [t for t in result.transitions if t.trigger == "rollback"]
        walks[tick] = ([(t.from_step, t.to_step) for t in rollbacks], result.final.step)
        for rollback in rollbacks[1:]:
            restored = max(
                t.at
                for t in result.transitions
                if t.trigger == "verified"
                and t.to_step == rollback.from_step
                and t.at < rollback.at
            )
            # 5m of samples over a 5m rate: 10 minutes of evidence, all at the restored step.
            assert rollback.at - restored >= timedelta(minutes=10), (tick, rollback)
    assert walks["1m"] == walks["5m"]
    assert walks["1m"][0][0] == ("3@50", "3@25")
