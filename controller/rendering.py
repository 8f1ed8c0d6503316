"""Plain-text tables and JSON documents for the CLI's outputs.

Kept apart from the commands so that `simulate`, `replay` and `status` print
their timelines in one shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from phases.durations import format_duration
from phases.plan import AlertsGate, JobGate, Plan, SignalGate, SignalTrigger
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
    for step in steps_of(plan).steps:
        flags = ", ".join(f"{k}={v}" for k, v in step.flags.items())
        limit = format_duration(step.max_duration) if step.max_duration else "none"
        approval = (
            f"{step.approval.approvers} approver(s)" if step.approval.required else "not required"
        )
        out.append("")
        out.append(f"step {step.id}  ({step.phase_name})")
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


def transition_rows(
    transitions: Sequence[TransitionRecord], start_seconds: float
) -> list[list[str]]:
    return [
        [
            elapsed(t.at.timestamp() - start_seconds),
            f"{t.from_step} ({t.from_state})",
            f"{t.to_step} ({t.to_state})",
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
        f"ENFORCEMENT_PERCENT={result.final_percent} ({result.ticks} ticks, {result.flag_writes} flag writes, "
        f"{result.restarts} restarts)"
    )
    return table(["time", "from", "to", "trigger", "why"], rows) + "\n" + closing
