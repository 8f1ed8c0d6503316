"""`stagectl status --wait-for`: the exit status a CI pipeline gets, on a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.catalog import load_plan
from controller.cli.waiting import FAILED, REACHED, TIMED_OUT, parse_goal, wait_until
from controller.clock import VirtualClock

START = datetime(2026, 11, 20, tzinfo=UTC)


def rollout(step: str, state: str, rollbacks: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": "demo"},
        "spec": {"plan": {"name": "stage-validation-v3"}, "target": {"configMap": "flags"}},
        "status": {"step": step, "state": state, "rollbacks": rollbacks, "reason": "why"},
    }


def run(
    goal: str, states: list[dict[str, Any]], timeout: str = "2h"
) -> tuple[int, list[str], VirtualClock]:
    clock = VirtualClock(START)
    said: list[str] = []
    feed: Iterator[dict[str, Any]] = iter(states)
    last = {"value": states[0]}

    def read() -> dict[str, Any]:
        last["value"] = next(feed, last["value"])
        return last["value"]

    hours = {"2h": timedelta(hours=2), "10m": timedelta(minutes=10)}[timeout]
    code = wait_until(
        read,
        parse_goal(goal),
        clock,
        plan_of=lambda _rollout: load_plan("stage-validation-v3"),
        timeout=hours,
        poll=timedelta(minutes=1),
        say=said.append,
    )
    return code, said, clock


def test_reaching_the_step_exits_0() -> None:
    code, said, clock = run(
        "step=3@25",
        [
            rollout("3@10", "soaking"),
            rollout("3@10", "awaiting_approval"),
            rollout("3@25", "applying"),
        ],
    )
    assert code == REACHED and said[-1] == "reached step 3@25 (step 3@25, applying)"
    assert clock.now() - START == timedelta(minutes=2)  # waited through the clock, not the wall


def test_a_later_step_counts_as_reached() -> None:
    assert run("step=3@25", [rollout("3@50", "soaking")])[0] == REACHED


def test_a_rollback_while_waiting_exits_1_even_when_the_step_was_passed_before() -> None:
    code, said, _ = run(
        "step=3@50", [rollout("3@25", "soaking"), rollout("3@10", "rolling_back", rollbacks=1)]
    )
    assert code == FAILED and said[-1].startswith("rolled back to 3@10 while waiting for step 3@50")


@pytest.mark.parametrize("state", ["stalled", "aborted"])
def test_a_stall_or_an_abort_exits_1(state: str) -> None:
    code, said, _ = run("completed", [rollout("2.7", "soaking"), rollout("2.7", state)])
    assert code == FAILED and said[-1].startswith(f"{state} at step 2.7")


def test_the_timeout_exits_3_after_exactly_the_timeout() -> None:
    code, said, clock = run("completed", [rollout("3@10", "soaking")], timeout="10m")
    assert code == TIMED_OUT and said[-1].startswith("timed out after 10m waiting for completion")
    assert clock.now() - START == timedelta(minutes=10)
    # Each change is said once, not once per poll.
    assert sum(line.endswith("demo: step 3@10 soaking") for line in said) == 1


def test_completion_is_reached() -> None:
    assert run("completed", [rollout("3@100", "soaking"), rollout("4", "completed")])[0] == REACHED
