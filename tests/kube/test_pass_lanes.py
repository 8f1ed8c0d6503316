"""Which thread ticks a rollout in a pass: the pass's own for the quiet ones, the pool
for those whose last tick wrote, failed or waited, and the pool for the rest of a pass
once a quiet tick turns out busy (so a pass in which everything changes still overlaps
its writes). The reconcile is replaced by a script: what is tested is the scheduling."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.kube.api import KubeApi
from controller.kube.reconciler import Outcome
from controller.operator import BUSY_TICK_SECONDS, Operator, OperatorSettings
from tests.support.kube_emulator import KubeEmulator

NAMES = [f"r{index}" for index in range(5)]


class Scripted:
    """Stands in for the reconcile: writes for the names it is told, records the thread."""

    def __init__(self) -> None:
        self.writing: set[str] = set()
        self.slow: set[str] = set()
        self.threads: dict[str, str] = {}

    def __call__(self, namespace: str, name: str, now: datetime, *_rest: Any) -> Outcome:
        self.threads[name] = threading.current_thread().name
        if name in self.slow:
            time.sleep(BUSY_TICK_SECONDS * 1.5)  # as a tick waiting on a server
        outcome = Outcome(namespace, name, wrote_status=name in self.writing)
        outcome.state = "soaking"
        return outcome


def operator_over(kube: KubeEmulator, script: Scripted) -> Operator:
    operator = Operator(
        KubeApi(kube.api_client(user="operator")),
        OperatorSettings(namespace="shop", interval=timedelta(seconds=1), metrics_port=0),
    )
    rollouts = [{"metadata": {"namespace": "shop", "name": n}, "spec": {}} for n in NAMES]
    operator.caches = object()  # type: ignore[assignment]
    operator.list_rollouts = lambda: rollouts  # type: ignore[method-assign]
    operator.check_records_trust = lambda: None  # type: ignore[method-assign,assignment,return-value]
    operator._prefetch = lambda _rollouts, _now: None  # type: ignore[method-assign,assignment]
    operator._records = lambda _rollout, _now: None  # type: ignore[method-assign,assignment]
    operator._reconcile_summarised = script  # type: ignore[method-assign]
    return operator


def lanes(operator: Operator, script: Scripted, at: datetime) -> list[str]:
    """One pass; for each rollout in order, "here" or "pool"."""
    outcomes = operator.tick_all(at)
    assert [o.name for o in outcomes] == NAMES, "outcomes must keep the listed order"
    here = threading.current_thread().name
    return ["here" if script.threads[n] == here else "pool" for n in NAMES]


def test_quiet_rollouts_are_ticked_in_the_pass_and_busy_ones_in_the_pool(
    kube: KubeEmulator,
) -> None:
    script = Scripted()
    operator = operator_over(kube, script)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        script.writing = set(NAMES)  # a first pass: everything is written
        assert lanes(operator, script, start) == ["here"] + ["pool"] * 4
        script.writing = set()
        # Each wrote last time: each goes to the pool, and none writes now.
        assert lanes(operator, script, start + timedelta(seconds=1)) == ["pool"] * 5
        assert lanes(operator, script, start + timedelta(seconds=2)) == ["here"] * 5
        # r2 turns busy: the rest of that pass overlaps in the pool.
        script.writing = {"r2"}
        assert lanes(operator, script, start + timedelta(seconds=3)) == [
            "here",
            "here",
            "here",
            "pool",
            "pool",
        ]
        script.writing = set()
        assert lanes(operator, script, start + timedelta(seconds=4)) == [
            "here",
            "here",
            "pool",
            "here",
            "here",
        ]
    finally:
        operator._pool.shutdown(wait=True)


def test_a_tick_that_failed_goes_to_the_pool_next_time(kube: KubeEmulator) -> None:
    script = Scripted()
    operator = operator_over(kube, script)
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def failing(namespace: str, name: str, now: datetime, *rest: Any) -> Outcome:
        outcome = script(namespace, name, now, *rest)
        if name == "r0":
            outcome.problem = "the API server said 500"
        return outcome

    operator._reconcile_summarised = failing  # type: ignore[method-assign]
    try:
        assert lanes(operator, script, start) == ["here"] + ["pool"] * 4
        operator._reconcile_summarised = script  # type: ignore[method-assign]
        assert lanes(operator, script, start + timedelta(seconds=1)) == ["pool"] + ["here"] * 4
    finally:
        operator._pool.shutdown(wait=True)


def test_a_tick_that_waited_hands_the_rest_of_the_pass_to_the_pool(kube: KubeEmulator) -> None:
    script = Scripted()
    operator = operator_over(kube, script)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        assert lanes(operator, script, start) == ["here"] * 5
        script.slow = {"r1"}
        assert lanes(operator, script, start + timedelta(seconds=1)) == [
            "here",
            "here",
            "pool",
            "pool",
            "pool",
        ]
        script.slow = set()
        assert lanes(operator, script, start + timedelta(seconds=2)) == [
            "here",
            "pool",
            "here",
            "here",
            "here",
        ]
    finally:
        operator._pool.shutdown(wait=True)
