"""Run a conformance scenario through `simulate` and answer questions about what it did.

The conformance table states each runbook expectation as data (the steps walked,
when a step may first be left, when a rollback must have happened, which flags the
target is asked for); this module turns a simulation into the facts those
expectations are checked against. It reads only the run's own record: transitions,
percent changes, and the flags every tick asked the target for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from controller.catalog import load_plan, load_scenario
from controller.sim.simulation import SimulationResult, simulate
from phases.decide import expected_flags
from phases.durations import parse_duration
from phases.status import IN_EFFECT_STATES, RolloutStatus, TransitionRecord
from phases.steps import steps_of

SCENARIOS = Path(__file__).parent / "scenarios"
PLAN = load_plan()
MOVES = ("promote", "rollback")


@dataclass(frozen=True)
class FlagsSeen:
    """From `offset` (seconds into the scenario) on, the step and the flags it asks for."""

    offset: float
    step: str
    in_effect: bool
    flags: Mapping[str, str]


@dataclass
class Outcome:
    """One scenario's simulation, with the questions the conformance table asks of it."""

    name: str
    result: SimulationResult
    flags: list[FlagsSeen] = field(default_factory=list)

    @property
    def start(self) -> datetime:
        return self.result.start

    def offset(self, record: TransitionRecord) -> timedelta:
        return record.at - self.start

    @property
    def moves(self) -> list[TransitionRecord]:
        return [t for t in self.result.transitions if t.trigger in MOVES]

    @property
    def path(self) -> tuple[str, ...]:
        """The steps in the order the rollout stood on them, rollbacks included."""
        first = PLAN_STEPS.first.id
        return (first, *(t.to_step for t in self.moves))

    @property
    def rollbacks(self) -> list[TransitionRecord]:
        return [t for t in self.result.transitions if t.trigger == "rollback"]

    def first_promotion_from(self, step: str) -> TransitionRecord | None:
        return next(
            (t for t in self.result.transitions if t.trigger == "promote" and t.from_step == step),
            None,
        )

    def in_effect_before(self, step: str, at: datetime) -> datetime | None:
        """When `step` last took effect (was verified) at or before `at`."""
        times = [
            t.at
            for t in self.result.transitions
            if t.trigger == "verified" and t.to_step == step and t.at <= at
        ]
        return times[-1] if times else None

    def phase_span(self, phase: str) -> timedelta | None:
        """From first standing on a step of `phase` to first standing on a later phase."""
        entered: datetime | None = self.start if _in_phase(self.path[0], phase) else None
        for move in self.moves:
            if entered is None and _in_phase(move.to_step, phase):
                entered = move.at
            elif entered is not None and not _in_phase(move.to_step, phase):
                return move.at - entered
        return None

    @property
    def max_percent(self) -> int:
        return max(percent for _offset, percent in self.result.percent_changes)

    def flags_from(self, offset: timedelta) -> list[FlagsSeen]:
        """The flags asked for from `offset` to the end (the record in force then included)."""
        seconds = offset.total_seconds()
        earlier = [seen for seen in self.flags if seen.offset <= seconds]
        later = [seen for seen in self.flags if seen.offset > seconds]
        return earlier[-1:] + later

    def flags_in_effect(self, step: str) -> list[Mapping[str, str]]:
        return [seen.flags for seen in self.flags if seen.step == step and seen.in_effect]


PLAN_STEPS = steps_of(PLAN)


def _in_phase(step: str, phase: str) -> bool:
    return step == phase or step.startswith(f"{phase}@")


def offset(text: str) -> timedelta:
    return parse_duration(text)


@cache
def run(name: str) -> Outcome:
    """Simulate scenario `name` once per test session against the bundled plan."""
    scenario = load_scenario(str(SCENARIOS / f"{name}.yaml"), PLAN)
    steps = steps_of(PLAN)
    seen: list[FlagsSeen] = []

    def record(now: datetime, status: RolloutStatus) -> None:
        flags = dict(expected_flags(steps.get(status.step), status)[0])
        in_effect = status.state in IN_EFFECT_STATES
        last = seen[-1] if seen else None
        if last is None or (last.step, last.in_effect, last.flags) != (
            status.step,
            in_effect,
            flags,
        ):
            seconds = (now - scenario.start).total_seconds()
            seen.append(FlagsSeen(seconds, status.step, in_effect, flags))

    result = simulate(PLAN, scenario, on_tick=record)
    return Outcome(name, result, seen)


def scenario_names() -> list[str]:
    return sorted(path.stem for path in SCENARIOS.glob("*.yaml"))


def scenario_comment(name: str) -> str:
    """The scenario's leading comment as one line of text, '#' markers removed."""
    lines = (SCENARIOS / f"{name}.yaml").read_text(encoding="utf-8").splitlines()
    comment = [line.removeprefix("#").strip() for line in lines if line.startswith("#")]
    return " ".join(comment)
