"""The simulation plot: enforcement percentage and each signal over time, read at a glance.

The percent panel shades what the rollout was doing (soaking, waiting for an approval,
paused, stalled) and labels every promotion and rollback; each signal panel draws the
thresholds of the gates and triggers that applied in each step, only over that step's
time, with outages shaded. Y ranges are chosen from the data and the promotion
thresholds, never auto-scaled around a flat line, and long runs count days.

matplotlib is imported here only, and only when a plot is asked for, so that the
CLI starts fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phases.baselines import baseline_values
from phases.plan import AdaptiveThreshold, SignalGate, SignalTrigger
from phases.steps import steps_of

if TYPE_CHECKING:
    from controller.sim.simulation import SimulationResult

STATE_SHADES = {
    "soaking": ("#cdeccd", "soaking (in effect)"),
    "awaiting_approval": ("#fde9a9", "waiting for approval"),
    "paused": ("#f9c99a", "paused"),
    "stalled": ("#dccbe9", "stalled"),
}
OUTAGE_SHADE = ("0.80", "Prometheus outage")
MARKS = {
    "promote": ("tab:green", "promotion"),
    "complete": ("tab:green", "promotion"),
    "rollback": ("tab:red", "rollback"),
    "stall": ("tab:purple", "stall"),
    "pause": ("tab:orange", "pause"),
}
LONG_RUN = timedelta(hours=72)


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of the run, in the plot's x unit."""

    start: float
    end: float
    label: str


def plot_simulation(result: SimulationResult, path: Path) -> None:
    """Write the run's plot as a PNG."""
    import matplotlib.pyplot as plt

    figure = simulation_figure(result)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def simulation_figure(result: SimulationResult) -> Any:
    """The plot as a matplotlib Figure (the tests read its artists, not its pixels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenario = result.scenario
    if scenario is None:
        raise ValueError("a simulation plot needs the scenario the simulation ran")
    end_seconds = result.final_time_seconds or 1.0
    unit, unit_name = (
        (86400.0, "days") if end_seconds > LONG_RUN.total_seconds() else (3600.0, "hours")
    )
    rows = 1 + len(scenario.signals)
    figure, axes = plt.subplots(rows, 1, sharex=True, figsize=(12, 1.2 + 2.3 * rows), squeeze=False)
    panels = [row[0] for row in axes]
    steps = list(_step_spans(result, unit, end_seconds))
    _percent_panel(panels[0], result, unit, end_seconds)
    for axis, (name, points) in zip(panels[1:], scenario.signals.items(), strict=True):
        _signal_panel(axis, result, name, points, steps, unit, end_seconds)
    for axis in panels:
        for outage in scenario.outages:
            axis.axvspan(
                outage.start.total_seconds() / unit,
                outage.end.total_seconds() / unit,
                color=OUTAGE_SHADE[0],
                alpha=0.6,
                hatch="//",
                label=OUTAGE_SHADE[1],
                zorder=0,
            )
        axis.set_xlim(0, end_seconds / unit)
        _legend(axis)
    panels[-1].set_xlabel(f"{unit_name} since start")
    panels[0].set_title(f"{result.plan.name} — scenario {scenario.name}")
    figure.tight_layout()
    _separate_labels(figure, panels[0])
    return figure


def _state_spans(result: SimulationResult, unit: float, end: float) -> Iterator[Span]:
    """Each stretch of time between two transitions, labelled with the state it was in."""
    start = result.start
    for before, after in zip(result.transitions, [*result.transitions[1:], None], strict=True):
        until = (after.at - start).total_seconds() if after else end
        yield Span((before.at - start).total_seconds() / unit, until / unit, before.to_state.value)


def _step_spans(result: SimulationResult, unit: float, end: float) -> Iterator[Span]:
    """Each stretch of time the rollout spent at one step."""
    current: Span | None = None
    for span in _transition_steps(result, unit, end):
        if current is not None and current.label == span.label:
            current = Span(current.start, span.end, span.label)
            continue
        if current is not None:
            yield current
        current = span
    if current is not None:
        yield current


def _transition_steps(result: SimulationResult, unit: float, end: float) -> Iterator[Span]:
    start = result.start
    first = steps_of(result.plan).first.id
    if not result.transitions:
        yield Span(0.0, end / unit, first)
        return
    yield Span(0.0, (result.transitions[0].at - start).total_seconds() / unit, first)
    for before, after in zip(result.transitions, [*result.transitions[1:], None], strict=True):
        until = (after.at - start).total_seconds() if after else end
        yield Span((before.at - start).total_seconds() / unit, until / unit, before.to_step)


def _percent_panel(axis: Any, result: SimulationResult, unit: float, end: float) -> None:
    times = [seconds / unit for seconds, _ in result.percent_changes] + [end / unit]
    percents = [percent for _, percent in result.percent_changes] or [0]
    axis.step(
        times,
        [*percents, percents[-1]][: len(times)],
        where="post",
        color="tab:blue",
        label=result.plan.flag_set.exposure or "exposure",
    )
    axis.set_ylabel(result.plan.flag_set.exposure or "exposure percent")
    axis.set_ylim(-5, 135)  # headroom above 100 % for the step labels
    axis.set_yticks([0, 25, 50, 75, 100])
    for span in _state_spans(result, unit, end):
        shade = STATE_SHADES.get(span.label)
        if shade is not None and span.end > span.start:
            axis.axvspan(span.start, span.end, color=shade[0], alpha=0.8, label=shade[1], zorder=0)
    for transition in result.transitions:
        mark = MARKS.get(transition.trigger)
        if mark is None:
            continue
        at = (transition.at - result.start).total_seconds() / unit
        axis.axvline(at, color=mark[0], linewidth=0.9, alpha=0.8, label=mark[1])
        text = (
            transition.to_step if transition.trigger != "stall" else f"{transition.to_step} stalled"
        )
        axis.text(
            at, 128, f" {text}", fontsize=7, color=mark[0], ha="left", va="top", gid="step-label"
        )


def _signal_panel(
    axis: Any,
    result: SimulationResult,
    name: str,
    points: Any,
    steps: list[Span],
    unit: float,
    end: float,
) -> None:
    xs, ys = _blind_during_outages(
        [(p.at.total_seconds(), p.value) for p in points],
        [
            (o.start.total_seconds(), o.end.total_seconds())
            for o in (result.scenario.outages if result.scenario else [])
        ],
        end,
    )
    xs = [x / unit for x in xs]
    axis.step(xs, ys, where="post", color="tab:orange", label=name)
    axis.set_ylabel(name, fontsize=8)
    gates = list(_thresholds(result, name, steps, "gate", unit))
    triggers = list(_thresholds(result, name, steps, "trigger", unit))
    finite = [y for y in ys if y == y]
    top = _y_top([*finite, *(value for value, _span in gates)])
    axis.set_ylim(0 - top * 0.04, top)
    for value, span in gates:
        axis.hlines(
            value,
            span.start,
            span.end,
            colors="tab:green",
            linestyles="--",
            linewidth=1.1,
            label="gate threshold (promotion)",
        )
    off_scale = sorted({value for value, _span in triggers if value > top})
    for value, span in triggers:
        if value <= top:
            axis.hlines(
                value,
                span.start,
                span.end,
                colors="tab:red",
                linestyles=":",
                linewidth=1.3,
                label="trigger threshold (rollback)",
            )
    for value in off_scale:
        # Far above the data: said once in the legend rather than squashing the panel.
        axis.plot(
            [],
            [],
            color="tab:red",
            linestyle=":",
            label=f"rollback trigger {value:g} (above this range)",
        )


def _blind_during_outages(
    points: list[tuple[float, float | None]], outages: list[tuple[float, float]], end: float
) -> tuple[list[float], list[float]]:
    """The scripted steps, with no line where Prometheus answered nothing (None or outage)."""
    nan = float("nan")
    changes = sorted(
        [(at, value) for at, value in points]
        + [(start, None) for start, _end in outages]
        + [(stop, _value_at(points, stop)) for _start, stop in outages],
        key=lambda change: change[0],
    )
    xs = [at for at, _value in changes]
    ys = [
        nan if value is None or any(a <= at < b for a, b in outages) else value
        for at, value in changes
    ]
    return [*xs, end], [*ys, ys[-1] if ys else nan]


def _value_at(points: list[tuple[float, float | None]], at: float) -> float | None:
    earlier = [value for when, value in points if when <= at]
    return earlier[-1] if earlier else None


def _thresholds(
    result: SimulationResult, signal: str, steps: list[Span], role: str, unit: float
) -> Iterator[tuple[float, Span]]:
    """Each threshold on `signal`, over the time of each step where it applied.

    A degradation-window trigger applies only in its window after the step is entered.
    """
    table = steps_of(result.plan)
    baselines = baseline_values(result.plan, result.final)
    for span in steps:
        step = table.by_id.get(span.label)
        if step is None:
            continue
        conditions = step.gates if role == "gate" else step.triggers
        seen: set[tuple[float, float]] = set()
        for condition in conditions:
            if not isinstance(condition, SignalGate | SignalTrigger) or condition.signal != signal:
                continue
            until = span.end
            if isinstance(condition, SignalTrigger) and condition.scope == "degradation_window":
                window = step.degradation_window + condition.sustained_for
                until = min(span.end, span.start + window.total_seconds() / unit)
            value = _resolve(condition.threshold, baselines)
            if (value, until) not in seen:
                seen.add((value, until))
                yield value, Span(span.start, until, span.label)


def _resolve(threshold: float | AdaptiveThreshold, baselines: dict[str, float]) -> float:
    if isinstance(threshold, AdaptiveThreshold):
        baseline = baselines.get(threshold.baseline)
        return (
            threshold.min
            if baseline is None
            else max(threshold.min, baseline * threshold.multiplier)
        )
    return float(threshold)


def _y_top(values: list[float]) -> float:
    """A fixed range from zero: a flat line stays a flat line, not magnified noise."""
    highest = max((abs(v) for v in values), default=0.0)
    return highest * 1.35 if highest > 0 else 1.0


def _legend(axis: Any) -> None:
    """One legend entry per label, however many spans or lines carry it."""
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axis.legend(
        unique.values(),
        unique.keys(),
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.005, 1.0),
        borderaxespad=0,
    )


def _separate_labels(figure: Any, axis: Any) -> None:
    """Move step labels down a row wherever one would overlap the one before it."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    labels = sorted(
        (t for t in axis.texts if t.get_gid() == "step-label"), key=lambda t: t.get_position()[0]
    )
    rows: list[list[Any]] = []
    for label in labels:
        for index in range(len(rows) + 1):
            if index == len(rows):
                rows.append([])
            label.set_y(128 - 13 * index)
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other.get_window_extent(renderer)) for other in rows[index]):
                rows[index].append(label)
                break
