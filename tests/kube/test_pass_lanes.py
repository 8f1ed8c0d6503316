"""Which thread ticks a rollout in a pass: the pass's own for the quiet ones, the pool
for those whose last tick wrote, failed or waited, and the pool for the rest of a pass
once a quiet tick turns out busy (so a pass in which everything changes still overlaps
its writes). The reconcile is replaced by a script: what is tested is the scheduling.

A pass's lanes are written one letter a rollout, in the listed order: `h` ticked
here, in the thread that called the pass, `p` in the pool.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.kube.api import KubeApi
from controller.kube.reconciler import Outcome
from controller.operator import BUSY_TICK_SECONDS, Operator, OperatorSettings
from tests.support.kube_emulator import KubeEmulator

NAMES = [f"r{index}" for index in range(5)]


@dataclass
class Scripted:
    """Stands in for the reconcile: for each name, what its tick does; records the thread."""

    writing: set[str] = field(default_factory=set)
    slow: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    raising: set[str] = field(default_factory=set)
    prefetched: bool = True
    threads: dict[str, str] = field(default_factory=dict)

    def __call__(self, namespace: str, name: str, now: datetime, *_rest: Any) -> Outcome:
        self.threads[name] = threading.current_thread().name
        if name in self.slow:
            time.sleep(BUSY_TICK_SECONDS * 1.5)  # as a tick waiting on a server
        outcome = Outcome(namespace, name, wrote_status=name in self.writing, state="soaking")
        if name in self.failing:
            outcome.problem = "the API server said 500"
        if name in self.raising:
            raise RuntimeError("a bug past the reconcile's own handling")
        return outcome


def lanes_of_passes(kube: KubeEmulator, passes: list[Scripted]) -> list[str]:
    """Run one pass per script over the five rollouts; each pass's lanes."""
    operator = Operator(
        KubeApi(kube.api_client(user="operator")),
        OperatorSettings(namespace="shop", interval=timedelta(seconds=1), metrics_port=0),
    )
    rollouts = [{"metadata": {"namespace": "shop", "name": n}, "spec": {}} for n in NAMES]
    operator.caches = object()  # type: ignore[assignment]
    operator.list_rollouts = lambda: rollouts  # type: ignore[method-assign]
    operator.check_records_trust = lambda: None  # type: ignore[method-assign,assignment,return-value]
    scripts = iter(passes)
    operator._records = lambda _rollout, _now: None  # type: ignore[method-assign,assignment]
    start, here = datetime(2026, 1, 1, tzinfo=UTC), threading.current_thread().name
    found = []
    gc.disable()  # a collection's pause would read as a tick waiting on a server
    try:
        for number, script in enumerate(scripts):
            operator._reconcile_summarised = script  # type: ignore[method-assign]
            operator._prefetch = lambda _rollouts, _now, read=script.prefetched: read  # type: ignore[method-assign,misc]
            outcomes = operator.tick_all(start + timedelta(seconds=number))
            assert [o.name for o in outcomes] == NAMES, "outcomes must keep the listed order"
            found.append("".join("h" if script.threads[n] == here else "p" for n in NAMES))
    finally:
        gc.enable()
        operator._pool.shutdown(wait=True)
    return found


@pytest.mark.parametrize(
    ("passes", "expected"),
    [
        pytest.param(
            # A first pass writes everything: one tick here, then the pool. Those that
            # wrote go to the pool next time, where none writes; then all are quiet.
            [Scripted(writing=set(NAMES)), Scripted(), Scripted()],
            ["hpppp", "ppppp", "hhhhh"],
            id="first-pass-then-steady",
        ),
        pytest.param(
            # r2 turns busy: the rest of that pass overlaps in the pool; next time only r2.
            [Scripted(), Scripted(writing={"r2"}), Scripted()],
            ["hhhhh", "hhhpp", "hhphh"],
            id="one-write",
        ),
        pytest.param(
            [Scripted(slow={"r1"}), Scripted()],
            ["hhppp", "hphhh"],
            id="a-tick-that-waited",
        ),
        pytest.param(
            [Scripted(failing={"r0"}), Scripted()],
            ["hpppp", "phhhh"],
            id="a-tick-that-failed",
        ),
        pytest.param(
            [Scripted(raising={"r3"}), Scripted()],
            ["hhhhp", "hhhph"],
            id="a-tick-that-raised",
        ),
        pytest.param(
            # Each tick then queries Prometheus on its own, possibly waiting for a timeout.
            [Scripted(prefetched=False), Scripted()],
            ["ppppp", "hhhhh"],
            id="a-failed-prefetch",
        ),
    ],
)
def test_which_thread_ticks_each_rollout(
    kube: KubeEmulator, passes: list[Scripted], expected: list[str]
) -> None:
    assert lanes_of_passes(kube, passes) == expected
