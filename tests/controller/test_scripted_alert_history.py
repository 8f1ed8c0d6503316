"""Simulation honours windowed alert gates and alert triggers as Prometheus's history would.

Runbook, canary gate criteria: "No Active Alerts: ... resolved" for the 30 minutes the
conditions hold; increase criteria: "No alert fires".
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache

import pytest

from controller.catalog import load_plan, load_scenario
from controller.sim.scenario import parse_scenario
from controller.sim.scripted_metrics import ScriptedMetrics
from controller.sim.simulation import SimulationResult, simulate
from phases.documents import DocumentError
from phases.plan_checks import parse_plan
from phases.verdicts import Outcome, judge_alert_window
from tests.support import REPO_ROOT

PLAN = load_plan()
COVERAGE = PLAN.evaluation.alert_coverage
SCENARIO = parse_scenario(
    """
name: t
signals: {}
outages: [{from: 5h, to: 6h}]
alerts:
  - {name: A, from: 1h, to: 2h}
  - {name: A, from: 2h, to: 2h30m}
  - {name: B, from: 3h, to: 3h10m}
""",
    source="t",
)
M = ScriptedMetrics(SCENARIO, timedelta(minutes=1))
T0 = SCENARIO.start
GAP = timedelta(minutes=5)


@cache
def happy_path() -> SimulationResult:
    return simulate(PLAN, load_scenario("happy-path"))


def test_an_alert_resolved_within_the_window_still_fails_the_gate() -> None:
    at = T0 + timedelta(hours=3, minutes=30)
    history = M.alert_history(["A", "B"], COVERAGE, timedelta(minutes=30), at)
    verdict = judge_alert_window("g", ("A", "B"), history, GAP)
    assert verdict.outcome is Outcome.FAIL and "B" in verdict.reason and "A" not in verdict.reason
    later = M.alert_history(["A", "B"], COVERAGE, timedelta(minutes=30), at + timedelta(minutes=11))
    assert judge_alert_window("g", ("A", "B"), later, GAP).outcome is Outcome.PASS


def test_back_to_back_firing_is_one_active_run() -> None:
    at = T0 + timedelta(hours=2, minutes=20)
    history = M.alert_history(["A"], COVERAGE, timedelta(hours=2), at)
    assert history.firing_now == {"A"}
    assert history.active_since["A"] == T0 + timedelta(hours=1)


def test_an_outage_in_the_window_is_a_gap_and_during_it_nothing_is_read() -> None:
    during = M.alert_history(
        ["A"], COVERAGE, timedelta(minutes=30), T0 + timedelta(hours=5, minutes=30)
    )
    assert during.error is not None
    assert judge_alert_window("g", ("A",), during, GAP).outcome is Outcome.UNKNOWN
    after = M.alert_history(
        ["A"], COVERAGE, timedelta(hours=2), T0 + timedelta(hours=6, minutes=30)
    )
    verdict = judge_alert_window("g", ("A",), after, GAP)
    assert verdict.outcome is Outcome.UNKNOWN and "gap of 1h" in verdict.reason


def test_a_windowed_alert_gate_needs_the_plans_alert_coverage() -> None:
    text = (REPO_ROOT / "phases" / "plans" / "stage-validation-v3.yaml").read_text(encoding="utf-8")
    start = text.index("  alert_coverage: >-")
    end = text.index("\nphases:")
    with pytest.raises(DocumentError) as raised:
        parse_plan(text[:start] + text[end:], source="no-coverage.yaml")
    assert "evaluation.alert_coverage" in str(raised.value)
    assert "phases[0].gates[2].window" in str(raised.value)


def test_a_blip_of_an_alert_at_3at10_delays_its_promotion_by_the_no_alert_fires_window() -> None:
    """RedisModeFetchFailing fires for 10 minutes an hour before 3@10 would be ready. "No
    alert fires" (48h, beside the 30m canary condition) holds 3@10 until 48 hours after it
    resolved; then the approval comes as it would have."""
    base = load_scenario("happy-path")
    plain = happy_path()
    left = next(t for t in plain.transitions if t.from_step == "3@10" and t.trigger == "promote")
    ready = next(
        t for t in plain.transitions if t.to_step == "3@10" and t.trigger == "gates_passed"
    )
    fired_from = ready.at - base.start - timedelta(hours=1)
    scenario = parse_scenario(
        (REPO_ROOT / "controller" / "sim" / "scenarios" / "happy-path.yaml")
        .read_text(encoding="utf-8")
        .replace(
            "approvals:",
            f"alerts: [{{name: RedisModeFetchFailing, from: {int(fired_from.total_seconds())}s,"
            f" to: {int((fired_from + timedelta(minutes=10)).total_seconds())}s}}]\napprovals:",
        ),
        source="blip.yaml",
    )
    result = simulate(PLAN, scenario)
    gates = next(
        t for t in result.transitions if t.to_step == "3@10" and t.trigger == "gates_passed"
    )
    resolved = scenario.start + fired_from + timedelta(minutes=10)
    assert gates.at == resolved + timedelta(hours=48)
    assert gates.at > ready.at
    promoted = next(
        t for t in result.transitions if t.from_step == "3@10" and t.trigger == "promote"
    )
    assert promoted.at - gates.at == left.at - ready.at  # the approval's 30 minutes
    assert "rollback" not in {t.trigger for t in result.transitions}
    assert result.final.step == "4"


def test_a_blip_of_an_alert_before_the_first_increase_holds_2_7_for_the_canary_window() -> None:
    """EnforceGateUnknownRateHigh fires for 10 minutes, ending 10 minutes before 2.7 would be
    ready: the canary condition "resolved" over 30 minutes holds 2.7 until 30 minutes after it
    resolved (2.7 watches no other window of that alert)."""
    plain = happy_path()
    ready = next(t for t in plain.transitions if t.to_step == "2.7" and t.trigger == "gates_passed")
    base = load_scenario("happy-path")
    ends = ready.at - base.start - timedelta(minutes=10)
    text = (REPO_ROOT / "controller" / "sim" / "scenarios" / "happy-path.yaml").read_text(
        encoding="utf-8"
    )
    alert = (
        f"alerts: [{{name: EnforceGateUnknownRateHigh, from: {int(ends.total_seconds()) - 600}s,"
        f" to: {int(ends.total_seconds())}s}}]\napprovals:"
    )
    scenario = parse_scenario(text.replace("approvals:", alert), source="blip.yaml")
    result = simulate(PLAN, scenario)
    gates = next(
        t for t in result.transitions if t.to_step == "2.7" and t.trigger == "gates_passed"
    )
    assert gates.at == scenario.start + ends + timedelta(minutes=30)
    assert gates.at - ready.at == timedelta(minutes=20)
