"""Baselines are records (captured, pinned, carried) that feed the adaptive gates.

Runbook, phase 2.1: "Compute baseline from staging metrics" and "Export baselines
for production alert thresholds"; its exit gate is "Baseline established and
exported".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from controller.catalog import load_plan, load_scenario, read_plan
from controller.sim.simulation import simulate
from phases.baselines import (
    MIGRATED_REASON,
    BaselineRecord,
    ExportRefused,
    check_export,
    export_document,
    parse_export,
    read_export,
)
from phases.decide import decide
from phases.documents import DocumentError
from phases.needs import AlertReading, judge, needs_of
from phases.observations import Observations, TargetState
from phases.plan import Plan
from phases.plan_checks import parse_plan
from phases.status import RolloutStatus, StepState
from phases.steps import steps_of
from phases.verdicts import Outcome, WindowSummary

PLAN = load_plan()
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
GATE = "no-latency-impact"  # 2.4: p99 < max(0.005, baseline p99 × 2)


def production_plan(baselines: dict[str, Any] | None) -> Plan:
    """The bundled plan without 2.1's capture: production work on baselines given to it."""
    data = yaml.safe_load(read_plan("stage-validation-v3")[0])
    del data["phases"][0]["baseline"]
    if baselines is not None:
        data["baselines"] = baselines
    return parse_plan(yaml.safe_dump(data), source="production-only")


def at_2_4(plan: Plan, baselines: dict[str, Any] | None = None) -> RolloutStatus:
    return RolloutStatus.model_validate(
        {
            "planHash": plan.content_hash,
            "step": "2.4",
            "state": "soaking",
            "stepEnteredAt": (NOW - timedelta(hours=3)).isoformat(),
            "flagsAppliedAt": (NOW - timedelta(hours=3)).isoformat(),
            "inEffectAt": (NOW - timedelta(hours=3)).isoformat(),
            "deadlineFrom": (NOW - timedelta(hours=3)).isoformat(),
            "baselines": baselines or {},
        }
    )


def latency_gate(plan: Plan, status: RolloutStatus, p99: float) -> tuple[Outcome, str]:
    """The 2.4 adaptive latency gate's verdict with p99 at `p99` over its whole window."""
    needs = needs_of(plan, status, NOW)
    summaries = {
        (c.query, c.window): WindowSummary.of_values(c.query, c.window, [p99] * 31, timedelta(0))
        for c in needs.windows
    }
    gates, _ = judge(plan, status, needs, summaries, AlertReading(frozenset()))
    return gates[GATE].outcome, gates[GATE].reason


def seen(plan: Plan, carried: tuple[BaselineRecord, ...] | None = None) -> Observations:
    """A tick at 2.4 with its flags in effect, and the carried baselines read (or not)."""
    target = TargetState(flags_hash=steps_of(plan).get("2.4").flags_hash, rolled_out=True)
    return Observations("uid", target, carried_baselines=carried)


def carried_export(plan: Plan, **changes: Any) -> dict[str, Any]:
    """An export document of one p99 baseline of 0.004, as a staging rollout prints it."""
    record = {
        "signal": "p99_latency_seconds",
        "value": 0.004,
        "environment": "staging",
        "step": "2.1",
        "windowFrom": "2026-11-28T00:00:00Z",
        "windowTo": "2026-11-29T00:00:00Z",
        "query": plan.signals["p99_latency_seconds"].query,
        "planHash": plan.content_hash,
        "capturedAt": "2026-11-29T00:00:00Z",
        **changes,
    }
    return {
        "apiVersion": "stage.example.com/v1",
        "kind": "BaselineExport",
        "rollout": "checkout-staging",
        "namespace": "shop",
        "plan": {"name": plan.name, "version": plan.version, "hash": plan.content_hash},
        "exportedAt": "2026-11-29T01:00:00Z",
        "baselines": [record],
    }


# capture --------------------------------------------------------------------------------


def test_a_simulated_2_1_captures_records_of_staging_with_window_query_and_plan() -> None:
    result = simulate(PLAN, load_scenario("happy-path"))
    recorded = {record.signal: record for record in result.recorded}
    assert sorted(recorded) == ["error_ratio", "p99_latency_seconds"]
    left_2_1 = next(t.at for t in result.transitions if t.from_step == "2.1" and t.to_step == "2.4")
    for signal, record in recorded.items():
        assert record.source == "captured"
        assert record.environment == "staging" and record.step == "2.1"
        assert record.query == PLAN.signals[signal].query
        assert record.plan_hash == PLAN.content_hash
        assert record.window_from is not None and record.window_to is not None
        assert record.window_to - record.window_from >= timedelta(hours=24)
        assert record.window_to == record.captured_at == left_2_1
    assert result.final.baselines == recorded
    assert recorded["error_ratio"].value == pytest.approx(0.0004)


def test_a_status_written_with_bare_numbers_still_reads_as_records() -> None:
    old = at_2_4(PLAN, {"error_ratio": 0.003, "p99_latency_seconds": 2e-3})
    record = old.baselines["p99_latency_seconds"]
    assert record.value == 0.002 and record.signal == "p99_latency_seconds"
    assert record.source == "captured" and record.reason == MIGRATED_REASON
    assert record.window_from is None and record.query == ""
    again = RolloutStatus.model_validate_json(old.model_dump_json(by_alias=True))
    assert again.baselines == old.baselines
    assert latency_gate(PLAN, old, 0.0045)[0] is Outcome.PASS


def test_a_status_baseline_that_is_not_a_finite_number_is_refused() -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        at_2_4(PLAN, {"error_ratio": float("inf")})


# the adaptive gates ----------------------------------------------------------------------


def test_an_adaptive_gate_without_a_baseline_is_unknown_not_judged_on_its_minimum() -> None:
    plan = production_plan({"p99_latency_seconds": {"carried": True, "reason": "from staging"}})
    # 0.001 is well under the minimum 0.005: the minimum alone would pass the gate.
    outcome, reason = latency_gate(plan, at_2_4(plan), 0.001)
    assert outcome is Outcome.UNKNOWN
    assert "no baseline of p99_latency_seconds" in reason


def test_a_pinned_baseline_counts_as_captured_and_overrides_a_capture() -> None:
    plan = production_plan({"p99_latency_seconds": {"value": 0.004, "reason": "staging, Nov"}})
    status = at_2_4(plan)
    # threshold max(0.005, 0.004 × 2) = 0.008: 0.006 passes only on the pinned baseline.
    assert latency_gate(plan, status, 0.006) == (
        Outcome.PASS,
        "p99_latency_seconds < 0.008 = max(0.005, baseline 0.004 × 2) held for 30m (worst 0.006)",
    )
    assert latency_gate(plan, status, 0.009)[0] is Outcome.FAIL
    captured = at_2_4(plan, {"p99_latency_seconds": 0.0001})
    assert latency_gate(plan, captured, 0.006)[0] is Outcome.PASS
    settled = decide(plan, captured, seen(plan), NOW).status
    pinned = settled.baselines["p99_latency_seconds"]
    assert (pinned.source, pinned.value, pinned.reason) == ("pinned", 0.004, "staging, Nov")


def test_a_plan_neither_capturing_pinning_nor_carrying_a_baseline_is_refused() -> None:
    with pytest.raises(DocumentError, match="pin or carry it in the plan's baselines"):
        production_plan(None)
    with pytest.raises(DocumentError, match=r"either value \(pinned\) or carried: true"):
        production_plan({"p99_latency_seconds": {"value": 0.004, "carried": True, "reason": "x"}})
    with pytest.raises(DocumentError, match="finite"):
        production_plan({"p99_latency_seconds": {"value": float("inf"), "reason": "x"}})
    with pytest.raises(DocumentError, match="unknown signal 'p999'"):
        production_plan(
            {
                "p99_latency_seconds": {"value": 0.004, "reason": "x"},
                "p999": {"value": 0.004, "reason": "x"},
            }
        )


def test_a_carried_baseline_drives_the_adaptive_gate_and_a_capture_replaces_it() -> None:
    plan = production_plan({"p99_latency_seconds": {"carried": True, "reason": "from staging"}})
    records, warnings = check_export(plan, read_export(carried_export(plan), source="spec"))
    assert warnings == []
    status = decide(plan, at_2_4(plan), seen(plan, tuple(records)), NOW).status
    record = status.baselines["p99_latency_seconds"]
    assert (record.source, record.carried_from, record.environment) == (
        "carried",
        "checkout-staging",
        "staging",
    )
    assert latency_gate(plan, status, 0.006)[0] is Outcome.PASS
    # Not read this tick (None): the carried baseline stays; an empty reading drops it.
    kept = decide(plan, status, seen(plan), NOW).status
    assert kept.baselines == status.baselines
    gone = decide(plan, status, seen(plan, ()), NOW)
    assert gone.status.baselines == {}
    assert latency_gate(plan, gone.status, 0.001)[0] is Outcome.UNKNOWN


# hostile export documents ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"value": float("nan")}, "value: Value error, nan is not a finite number"),
        ({"value": "1e400"}, "value: Value error, inf is not a finite number"),
        ({"value": True}, "value: Value error, expected a number, not true/false"),
        ({"signal": "p999"}, "baselines[0] ('p999'): not a signal of plan"),
        ({"query": "vector(0)"}, "measured by query 'vector(0)', but plan"),
        ({"planHash": "../../etc"}, "baselines.0.planHash: String should match pattern"),
        ({"windowTo": "2026-11-27T00:00:00Z"}, "window ends (2026-11-27T00:00:00+00:00) before"),
        ({"shell": "rm -rf"}, "baselines.0.shell: Extra inputs are not permitted"),
    ],
)
def test_a_hostile_export_document_is_refused_with_one_clear_line(
    changes: dict[str, Any], message: str
) -> None:
    plan = production_plan({"p99_latency_seconds": {"carried": True, "reason": "from staging"}})
    with pytest.raises(ExportRefused) as refused:
        check_export(plan, read_export(carried_export(plan, **changes), source="spec"))
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_an_export_giving_a_signal_twice_or_too_many_records_is_refused() -> None:
    plan = PLAN
    twice = carried_export(plan)
    twice["baselines"] *= 2
    with pytest.raises(ExportRefused, match=r"baselines\[1\] .*signal given twice"):
        check_export(plan, read_export(twice, source="spec"))
    many = carried_export(plan)
    many["baselines"] *= 65
    with pytest.raises(ExportRefused, match="baselines: List should have at most 64 items"):
        read_export(many, source="spec")
    with pytest.raises(ExportRefused, match="kind: Input should be 'BaselineExport'"):
        read_export({**carried_export(plan), "kind": "Secret"}, source="spec")


def test_another_plan_version_is_a_warning_not_a_refusal() -> None:
    plan = production_plan({"p99_latency_seconds": {"carried": True, "reason": "from staging"}})
    exported = carried_export(PLAN)  # exported by a rollout of the bundled plan
    records, warnings = check_export(plan, read_export(exported, source="spec"))
    assert [r.value for r in records] == [0.004]
    assert len(warnings) == 1
    assert f"captured under plan {PLAN.name} {PLAN.version} ({PLAN.short_hash})" in warnings[0]


def test_an_export_round_trips_through_its_printed_text() -> None:
    result = simulate(PLAN, load_scenario("happy-path"))
    document = export_document(PLAN, result.final, rollout="staging", namespace="shop", now=NOW)
    text = json.dumps(document.model_dump(mode="json", by_alias=True))
    again = parse_export(text, source="export.json")
    records, warnings = check_export(PLAN, again)
    assert warnings == []
    assert {r.signal: r.value for r in records} == {
        s: r.value for s, r in result.final.baselines.items()
    }
    assert all(r.source == "carried" and r.carried_from == "staging" for r in records)
    with pytest.raises(DocumentError, match="exportedAt"):
        parse_export(text.replace('"exportedAt"', '"exported"'), source="export.json")


def test_a_record_refuses_a_window_backwards() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        BaselineRecord(
            signal="s",
            value=1,
            window_from=NOW,
            window_to=NOW - timedelta(seconds=1),
        )


def test_a_status_record_with_a_field_from_a_later_version_still_reads() -> None:
    status = at_2_4(PLAN, {"error_ratio": {"signal": "error_ratio", "value": 0.003, "unit": "1"}})
    assert status.baselines["error_ratio"].value == 0.003


def test_carried_records_equal_themselves_read_back_from_a_status() -> None:
    records, _ = check_export(PLAN, read_export(carried_export(PLAN), source="spec"))
    status = at_2_4(PLAN, {r.signal: r.model_dump(mode="json", by_alias=True) for r in records})
    assert list(status.baselines.values()) == records


@pytest.mark.parametrize("measured", [1e300, float("inf"), float("nan")])
def test_a_baseline_average_no_record_can_hold_blocks_leaving_2_1(measured: float) -> None:
    entered = NOW - timedelta(hours=25)  # past 2.1's 24h soak
    status = at_2_4(PLAN).model_copy(
        update={
            "step": "2.1",
            "state": StepState.SOAKING,
            "step_entered_at": entered,
            "flags_applied_at": entered,
            "in_effect_at": entered,
            "deadline_from": entered,
        }
    )
    flags = steps_of(PLAN).get("2.1").flags_hash
    seen = Observations(
        "uid",
        TargetState(flags_hash=flags, rolled_out=True),
        baselines={"error_ratio": measured, "p99_latency_seconds": 0.001},
    )
    decision = decide(PLAN, status, seen, NOW)
    assert decision.status.baselines == {}
    assert f"baseline of error_ratio: measured {measured:g}, not a usable number" in (
        decision.blockers
    )
