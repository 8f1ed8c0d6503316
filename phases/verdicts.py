"""Verdict rules: how a window of samples becomes `pass`, `fail` or `unknown`.

Every metrics source (Prometheus, scripted timelines) summarises the samples it
found for a window into a `WindowSummary`; the rules here turn a summary into a
verdict with its evidence. Keeping the rules in one place means the operator,
`simulate` and `replay` cannot disagree about what "sustained" or "no data" means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from phases.durations import format_duration
from phases.plan import AdaptiveThreshold, Comparator, SignalGate, SignalTrigger, Threshold

POINTS_KEPT = 120
"""Samples a summary keeps with their times: a trigger's `for` or a 30m gate window at the
usual resolution, not a 24 h one (summaries live on in the verdict memo of `phases.needs`,
so this bounds the memory they hold)."""


class Outcome(StrEnum):
    """What a gate or trigger evaluation concluded."""

    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """What a source found for one signal over one window, reduced to what rules need.

    `largest_gap` counts the stretch from the window's start to the first sample
    and from the last sample to the window's end too, so a window that is only
    partly covered shows as a gap.
    """

    query: str
    window: timedelta
    count: int = 0
    minimum: float = math.nan
    maximum: float = math.nan
    last: float = math.nan
    largest_gap: timedelta = timedelta(0)
    non_finite: int = 0
    series: int = 1
    error: str | None = None
    points: tuple[tuple[float, float], ...] = ()
    """The samples as (Unix time, value), for windows of at most `POINTS_KEPT` samples
    (empty otherwise, or when the source has no sample times): they say when a
    verdict can next change, never what it is."""

    @classmethod
    def failed(cls, query: str, window: timedelta, error: str) -> WindowSummary:
        return cls(query=query, window=window, series=0, error=error)

    @classmethod
    def of_values(
        cls,
        query: str,
        window: timedelta,
        values: list[float],
        largest_gap: timedelta,
        points: Sequence[tuple[float, float]] = (),
    ) -> WindowSummary:
        """Summarise evenly meaningful samples (one series) found over the window.

        The sample times are kept (copied) only for a window of at most POINTS_KEPT.
        """
        finite = list(filter(math.isfinite, values))
        if not values:
            return cls(query=query, window=window, series=0, largest_gap=window)
        return cls(
            query=query,
            window=window,
            count=len(values),
            minimum=min(finite, default=math.nan),
            maximum=max(finite, default=math.nan),
            last=values[-1],
            largest_gap=largest_gap,
            non_finite=len(values) - len(finite),
            points=tuple(points) if len(points) <= POINTS_KEPT else (),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one gate or trigger, with the evidence behind it."""

    name: str
    outcome: Outcome
    reason: str
    query: str = ""
    window: timedelta = timedelta(0)
    observed: float | None = None
    threshold: float | None = None
    samples: int = 0
    changes_after: datetime | None = None
    """From the samples seen: the verdict cannot turn (a trigger to `fail`, a gate to `pass`)
    until just after this moment, when the last sample that holds it leaves the window.
    None when the samples do not say (no sample times, or no such sample)."""

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL


def resolve_threshold(threshold: Threshold, baselines: Mapping[str, float]) -> tuple[float, str]:
    """The number to compare with, and how it was reached (for the evidence)."""
    if not isinstance(threshold, AdaptiveThreshold):
        return threshold, f"{threshold:g}"
    baseline = baselines.get(threshold.baseline)
    if baseline is None or not math.isfinite(baseline):
        return (
            threshold.min,
            f"{threshold.min:g} (no baseline of {threshold.baseline} captured; minimum used)",
        )
    value = max(threshold.min, baseline * threshold.multiplier)
    return value, (
        f"{value:g} = max({threshold.min:g}, baseline {baseline:g} × {threshold.multiplier:g})"
    )


def _missing_baseline(threshold: Threshold, baselines: Mapping[str, float]) -> bool:
    if not isinstance(threshold, AdaptiveThreshold):
        return False
    baseline = baselines.get(threshold.baseline)
    return baseline is None or not math.isfinite(baseline)


def holds(value: float, comparator: Comparator, threshold: float) -> bool:
    """Whether `value comparator threshold` is true."""
    if comparator == "<":
        return value < threshold
    if comparator == "<=":
        return value <= threshold
    if comparator == ">":
        return value > threshold
    return value >= threshold


def _data_problem(summary: WindowSummary, gap_tolerance: timedelta) -> str | None:
    if summary.error is not None:
        return summary.error
    if summary.series > 1:
        return f"{summary.series} series where the query must give one number"
    if summary.count == 0:
        return f"no data in the last {format_duration(summary.window)}"
    if summary.non_finite:
        return f"{summary.non_finite} of {summary.count} samples are NaN or infinite"
    if summary.largest_gap > gap_tolerance:
        return (
            f"a gap of {format_duration(summary.largest_gap)} in the window is longer than the "
            f"tolerated {format_duration(gap_tolerance)}"
        )
    return None


def _from_summary(
    name: str,
    outcome: Outcome,
    reason: str,
    summary: WindowSummary,
    threshold: float,
    observed: float | None = None,
    changes_after: datetime | None = None,
) -> Verdict:
    return Verdict(
        name,
        outcome,
        reason,
        query=summary.query,
        window=summary.window,
        observed=observed,
        threshold=threshold,
        samples=summary.count,
        changes_after=changes_after,
    )


def last_sample_not_holding(
    summary: WindowSummary, comparator: Comparator, threshold: float
) -> datetime | None:
    """The time of the newest sample that is not a finite value satisfying the comparison."""
    for at, value in reversed(summary.points):
        if not (math.isfinite(value) and holds(value, comparator, threshold)):
            return datetime.fromtimestamp(at, UTC)
    return None


def _leaves_window(moment: datetime | None, span: timedelta) -> datetime | None:
    return None if moment is None else moment + span


def judge_gate(
    gate: SignalGate,
    summary: WindowSummary,
    baselines: Mapping[str, float],
    gap_tolerance: timedelta,
) -> Verdict:
    """A gate passes only when every sample of its window satisfies it and none is missing.

    An adaptive gate without its baseline is `unknown`: the minimum alone would let a
    rollout promote on a threshold nobody measured. (A trigger uses the minimum: it
    must still roll back on degradation.)
    """
    threshold, threshold_text = resolve_threshold(gate.threshold, baselines)
    # A gate can pass only once its last violating (or non-finite) sample left the window.
    turns = _leaves_window(
        last_sample_not_holding(summary, gate.comparator, threshold), summary.window
    )
    problem = _data_problem(summary, gap_tolerance)
    if problem is None and _missing_baseline(gate.threshold, baselines):
        assert isinstance(gate.threshold, AdaptiveThreshold)
        problem = (
            f"no baseline of {gate.threshold.baseline} (captured, pinned or carried): "
            "an adaptive gate needs one"
        )
    if problem is not None:
        return _from_summary(
            gate.key, Outcome.UNKNOWN, problem, summary, threshold, changes_after=turns
        )
    worst = summary.maximum if gate.comparator in ("<", "<=") else summary.minimum
    window = format_duration(gate.window)
    if holds(worst, gate.comparator, threshold):
        reason = (
            f"{gate.signal} {gate.comparator} {threshold_text} held for {window} (worst {worst:g})"
        )
        return _from_summary(gate.key, Outcome.PASS, reason, summary, threshold, worst)
    reason = f"{gate.signal} reached {worst:g} in the last {window}; needs {gate.comparator} {threshold_text}"
    return _from_summary(gate.key, Outcome.FAIL, reason, summary, threshold, worst, turns)


def judge_trigger(
    trigger: SignalTrigger,
    summary: WindowSummary,
    baselines: Mapping[str, float],
    gap_tolerance: timedelta,
) -> Verdict:
    """A trigger fails (degradation) only on complete data where every sample is degraded.

    One healthy sample is enough to pass. Missing or partial data is `unknown`: the
    rollout holds and alerts, it never rolls back on the absence of evidence.
    """
    threshold, threshold_text = resolve_threshold(trigger.threshold, baselines)
    healthiest = summary.minimum if trigger.comparator in (">", ">=") else summary.maximum
    readable = summary.error is None and summary.series <= 1 and summary.count > 0
    if (
        readable
        and math.isfinite(healthiest)
        and not holds(healthiest, trigger.comparator, threshold)
    ):
        reason = f"{trigger.signal} at {healthiest:g} is not {trigger.comparator} {threshold_text}"
        # The evidence can be complete only once the last healthy sample left the `for` window.
        turns = _leaves_window(
            last_sample_not_holding(summary, trigger.comparator, threshold), trigger.sustained_for
        )
        return _from_summary(
            trigger.key, Outcome.PASS, reason, summary, threshold, summary.last, turns
        )
    problem = _data_problem(summary, gap_tolerance)
    if problem is not None:
        return _from_summary(trigger.key, Outcome.UNKNOWN, problem, summary, threshold)
    window = format_duration(trigger.sustained_for)
    reason = (
        f"{trigger.signal} {trigger.comparator} {threshold_text} for all of the last {window} "
        f"(least {healthiest:g})"
    )
    return _from_summary(trigger.key, Outcome.FAIL, reason, summary, threshold, healthiest)


def judge_alerts(
    name: str, alerts: tuple[str, ...], firing: frozenset[str] | None, error: str | None
) -> Verdict:
    """A "no firing alerts" gate: fail when any named alert fires, unknown when unreadable."""
    if error is not None or firing is None:
        return Verdict(name, Outcome.UNKNOWN, error or "alerts could not be read")
    active = sorted(firing.intersection(alerts))
    if active:
        return Verdict(name, Outcome.FAIL, f"firing: {', '.join(active)}")
    return Verdict(name, Outcome.PASS, f"none of {', '.join(alerts)} firing")


def judge_alert_trigger(
    name: str, alert: str, firing: frozenset[str] | None, error: str | None
) -> Verdict:
    """An alert trigger: fail (degradation) when the alert fires."""
    if error is not None or firing is None:
        return Verdict(name, Outcome.UNKNOWN, error or "alerts could not be read")
    if alert in firing:
        return Verdict(name, Outcome.FAIL, f"alert {alert} is firing")
    return Verdict(name, Outcome.PASS, f"alert {alert} is not firing")


@dataclass(frozen=True, slots=True)
class AlertHistory:
    """What a source found in the alert history over one window ending at `at`.

    `coverage` summarises the plan's coverage signal over the same window: where
    it has no samples, Prometheus was not evaluating its rules, so an alert that
    is absent there is not known to be quiet. `active_since` holds, for each alert
    active (pending or firing) at `at`, the first sample of the unbroken run that
    ends at `at`; a run that starts at the window's first sample may be older.
    A source may hand out one quiet history (nothing active or fired) for later
    reads while nothing changes: no verdict depends on `at` then.
    """

    at: datetime
    window: timedelta
    coverage: WindowSummary | None
    fired: frozenset[str] = frozenset()
    firing_now: frozenset[str] = frozenset()
    active_since: Mapping[str, datetime] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def failed(cls, at: datetime, window: timedelta, error: str) -> AlertHistory:
        return cls(at=at, window=window, coverage=None, error=error)


def _history_problem(history: AlertHistory, gap_tolerance: timedelta) -> str | None:
    if history.error is not None:
        return f"alert history could not be read: {history.error}"
    if history.coverage is None:
        return None
    problem = _data_problem(history.coverage, gap_tolerance)
    return f"alert history incomplete: {problem}" if problem else None


def judge_alert_window(
    name: str, alerts: tuple[str, ...], history: AlertHistory, gap_tolerance: timedelta
) -> Verdict:
    """A windowed "no firing alerts" gate: pass only when none fired and the history has no gap."""
    window = format_duration(history.window)
    fired = sorted(history.fired.intersection(alerts))
    if history.error is None and fired:
        return Verdict(
            name,
            Outcome.FAIL,
            f"fired within the last {window}: {', '.join(fired)}",
            window=history.window,
        )
    problem = _history_problem(history, gap_tolerance)
    if problem is not None:
        return Verdict(name, Outcome.UNKNOWN, problem, window=history.window)
    return Verdict(
        name,
        Outcome.PASS,
        f"none of {', '.join(alerts)} fired in the last {window}",
        window=history.window,
    )


def judge_alert_history_trigger(
    name: str,
    alert: str,
    sustained_for: timedelta | None,
    history: AlertHistory,
    gap_tolerance: timedelta,
) -> Verdict:
    """An alert trigger from the history: `fail` carries in `window` how far back its evidence goes.

    The evidence starts when the alert became active, or `sustained_for` ago when it
    has been active longer: `decide` counts it only when that start is newer than
    the moment the step took effect.
    """
    if history.error is None and alert not in history.firing_now:
        return Verdict(name, Outcome.PASS, f"alert {alert} is not firing")
    problem = _history_problem(history, gap_tolerance)
    if problem is not None:
        return Verdict(name, Outcome.UNKNOWN, problem)
    since = history.active_since.get(alert, history.at)
    first_sample = history.at - history.window
    if sustained_for is not None:
        start = max(since, history.at - sustained_for)
    elif since > first_sample:
        start = since
    else:
        return Verdict(
            name,
            Outcome.UNKNOWN,
            f"alert {alert} has been active for all of the last {format_duration(history.window)}; "
            "without the trigger's `for`, its start cannot be placed after the step took effect",
        )
    active = format_duration(history.at - since)
    return Verdict(
        name,
        Outcome.FAIL,
        f"alert {alert} is firing (active for {active} of the {format_duration(history.window)} read)",
        window=history.at - start,
    )
