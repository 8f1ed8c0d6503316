"""Rules that tie a plan's fields together, each problem with its field path.

Pydantic checks each field's shape; these checks need the whole plan (a gate
naming a signal, percent rising only with an approval, jobs ordered). They run
after parsing so that every problem points at the field to fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from phases.documents import Path, Problem, parse_document
from phases.durations import format_duration
from phases.flags import normalise_flag
from phases.plan import (
    KNOWN_FLAGS,
    PERCENT_FLAG,
    AdaptiveThreshold,
    AlertsGate,
    AlertTrigger,
    JobGate,
    Phase,
    Plan,
    SignalGate,
    SignalTrigger,
    StepSpec,
)


def parse_plan(text: str, *, source: str) -> Plan:
    """Parse and check a plan's YAML text; raise DocumentError naming every problem."""
    return parse_document(text, Plan, source=source, kind="plan", checks=check_plan)


def check_plan(plan: Plan) -> list[Problem]:
    """Every cross-field problem of the plan; an empty list means the plan is usable."""
    problems = list(_check_ids(plan))
    problems += _check_flags(plan)
    if problems:
        return problems
    problems += _check_progression(plan)
    problems += _check_references(plan)
    problems += _check_durations(plan)
    problems += _check_alert_history(plan)
    problems += _check_environments(plan)
    return problems


def _check_environments(plan: Plan) -> Iterator[Problem]:
    """A phase names one of the plan's environments, so every step has a target to go to."""
    for p, phase in enumerate(plan.phases):
        if phase.environment is not None and phase.environment not in plan.environments:
            yield Problem(
                ("phases", p, "environment"),
                f"environment {phase.environment!r} is not one of the plan's environments "
                f"({', '.join(plan.environments)})",
            )


def _check_alert_history(plan: Plan) -> Iterator[Problem]:
    """Windowed alert gates read the alert history, whose gaps only a coverage signal shows."""
    coverage = plan.evaluation.alert_coverage
    for p, phase in enumerate(plan.phases):
        owners = [(("phases", p), phase.gates, phase.triggers)] + [
            (("phases", p, "steps", s), spec.gates, spec.triggers)
            for s, spec in enumerate(phase.steps)
        ]
        for base, gates, triggers in owners:
            for g, gate in enumerate(gates):
                if not isinstance(gate, AlertsGate) or gate.window is None:
                    continue
                path = (*base, "gates", g, "window")
                if gate.window <= timedelta(0):
                    yield Problem(path, "a gate's window must be longer than 0s")
                elif coverage is None:
                    yield Problem(
                        path,
                        "an alert gate with a window reads the alert history; give the query "
                        "that shows where it has gaps as evaluation.alert_coverage",
                    )
            for t, trigger in enumerate(triggers):
                held = trigger.sustained_for if isinstance(trigger, AlertTrigger) else None
                if held is not None and held <= timedelta(0):
                    yield Problem(
                        (*base, "triggers", t, "for"),
                        "an alert trigger's for must be longer than 0s",
                    )


def _step_specs(plan: Plan) -> Iterator[tuple[Path, Phase, StepSpec]]:
    for p, phase in enumerate(plan.phases):
        if phase.steps:
            for s, spec in enumerate(phase.steps):
                yield ("phases", p, "steps", s), phase, spec
        else:
            yield ("phases", p), phase, StepSpec(id=phase.id)


def _check_ids(plan: Plan) -> Iterator[Problem]:
    seen_phases: set[str] = set()
    reported: set[Path] = set()
    for p, phase in enumerate(plan.phases):
        if phase.id in seen_phases:
            reported.add(("phases", p, "id"))
            yield Problem(("phases", p, "id"), f"phase id {phase.id!r} appears twice")
        seen_phases.add(phase.id)
    seen_steps: set[str] = set()
    for path, _phase, spec in _step_specs(plan):
        # A phase without steps is its own step: a repeated phase id is reported once.
        if spec.id in seen_steps and (*path, "id") not in reported:
            yield Problem((*path, "id"), f"step id {spec.id!r} appears twice")
        seen_steps.add(spec.id)


def _check_flags(plan: Plan) -> Iterator[Problem]:
    for p, phase in enumerate(plan.phases):
        for name, value in phase.flags.items():
            yield from _flag_problem(("phases", p, "flags", name), name, value)
    for path, phase, spec in _step_specs(plan):
        for name, value in spec.flags.items():
            yield from _flag_problem((*path, "flags", name), name, value)
        missing = [
            flag for flag in KNOWN_FLAGS if flag not in phase.flags and flag not in spec.flags
        ]
        if missing:
            yield Problem(
                (*path, "flags"),
                f"step {spec.id!r} leaves {', '.join(missing)} unset; every step sets all four "
                "flags so that no two steps' flags are ever mixed",
            )


def _flag_problem(path: Path, name: str, value: object) -> Iterator[Problem]:
    try:
        normalise_flag(name, value)  # type: ignore[arg-type]
    except ValueError as error:
        yield Problem(path, str(error))


def _percent(phase: Phase, spec: StepSpec) -> int:
    return int(normalise_flag(PERCENT_FLAG, {**phase.flags, **spec.flags}[PERCENT_FLAG]))


def _check_progression(plan: Plan) -> Iterator[Problem]:
    previous: tuple[Path, Phase, StepSpec] | None = None
    for current in _step_specs(plan):
        path, phase, spec = current
        if previous is not None:
            before_path, before_phase, before_spec = previous
            before, now = _percent(before_phase, before_spec), _percent(phase, spec)
            same_phase = before_phase is phase
            if now < before or (same_phase and now == before):
                yield Problem(
                    (*path, "flags", PERCENT_FLAG),
                    f"step {spec.id!r} sets {PERCENT_FLAG}={now} after {before_spec.id!r} set "
                    f"{before}; steps must increase the percentage"
                    + (" within a phase" if same_phase else ""),
                )
            approval = before_spec.approval or before_phase.approval
            if now > before and not approval.required:
                yield Problem(
                    (*before_path, "approval", "required"),
                    f"promotion out of {before_spec.id!r} raises {PERCENT_FLAG} from {before} to "
                    f"{now}, so it must require an approval",
                )
        previous = current
    first_path, first_phase, _spec = next(_step_specs(plan))
    if first_phase.on_degradation == "rollback" and first_phase.triggers:
        yield Problem(
            ("phases", 0, "on_degradation"),
            f"the first step has no earlier step to roll back to; set on_degradation: pause "
            f"(at {_dotted(first_path)})",
        )


def _check_references(plan: Plan) -> Iterator[Problem]:
    captured: set[str] = set(plan.baselines)
    for signal in plan.baselines:
        if signal not in plan.signals:
            yield _unknown_signal(("baselines", signal), signal, plan)
    all_jobs: set[str] = set()
    if plan.observed_mode and plan.observed_mode.signal not in plan.signals:
        yield _unknown_signal(("observed_mode", "signal"), plan.observed_mode.signal, plan)
    for p, phase in enumerate(plan.phases):
        base: Path = ("phases", p)
        jobs_here: set[str] = set()
        for j, job in enumerate(phase.jobs):
            if job.name in all_jobs:
                yield Problem((*base, "jobs", j, "name"), f"job name {job.name!r} appears twice")
            for a, needed in enumerate(job.after):
                if needed not in jobs_here:
                    yield Problem(
                        (*base, "jobs", j, "after", a),
                        f"job {job.name!r} runs after {needed!r}, which is not a job declared "
                        f"earlier in phase {phase.id!r}",
                    )
            jobs_here.add(job.name)
            all_jobs.add(job.name)
        if phase.baseline:
            for s, signal in enumerate(phase.baseline.signals):
                if signal not in plan.signals:
                    yield _unknown_signal((*base, "baseline", "signals", s), signal, plan)
        yield from _check_conditions(plan, phase, base, captured, jobs_here)
        for s, spec in enumerate(phase.steps):
            yield from _check_conditions(
                plan, phase, (*base, "steps", s), captured, jobs_here, spec=spec
            )
        if phase.baseline:
            captured.update(phase.baseline.signals)


def _check_conditions(
    plan: Plan,
    phase: Phase,
    base: Path,
    captured: set[str],
    jobs: set[str],
    spec: StepSpec | None = None,
) -> Iterator[Problem]:
    owner = spec or phase
    names: set[str] = {gate.key for gate in phase.gates} if spec else set()
    for g, gate in enumerate(owner.gates):
        path = (*base, "gates", g)
        if gate.key in names:
            yield Problem(
                (*path, "name"), f"two gates of one step are both called {gate.key!r}; name them"
            )
        names.add(gate.key)
        if isinstance(gate, SignalGate):
            yield from _check_signal_use(plan, path, gate, captured)
            if gate.window <= timedelta(0):
                yield Problem((*path, "window"), "a gate's window must be longer than 0s")
        elif isinstance(gate, JobGate) and gate.job_succeeded not in jobs:
            yield Problem(
                (*path, "job_succeeded"),
                f"gate names job {gate.job_succeeded!r}, which phase {phase.id!r} does not declare"
                + (f" (jobs: {', '.join(sorted(jobs))})" if jobs else ""),
            )
        elif isinstance(gate, AlertsGate) and any(not alert for alert in gate.no_firing_alerts):
            yield Problem((*path, "no_firing_alerts"), "alert names must not be empty")
    trigger_names: set[str] = {t.key for t in phase.triggers} if spec else set()
    for t, trigger in enumerate(owner.triggers):
        path = (*base, "triggers", t)
        if trigger.key in trigger_names:
            yield Problem(
                (*path, "name"), f"two triggers of one step are both called {trigger.key!r}"
            )
        trigger_names.add(trigger.key)
        if isinstance(trigger, SignalTrigger):
            yield from _check_signal_use(plan, path, trigger, captured)
        elif isinstance(trigger, AlertTrigger) and not trigger.alert_firing:
            yield Problem((*path, "alert_firing"), "alert name must not be empty")
        if trigger.scope == "degradation_window" and phase.degradation_window <= timedelta(0):
            yield Problem(
                (*path, "scope"),
                f"trigger is scoped to the degradation window, but phase {phase.id!r} sets no "
                "degradation_window",
            )


def _check_signal_use(
    plan: Plan, path: Path, condition: SignalGate | SignalTrigger, captured: set[str]
) -> Iterator[Problem]:
    if condition.signal not in plan.signals:
        yield _unknown_signal((*path, "signal"), condition.signal, plan)
    threshold = condition.threshold
    if isinstance(threshold, AdaptiveThreshold):
        if threshold.baseline not in plan.signals:
            yield _unknown_signal((*path, "threshold", "baseline"), threshold.baseline, plan)
        elif threshold.baseline not in captured:
            yield Problem(
                (*path, "threshold", "baseline"),
                f"adaptive threshold uses the baseline of {threshold.baseline!r}, which no earlier "
                "phase captures (add it to an earlier phase's baseline.signals, or pin or carry "
                "it in the plan's baselines)",
            )


def _check_durations(plan: Plan) -> Iterator[Problem]:
    for path, phase, spec in _step_specs(plan):
        low = spec.min_duration if spec.min_duration is not None else phase.min_duration
        high = spec.max_duration if spec.max_duration is not None else phase.max_duration
        if high is not None and low > high:
            where = (
                path if spec.max_duration is not None or spec.min_duration is not None else path[:2]
            )
            yield Problem(
                (*where, "min_duration"),
                f"step {spec.id!r} has min_duration {format_duration(low)} longer than max_duration "
                f"{format_duration(high)}",
            )


def _unknown_signal(path: Path, name: str, plan: Plan) -> Problem:
    return Problem(
        path, f"unknown signal {name!r}; the plan defines {', '.join(sorted(plan.signals))}"
    )


def _dotted(path: Path) -> str:
    return ".".join(f"[{part}]" if isinstance(part, int) else part for part in path).replace(
        ".[", "["
    )
