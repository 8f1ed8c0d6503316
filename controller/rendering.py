"""Plain-text tables and JSON documents for the CLI's outputs.

Kept apart from the commands so that `simulate`, `replay` and `status` print
their timelines in one shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from phases.durations import format_duration
from phases.plan import (
    DEFAULT_ENVIRONMENT,
    AlertsGate,
    JobGate,
    Plan,
    SignalGate,
    SignalTrigger,
)
from phases.status import TransitionRecord
from phases.steps import GateSpec, TriggerSpec, steps_of

if TYPE_CHECKING:
    from controller.driving import RunResult


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A left-aligned text table; the last column is left unpadded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths[index], len(cell))

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])]
        return "  ".join([*padded, cells[-1]]).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def elapsed(seconds: float) -> str:
    """`+2d 04:05` style offsets from a start."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"+{days}d {hours:02d}:{minutes:02d}" if days else f"+{hours:02d}:{minutes:02d}"


def baseline_line(record: Mapping[str, Any]) -> str:
    """One baseline record (as JSON) in a line: value, source, where, over which window."""
    head = f"baseline {record['signal']} = {record['value']:g}"
    source = record.get("source", "captured")
    if source == "pinned":
        return f"{head}  pinned in the plan: {record.get('reason', '')}"
    where = f" in {record['environment']}" if record.get("environment") else ""
    step = f" step {record['step']}" if record.get("step") else ""
    start, end = record.get("windowFrom"), record.get("windowTo")
    window = f", averaged over {start} → {end}" if start and end else ""
    carried = f" from rollout {record['carriedFrom']}" if record.get("carriedFrom") else ""
    note = f" ({record['reason']})" if record.get("reason") else ""
    return f"{head}  {source}{carried}{where}{step}{window}{note}"


def describe_gate(gate: GateSpec) -> str:
    if isinstance(gate, SignalGate):
        return f"{gate.key}: {gate.signal} {gate.comparator} {threshold_text(gate)} for {format_duration(gate.window)}"
    if isinstance(gate, AlertsGate):
        return f"{gate.key}: not firing {', '.join(gate.no_firing_alerts)}"
    assert isinstance(gate, JobGate)
    return f"{gate.key}: job {gate.job_succeeded} succeeded"


def describe_trigger(trigger: TriggerSpec) -> str:
    if isinstance(trigger, SignalTrigger):
        scope = " (within the degradation window)" if trigger.scope == "degradation_window" else ""
        return (
            f"{trigger.key}: {trigger.signal} {trigger.comparator} {threshold_text(trigger)} "
            f"for {format_duration(trigger.sustained_for)}{scope}"
        )
    return f"{trigger.key}: alert {trigger.alert_firing} firing"


def threshold_text(condition: SignalGate | SignalTrigger) -> str:
    threshold = condition.threshold
    if isinstance(threshold, float | int):
        return f"{threshold:g}"
    return f"max({threshold.min:g}, baseline {threshold.baseline} × {threshold.multiplier:g})"


def plan_table(plan: Plan) -> str:
    """One block per step: flags, durations, approval, gates and triggers."""
    out = [f"plan {plan.name} v{plan.version}  hash {plan.short_hash}"]
    for signal, given in sorted(plan.baselines.items()):
        kind = "carried from another rollout" if given.carried else f"pinned at {given.value:g}"
        out.append(f"baseline {signal}: {kind} ({given.reason})")
    for step in steps_of(plan).steps:
        flags = ", ".join(f"{k}={v}" for k, v in step.flags.items())
        limit = format_duration(step.max_duration) if step.max_duration else "none"
        approval = (
            f"{step.approval.approvers} approver(s)" if step.approval.required else "not required"
        )
        out.append("")
        out.append(f"step {step.id}  ({step.phase_name}){where(step.environment)}")
        out.append(f"  flags:      {flags}")
        out.append(f"  duration:   min {format_duration(step.min_duration)}, max {limit}")
        out.append(f"  approval:   {approval}")
        out.append(
            f"  on degradation: {step.on_degradation}"
            + (
                f", degradation window {format_duration(step.degradation_window)}"
                if step.degradation_window > timedelta(0)
                else ""
            )
        )
        if step.baseline_signals:
            out.append(f"  baseline:   {', '.join(step.baseline_signals)}")
        for job in step.jobs:
            after = f" after {', '.join(job.after)}" if job.after else ""
            out.append(f"  job:        {job.name}{after}")
        for gate in step.gates:
            out.append(f"  gate:       {describe_gate(gate)}")
        for trigger in step.triggers:
            out.append(f"  trigger:    {describe_trigger(trigger)}")
    return "\n".join(out)


def where(environment: str | None) -> str:
    """` [staging]` after a step that ran in a named environment; nothing for one-place plans
    and for records written before environments existed."""
    return f" [{environment}]" if environment and environment != DEFAULT_ENVIRONMENT else ""


def transition_rows(
    transitions: Sequence[TransitionRecord], start_seconds: float
) -> list[list[str]]:
    return [
        [
            elapsed(t.at.timestamp() - start_seconds),
            f"{t.from_step} ({t.from_state})",
            f"{t.to_step} ({t.to_state}){where(t.environment)}",
            t.trigger,
            t.reason,
        ]
        for t in transitions
    ]


def transition_json(t: TransitionRecord, start_seconds: float) -> dict[str, Any]:
    return {
        "at_seconds": round(t.at.timestamp() - start_seconds, 3),
        "at": t.at.isoformat(),
        "from": t.from_step,
        "to": t.to_step,
        "environment": t.environment,
        "from_state": t.from_state.value,
        "to_state": t.to_state.value,
        "trigger": t.trigger,
        "reason": t.reason,
        "by": t.by,
        "approvals": list(t.approvals),
    }


def run_document(result: RunResult) -> dict[str, Any]:
    """The JSON shape shared by `simulate` and `replay`."""
    start = result.start.timestamp()
    return {
        "plan": result.plan.name,
        "plan_hash": result.plan.content_hash,
        "start": result.start.isoformat(),
        "ticks": result.ticks,
        "simulated_seconds": result.final_time_seconds,
        "final_step": result.final.step,
        "final_status": result.final.state.value,
        "final_percent": result.final_percent,
        "final_reason": result.final.reason,
        "flag_writes": result.flag_writes,
        "restarts": result.restarts,
        "transitions": [transition_json(t, start) for t in result.transitions],
        "events": [
            {
                "at_seconds": at,
                "kind": e.kind.value,
                "step": e.step,
                "message": e.message,
                "warning": e.warning,
            }
            for at, e in result.events
        ],
    }


def run_table(result: RunResult) -> str:
    """The timeline table shared by `simulate` and `replay`, with its closing line."""
    rows = transition_rows(result.transitions, result.start.timestamp())
    closing = (
        f"\nended at {elapsed(result.final_time_seconds)}: step {result.final.step}, {result.final.state.value}, "
        f"{result.plan.flag_set.exposure or 'exposure'}={result.final_percent} ({result.ticks} ticks, {result.flag_writes} flag writes, "
        f"{result.restarts} restarts)"
    )
    return table(["time", "from", "to", "trigger", "why"], rows) + "\n" + closing


def age(then: datetime | str | None, now: datetime) -> str:
    """How long ago, as people read it in a table: `45s ago`, `12m ago`, `3h20m ago`, `2d4h ago`."""
    if then is None:
        return "-"
    moment = datetime.fromisoformat(then.replace("Z", "+00:00")) if isinstance(then, str) else then
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        text = f"{seconds}s"
    elif seconds < 90 * 60:
        text = f"{seconds // 60}m"
    elif seconds < 48 * 3600:
        hours, minutes = divmod(seconds // 60, 60)
        text = f"{hours}h{minutes}m" if minutes else f"{hours}h"
    else:
        days, hours = divmod(seconds // 3600, 24)
        text = f"{days}d{hours}h" if hours else f"{days}d"
    return f"{text} ago"


_STATE_COLOURS = {
    "completed": "green",
    "soaking": "green",
    "awaiting_approval": "yellow",
    "paused": "yellow",
    "verifying": "cyan",
    "applying": "cyan",
    "rolling_back": "red",
    "stalled": "red",
    "aborted": "red",
}


def paint(text: str, colour: str | None, *, enabled: bool) -> str:
    """`text` in `colour` when colours are on (a terminal, NO_COLOR unset), else unchanged."""
    if not enabled or colour is None:
        return text
    import click

    return click.style(text, fg=colour)


def state_colour(state: str) -> str | None:
    return _STATE_COLOURS.get(state)


def gate_lines(view: Mapping[str, Any], now: datetime) -> tuple[list[str], set[str]]:
    """One line per gate and trigger verdict, with how much of its window this step covers.

    Returns the lines and the names they speak for, so that the caller drops the core's
    own blocker line for the same gate instead of printing two verdicts for one gate.
    """
    in_effect = view.get("inEffectAt")
    since = datetime.fromisoformat(in_effect.replace("Z", "+00:00")) if in_effect else None
    # The verdicts were judged at the last tick: their coverage is as of then.
    ticked = view.get("lastTickAt")
    now = datetime.fromisoformat(ticked.replace("Z", "+00:00")) if ticked else now
    lines: list[str] = []
    names: set[str] = set()
    for verdict in view.get("verdicts", []):
        names.add(verdict["name"])
        lines.append(_verdict_line(verdict, since, now))
    return lines, names


def _verdict_line(verdict: Mapping[str, Any], since: datetime | None, now: datetime) -> str:
    window = timedelta(seconds=float(verdict.get("windowSeconds") or 0))
    outcome = verdict["outcome"]
    value = "" if verdict.get("observed") is None else f", value {verdict['observed']:g}"
    limit = "" if verdict.get("threshold") is None else f", threshold {verdict['threshold']:g}"
    coverage = ""
    if verdict["role"] == "gate" and window > timedelta(0):
        covered = min(window, max(timedelta(0), now - since)) if since else timedelta(0)
        coverage = (
            f"; window {format_duration(covered)} of {format_duration(window)} covered by this step"
        )
        if covered < window and outcome == "pass":
            outcome = "pending (window not yet covered; the data so far passes)"
    return f"{verdict['role']} {verdict['name']}: {outcome}{value}{limit}{coverage} ({verdict['reason']})"


def blocker_lines(view: Mapping[str, Any], spoken_for: set[str]) -> list[str]:
    """The core's blockers, less those a verdict line already states for its gate."""
    return [
        blocker
        for blocker in view.get("blockers", [])
        if blocker.split(":", 1)[0] not in spoken_for
    ]
