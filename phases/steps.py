"""Phases flattened into the ordered steps a rollout walks through.

The plan groups steps in phases so that shared gates and flags are written once;
the decision core works on steps, each carrying everything it needs resolved.
Resolution is cached per plan hash, because `decide` runs once per tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from types import MappingProxyType

from phases.flags import hash_flags
from phases.plan import (
    AlertsGate,
    AlertTrigger,
    ApprovalPolicy,
    Degradation,
    JobGate,
    JobSpec,
    Phase,
    Plan,
    SignalGate,
    SignalTrigger,
    StepSpec,
)

GateSpec = SignalGate | AlertsGate | JobGate
TriggerSpec = SignalTrigger | AlertTrigger


@dataclass(frozen=True, slots=True)
class Step:
    """One step with its phase's defaults applied: the unit `decide` reasons about."""

    index: int
    id: str
    phase_id: str
    phase_name: str
    flags: Mapping[str, str]
    flags_hash: str
    percent: int
    """The plan's exposure flag at this step (0 for a plan without one)."""
    mode: str
    """The plan's mode flag at this step (`Plan.mode_flag`; empty for a plan without one)."""
    min_duration: timedelta
    max_duration: timedelta | None
    approval: ApprovalPolicy
    gates: tuple[GateSpec, ...]
    triggers: tuple[TriggerSpec, ...]
    degradation_window: timedelta
    on_degradation: Degradation
    baseline_signals: tuple[str, ...]
    jobs: tuple[JobSpec, ...]

    longest_trigger: timedelta
    """The longest `for` of the step's signal triggers."""

    gate_windows: tuple[timedelta | None, ...] = ()
    """Per gate, the window all its samples must lie in with the step in effect (None: no window)."""

    environment: str = "default"
    """The plan environment (staging, production, ...) whose target the step's flags go to."""


@dataclass(frozen=True, slots=True)
class StepTable:
    """The ordered steps of one plan, looked up by id."""

    steps: tuple[Step, ...]
    by_id: Mapping[str, Step]

    def get(self, step_id: str) -> Step:
        try:
            return self.by_id[step_id]
        except KeyError:
            known = ", ".join(step.id for step in self.steps)
            raise KeyError(f"step {step_id!r} is not in the plan (steps: {known})") from None

    def after(self, step: Step) -> Step | None:
        return self.steps[step.index + 1] if step.index + 1 < len(self.steps) else None

    def before(self, step: Step) -> Step | None:
        return self.steps[step.index - 1] if step.index > 0 else None

    @property
    def first(self) -> Step:
        return self.steps[0]


_CACHE: dict[str, StepTable] = {}


def steps_of(plan: Plan) -> StepTable:
    """Resolve (once per plan hash) the plan's phases into its ordered steps."""
    table = _CACHE.get(plan.content_hash)
    if table is None:
        table = _resolve(plan)
        _CACHE[plan.content_hash] = table
    return table


def _resolve(plan: Plan) -> StepTable:
    steps: list[Step] = []
    for phase in plan.phases:
        specs = phase.steps or [StepSpec(id=phase.id)]
        for position, spec in enumerate(specs):
            step = _resolve_step(plan, len(steps), phase, spec, first_of_phase=position == 0)
            steps.append(replace(step, environment=plan.environment_of(phase)))
    return StepTable(steps=tuple(steps), by_id=MappingProxyType({s.id: s for s in steps}))


def _resolve_step(
    plan: Plan, index: int, phase: Phase, spec: StepSpec, *, first_of_phase: bool
) -> Step:
    raw = {**phase.flags, **spec.flags}
    declared = plan.flag_set
    flags = {name: declared.normalise(name, value) for name, value in sorted(raw.items())}
    mode_flag = plan.mode_flag
    triggers = (*phase.triggers, *spec.triggers)
    return Step(
        index=index,
        id=spec.id,
        phase_id=phase.id,
        phase_name=phase.name,
        flags=MappingProxyType(flags),
        flags_hash=hash_flags(flags),
        percent=declared.percent(flags),
        mode=flags.get(mode_flag, "") if mode_flag else "",
        min_duration=spec.min_duration if spec.min_duration is not None else phase.min_duration,
        max_duration=spec.max_duration if spec.max_duration is not None else phase.max_duration,
        approval=spec.approval or phase.approval,
        gates=(*phase.gates, *spec.gates),
        triggers=triggers,
        degradation_window=phase.degradation_window,
        on_degradation=phase.on_degradation,
        baseline_signals=tuple(phase.baseline.signals) if phase.baseline and first_of_phase else (),
        jobs=tuple(phase.jobs) if first_of_phase else (),
        longest_trigger=max(
            (t.sustained_for for t in triggers if isinstance(t, SignalTrigger)),
            default=timedelta(0),
        ),
        gate_windows=tuple(_gate_window(gate) for gate in (*phase.gates, *spec.gates)),
    )


def _gate_window(gate: GateSpec) -> timedelta | None:
    """A gate's samples must all be taken with the step in effect, so a slow rollout never
    shortens its window. (Unlike a trigger after a rollback, a gate's first samples may
    still reflect the step before through the query's own rate window: that step was
    healthy enough to promote, and the soak is as long as the longest window anyway.)
    """
    if isinstance(gate, SignalGate | AlertsGate):
        return gate.window
    return None
