"""Forecasts: seeded draws, and an answer known in closed form.

Incidents arrive as a Poisson process of rate λ per day. A step that rolls back
on an incident and is exposed to incidents for a time L rolls back with
probability 1 - exp(-λ L); the forecast over many runs must find that.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli.main import app
from controller.sim.forecast import draw_scenario, forecast
from controller.sim.scenario import parse_scenario
from phases.plan_checks import parse_plan

# At 0 % no step raises the percentage, so none waits for a sign-off (no approvals are drawn).
FLAGS = "{STAGE_VALIDATION_MODE: enforce, ENFORCE_WRITE_ONLY: false, ENFORCEMENT_PERCENT: 0, STAGE_VALIDATION_DRY_RUN: false}"
PLAN = parse_plan(
    f"""
name: exposed
version: "1"
signals:
  err: {{query: "err_ratio"}}
evaluation: {{resolution: 1m, gap_tolerance: 5m}}
phases:
  - {{id: a, name: before, flags: {FLAGS}, min_duration: 1m}}
  - id: b
    name: exposed
    flags: {FLAGS}
    min_duration: 10h
    triggers:
      - {{name: err-high, signal: err, comparator: ">", threshold: 0.05, for: 1m}}
  - {{id: c, name: after, flags: {FLAGS}, min_duration: 1m}}
""",
    source="exposed plan",
)
SCENARIO = """
name: incidents
tick: 1m
duration: 2d
target: {{rollout_delay: 0s}}
signals:
  err: [{{at: 0s, value: 0.001}}]
forecast:
  seed: {seed}
  incidents:
    - {{signal: err, value: 1.0, per_day: 1.6, duration: {{distribution: fixed, value: 10m}}}}
"""


def scenario(seed: int = 3):
    return parse_scenario(SCENARIO.format(seed=seed), source="test", known_signals={"err"})


def test_rollback_probability_matches_the_poisson_formula() -> None:
    """A rollback needs one minute of an incident inside b's 10h in effect, so an
    incident of 10m starting from 9m before b takes effect to 1m before it ends
    counts: L = 10h + 8m."""
    runs = 400
    result = forecast(PLAN, scenario(), runs)
    exposed_days = (10 * 60 + 8) / (24 * 60)
    expected = 1 - math.exp(-1.6 * exposed_days)
    sigma = math.sqrt(expected * (1 - expected) / runs)
    found = result.rollback_probabilities().get(("b", "a"), 0.0)
    assert abs(found - expected) < 3 * sigma, (found, expected)
    # Every run either completes or has rolled back (and holds at a for approval).
    assert result.probability_completed() + found == pytest.approx(1.0)
    assert result.probability_stalled() == 0.0
    times = result.step_times()["b"]
    completed = [s for s in result.summaries if s.completed_after is not None]
    assert all(s.seconds_per_step["b"] >= 10 * 3600 for s in completed)
    assert min(times) < 10 * 3600  # the rolled-back runs left b early


def test_the_same_seed_draws_the_same_runs_and_another_seed_others() -> None:
    spec = scenario(3).forecast
    assert spec is not None
    first = [draw_scenario(scenario(3), spec, run).signals["err"] for run in range(5)]
    again = [draw_scenario(scenario(3), spec, run).signals["err"] for run in range(5)]
    other_spec = scenario(4).forecast
    assert other_spec is not None
    other = [draw_scenario(scenario(4), other_spec, run).signals["err"] for run in range(5)]
    assert first == again
    assert first != other
    assert len({str(points) for points in first}) == 5  # each run draws its own


def test_cli_prints_the_forecast_and_refuses_a_scenario_without_one(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["simulate", "--forecast", "20", "-o", "json"])
    assert done.exit_code == 0, done.output
    document = json.loads(done.output)
    assert document["runs"] == 20 and document["scenario"] == "happy-path"
    assert 0.0 <= document["probability_completed"] <= 1.0
    refused = runner.invoke(app, ["simulate", "--scenario", "degrade-at-50", "--forecast", "5"])
    assert refused.exit_code == 2
    assert "has no forecast section" in refused.output
    zero = runner.invoke(app, ["simulate", "--forecast", "0"])
    assert zero.exit_code == 2


def test_overlapping_incidents_read_their_value_and_the_script_resumes_after() -> None:
    from datetime import timedelta

    from controller.sim.forecast import _with_incidents
    from controller.sim.scenario import Interval, Point

    minute = timedelta(minutes=1)
    script = [Point(at=0 * minute, value=1.0), Point(at=30 * minute, value=2.0)]
    incidents = [
        Interval.model_validate({"from": a * minute, "to": b * minute})
        for a, b in ((10, 20), (15, 35), (50, 55), (35, 40))
    ]
    timeline = _with_incidents(script, incidents, 9.0)

    def read(points: list[Point], at: timedelta) -> float | None:
        earlier = [p for p in points if p.at <= at]
        return earlier[-1].value if earlier else None

    for second in range(0, 70 * 60, 30):
        at = timedelta(seconds=second)
        inside = any(i.start <= at < i.end for i in incidents)
        assert read(timeline, at) == (9.0 if inside else read(script, at)), at


def test_a_forecast_whose_episodes_cannot_be_counted_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flood.yaml"
    path.write_text(
        SCENARIO.format(seed=1).replace("per_day: 1.6", "per_day: 1000").replace("2d", "365d"),
        encoding="utf-8",
    )
    done = CliRunner().invoke(
        app,
        ["simulate", "--plan", "stage-validation-v3", "--scenario", str(path), "--forecast", "2"],
    )
    assert done.exit_code == 2
    assert "more than 5,000 expected per run" in done.output
