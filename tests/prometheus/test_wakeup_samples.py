"""Wake-ups from what a real Prometheus answers: the rollback lands within one margin of its evidence.

A gauge turns bad between two evaluation steps of the trigger's window. Ticking only
at the moments `next_wakeup` gives (plus a margin of one scrape interval), the loop
the operator runs must roll back after the evidence is complete and at most one
margin later, never before: the sample times are the ones Prometheus evaluated the
range query at, rounded to the millisecond it was sent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from controller.prometheus.source import PrometheusSettings, PrometheusSource
from phases.decide import decide
from phases.needs import AlertReading, judge, needs_of
from phases.observations import Observations, TargetState
from phases.plan_checks import parse_plan
from phases.status import RolloutStatus, StepState
from phases.steps import steps_of
from phases.wakeups import next_wakeup
from tests.support.backfill import Series
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.prometheus

PLAN = parse_plan(
    """
name: wake-samples
version: "1"
evaluation: {resolution: 1m, gap_tolerance: 5m}
signals:
  errors: {query: "wake_ratio"}
phases:
  - id: a
    name: A
    flags: {STAGE_VALIDATION_MODE: warn, ENFORCE_WRITE_ONLY: false, ENFORCEMENT_PERCENT: 0, STAGE_VALIDATION_DRY_RUN: false}
  - id: b
    name: B
    flags: {STAGE_VALIDATION_MODE: enforce, ENFORCE_WRITE_ONLY: false, ENFORCEMENT_PERCENT: 0, STAGE_VALIDATION_DRY_RUN: false}
    min_duration: 1d
    triggers:
      - {name: high, signal: errors, comparator: ">", threshold: 0.05, for: 5m}
""",
    source="wake-samples",
)
SCRAPE = timedelta(seconds=15)
MARGIN = SCRAPE + timedelta(microseconds=400)
"""The operator's clock is never on a millisecond, as the times Prometheus is sent are."""
# A whole second a day ago: the history is backfilled, the head block stays empty.
A = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
BAD_FROM = A - timedelta(minutes=2, seconds=10)
FIRST_BAD_SAMPLE = A - timedelta(minutes=2)
"""Samples come every 15 s: the first bad one is at A - 2m, so the 5m evidence is complete at A + 3m."""


def history() -> Series:
    samples = []
    at = A - timedelta(minutes=30)
    while at <= A + timedelta(minutes=10):
        samples.append((at.timestamp(), 0.2 if at >= BAD_FROM else 0.001))
        at += SCRAPE
    return Series("wake_ratio", {"job": "app"}, samples)


def soaking() -> RolloutStatus:
    since = A - timedelta(hours=1)
    return RolloutStatus(
        plan_hash=PLAN.content_hash,
        step="b",
        state=StepState.SOAKING,
        step_entered_at=since,
        flags_applied_at=since,
        in_effect_at=since,
        deadline_from=since,
    )


def tick(source: PrometheusSource, status: RolloutStatus, now: datetime) -> Observations:
    needs = needs_of(PLAN, status, now)
    summaries = {
        (w.query, w.window): source.summarize(w.signal, w.query, w.window, now)
        for w in needs.windows
    }
    gates, triggers = judge(PLAN, status, needs, summaries, AlertReading(frozenset()))
    target = TargetState(flags_hash=steps_of(PLAN).get("b").flags_hash, rolled_out=True)
    return Observations(rollout_uid="uid", target=target, gates=gates, triggers=triggers)


def test_ticking_at_the_wake_ups_rolls_back_within_one_margin_of_complete_evidence(
    prometheus_server: Callable[..., PrometheusServer],
) -> None:
    server = prometheus_server(history=[history()])
    source = PrometheusSource(PrometheusSettings(url=server.url), timedelta(minutes=1))
    status = soaking()
    complete = FIRST_BAD_SAMPLE + timedelta(minutes=5)
    try:
        now = A + timedelta(microseconds=400)
        ticks: list[datetime] = []
        while True:
            ticks.append(now)
            seen = tick(source, status, now)
            decision = decide(PLAN, status, seen, now)
            if any(t.trigger == "rollback" for t in decision.transitions):
                break
            assert now < complete, (
                f"no rollback {(now - A).total_seconds():.0f} s after A (complete at 180 s)"
            )
            moment = next_wakeup(PLAN, decision.status, seen, now)
            assert moment is not None
            now = max(moment, now) + MARGIN
    finally:
        source.close()
    assert complete <= now <= complete + MARGIN
    # The first wake-up is where the last healthy step leaves the window (A + 2m), then one
    # per margin until the evidence is complete: a handful of ticks, not one per second.
    assert ticks[1] == A + timedelta(minutes=2) + MARGIN
    assert len(ticks) <= 2 + timedelta(minutes=1) // SCRAPE
