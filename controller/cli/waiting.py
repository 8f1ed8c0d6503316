"""`stagectl status NAME --wait-for …`: block a CI pipeline until a rollout gets somewhere.

A pipeline needs an exit status, not a screen: 0 when the rollout reached the step
(or a later one) or completed, 1 when it rolled back, stalled or was aborted while
waiting, 3 when the timeout passed first. Waiting goes through the clock, so a test
can drive it with a virtual one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from controller.clock import Clock

if TYPE_CHECKING:  # `stagectl --help` imports this module: the plan models wait until used
    from phases.plan import Plan

REACHED, FAILED, TIMED_OUT = 0, 1, 3
_FAILED_STATES = {"stalled", "aborted"}


@dataclass(frozen=True, slots=True)
class WaitGoal:
    """What to wait for: a step (reached or passed) or completion."""

    step: str | None = None

    def describe(self) -> str:
        return f"step {self.step}" if self.step else "completion"


def parse_goal(text: str) -> WaitGoal:
    """`step=3@25` or `completed`."""
    cleaned = text.strip()
    if cleaned == "completed":
        return WaitGoal()
    key, sep, value = cleaned.partition("=")
    if sep and key.strip() == "step" and value.strip():
        return WaitGoal(step=value.strip())
    raise ValueError("write step=STEP (e.g. step=3@25) or completed")


def wait_until(
    read: Callable[[], Mapping[str, Any]],
    goal: WaitGoal,
    clock: Clock,
    *,
    plan_of: Callable[[Mapping[str, Any]], Plan],
    timeout: timedelta,
    poll: timedelta,
    say: Callable[[str], None],
) -> int:
    """Poll the rollout until the goal, a failure or the timeout; say each change once."""
    first = read()
    order = _step_order(plan_of(first), goal)
    rollbacks = int((first.get("status") or {}).get("rollbacks", 0))
    deadline = clock.now() + timeout
    last = ""
    rollout = first
    while True:
        status = rollout.get("status") or {}
        seen = f"step {status.get('step', '-')} {status.get('state', 'not started')}"
        if seen != last:
            say(f"{clock.now().strftime('%H:%M:%S')}  {rollout['metadata']['name']}: {seen}")
            last = seen
        outcome = _outcome(status, goal, order, rollbacks)
        if outcome is not None:
            code, message = outcome
            say(message)
            return code
        if clock.now() >= deadline:
            say(f"timed out after {_text(timeout)} waiting for {goal.describe()} ({seen})")
            return TIMED_OUT
        clock.sleep(max(0.0, min(poll, deadline - clock.now()).total_seconds()))
        rollout = read()


def _outcome(
    status: Mapping[str, Any], goal: WaitGoal, order: list[str], rollbacks: int
) -> tuple[int, str] | None:
    state = status.get("state")
    step = status.get("step")
    if int(status.get("rollbacks", 0)) > rollbacks:
        return (
            FAILED,
            f"rolled back to {step} while waiting for {goal.describe()}: {status.get('reason', '')}",
        )
    if state == "completed" or (
        goal.step is not None and step in order and order.index(step) >= order.index(goal.step)
    ):
        return REACHED, f"reached {goal.describe()} (step {step}, {state})"
    if state in _FAILED_STATES:
        return (
            FAILED,
            f"{state} at step {step} while waiting for {goal.describe()}: {status.get('reason', '')}",
        )
    return None


def _step_order(plan: Plan, goal: WaitGoal) -> list[str]:
    """The plan's step ids in order; a goal step the plan lacks is refused at once."""
    from phases.steps import steps_of

    order = [step.id for step in steps_of(plan).steps]
    if goal.step is not None and goal.step not in order:
        raise ValueError(f"step {goal.step!r} is not in the plan ({', '.join(order)})")
    return order


def _text(value: timedelta) -> str:
    from phases.durations import format_duration

    return format_duration(value)
