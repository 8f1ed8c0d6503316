"""Forecasts: one plan run many times over a scenario whose uncertain parts are drawn at random.

A scenario's `forecast` section declares what varies: how long approvals take,
how long jobs run and how often they fail, how often Prometheus goes away and
for how long, how often an incident makes a signal read a bad value. Each run
draws its own concrete scenario from those distributions (seeded: run i of
seed s is the same every time) and simulates it with the event-driven engine.
The summary is what a person planning the rollout asks: when will it be done,
how long does each step take, how likely is each rollback, how likely a stall.
"""

from __future__ import annotations

import math
import random
import statistics
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from controller.sim.scenario import (
    Approvals,
    AutoApproval,
    ForecastSpec,
    Interval,
    JobOutcome,
    Point,
    RandomEpisodes,
    Scenario,
    Spread,
)
from controller.sim.simulation import SimulationResult, simulate
from phases.plan import Plan
from phases.status import StepState

_ATTEMPTS_DRAWN = 5
"""Attempts drawn per job; later attempts succeed."""

__all__ = ["Forecast", "RunSummary", "draw_scenario", "forecast", "summarize_run"]


def _draw(spread: Spread, rng: random.Random) -> timedelta:
    if spread.distribution == "uniform":
        assert spread.low is not None and spread.high is not None
        low, high = spread.low.total_seconds(), spread.high.total_seconds()
        return timedelta(seconds=round(rng.uniform(low, high)))
    if spread.distribution == "exponential":
        assert spread.mean is not None
        return timedelta(seconds=round(rng.expovariate(1 / max(spread.mean.total_seconds(), 1))))
    assert spread.value is not None
    return spread.value


def _episodes(spec: RandomEpisodes, span: timedelta, rng: random.Random) -> Iterator[Interval]:
    """Episodes starting as a Poisson process over the scenario, each of a drawn length."""
    if spec.per_day <= 0:
        return
    at = 0.0
    while True:
        at += rng.expovariate(spec.per_day / 86_400)
        if at >= span.total_seconds():
            return
        length = max(_draw(spec.duration, rng), timedelta(seconds=1))
        start = timedelta(seconds=round(at))
        yield Interval.model_validate({"from": start, "to": start + length})


def _with_incidents(
    points: list[Point], incidents: Sequence[Interval], value: float
) -> list[Point]:
    """The timeline with `value` over each incident, the scripted value again after it."""
    merged: list[list[timedelta]] = []
    for incident in sorted(incidents, key=lambda i: i.start):
        if merged and incident.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], incident.end)
        else:
            merged.append([incident.start, incident.end])
    times = [p.at for p in points]
    starts = [start for start, _end in merged]

    def scripted(at: timedelta) -> float | None:
        index = bisect_right(times, at) - 1
        return points[index].value if index >= 0 else None

    def covered(at: timedelta) -> bool:
        index = bisect_right(starts, at) - 1
        return index >= 0 and at < merged[index][1]

    changes = {p.at: p.value for p in points if not covered(p.at)}
    for start, end in merged:
        changes[start] = value
        changes[end] = scripted(end)
    return [Point(at=t, value=changes[t]) for t in sorted(changes)]


def draw_scenario(scenario: Scenario, spec: ForecastSpec, run: int) -> Scenario:
    """Run `run`'s concrete scenario: the same for the same seed and run number."""
    rng = random.Random(f"{spec.seed}:{run}")
    approvals = scenario.approvals
    if spec.approval_delay is not None:
        auto = approvals.auto or AutoApproval()
        drawn = auto.model_copy(update={"delay": _draw(spec.approval_delay, rng)})
        approvals = Approvals(auto=drawn, scripted=approvals.scripted)
    jobs = dict(scenario.jobs)
    for name, job in sorted(spec.jobs.items()):
        attempts: list[Literal["succeeded", "failed"]] = [
            "failed" if rng.random() < job.failure_probability else "succeeded"
            for _ in range(_ATTEMPTS_DRAWN)
        ]
        jobs[name] = JobOutcome(duration=_draw(job.duration, rng), attempts=attempts)
    outages = list(scenario.outages)
    if spec.outages is not None:
        outages += _episodes(spec.outages, scenario.duration, rng)
    signals = dict(scenario.signals)
    for incident in spec.incidents:
        episodes = list(_episodes(incident, scenario.duration, rng))
        signals[incident.signal] = _with_incidents(
            signals.get(incident.signal, []), episodes, incident.value
        )
    return scenario.model_copy(
        update={"approvals": approvals, "jobs": jobs, "outages": outages, "signals": signals}
    )


@dataclass(frozen=True)
class RunSummary:
    """What one run of a forecast came to."""

    completed_after: float | None
    seconds_per_step: dict[str, float]
    rollbacks: tuple[tuple[str, str], ...]
    stalled: tuple[str, ...]
    final_step: str
    final_state: str


def summarize_run(result: SimulationResult) -> RunSummary:
    """Time per step (each stay added up), rollbacks as (from, to), steps that stalled."""
    per_step: dict[str, float] = {}
    current = result.transitions[0].from_step if result.transitions else result.final.step
    since = 0.0
    for transition in result.transitions:
        if transition.to_step != current:
            at = (transition.at - result.start).total_seconds()
            per_step[current] = per_step.get(current, 0.0) + at - since
            current, since = transition.to_step, at
    per_step[current] = per_step.get(current, 0.0) + result.final_time_seconds - since
    rollbacks = tuple(
        (t.from_step, t.to_step) for t in result.transitions if t.trigger == "rollback"
    )
    stalled = tuple(t.to_step for t in result.transitions if t.to_state is StepState.STALLED)
    done = result.final.state is StepState.COMPLETED
    return RunSummary(
        completed_after=result.final_time_seconds if done else None,
        seconds_per_step=dict(per_step),
        rollbacks=rollbacks,
        stalled=stalled,
        final_step=result.final.step,
        final_state=result.final.state.value,
    )


@dataclass
class Forecast:
    """The distribution of outcomes over many runs."""

    runs: int
    seed: int
    summaries: list[RunSummary] = field(default_factory=list)

    @property
    def completion_times(self) -> list[float]:
        return sorted(s.completed_after for s in self.summaries if s.completed_after is not None)

    def probability_completed(self) -> float:
        return len(self.completion_times) / self.runs

    def rollback_probabilities(self) -> dict[tuple[str, str], float]:
        """Per rollback edge, the share of runs in which it happened at least once."""
        seen = Counter(edge for s in self.summaries for edge in set(s.rollbacks))
        return {edge: count / self.runs for edge, count in sorted(seen.items())}

    def probability_rolled_back(self) -> float:
        return sum(1 for s in self.summaries if s.rollbacks) / self.runs

    def stall_probabilities(self) -> dict[str, float]:
        seen = Counter(step for s in self.summaries for step in set(s.stalled))
        return {step: count / self.runs for step, count in sorted(seen.items())}

    def probability_stalled(self) -> float:
        return sum(1 for s in self.summaries if s.stalled) / self.runs

    def step_times(self) -> dict[str, list[float]]:
        """Per step, the time spent in it in each run that reached it."""
        times: dict[str, list[float]] = {}
        for summary in self.summaries:
            for step, seconds in summary.seconds_per_step.items():
                times.setdefault(step, []).append(seconds)
        return {step: sorted(values) for step, values in times.items()}


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted `values` (nearest rank)."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def forecast(plan: Plan, scenario: Scenario, runs: int) -> Forecast:
    """Run the plan `runs` times, each over its own draw of the scenario's forecast section."""
    spec = scenario.forecast or ForecastSpec()
    result = Forecast(runs=runs, seed=spec.seed)
    for run in range(runs):
        drawn = draw_scenario(scenario, spec, run)
        result.summaries.append(summarize_run(simulate(plan, drawn)))
    return result


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _hours(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds / 3600:.1f}h"


def forecast_table(result: Forecast) -> str:
    """The forecast as text: completion, time per step, rollbacks and stalls."""
    done = result.completion_times
    lines = [
        f"{result.runs} runs, seed {result.seed}",
        f"completed: {result.probability_completed():.1%}"
        + (
            f"; completion time p10 {_hours(quantile(done, 0.1))}, median {_hours(median(done))}, "
            f"p90 {_hours(quantile(done, 0.9))}, max {_hours(done[-1])}"
            if done
            else ""
        ),
        f"rolled back at least once: {result.probability_rolled_back():.1%}; "
        f"stalled at least once: {result.probability_stalled():.1%}",
        "",
        f"{'step':<10} {'reached':>8} {'median':>9} {'p90':>9}",
    ]
    for step, times in result.step_times().items():
        reached = len(times) / result.runs
        lines.append(
            f"{step:<10} {reached:>8.0%} {_hours(median(times)):>9} {_hours(quantile(times, 0.9)):>9}"
        )
    for (source, target), chance in result.rollback_probabilities().items():
        lines.append(f"rollback {source} -> {target}: {chance:.1%}")
    for step, chance in result.stall_probabilities().items():
        lines.append(f"stall in {step}: {chance:.1%}")
    return "\n".join(lines)


def forecast_document(result: Forecast) -> dict[str, object]:
    """The forecast as JSON-ready data."""
    done = result.completion_times
    return {
        "runs": result.runs,
        "seed": result.seed,
        "probability_completed": result.probability_completed(),
        "completion_seconds": {
            "p10": quantile(done, 0.1) if done else None,
            "median": median(done) if done else None,
            "p90": quantile(done, 0.9) if done else None,
        },
        "probability_rolled_back": result.probability_rolled_back(),
        "probability_stalled": result.probability_stalled(),
        "rollbacks": [
            {"from": a, "to": b, "probability": p}
            for (a, b), p in result.rollback_probabilities().items()
        ],
        "stalls": [{"step": s, "probability": p} for s, p in result.stall_probabilities().items()],
        "seconds_per_step": {
            step: {"median": median(times), "p90": quantile(times, 0.9), "runs": len(times)}
            for step, times in result.step_times().items()
        },
    }
