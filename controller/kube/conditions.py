"""Kubernetes-style conditions for a rollout, derived from its status each tick.

A condition's lastTransitionTime moves only when its status flips, as users of
`kubectl wait --for=condition=…` expect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from controller.kube.admission_check import Trust
from controller.kube.resources import Condition, ConditionStatus
from phases.status import StepState


def set_condition(
    conditions: Sequence[Condition],
    kind: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """The conditions with `kind` set; its transition time kept unless its status flipped."""
    previous = next((c for c in conditions if c.type == kind), None)
    moved = previous is None or previous.status != status
    updated = Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now if moved or previous is None else previous.last_transition_time,
        observed_generation=generation,
    )
    return [*(c for c in conditions if c.type != kind), updated]


_FLAG_CONDITIONS = {
    "Stalled": StepState.STALLED,
    "Paused": StepState.PAUSED,
    "Completed": StepState.COMPLETED,
}
_INACTIVE = frozenset({StepState.COMPLETED, StepState.ABORTED, StepState.STALLED, StepState.PAUSED})


def lifecycle_conditions(
    conditions: Sequence[Condition],
    state: StepState,
    reason: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Progressing, Stalled, Paused and Completed, from the step's state."""
    active = state not in _INACTIVE
    updated = set_condition(
        conditions,
        "Progressing",
        "True" if active else "False",
        _camel(state),
        reason,
        now,
        generation,
    )
    for kind, when in _FLAG_CONDITIONS.items():
        holds = state is when
        updated = set_condition(
            updated,
            kind,
            "True" if holds else "False",
            _camel(state),
            reason if holds else "",
            now,
            generation,
        )
    return updated


def _camel(state: StepState) -> str:
    return "".join(part.capitalize() for part in state.value.split("_"))


def trust_condition(
    conditions: Sequence[Condition], trust: Trust, now: datetime, generation: int | None
) -> list[Condition]:
    """RecordsTrusted: whether approvals and commands count, and why not when they do not."""
    status: ConditionStatus = "True" if trust.trusted else "False"
    return set_condition(
        conditions, "RecordsTrusted", status, trust.reason, trust.message, now, generation
    )


def failure_condition(
    conditions: Sequence[Mapping[str, Any]], message: str, now: datetime
) -> tuple[list[dict[str, Any]], bool]:
    """Reconciled=False with the failure, on raw conditions (the status may be unreadable).

    Returns the conditions and whether this is a new failure (worth an Event).
    """
    previous = next((c for c in conditions if c.get("type") == "Reconciled"), None)
    if previous is not None and previous.get("status") == "False":
        since = previous.get("lastTransitionTime") or now.isoformat()
    else:
        since = now.isoformat()
    flipped = previous is None or previous.get("message") != message
    updated = {
        "type": "Reconciled",
        "status": "False",
        "reason": "ReconcileFailed",
        "message": message,
        "lastTransitionTime": since,
    }
    return [*(dict(c) for c in conditions if c.get("type") != "Reconciled"), updated], flipped
