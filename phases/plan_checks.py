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
from phases.flag_types import EnumFlag, FlagSet, check_flag_name
from phases.numbers import short
from phases.plan import (
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
    declarations = list(_check_declarations(plan))
    problems = [*_check_ids(plan), *declarations]
    if declarations:
        return problems
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


def _check_declarations(plan: Plan) -> Iterator[Problem]:
    """One exposure flag at most, safe values of the declared type, a real observed flag."""
    declared = plan.flags or {}
    for name in declared:
        try:
            check_flag_name(name)
        except ValueError as error:
            yield Problem(("flags", name), str(error))
    exposures = [name for name, flag in declared.items() if flag.exposure]
    for name in exposures[1:]:
        yield Problem(
            ("flags", name, "exposure"),
            f"{exposures[0]} is already the exposure percentage; a plan has at most one",
        )
    for name, flag in declared.items():
        if flag.safe is not None:
            try:
                flag.normalise(name, flag.safe)
            except ValueError as error:
                yield Problem(("flags", name, "safe"), str(error))
    observed = plan.observed_mode
    if observed is None:
        return
    read = plan.flag_set.declared.get(observed.flag)
    if not isinstance(read, EnumFlag):
        kind = "is not declared" if read is None else "is not an enum flag"
        yield Problem(
            ("observed_mode", "flag"),
            f"observed_mode reads flag {observed.flag!r}, which {kind}; name the enum flag "
            "whose value the app reports as observed_mode.flag",
        )
        return
    missing = [value for value in read.values if value not in observed.values]
    if missing and plan.flags is not None:
        yield Problem(
            ("observed_mode", "values"),
            f"observed_mode gives no signal value for {observed.flag}={', '.join(missing)}; "
            "a step at that value could never be seen in effect",
        )


def _check_flags(plan: Plan) -> Iterator[Problem]:
    flags = plan.flag_set
    for p, phase in enumerate(plan.phases):
        for name, value in phase.flags.items():
            yield from _flag_problem(flags, ("phases", p, "flags", name), name, value)
    for path, phase, spec in _step_specs(plan):
        for name, value in spec.flags.items():
            yield from _flag_problem(flags, (*path, "flags", name), name, value)
        missing = [
            flag for flag in flags.names if flag not in phase.flags and flag not in spec.flags
        ]
        if missing:
            every = "all four flags" if plan.flags is None else "every declared flag"
            yield Problem(
                (*path, "flags"),
                f"step {spec.id!r} leaves {', '.join(missing)} unset; every step sets {every} "
                "so that no two steps' flags are ever mixed",
            )


def _flag_problem(flags: FlagSet, path: Path, name: str, value: object) -> Iterator[Problem]:
    try:
        flags.normalise(name, value)
    except ValueError as error:
        yield Problem(path, str(error))


def _flag_text(plan: Plan, phase: Phase, spec: StepSpec, name: str) -> str:
    return plan.flag_set.normalise(name, {**phase.flags, **spec.flags}[name])


def _check_progression(plan: Plan) -> Iterator[Problem]:
    exposure = plan.flag_set.exposure
    previous: tuple[Path, Phase, StepSpec] | None = None
    for current in _step_specs(plan):
        if previous is not None:
            if exposure is not None:
                yield from _check_exposure(plan, exposure, previous, current)
            yield from _check_signed_changes(plan, previous, current)
        previous = current
    first_path, first_phase, _spec = next(_step_specs(plan))
    if first_phase.on_degradation == "rollback" and first_phase.triggers:
        yield Problem(
            ("phases", 0, "on_degradation"),
            f"the first step has no earlier step to roll back to; set on_degradation: pause "
            f"(at {_dotted(first_path)})",
        )


def _check_exposure(
    plan: Plan,
    name: str,
    previous: tuple[Path, Phase, StepSpec],
    current: tuple[Path, Phase, StepSpec],
) -> Iterator[Problem]:
    """The exposure percentage never falls, rises within a phase, and rises only with approval."""
    before_path, before_phase, before_spec = previous
    path, phase, spec = current
    before = int(_flag_text(plan, before_phase, before_spec, name))
    now = int(_flag_text(plan, phase, spec, name))
    same_phase = before_phase is phase
    if now < before or (same_phase and now == before):
        yield Problem(
            (*path, "flags", name),
            f"step {spec.id!r} sets {name}={now} after {before_spec.id!r} set "
            f"{before}; steps must increase the percentage"
            + (" within a phase" if same_phase else ""),
        )
    approval = before_spec.approval or before_phase.approval
    if now > before and not approval.required:
        yield Problem(
            (*before_path, "approval", "required"),
            f"promotion out of {before_spec.id!r} raises {name} from {before} to "
            f"{now}, so it must require an approval",
        )


def _check_signed_changes(
    plan: Plan, previous: tuple[Path, Phase, StepSpec], current: tuple[Path, Phase, StepSpec]
) -> Iterator[Problem]:
    """A flag marked approval_to_change changes only on a promotion that needs an approval."""
    before_path, before_phase, before_spec = previous
    _path, phase, spec = current
    approval = before_spec.approval or before_phase.approval
    if approval.required:
        return
    for name in plan.flag_set.approval_flags:
        before = _flag_text(plan, before_phase, before_spec, name)
        now = _flag_text(plan, phase, spec, name)
        if before != now:
            yield Problem(
                (*before_path, "approval", "required"),
                f"promotion out of {before_spec.id!r} changes {name} (marked approval_to_change) "
                f"from {short(before)} to {short(now)}, so it must require an approval",
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
