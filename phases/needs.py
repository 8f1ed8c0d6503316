"""What a driver must observe for a rollout's current status, and how it is judged.

`decide` reasons about verdicts; drivers fetch data. This module sits between the
two: `needs_of` lists the windows, alerts and baselines the current step needs,
and `judge` turns what a driver found for them into verdicts with the rules of
`phases.verdicts`. Every driver goes through both, so none can judge differently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal

from phases.baselines import baseline_values
from phases.plan import AlertsGate, AlertTrigger, Plan, SignalGate, SignalTrigger
from phases.status import IN_EFFECT_STATES, TERMINAL_STATES, RolloutStatus, StepState
from phases.steps import Step, steps_of
from phases.verdicts import (
    AlertHistory,
    Outcome,
    Verdict,
    WindowSummary,
    judge_alert_history_trigger,
    judge_alert_trigger,
    judge_alert_window,
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
class AlertWindowCheck:
    """Alerts read from the alert history over a window ending now, for a gate or a trigger.

    `coverage_query` is the plan's `evaluation.alert_coverage` (None: the plan has
    none, and the history is taken as complete wherever Prometheus answered).
    """

    role: Role
    key: str
    alerts: tuple[str, ...]
    window: timedelta
    coverage_query: str | None
    sustained_for: timedelta | None = None

    @property
    def read_key(self) -> tuple[tuple[str, ...], timedelta]:
        """Checks with the same key read the same history: one read serves them all."""
        return (self.alerts, self.window)


UNTIMED_ALERT_READ = timedelta(hours=1)
"""How far back an alert trigger without `for` looks for the moment its alert became active."""


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
    alert_windows: tuple[AlertWindowCheck, ...] = ()


_GATE_STATES = IN_EFFECT_STATES
_TRIGGER_STATES = IN_EFFECT_STATES | {StepState.VERIFYING}
_MODE_STATES = frozenset({StepState.APPLYING, StepState.VERIFYING, StepState.ROLLING_BACK})
_Checks = tuple[
    tuple[WindowCheck, ...], tuple[AlertCheck, ...], tuple[str, ...], tuple[AlertWindowCheck, ...]
]
_STATIC: dict[tuple[str, str, bool, bool, bool], _Checks] = {}
_RANGE = re.compile(r"\[\s*((?:\d+(?:ms|[smhdwy]))+)\s*(?::[^\]]*)?\]")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+)(ms|[smhdwy])")


@lru_cache(maxsize=256)
def query_lookback(query: str) -> timedelta:
    """The longest range selector of a PromQL query: how far before a sample its data reaches.

    A sample of `rate(x[5m])` at t is made of data from (t - 5m, t], so evidence
    that must lie after a moment starts that much earlier than its first sample.
    Offsets are not counted: the bundled signals use none.
    """
    longest = 0.0
    for match in _RANGE.finditer(query):
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(match.group(1)))
        longest = max(longest, seconds)
    return timedelta(seconds=longest)


def degradation_window_open(step: Step, status: RolloutStatus, now: datetime) -> bool:
    """Whether the step's degradation window can still see evidence.

    The window runs from when the step is in effect, so a slow rollout never
    shortens it: until the step is in effect, it is open (unless a rollback holds
    the step, whose window is closed: it was not an increase).
    """
    if status.hold_for_approval or status.flags_applied_at is None:
        return False
    if status.in_effect_at is None:
        return True
    return now - status.in_effect_at <= step.degradation_window + step.longest_trigger


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
    window_open = degradation_window_open(step, status, now)
    windows, alerts, alert_names, alert_windows = _static_checks(
        plan, step, gates, triggers, window_open
    )
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
    return Needs(windows, alerts, baselines, mode_query, alert_names, alert_windows)


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
    histories: list[AlertWindowCheck] = []
    coverage_query = plan.evaluation.alert_coverage
    for gate in step.gates if gates else ():
        if isinstance(gate, SignalGate):
            query = plan.signals[gate.signal].query
            windows.append(WindowCheck("gate", gate.key, gate.signal, query, gate.window, gate))
        elif isinstance(gate, AlertsGate) and gate.window is not None:
            names = tuple(gate.no_firing_alerts)
            histories.append(AlertWindowCheck("gate", gate.key, names, gate.window, coverage_query))
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
            read = trigger.sustained_for or UNTIMED_ALERT_READ
            histories.append(
                AlertWindowCheck(
                    "trigger",
                    trigger.key,
                    (trigger.alert_firing,),
                    read,
                    coverage_query,
                    trigger.sustained_for,
                )
            )
    names = tuple(sorted({name for check in alerts for name in check.alerts}))
    built = (tuple(windows), tuple(alerts), names, tuple(histories))
    _STATIC[cache_key] = built
    return built


def judge(
    plan: Plan,
    status: RolloutStatus,
    needs: Needs,
    summaries: Mapping[tuple[str, timedelta], WindowSummary],
    alerts: AlertReading,
    histories: Mapping[tuple[tuple[str, ...], timedelta], AlertHistory] | None = None,
) -> tuple[dict[str, Verdict], dict[str, Verdict]]:
    """Verdicts for the gates and triggers of `needs` from what the driver read.

    `summaries` is keyed by (query, window), `histories` by (alerts, window):
    identical reads are made once.
    """
    gap = plan.evaluation.gap_tolerance
    gates: dict[str, Verdict] = {}
    triggers: dict[str, Verdict] = {}
    values = baseline_values(plan, status) if status.baselines or plan.baselines else {}
    baselines = tuple(sorted(values.items()))
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
    for history_check in needs.alert_windows:
        (gates if history_check.role == "gate" else triggers)[history_check.key] = _judge_history(
            history_check, (histories or {}).get(history_check.read_key), gap
        )
    return gates, triggers


def _judge_history(
    check: AlertWindowCheck, history: AlertHistory | None, gap: timedelta
) -> Verdict:
    if history is None:
        return Verdict(check.key, Outcome.UNKNOWN, "no reading of the alert history was made")
    if check.role == "gate":
        return judge_alert_window(check.key, check.alerts, history, gap)
    return judge_alert_history_trigger(
        check.key, check.alerts[0], check.sustained_for, history, gap
    )


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
