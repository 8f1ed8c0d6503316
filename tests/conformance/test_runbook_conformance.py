"""Runbook conformance: each scenario's outcome is the one the runbook's words imply.

Every scenario in `scenarios/` scripts one criterion, duration, alert or rollback
scenario of the stage-validation v3 runbook and quotes the sentence in its leading
comment. `EXPECTED` below states, per scenario, the outcome that sentence implies:
the steps walked (rollbacks included), how many steps back one degradation costs,
when a step may first be left, by when it must be left or rolled back, the flags the
target is asked for, restarts, the captured baselines. The expectations were written from the runbook before the scenarios were
run; where the runbook is ambiguous, the scenario's comment says what was chosen.
Every scenario runs once, through the same `simulate` engine as `stagectl simulate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import pairwise

import pytest

from tests.conformance.runbook_outcomes import (
    PLAN_STEPS,
    Outcome,
    offset,
    run,
    scenario_comment,
    scenario_names,
)

MODE, WRITE_ONLY, PERCENT, DRY_RUN = (
    "STAGE_VALIDATION_MODE",
    "ENFORCE_WRITE_ONLY",
    "ENFORCEMENT_PERCENT",
    "STAGE_VALIDATION_DRY_RUN",
)
WARN_ONLY = {MODE: "warn", WRITE_ONLY: "false", PERCENT: "0", DRY_RUN: "false"}
"""Runbook scenario 3: "export STAGE_VALIDATION_MODE=warn / ENFORCE_WRITE_ONLY=false / ENFORCEMENT_PERCENT=0"."""

TO_2_1 = ("2.1",)
TO_2_4 = (*TO_2_1, "2.4")
TO_2_5 = (*TO_2_4, "2.5")
TO_2_7 = (*TO_2_5, "2.7")
TO_3_10 = (*TO_2_7, "3@10")
TO_3_25 = (*TO_3_10, "3@25")
TO_3_50 = (*TO_3_25, "3@50")
TO_3_100 = (*TO_3_50, "3@100")
TO_4 = (*TO_3_100, "4")


@dataclass(frozen=True)
class Expect:
    """What the quoted runbook sentence implies for one scenario; unset fields are not checked.

    Offsets are scenario time ("36h", "172h10m"). `not_promoted_before` and
    `promoted_by` bound the first promotion out of a step; `rollback_within` bounds
    the first rollback by the time since the step it left took effect, `rollback_by`
    by scenario time.
    """

    quote: str
    path: tuple[str, ...] | None = None
    final_step: str | None = None
    final_state: str | None = None
    max_percent: int | None = None
    rollbacks: int | None = None
    max_rollbacks: int | None = None
    not_promoted_before: Mapping[str, str] = field(default_factory=dict)
    promoted_by: Mapping[str, str] = field(default_factory=dict)
    dwell: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    rollback_within: str | None = None
    rollback_by: str | None = None
    quiet: tuple[str, str] | None = None
    step_flags: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    flags_from: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    baselines: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    jobs_resumed: Mapping[str, int] = field(default_factory=dict)
    jobs_never_started: tuple[str, ...] = ()
    restarts: int | None = None


def canary(step: str, after: str, quote: str) -> Expect:
    """A canary condition broken across the end of `step`'s soak: a hold, no rollback."""
    return Expect(quote=quote, rollbacks=0, not_promoted_before={step: after})


EXPECTED: dict[str, Expect] = {
    # Quick reference: durations and modes ------------------------------------------------
    "healthy-rollout": Expect(
        quote="| **3** | enforce @ 10%→100% | 7-10 days |",
        path=TO_4,
        final_state="completed",
        max_percent=100,
        rollbacks=0,
        dwell={
            "2.1": ("24h", "48h"),
            "2.4": ("1h", "2h"),
            "2.5": ("2d", "4d"),
            "2.7": ("48h", "72h"),
            "3": ("7d", "10d"),
        },
        step_flags={
            "2.1": WARN_ONLY,
            "2.4": WARN_ONLY,
            "2.5": {MODE: "warn", WRITE_ONLY: "true", PERCENT: "0", DRY_RUN: "false"},
            "2.7": {MODE: "warn", PERCENT: "0", DRY_RUN: "true"},
            "3@10": {MODE: "enforce", PERCENT: "10", DRY_RUN: "false"},
            "3@25": {MODE: "enforce", PERCENT: "25", DRY_RUN: "false"},
            "3@50": {MODE: "enforce", PERCENT: "50", DRY_RUN: "false"},
            "3@100": {MODE: "enforce", PERCENT: "100", DRY_RUN: "false"},
            "4": {MODE: "enforce", PERCENT: "100", DRY_RUN: "false"},
        },
    ),
    # Phase 2.1 ---------------------------------------------------------------------------
    "2.1-baseline-error-high": Expect(
        quote="Baseline error rate <1%",
        path=TO_2_1,
        final_state="stalled",
        max_percent=0,
    ),
    "2.1-baseline-latency-high": Expect(
        quote="Baseline p99 latency <5ms",
        path=TO_2_1,
        final_state="stalled",
        max_percent=0,
    ),
    "2.1-clean-metrics-gap": Expect(
        quote="24h of clean metrics collected",
        path=TO_2_4,
        not_promoted_before={"2.1": "36h"},
        promoted_by={"2.1": "36h30m"},
    ),
    "2.1-service-degradation-alert": Expect(
        quote="No service degradation",
        max_percent=0,
        not_promoted_before={"2.1": "26h"},
    ),
    "2.1-error-spike": Expect(
        quote="24h of clean metrics collected",
        max_percent=0,
        not_promoted_before={"2.1": "34h20m"},
    ),
    "2.1-baseline-exported": Expect(
        quote="Exit Gate: Baseline established and exported",
        path=TO_2_4,
        baselines={"error_ratio": (0.0029, 0.0032), "p99_latency_seconds": (0.00095, 0.00105)},
    ),
    # Phase 2.4 ---------------------------------------------------------------------------
    "2.4-index-creation-fails": Expect(
        quote="Indexes created without errors",
        path=TO_2_4,
        final_state="stalled",
        max_percent=0,
    ),
    "2.4-performance-impact": Expect(
        quote="No performance impact on production queries",
        path=TO_2_4,
        final_state="stalled",
        max_percent=0,
    ),
    # Adaptive thresholds -----------------------------------------------------------------
    "adaptive-baseline-shift": Expect(
        quote="Adapts to natural baseline shifts",
        path=TO_2_5,
        promoted_by={"2.4": "27h"},
    ),
    "adaptive-floor-allows": Expect(
        quote="Prevents false pages from expected behavior",
        path=TO_2_5,
        promoted_by={"2.4": "27h"},
    ),
    "adaptive-floor-holds": Expect(
        quote="max(min_threshold, baseline * multiplier)",
        path=TO_2_4,
        final_state="stalled",
    ),
    "adaptive-catches-2x": Expect(
        quote="Still catches 2x regressions",
        path=TO_2_4,
        final_state="stalled",
    ),
    # Phase 2.5 and rollback scenarios 1 and 2 -----------------------------------------------
    "2.5-migration-fails": Expect(
        quote="100% of batches completed successfully",
        path=TO_2_5,
        final_state="stalled",
        max_percent=0,
        jobs_never_started=("verify-migration",),
    ),
    "2.5-migration-resumed": Expect(
        quote="# 2. Resume from next batch",
        path=TO_2_7,
        jobs_resumed={"migrate-stages": 2},
    ),
    "2.5-verification-fails": Expect(
        quote="Zero data loss (pre/post row counts match)",
        path=TO_2_5,
        final_state="stalled",
        max_percent=0,
    ),
    "2.5-invalid-writes": Expect(
        quote="Exit Gate: Migration verified + no new invalid writes for 24h",
        path=TO_2_7,
        not_promoted_before={"2.5": "84h"},
        promoted_by={"2.5": "90h"},
    ),
    "2.5-invalid-writes-unmeasured": Expect(
        quote="No new invalid writes entering system (enforced)",
        path=TO_2_5,
        final_state="stalled",
    ),
    "invalid-writes-in-phase-3": Expect(
        quote="No new invalid writes entering system (enforced)",
        max_percent=25,
        max_rollbacks=1,
        not_promoted_before={"3@25": "214h20m"},
    ),
    "scenario-2-write-enforcement-off": Expect(
        quote="# Toggle off write enforcement, keep reads in warn",
        final_step="2.5",
        max_percent=0,
        flags_from={"40h1m": {MODE: "warn", WRITE_ONLY: "false", PERCENT: "0"}},
        # "# Restart services": 2.1 in staging; in production 2.4's flags, 2.5's, then
        # write enforcement off.
        restarts=4,
    ),
    "scenario-3-full-rollback-from-3-at-25": Expect(
        quote="# Disable all enforcement",
        max_percent=25,
        flags_from={"190h1m": WARN_ONLY},
        restarts=7,  # "# Restart": 2.1 (staging); 2.4, 2.5, 2.7, 3@10, 3@25, then warn
    ),
    "scenario-3-full-rollback-from-4": Expect(
        quote="# Disable all enforcement",
        flags_from={"330h1m": WARN_ONLY},
        # 2.1 (staging); 2.4, 2.5, 2.7, the four percentages, 4 (which clears 3's endpoint
        # overrides), warn
        restarts=10,
    ),
    # Phase 2.7 and the blast-radius alert --------------------------------------------------
    "2.7-proceed": Expect(
        quote="Would-reject rate <0.5% sustained for 48 hours",
        path=TO_3_10,
        dwell={"2.7": ("48h", "72h")},
    ),
    "2.7-extend": Expect(
        quote="Extend Phase 2.7 if: Would-reject rate >0.5%",
        path=TO_3_10,
        not_promoted_before={"2.7": "142h"},
        promoted_by={"2.7": "146h"},
    ),
    "2.7-extend-past-max": Expect(
        quote="4. Extend Phase 2.7 until <0.5%",
        path=TO_3_10,
        max_percent=10,
        not_promoted_before={"2.7": "188h"},
        promoted_by={"2.7": "190h"},
    ),
    "2.7-blast-radius-too-high": Expect(
        quote="5. Do NOT proceed to Phase 3",
        path=TO_2_7,
        final_state="stalled",
        max_percent=0,
    ),
    "2.7-at-limit": Expect(
        quote="Would-reject rate <0.5% sustained for 48 hours",
        path=TO_2_7,
        final_state="stalled",
        max_percent=0,
    ),
    "2.7-blast-radius-alert": Expect(
        quote="Gates: Phase 3 enforcement (must be <0.5% to proceed)",
        not_promoted_before={"2.7": "124h"},
    ),
    "2.7-clients-not-contacted": Expect(
        quote="Affected clients identified and contacted",
        path=TO_2_7,
        final_state="awaiting_approval",
        max_percent=0,
    ),
    # Phase 3 canary gate criteria ----------------------------------------------------------
    "first-increase-canary-latency": canary(
        "2.7", "126h30m", "Required conditions before increasing percentage"
    ),
    "canary-latency": Expect(
        quote="p99 < 1ms sustained for 30 minutes",
        path=TO_3_25,
        rollbacks=0,
        not_promoted_before={"3@10": "175h30m"},
    ),
    "canary-error-rate": Expect(
        quote="< 0.1% sustained for 30 minutes",
        path=TO_3_50,
        rollbacks=0,
        not_promoted_before={"3@25": "225h30m"},
    ),
    "canary-unknown-stage-rate": Expect(
        quote="< 0.5% sustained for 30 minutes",
        path=TO_3_100,
        rollbacks=0,
        not_promoted_before={"3@50": "272h30m"},
    ),
    "canary-alert-latency-regression": canary(
        "3@10", "172h30m", "`StageValidatorLatencyRegression` - resolved"
    ),
    "canary-alert-unknown-rate": canary(
        "3@25", "221h30m", "`EnforceGateUnknownRateHigh` - resolved"
    ),
    "canary-alert-redis-mode-fetch": canary(
        "3@50", "270h30m", "`RedisModeFetchFailing` - resolved"
    ),
    "approval-each-increase": Expect(
        quote="Manual sign-off required before each percentage increase",
        path=TO_3_50,
        final_state="awaiting_approval",
        max_percent=50,
    ),
    "forged-approvals": Expect(
        quote="Manual sign-off required before each percentage increase",
        path=TO_3_10,
        final_state="awaiting_approval",
        max_percent=10,
    ),
    # Phase 3 promotion window ----------------------------------------------------------------
    "degrade-within-30m-error": Expect(
        quote="If conditions degrade within 30 minutes of increase, rollback to previous percentage.",
        path=(*TO_3_25, "3@10"),
        rollback_within="30m",
        max_percent=25,
        final_step="3@10",
    ),
    "degrade-late-in-window": Expect(
        quote="If conditions degrade within 30 minutes of increase, rollback to previous percentage.",
        path=(*TO_3_25, "3@10"),
        rollback_within="30m",
        max_percent=25,
    ),
    "degrade-after-window": Expect(
        quote="If conditions degrade within 30 minutes of increase, rollback to previous percentage.",
        path=TO_3_25,
        rollbacks=0,
    ),
    "degrade-window-slow-rollout": Expect(
        quote="If conditions degrade within 30 minutes of increase, rollback to previous percentage.",
        path=(*TO_3_25, "3@10"),
        rollback_within="30m",
    ),
    "degrade-within-30m-latency": Expect(
        quote="If conditions degrade within 30 minutes of increase, rollback to previous percentage.",
        path=(*TO_3_50, "3@25"),
        rollback_within="30m",
    ),
    "degrade-within-30m-unknown-stages": Expect(
        quote="If conditions degrade within 30 minutes of increase, rollback to previous percentage.",
        path=(*TO_3_100, "3@50"),
        rollback_within="30m",
    ),
    # Phase 3 increase criteria ---------------------------------------------------------------
    "increase-error-48h": Expect(
        quote="Error rate <1% sustained for 48h",
        path=TO_3_25,
        rollbacks=0,
        not_promoted_before={"3@10": "189h"},
    ),
    "increase-latency-stable": Expect(
        quote="Latency p99 stable (<5ms)",
        path=TO_3_50,
        rollbacks=0,
        not_promoted_before={"3@25": "239h"},
    ),
    "increase-no-alert-fires": Expect(
        quote="No alert fires",
        rollbacks=0,
        not_promoted_before={"3@50": "279h"},
    ),
    "prometheus-outage-phase-3": Expect(
        quote="Error rate <1% sustained for 48h",
        path=TO_3_100,
        rollbacks=0,
        quiet=("240h", "243h"),
        not_promoted_before={"3@50": "291h"},
    ),
    # Phase 3 hold/rollback criteria ----------------------------------------------------------
    "hold-error-above-5pct": Expect(
        quote="Hold/rollback if: Error rate >5%",
        path=(*TO_3_50, "3@25"),
        rollback_by="240h10m",
        max_percent=50,
    ),
    "hold-error-just-under-5pct": Expect(
        quote="Hold/rollback if: Error rate >5%",
        path=TO_3_100,
        rollbacks=0,
        not_promoted_before={"3@50": "289h"},
    ),
    "hold-alert-high-error-rate": Expect(
        quote="Alert `StageValidationHighErrorRate` fires",
        path=(*TO_3_100, "3@50"),
        rollback_by="290h5m",
    ),
    "hold-latency-spike-above-50ms": Expect(
        quote="Hold/rollback if: Latency spikes >50ms",
        path=(*TO_3_25, "3@10"),
        rollback_by="190h10m",
    ),
    "hold-latency-40ms": Expect(
        quote="Hold/rollback if: Latency spikes >50ms",
        path=TO_3_50,
        rollbacks=0,
        not_promoted_before={"3@25": "238h20m"},
    ),
    "one-episode-one-step": Expect(
        quote="rollback to previous percentage",
        path=(*TO_3_100, "3@50"),
    ),
    # Phase 4 ---------------------------------------------------------------------------------
    "4-complete": Expect(
        quote="Sustained error <0.5%",
        path=TO_4,
        final_state="completed",
        max_percent=100,
    ),
    "4-error-above-half-pct": Expect(
        quote="Sustained error <0.5%",
        path=TO_4,
        final_state="soaking",
        rollbacks=0,
    ),
    "4-latency-regression": Expect(
        quote="No regression in latency",
        path=TO_4,
        final_state="soaking",
        rollbacks=0,
    ),
    "4-hold-on-error-spike": Expect(
        quote="Hold/rollback if: Error rate >5%",
        path=TO_4,
        final_state="paused",
    ),
}

GAP_TOLERANCE_AT_WINDOW_EDGE = (
    "a sustained window may start inside an outage: plan evaluation.gap_tolerance (5m) lets "
    "the window pass with the outage's last minutes at its start, so the step is left a "
    "few minutes before the runbook's full window of data was collected"
)
KNOWN_GAPS: dict[tuple[str, str], str] = {
    ("timing", "2.1-clean-metrics-gap"): GAP_TOLERANCE_AT_WINDOW_EDGE,
    ("timing", "prometheus-outage-phase-3"): GAP_TOLERANCE_AT_WINDOW_EDGE,
}
"""Where the code still disagrees with the runbook, each a strict xfail: (test, scenario).

A strict xfail passes only while the gap is there: the day the rule is fixed, the
test fails until its entry here is removed."""


def cases(kind: str, names: list[str] | None = None) -> list[object]:
    """The scenarios a test runs on, a known gap marked as a strict xfail that names it."""
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[kind, name]))
        if (kind, name) in KNOWN_GAPS
        else name
        for name in (sorted(EXPECTED) if names is None else names)
    ]


WRITE_ENFORCEMENT_KEPT = {
    step: {WRITE_ONLY: "true"} for step in ("2.5", "2.7", "3@10", "3@25", "3@50", "3@100", "4")
}
"""PRODUCTION_CONFIG: "enforceWriteOnly: true" beside "enforcementPercent: 10" (issue 10 item 5)."""


def test_every_scenario_has_an_expectation_and_quotes_its_sentence() -> None:
    assert sorted(EXPECTED) == scenario_names()
    assert len(EXPECTED) >= 30
    for name, expect in EXPECTED.items():
        comment = scenario_comment(name)
        assert comment.startswith("Runbook"), (
            f"{name}: the comment must open with its runbook source"
        )
        assert expect.quote in comment, f"{name}: the scenario does not quote {expect.quote!r}"


@pytest.mark.parametrize("name", cases("ends"))
def test_scenario_ends_as_the_runbook_says(name: str) -> None:
    expect, outcome = EXPECTED[name], run(name)
    final = outcome.result.final
    if expect.path is not None:
        assert outcome.path == expect.path, _moves(outcome)
    if expect.final_step is not None:
        assert final.step == expect.final_step, _moves(outcome)
    if expect.final_state is not None:
        assert final.state.value == expect.final_state, f"{final.state}: {final.reason}"
    if expect.max_percent is not None:
        assert outcome.max_percent == expect.max_percent, outcome.result.percent_changes
    if expect.rollbacks is not None:
        assert len(outcome.rollbacks) == expect.rollbacks, _moves(outcome)
    if expect.restarts is not None:
        assert outcome.result.restarts == expect.restarts
    if expect.max_rollbacks is not None:
        assert len(outcome.rollbacks) <= expect.max_rollbacks, _moves(outcome)
    for signal, (low, high) in expect.baselines.items():
        record = final.baselines.get(signal)
        assert record is not None and low <= record.value <= high, final.baselines


@pytest.mark.parametrize("name", cases("timing"))
def test_scenario_timing_is_the_runbooks(name: str) -> None:
    expect, outcome = EXPECTED[name], run(name)
    for step, earliest in expect.not_promoted_before.items():
        left = outcome.first_promotion_from(step)
        if left is not None:
            assert outcome.offset(left) >= offset(earliest), _moves(outcome)
    for step, latest in expect.promoted_by.items():
        left = outcome.first_promotion_from(step)
        assert left is not None, f"{step} was never left: {outcome.result.final.reason}"
        assert outcome.offset(left) <= offset(latest), _moves(outcome)
    for phase, (shortest, longest) in expect.dwell.items():
        span = outcome.phase_span(phase)
        assert span is not None, f"{phase} was never left"
        assert offset(shortest) <= span <= offset(longest), f"{phase} lasted {span}"
    if expect.quiet is not None:
        start, end = (outcome.start + offset(t) for t in expect.quiet)
        assert [t for t in outcome.moves if start <= t.at < end] == []


def _has_rollback_rule(expect: Expect) -> bool:
    return expect.rollback_within is not None or expect.rollback_by is not None


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if _has_rollback_rule(e)))
def test_rollback_comes_when_the_runbook_says(name: str) -> None:
    expect, outcome = EXPECTED[name], run(name)
    assert outcome.rollbacks, _moves(outcome)
    # The degradation's own rollback; how many follow it is the path's to say.
    rollback = outcome.rollbacks[0]
    if expect.rollback_within is not None:
        took_effect = outcome.in_effect_before(rollback.from_step, rollback.at)
        assert took_effect is not None
        assert rollback.at - took_effect <= offset(expect.rollback_within), rollback.reason
    if expect.rollback_by is not None:
        assert outcome.offset(rollback) <= offset(expect.rollback_by), rollback.reason


@pytest.mark.parametrize(
    "name", sorted(n for n, e in EXPECTED.items() if e.step_flags or e.flags_from)
)
def test_target_is_asked_for_the_runbooks_flags(name: str) -> None:
    expect, outcome = EXPECTED[name], run(name)
    for step, wanted in expect.step_flags.items():
        seen = outcome.flags_in_effect(step)
        assert seen, f"{step} never took effect"
        for flags in seen:
            assert {k: flags.get(k) for k in wanted} == dict(wanted), f"{step}: {flags}"
    for start, wanted in expect.flags_from.items():
        for record in outcome.flags_from(offset(start)):
            assert {k: record.flags.get(k) for k in wanted} == dict(wanted), record


def test_write_enforcement_is_kept_from_2_5_onward() -> None:
    outcome = run("healthy-rollout")
    for step, wanted in WRITE_ENFORCEMENT_KEPT.items():
        seen = outcome.flags_in_effect(step)
        assert seen and all(flags.get(WRITE_ONLY) == wanted[WRITE_ONLY] for flags in seen), step


@pytest.mark.parametrize(
    "name", sorted(n for n, e in EXPECTED.items() if e.jobs_resumed or e.jobs_never_started)
)
def test_jobs_run_as_the_runbook_says(name: str) -> None:
    expect, outcome = EXPECTED[name], run(name)
    created = outcome.result.jobs_created
    for job, attempt in expect.jobs_resumed.items():
        assert (job, attempt) in created, created
        record = outcome.result.final.jobs[job]
        assert record.attempt == attempt and record.resume, record
    for job in expect.jobs_never_started:
        assert job not in {name for name, _attempt in created}, created


# Rules that hold in every scenario ------------------------------------------------------------

PERCENT_LADDER = (0, 10, 25, 50, 100)
"""Configuration Progression: "10% enforcement" → "25%" → "50%" → "100% enforcement"."""


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_increase_is_signed_off_and_one_rung_of_the_ladder(name: str) -> None:
    """ "5. **Team Approval**: Manual sign-off required before each percentage increase"."""
    outcome = run(name)
    for move in outcome.moves:
        before, after = PLAN_STEPS.get(move.from_step), PLAN_STEPS.get(move.to_step)
        if after.percent > before.percent:
            assert move.trigger == "promote" and move.approvals, move
            assert PERCENT_LADDER.index(after.percent) == PERCENT_LADDER.index(before.percent) + 1
    percents = [p for _offset, p in outcome.result.percent_changes]
    for low, high in pairwise(percents):
        if high > low:
            assert PERCENT_LADDER.index(high) == PERCENT_LADDER.index(low) + 1, percents


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_increase_before_48h_at_a_percentage(name: str) -> None:
    """ "Increase percentage if: Error rate <1% sustained for 48h"."""
    outcome = run(name)
    for move in outcome.result.transitions:
        if move.trigger not in ("promote", "complete") or move.from_step[:1] not in ("3", "4"):
            continue
        took_effect = outcome.in_effect_before(move.from_step, move.at)
        assert took_effect is not None, move
        assert move.at - took_effect >= timedelta(hours=48), move


def _moves(outcome: Outcome) -> str:
    return (
        "; ".join(
            f"{outcome.offset(t)} {t.from_step}→{t.to_step} {t.trigger}: {t.reason[:120]}"
            for t in outcome.moves
        )
        + f"; final {outcome.result.final.step} {outcome.result.final.state}: {outcome.result.final.reason[:160]}"
    )
