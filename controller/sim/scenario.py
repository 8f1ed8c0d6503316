"""Simulation scenarios: scripted metrics, alerts, people, jobs and the tick.

A scenario tells `stagectl simulate` what the world does while the plan runs:
piecewise timelines of signal values (null meaning no data), Prometheus outages,
alert intervals, approvals (scripted or automatic), job outcomes, operator
commands, and how long workloads take to roll out. Times are offsets from the
scenario's start (`30m`, `2d`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from phases.documents import Problem, parse_document
from phases.durations import Duration, format_duration
from phases.numbers import FiniteNumber
from phases.observations import CommandKind

MAX_TICKS = 200_000
"""More replay ticks than this are refused up front: each tick queries Prometheus."""
MAX_SCENARIO_TICKS = 1_000_000
"""More simulated ticks than this are refused up front. A year at 1m is 525,600: the
event engine decides at a few thousand of them, the tick engine at all (about 12 s)."""
EARLIEST_START = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_START = datetime(2200, 1, 1, tzinfo=UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Point(_Strict):
    """From `at` on, the signal reads `value` (null: no data) until the next point."""

    at: Duration
    value: FiniteNumber | None


class Interval(_Strict):
    """A stretch of scenario time."""

    start: Duration = Field(alias="from")
    end: Duration = Field(alias="to")

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        # Checked on `to` (not on the whole interval) so that the error names that field.
        start = info.data.get("start")
        if isinstance(start, timedelta) and value <= start:
            raise ValueError(
                f"'to' ({format_duration(value)}) must be after 'from' ({format_duration(start)})"
            )
        return value


class AlertInterval(Interval):
    """An alert firing from `from` to `to`."""

    name: str = Field(min_length=1)


class ScriptedApproval(_Strict):
    """An approval given at a fixed time; the binding fields can be forged for tests."""

    at: Duration
    step: str
    approver: str = Field(min_length=1)
    reason: str = ""
    expires_after: Duration | None = None
    plan_hash: str | None = Field(default=None, description="default: the simulated plan's hash")
    rollout_uid: str | None = Field(
        default=None, description="default: the simulated rollout's uid"
    )


class AutoApproval(_Strict):
    """Approve any step that waits for approval, `delay` after it started waiting."""

    delay: Duration = timedelta(minutes=30)
    approver: str = "simulated-approver"
    withhold: list[str] = Field(
        default_factory=list, description="steps never approved automatically"
    )


class Approvals(_Strict):
    """How approvals arrive in the simulation."""

    auto: AutoApproval | None = None
    scripted: list[ScriptedApproval] = Field(default_factory=list)


class JobOutcome(_Strict):
    """How long a job attempt runs and how it ends; `attempts` overrides per attempt."""

    duration: Duration = timedelta(minutes=10)
    outcome: Literal["succeeded", "failed"] = "succeeded"
    attempts: list[Literal["succeeded", "failed"]] = Field(default_factory=list)
    message: str = ""


class ScriptedCommand(_Strict):
    """An operator command issued at a fixed time."""

    at: Duration
    kind: CommandKind
    by: str = "simulated-operator"
    reason: str = ""
    to: str | None = None


class TargetBehaviour(_Strict):
    """How the simulated workloads react to new flags."""

    rollout_delay: Duration = timedelta(minutes=2)


class Spread(_Strict):
    """A random duration: `fixed`, `uniform` between low and high, or `exponential` with a mean."""

    distribution: Literal["fixed", "uniform", "exponential"] = "fixed"
    value: Duration | None = Field(default=None, description="for fixed")
    low: Duration | None = Field(default=None, description="for uniform")
    high: Duration | None = Field(default=None, description="for uniform")
    mean: Duration | None = Field(default=None, description="for exponential")

    @model_validator(mode="after")
    def _parameters(self) -> Spread:
        needed = {"fixed": ("value",), "uniform": ("low", "high"), "exponential": ("mean",)}
        missing = [n for n in needed[self.distribution] if getattr(self, n) is None]
        if missing:
            raise ValueError(f"a {self.distribution} spread needs {' and '.join(missing)}")
        if self.low is not None and self.high is not None and self.high < self.low:
            raise ValueError("high must not be less than low")
        return self


class RandomJob(_Strict):
    """A job's duration and its chance of failing, per attempt."""

    duration: Spread
    failure_probability: float = Field(default=0.0, ge=0.0, le=1.0)


class RandomEpisodes(_Strict):
    """Episodes (outages, incidents) arriving at random: `per_day` on average (Poisson)."""

    per_day: float = Field(ge=0.0, le=1000.0)
    duration: Spread


class RandomIncidents(RandomEpisodes):
    """Episodes in which one signal reads `value`."""

    signal: str = Field(min_length=1)
    value: float


class ForecastSpec(_Strict):
    """What varies between the runs of `stagectl simulate --forecast N`, drawn from `seed`."""

    seed: int = 0
    approval_delay: Spread | None = None
    jobs: dict[str, RandomJob] = Field(default_factory=dict)
    outages: RandomEpisodes | None = None
    incidents: list[RandomIncidents] = Field(default_factory=list)


class EnvironmentWorld(_Strict):
    """What one plan environment's Prometheus shows; what it leaves out, it shares with the
    scenario's own timelines (a signal not given here reads the scenario's)."""

    signals: dict[str, list[Point]] = Field(default_factory=dict)
    outages: list[Interval] | None = Field(default=None, description="default: the scenario's")
    alerts: list[AlertInterval] | None = Field(default=None, description="default: the scenario's")


class Scenario(_Strict):
    """Everything the simulated world does during one simulation."""

    name: str = Field(min_length=1)
    description: str = ""
    plan: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="the bundled plan the scenario is written for (default: stage-validation-v3); "
        "stagectl simulate runs it when no --plan is given",
    )
    start: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    duration: Duration = timedelta(days=30)
    tick: Duration = timedelta(minutes=1)
    rollout_uid: str = "simulated-rollout"
    signals: dict[str, list[Point]] = Field(default_factory=dict)
    outages: list[Interval] = Field(default_factory=list)
    alerts: list[AlertInterval] = Field(default_factory=list)
    approvals: Approvals = Approvals()
    jobs: dict[str, JobOutcome] = Field(default_factory=dict)
    commands: list[ScriptedCommand] = Field(default_factory=list)
    target: TargetBehaviour = TargetBehaviour()
    expect: dict[str, str] = Field(
        default_factory=dict, description="documented outcome (final_step, final_status)"
    )
    forecast: ForecastSpec | None = None
    environments: dict[str, EnvironmentWorld] = Field(
        default_factory=dict,
        description="per plan environment, its own timelines (staging's metrics are not production's)",
    )

    def world_of(self, environment: str) -> Scenario:
        """The scenario as one environment's Prometheus sees it."""
        given = self.environments.get(environment)
        if given is None:
            return self
        update = {
            "signals": {**self.signals, **given.signals},
            "outages": self.outages if given.outages is None else given.outages,
            "alerts": self.alerts if given.alerts is None else given.alerts,
        }
        return self.model_copy(update=update)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs a time zone offset, e.g. 2026-01-05T09:00:00Z")
        if not EARLIEST_START <= value <= LATEST_START:
            raise ValueError(
                f"start must lie between {EARLIEST_START:%Y-%m-%d} and {LATEST_START:%Y-%m-%d}"
            )
        return value

    @field_validator("tick")
    @classmethod
    def _positive_tick(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("tick must be longer than 0s")
        return value

    @field_validator("duration")
    @classmethod
    def _positive_duration(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("duration must be longer than 0s")
        return value


def check_scenario(
    scenario: Scenario,
    known_signals: Collection[str] | None = None,
    known_environments: Collection[str] | None = None,
) -> list[Problem]:
    """Rules across a scenario's fields: timelines move forward and name signals of the plan;
    per-environment timelines name environments of the plan."""
    problems = _check_timelines(scenario.signals, (), known_signals)
    for environment, world in scenario.environments.items():
        where: tuple[str | int, ...] = ("environments", environment)
        if known_environments is not None and environment not in known_environments:
            problems.append(
                Problem(
                    where,
                    f"the plan has no environment {environment!r} (its environments: "
                    f"{', '.join(known_environments)})",
                )
            )
        problems += _check_timelines(world.signals, where, known_signals)
    if scenario.tick > scenario.duration:
        problems.append(Problem(("tick",), "tick is longer than the scenario's duration"))
    elif scenario.duration / scenario.tick > MAX_SCENARIO_TICKS:
        problems.append(
            Problem(
                ("tick",),
                f"{format_duration(scenario.duration)} at a tick of {format_duration(scenario.tick)} "
                f"would be more than {MAX_SCENARIO_TICKS} ticks; use a longer tick",
            )
        )
    problems += check_forecast(scenario, known_signals)
    return problems


def _check_timelines(
    signals: dict[str, list[Point]],
    prefix: tuple[str | int, ...],
    known_signals: Collection[str] | None,
) -> list[Problem]:
    problems: list[Problem] = []
    for name, points in signals.items():
        where = (*prefix, "signals", name)
        if known_signals is not None and name not in known_signals:
            problems.append(
                Problem(
                    where,
                    f"the plan defines no signal {name!r} (its signals: {', '.join(sorted(known_signals))})",
                )
            )
        if not points:
            problems.append(Problem(where, "a timeline needs at least one point"))
            continue
        for index, (before, after) in enumerate(pairwise(points), start=1):
            if after.at <= before.at:
                problems.append(
                    Problem((*where, index, "at"), "points must be in increasing time order")
                )
    return problems


FORECAST_EPISODES_LIMIT = 5_000
"""Outages or incidents expected per run of a forecast, at most (per kind)."""


def check_forecast(scenario: Scenario, known_signals: Collection[str] | None) -> list[Problem]:
    """A forecast's incidents act on signals of the plan; episodes stay countable."""
    if scenario.forecast is None:
        return []
    days = scenario.duration / timedelta(days=1)
    problems = [
        Problem(
            ("forecast", "incidents", index, "signal"),
            f"the plan defines no signal {incident.signal!r}",
        )
        for index, incident in enumerate(scenario.forecast.incidents)
        if known_signals is not None and incident.signal not in known_signals
    ]
    episodes: list[tuple[tuple[str | int, ...], RandomEpisodes]] = [
        (("forecast", "incidents", index, "per_day"), incident)
        for index, incident in enumerate(scenario.forecast.incidents)
    ]
    if scenario.forecast.outages is not None:
        episodes.append((("forecast", "outages", "per_day"), scenario.forecast.outages))
    problems += [
        Problem(
            path,
            f"{spec.per_day:g} a day over {days:g} days is more than "
            f"{FORECAST_EPISODES_LIMIT:,} expected per run",
        )
        for path, spec in episodes
        if spec.per_day * days > FORECAST_EPISODES_LIMIT
    ]
    return problems


def parse_scenario(
    text: str,
    *,
    source: str,
    known_signals: Collection[str] | None = None,
    known_environments: Collection[str] | None = None,
) -> Scenario:
    """Parse and check a scenario's YAML text; raise DocumentError naming every problem.

    With `known_signals` (`known_environments`), scripting a signal (an environment) the
    plan does not define is a problem too.
    """
    return parse_document(
        text,
        Scenario,
        source=source,
        kind="scenario",
        checks=lambda scenario: check_scenario(scenario, known_signals, known_environments),
    )
