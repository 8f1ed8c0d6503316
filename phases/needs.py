"""What a driver must observe for a rollout's current status, and how it is judged.

`decide` reasons about verdicts; drivers fetch data. This module sits between the
two: `needs_of` lists the windows, alerts and baselines the current step needs,
and `judge` turns what a driver found for them into verdicts with the rules of
`phases.verdicts`. Every driver goes through both, so none can judge differently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from phases.plan import AlertsGate, AlertTrigger, Plan, SignalGate, SignalTrigger
from phases.status import IN_EFFECT_STATES, TERMINAL_STATES, RolloutStatus, StepState
from phases.steps import Step, steps_of
from phases.verdicts import (
    Outcome,
    Verdict,
    WindowSummary,
    judge_alert_trigger,
    judge_alerts,
    judge_gate,
    judge_trigger,
)

Role = Literal["gate", "trigger"]


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """One signal read over one window ending now, for a gate or a trigger."""

    role: Role
    key: str
    signal: str
    query: str
    window: timedelta
    condition: SignalGate | SignalTrigger


@dataclass(frozen=True, slots=True)
class AlertCheck:
    """Alerts that must not fire (gate) or whose firing is degradation (trigger)."""

    role: Role
    key: str
    alerts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BaselineCheck:
    """A signal's average over the step's time in effect, captured when the step is left."""

    signal: str
    query: str
    since: datetime


@dataclass(frozen=True, slots=True)
class AlertReading:
    """The alerts found firing (None when they could not be read, with the error)."""

    firing: frozenset[str] | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Needs:
    """Everything to observe for one rollout in one tick."""

    windows: tuple[WindowCheck, ...] = ()
    alerts: tuple[AlertCheck, ...] = ()
    baselines: tuple[BaselineCheck, ...] = ()
    mode_query: str | None = None
    alert_names: tuple[str, ...] = ()
    """Every alert name the checks read, sorted: one query answers them all."""


_GATE_STATES = IN_EFFECT_STATES
_TRIGGER_STATES = IN_EFFECT_STATES | {StepState.VERIFYING}
_MODE_STATES = frozenset({StepState.APPLYING, StepState.VERIFYING, StepState.ROLLING_BACK})
_Checks = tuple[tuple[WindowCheck, ...], tuple[AlertCheck, ...], tuple[str, ...]]
_STATIC: dict[tuple[str, str, bool, bool, bool], _Checks] = {}


def needs_of(plan: Plan, status: RolloutStatus, now: datetime, *, idle_gates: bool = True) -> Needs:
    """The observations the current step needs in its current state.

    With `idle_gates=False` the gates are left out while the soak is not over: they
    cannot change the decision then (the soak alone blocks promotion), only what a
    status display shows. Triggers are always read, for they can roll back.
    """
    if status.state in TERMINAL_STATES:
        return Needs()
    step = steps_of(plan).get(status.step)
    gates = status.state in _GATE_STATES and (
        idle_gates or status.soak_elapsed(now) >= step.min_duration
    )
    triggers = status.state in _TRIGGER_STATES and status.flags_applied_at is not None
    applied_at = status.flags_applied_at
    window_open = (
        applied_at is not None
        and not status.hold_for_approval
        and now - applied_at <= step.degradation_window + step.longest_trigger
    )
    windows, alerts, alert_names = _static_checks(plan, step, gates, triggers, window_open)
    baselines: tuple[BaselineCheck, ...] = ()
    in_effect_at = status.in_effect_at
    soaked = in_effect_at is not None and status.soak_elapsed(now) >= step.min_duration
    if gates and step.baseline_signals and in_effect_at is not None and soaked:
        baselines = tuple(
            BaselineCheck(signal, plan.signals[signal].query, in_effect_at)
            for signal in step.baseline_signals
        )
    mode_query = None
    if plan.observed_mode is not None and status.state in _MODE_STATES:
        mode_query = plan.signals[plan.observed_mode.signal].query
    return Needs(windows, alerts, baselines, mode_query, alert_names)


def _static_checks(
    plan: Plan, step: Step, gates: bool, triggers: bool, window_open: bool
) -> _Checks:
    """The step's checks; degradation-window triggers only while that window is open."""
    cache_key = (plan.content_hash, step.id, gates, triggers, window_open)
    cached = _STATIC.get(cache_key)
    if cached is not None:
        return cached
    windows: list[WindowCheck] = []
    alerts: list[AlertCheck] = []
    for gate in step.gates if gates else ():
        if isinstance(gate, SignalGate):
            query = plan.signals[gate.signal].query
            windows.append(WindowCheck("gate", gate.key, gate.signal, query, gate.window, gate))
        elif isinstance(gate, AlertsGate):
            alerts.append(AlertCheck("gate", gate.key, tuple(gate.no_firing_alerts)))
    for trigger in step.triggers if triggers else ():
        if trigger.scope == "degradation_window" and not window_open:
            continue
        if isinstance(trigger, SignalTrigger):
            query = plan.signals[trigger.signal].query
            windows.append(
                WindowCheck(
                    "trigger", trigger.key, trigger.signal, query, trigger.sustained_for, trigger
                )
            )
        elif isinstance(trigger, AlertTrigger):
            alerts.append(AlertCheck("trigger", trigger.key, (trigger.alert_firing,)))
    names = tuple(sorted({name for check in alerts for name in check.alerts}))
    built = (tuple(windows), tuple(alerts), names)
    _STATIC[cache_key] = built
    return built


def judge(
    plan: Plan,
    status: RolloutStatus,
    needs: Needs,
    summaries: Mapping[tuple[str, timedelta], WindowSummary],
    alerts: AlertReading,
) -> tuple[dict[str, Verdict], dict[str, Verdict]]:
    """Verdicts for the gates and triggers of `needs` from what the driver read.

    `summaries` is keyed by (query, window): identical reads are made once.
    """
    gap = plan.evaluation.gap_tolerance
    gates: dict[str, Verdict] = {}
    triggers: dict[str, Verdict] = {}
    baselines = tuple(sorted(status.baselines.items())) if status.baselines else ()
    for check in needs.windows:
        summary = summaries.get((check.query, check.window))
        if summary is None:
            verdict = Verdict(check.key, Outcome.UNKNOWN, "no reading was made", query=check.query)
        else:
            verdict = _judge_window(check, summary, baselines, gap)
        (gates if check.role == "gate" else triggers)[check.key] = verdict
    for alert_check in needs.alerts:
        if alert_check.role == "gate":
            gates[alert_check.key] = judge_alerts(
                alert_check.key, alert_check.alerts, alerts.firing, alerts.error
            )
        else:
            triggers[alert_check.key] = judge_alert_trigger(
                alert_check.key, alert_check.alerts[0], alerts.firing, alerts.error
            )
    return gates, triggers


_JUDGED: dict[
    tuple[int, int, tuple[tuple[str, float], ...], timedelta],
    tuple[WindowCheck, WindowSummary, Verdict],
] = {}
_JUDGED_LIMIT = 4096


def _judge_window(
    check: WindowCheck,
    summary: WindowSummary,
    baselines: tuple[tuple[str, float], ...],
    gap: timedelta,
) -> Verdict:
    """Judge one window; verdicts are pure, so a steady signal is judged once.

    Checks and steady summaries are shared objects, so the memo is keyed by their
    identity (cheap) and keeps them alive, so that an id is never reused while cached.
    """
    key = (id(check), id(summary), baselines, gap)
    hit = _JUDGED.get(key)
    if hit is not None and hit[0] is check and hit[1] is summary:
        return hit[2]
    if isinstance(check.condition, SignalGate):
        verdict = judge_gate(check.condition, summary, dict(baselines), gap)
    else:
        verdict = judge_trigger(check.condition, summary, dict(baselines), gap)
    if len(_JUDGED) >= _JUDGED_LIMIT:
        _JUDGED.clear()
    _JUDGED[key] = (check, summary, verdict)
    return verdict


def mode_from_value(plan: Plan, value: float) -> str | None:
    """The mode name an observed-mode sample stands for, or None when it matches none."""
    if plan.observed_mode is None:
        return None
    for mode, expected in plan.observed_mode.values.items():
        if abs(value - expected) < 1e-9:
            return mode
    return None
