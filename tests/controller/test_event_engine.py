"""The event-driven simulator makes exactly the tick engine's run, only at fewer ticks.

It decides only at the ticks where an input can change (`controller.sim.moments`);
if it missed one, some transition, event, flag write or the final status would
differ from ticking at every tick. Every bundled scenario, the month benchmark,
and random scenarios (noisy signals, outages, alerts, forged and expiring
approvals, commands, failing jobs, odd ticks, a promotion window) run through
both engines and must agree on all of it. So do random plans whose durations
(soak, max duration, gate windows, degradation window, triggers' `for`, the
queries' lookback, the gap tolerance) are odd minutes that coincide with nothing: the engine skips
every tick between two of the core's clock thresholds (`phases.clocks`), and a
threshold missing there shows only where no other moment falls on it.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.catalog import load_plan, load_scenario, read_plan, scenarios_for
from controller.sim.scenario import Interval, Point, Scenario
from controller.sim.simulation import SimulationResult, simulate
from phases.plan_checks import parse_plan

PLAN = load_plan()
CACHE = load_plan("cache-backend-migration")
BENCH = Path(__file__).resolve().parents[2] / "bench"
_WINDOW = """
promotion_window:
  timezone: Europe/Berlin
  weekdays: [mon, tue, wed, thu]
  start: "09:00"
  end: "16:00"
  freezes: [{start: 2026-01-08T00:00:00Z, end: 2026-01-12T07:30:00Z, reason: drill}]
"""
WINDOWED = parse_plan(read_plan()[0] + _WINDOW, source="bundled plan with a promotion window")


def outcome(result: SimulationResult) -> dict[str, Any]:
    """Everything a run did, except how many times `decide` ran."""
    return {
        "transitions": result.transitions,
        "events": result.events,
        "percent_changes": result.percent_changes,
        "flag_writes": result.flag_writes,
        "restarts": result.restarts,
        "jobs_created": result.jobs_created,
        "final": result.final,
        "final_time_seconds": result.final_time_seconds,
        "ticks": result.ticks,
    }


def assert_same_run(plan: Any, scenario: Scenario) -> SimulationResult:
    ticking = simulate(plan, scenario, engine="ticks")
    jumping = simulate(plan, scenario, engine="events")
    assert outcome(jumping) == outcome(ticking)
    assert jumping.decisions <= ticking.decisions
    return jumping


@pytest.mark.parametrize(
    ("plan", "name"),
    [(PLAN, name) for name in [*scenarios_for(), str(BENCH / "month.yaml")]]
    + [(WINDOWED, name) for name in scenarios_for()]
    + [(CACHE, name) for name in scenarios_for(CACHE.name)],
    ids=[Path(name).stem for name in [*scenarios_for(), "month"]]
    + [f"{name}-promotion-window" for name in scenarios_for()]
    + scenarios_for(CACHE.name),
)
def test_both_engines_agree_on_every_bundled_scenario(plan: Any, name: str) -> None:
    jumping = assert_same_run(plan, load_scenario(name, plan))
    assert jumping.transitions, "a scenario in which nothing happens proves nothing"
    assert jumping.decisions * 5 < jumping.ticks  # it does skip


def test_a_year_is_covered_deciding_at_few_of_its_ticks() -> None:
    scenario = load_scenario(str(BENCH / "year.yaml"), PLAN)
    result = simulate(PLAN, scenario)
    assert result.ticks == 365 * 24 * 60 + 1
    assert result.final_time_seconds == 365 * 86_400
    assert len(result.transitions) > 100  # a busy year, still running at its end
    # Status clocks plus every sum of two step durations took 2,891 decisions; the
    # core's own clock thresholds take 1,387; 1,197 with edges shifted by one window each
    # and no reading moment strictly inside an outage.
    assert result.decisions * 400 < result.ticks


# --- random scenarios ------------------------------------------------------------

SIGNAL_VALUES = {
    "error_ratio": [0.0004, 0.0004, 0.002, 0.02, 0.08, None],
    "p99_latency_seconds": [0.0006, 0.0006, 0.02, None],
    "unknown_stage_ratio": [0.001, 0.001, 0.02, None],
    "would_reject_ratio": [0.002, 0.002, 0.01, None],
    "invalid_write_ratio": [0.0, 0.0, 0.001],
}
ALERTS = ["StageValidationHighErrorRate", "ShadowModeBlastRadiusTooHigh", "RedisModeFetchFailing"]
STEPS = ["2.1", "2.4", "2.5", "2.7", "3@10", "3@25", "3@50", "3@100"]
minutes = st.integers(min_value=0, max_value=7 * 24 * 60)


@st.composite
def timeline(draw: st.DrawFn, values: list[float | None]) -> list[dict[str, Any]]:
    """Mostly the healthy value (so that rollouts get far), with a few changes."""
    times = sorted(set(draw(st.lists(minutes, max_size=6))))
    points = [{"at": "0s", "value": values[0]}]
    for t in times:
        points.append({"at": f"{t}m", "value": draw(st.sampled_from(values))})
        points.append({"at": f"{t + draw(st.integers(1, 600))}m", "value": values[0]})
    return sorted({p["at"]: p for p in points}.values(), key=lambda p: _minutes(p["at"]))


def _minutes(at: str) -> int:
    return 0 if at == "0s" else int(at.removesuffix("m"))


@st.composite
def interval(draw: st.DrawFn) -> dict[str, str]:
    start = draw(minutes)
    return {"from": f"{start}m", "to": f"{start + draw(st.integers(1, 12 * 60))}m"}


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    approvals: dict[str, Any] = {
        "scripted": [
            {
                "at": f"{draw(minutes)}m",
                "step": draw(st.sampled_from(STEPS)),
                "approver": draw(st.sampled_from(["bob", "carol"])),
                **draw(st.sampled_from([{}, {"expires_after": "47m"}, {"plan_hash": "forged"}])),
            }
            for _ in range(draw(st.integers(0, 4)))
        ]
    }
    if draw(st.integers(0, 4)):  # mostly someone approves, so that rollouts get far
        withhold = draw(st.lists(st.sampled_from(STEPS), max_size=1))
        approvals["auto"] = {"delay": f"{draw(st.integers(0, 900))}m", "withhold": withhold}
    kinds = st.sampled_from(["pause", "resume", "resume", "retry", "rollback", "rollback-warn"])
    commands = [
        {"at": f"{draw(minutes)}m", "kind": "rollback", "to": "warn"}
        if kind == "rollback-warn"
        else {"at": f"{draw(minutes)}m", "kind": kind}
        for kind in draw(st.lists(kinds, max_size=3))
    ]
    if not draw(st.integers(0, 9)):
        commands.append({"at": f"{draw(minutes)}m", "kind": "abort"})
    jobs = {
        name: {
            "duration": f"{draw(st.integers(1, 90))}m",
            "attempts": draw(st.lists(st.sampled_from(["failed", "succeeded"]), max_size=2)),
        }
        for name in ("create-indexes", "migrate-stages", "verify-migration")
    }
    start = datetime(2026, 1, 5, 9, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 10_080)))
    return Scenario.model_validate(
        {
            "name": "random",
            "start": start,
            "duration": f"{draw(st.integers(2, 10))}d",
            "tick": draw(st.sampled_from(["1m", "1m", "90s", "5m", "7m"])),
            "signals": {name: draw(timeline(values)) for name, values in SIGNAL_VALUES.items()},
            "outages": draw(st.lists(interval(), max_size=2)),
            "alerts": [
                {**draw(interval()), "name": draw(st.sampled_from(ALERTS))}
                for _ in range(draw(st.integers(0, 2)))
            ],
            "approvals": approvals,
            "jobs": jobs,
            "commands": commands,
            "target": {"rollout_delay": f"{draw(st.integers(0, 2700))}s"},
        }
    )


# The same examples every CI run (as the safety properties do);
# STAGE_HYPOTHESIS_EXPLORE=1 explores new ones.
_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    derandomize=not os.environ.get("STAGE_HYPOTHESIS_EXPLORE"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_SETTINGS
@given(scenario=scenarios(), windowed=st.booleans())
def test_both_engines_agree_on_random_scenarios(scenario: Scenario, windowed: bool) -> None:
    assert_same_run(WINDOWED if windowed else PLAN, scenario)


@st.composite
def odd_plans(draw: st.DrawFn) -> Any:
    """The bundled plan with every duration a decision compares with drawn afresh, in minutes."""

    def some(low: int, high: int) -> str:
        return f"{draw(st.integers(low, high))}m"

    def durations(match: re.Match[str]) -> str:
        low = draw(st.integers(20, 240))
        return f"min_duration: {low}m\n{match.group(1)}max_duration: {low + draw(st.integers(0, 180))}m"

    text = read_plan()[0].replace("[5m]", f"[{some(1, 9)}]")
    text = re.sub(r"for: 5m", lambda _: f"for: {some(1, 13)}", text)
    text = re.sub(r"window: (30m|24h|48h)", lambda _: f"window: {some(7, 200)}", text)
    text = re.sub(r"degradation_window: 30m", lambda _: f"degradation_window: {some(5, 90)}", text)
    text = text.replace("gap_tolerance: 5m", f"gap_tolerance: {some(2, 20)}")
    text = re.sub(r"min_duration: \S+\n(\s+)max_duration: \S+", durations, text)
    return parse_plan(text, source="bundled plan with odd durations")


@_SETTINGS
@given(plan=odd_plans(), scenario=scenarios())
def test_both_engines_agree_on_plans_with_odd_durations(plan: Any, scenario: Scenario) -> None:
    assert_same_run(plan, scenario)


BAD_VALUES = [("error_ratio", 0.08), ("error_ratio", 0.002), ("p99_latency_seconds", 0.02)]


def degraded(
    scenario: Scenario, begins: timedelta, length: int, bad: tuple[str, float]
) -> Scenario:
    """The scenario with a signal at a bad value for `length` minutes from `begins`."""
    ends = begins + timedelta(minutes=length)
    signal, value = bad
    points = {p.at: p for p in scenario.signals[signal] if not begins <= p.at <= ends}
    healthy = SIGNAL_VALUES[signal][0]
    points.update({begins: Point(at=begins, value=value), ends: Point(at=ends, value=healthy)})
    signals = {**scenario.signals, signal: sorted(points.values(), key=lambda p: p.at)}
    return scenario.model_copy(update={"signals": signals})


def after_a_transition(
    plan: Any, name: str, which: int, minutes: int
) -> tuple[Scenario, timedelta]:
    """A bundled scenario (its rollout gets far) and a moment `minutes` after its rollout
    entered one of its steps."""
    scenario = load_scenario(name, plan)
    run = simulate(plan, scenario)
    moments = [t.at - scenario.start for t in run.transitions if t.to_step != t.from_step]
    return scenario, (moments or [timedelta(0)])[which % max(len(moments), 1)] + timedelta(
        minutes=minutes
    )


@_SETTINGS
@given(
    plan=st.one_of(st.just(PLAN), odd_plans()),
    name=st.sampled_from(scenarios_for()),
    which=st.integers(0, 10**6),
    after=st.integers(0, 12),
    length=st.integers(1, 90),
    bad=st.sampled_from(BAD_VALUES),
)
def test_both_engines_agree_when_a_degradation_starts_just_after_a_transition(
    plan: Any, name: str, which: int, after: int, length: int, bad: tuple[str, float]
) -> None:
    """A bad value a few minutes after a transition: whether a trigger counts it can be
    decided by its evidence reaching past the step's start (`for` plus the query's
    lookback), a moment no scenario edge gives."""
    scenario, begins = after_a_transition(plan, name, which, after)
    assert_same_run(plan, degraded(scenario, begins, length, bad))


@settings(_SETTINGS, max_examples=60)
@given(
    plan=st.one_of(st.just(PLAN), odd_plans()),
    name=st.sampled_from(scenarios_for()),
    which=st.integers(0, 10**6),
    after=st.integers(0, 15),
    length=st.integers(1, 90),
    bad=st.sampled_from(BAD_VALUES),
    down=st.tuples(st.integers(-5, 25), st.integers(1, 120)),
)
def test_both_engines_agree_when_prometheus_goes_down_around_a_degradation(
    plan: Any,
    name: str,
    which: int,
    after: int,
    length: int,
    bad: tuple[str, float],
    down: tuple[int, int],
) -> None:
    """An outage of every Prometheus from just before to 25 minutes after a degradation
    starts: readings change at the edges shifted by their windows, except strictly
    inside the outage, where every read fails alike."""
    scenario, begins = after_a_transition(plan, name, which, after)
    scenario = degraded(scenario, begins, length, bad)
    start = max(begins + timedelta(minutes=down[0]), timedelta(0))
    outage = {"from": start, "to": start + timedelta(minutes=down[1])}
    everywhere = Interval.model_validate(outage)
    outages = [*scenario.outages, everywhere]
    environments = {
        env: world.model_copy(update={"outages": [*world.outages, everywhere]})
        if world.outages is not None
        else world
        for env, world in scenario.environments.items()
    }
    assert_same_run(
        plan, scenario.model_copy(update={"outages": outages, "environments": environments})
    )
