"""Kubernetes-style conditions for a rollout, derived from its status each tick.

A condition's lastTransitionTime moves only when its status flips, as users of
`kubectl wait --for=condition=…` expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from controller.resources import Condition, ConditionStatus
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


def lifecycle_conditions(
    conditions: Sequence[Condition],
    state: StepState,
    reason: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Progressing, Stalled, Paused and Completed, from the step's state."""
    active = state not in (
        StepState.COMPLETED,
        StepState.ABORTED,
        StepState.STALLED,
        StepState.PAUSED,
    )
    updated = set_condition(
        conditions,
        "Progressing",
        "True" if active else "False",
        _camel(state),
        reason,
        now,
        generation,
    )
    updated = set_condition(
        updated,
        "Stalled",
        "True" if state is StepState.STALLED else "False",
        _camel(state),
        reason if state is StepState.STALLED else "",
        now,
        generation,
    )
    updated = set_condition(
        updated,
        "Paused",
        "True" if state is StepState.PAUSED else "False",
        _camel(state),
        reason if state is StepState.PAUSED else "",
        now,
        generation,
    )
    return set_condition(
        updated,
        "Completed",
        "True" if state is StepState.COMPLETED else "False",
        _camel(state),
        "",
        now,
        generation,
    )


def _camel(state: StepState) -> str:
    return "".join(part.capitalize() for part in state.value.split("_"))
