"""The phase state machine, as `transitions` data built from the plan.

Two machines together give a rollout's position: the step machine (the plan's
steps as states, `promote` to the next, `rollback` to the previous; whether a
degradation rolls back on its own or pauses is the step's `on_degradation`) and the life machine (a
step's life: applying → verifying → soaking → awaiting approval …). `decide`
works out which trigger the observations call for; the machines say whether that
trigger is legal from here and where it leads. Neither uses callbacks or timed
states: deadlines live in the status and are compared with `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transitions import Machine, MachineError

from phases.plan import Plan
from phases.status import StepState
from phases.steps import StepTable, steps_of

_ACTIVE = [
    StepState.APPLYING,
    StepState.VERIFYING,
    StepState.SOAKING,
    StepState.AWAITING_APPROVAL,
    StepState.ROLLING_BACK,
    StepState.PAUSED,
    StepState.STALLED,
]
_READY = [StepState.SOAKING, StepState.AWAITING_APPROVAL]

LIFE_TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "applied", "source": StepState.APPLYING, "dest": StepState.VERIFYING},
    {
        "trigger": "verified",
        "source": [StepState.VERIFYING, StepState.APPLYING, StepState.ROLLING_BACK],
        "dest": StepState.SOAKING,
    },
    {"trigger": "gates_passed", "source": StepState.SOAKING, "dest": StepState.AWAITING_APPROVAL},
    {"trigger": "gates_lost", "source": StepState.AWAITING_APPROVAL, "dest": StepState.SOAKING},
    {"trigger": "stall", "source": StepState.SOAKING, "dest": StepState.STALLED},
    {
        "trigger": "reapply",
        "source": [StepState.VERIFYING, *_READY, StepState.STALLED],
        "dest": StepState.APPLYING,
    },
    {"trigger": "promote", "source": _READY, "dest": StepState.APPLYING},
    {"trigger": "complete", "source": _READY, "dest": StepState.COMPLETED},
    {"trigger": "rollback", "source": _ACTIVE, "dest": StepState.ROLLING_BACK},
    {
        "trigger": "pause",
        "source": [s for s in _ACTIVE if s is not StepState.PAUSED],
        "dest": StepState.PAUSED,
    },
    {
        "trigger": "resume",
        "source": [StepState.PAUSED, StepState.STALLED],
        "dest": StepState.VERIFYING,
    },
    {"trigger": "abort", "source": _ACTIVE, "dest": StepState.ABORTED},
]
"""A step's life. Every trigger not listed from a state is illegal there."""


class _Cursor:
    """A throw-away model: the machines are shared, positions are not."""

    def __init__(self, state: str) -> None:
        self.state = state


class IllegalTransition(ValueError):
    """A trigger that the machine does not allow from the current state."""


@dataclass(frozen=True, slots=True)
class PhaseMachines:
    """The two machines of one plan, built once and shared by every rollout of it."""

    steps: Machine
    life: Machine
    table: StepTable

    def step_after(self, step: str, trigger: str) -> str:
        """Where the step machine leads from `step` on `trigger` (`promote` or `rollback`)."""
        return _fire(self.steps, step, trigger)

    def life_after(self, state: StepState, trigger: str) -> StepState:
        """Where the life machine leads from `state` on `trigger`."""
        return StepState(_fire(self.life, state.value, trigger))

    def may(self, state: StepState, trigger: str) -> bool:
        event = self.life.events.get(trigger)
        return event is not None and state.value in event.transitions

    def edges(self) -> list[tuple[str, str, str]]:
        """The step machine's edges as (source, trigger, dest), promote first."""
        found: list[tuple[str, str, str]] = []
        for trigger in ("promote", "rollback"):
            event = self.steps.events.get(trigger)
            if event is None:
                continue
            for source, transitions in event.transitions.items():
                found.extend((source, trigger, str(t.dest)) for t in transitions)
        return found


def _fire(machine: Machine, state: str, trigger: str) -> str:
    event = machine.events.get(trigger)
    cursor = _Cursor(state)
    try:
        if event is None or not event.trigger(cursor):
            raise IllegalTransition(f"{trigger!r} is not possible from {state!r}")
    except MachineError:
        raise IllegalTransition(f"{trigger!r} is not possible from {state!r}") from None
    return cursor.state


_MACHINES: dict[str, PhaseMachines] = {}


def machines_for(plan: Plan) -> PhaseMachines:
    """The plan's machines, built on first use and cached by plan hash."""
    built = _MACHINES.get(plan.content_hash)
    if built is None:
        built = _build(plan)
        _MACHINES[plan.content_hash] = built
    return built


def _build(plan: Plan) -> PhaseMachines:
    table = steps_of(plan)
    ids = [step.id for step in table.steps]
    step_transitions: list[dict[str, Any]] = []
    for before, after in zip(table.steps, table.steps[1:], strict=False):
        step_transitions.append({"trigger": "promote", "source": before.id, "dest": after.id})
        step_transitions.append({"trigger": "rollback", "source": after.id, "dest": before.id})
    steps = Machine(
        model=None,
        states=ids,
        transitions=step_transitions,
        initial=ids[0],
        auto_transitions=False,
        send_event=False,
    )
    life = Machine(
        model=None,
        states=[state.value for state in StepState],
        transitions=[_as_values(t) for t in LIFE_TRANSITIONS],
        initial=StepState.APPLYING.value,
        auto_transitions=False,
    )
    return PhaseMachines(steps=steps, life=life, table=table)


def _as_values(transition: dict[str, Any]) -> dict[str, Any]:
    source = transition["source"]
    sources = [s.value for s in source] if isinstance(source, list) else source.value
    return {"trigger": transition["trigger"], "source": sources, "dest": transition["dest"].value}
