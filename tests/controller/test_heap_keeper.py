"""The heap keeper: what a pass leaves is frozen, a frozen cycle is reclaimed by the
next due full collection, and nothing stays frozen once the operator stops."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from datetime import timedelta

import pytest

from controller.heap import HeapKeeper


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    """A two-object cycle no one holds: only a collection can free it."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


@pytest.fixture
def clock() -> Iterator[Clock]:
    yield Clock()
    gc.unfreeze()  # a failing test must not leave the test process frozen


def test_a_pass_leaves_its_survivors_frozen_and_close_hands_them_back(clock: Clock) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    keeper = HeapKeeper(timedelta(minutes=10), monotonic=clock)
    kept = [Node() for _ in range(100)]
    keeper.after_pass()
    assert gc.get_freeze_count() >= len(kept)
    keeper.close()
    assert gc.get_freeze_count() == 0


def test_a_frozen_cycle_outlives_collections_until_the_full_one_is_due(clock: Clock) -> None:
    keeper = HeapKeeper(timedelta(minutes=10), monotonic=clock)
    dropped = cycle()
    keeper.after_pass()
    gc.collect()
    assert dropped() is not None, "a frozen cycle was collected: nothing was frozen"
    clock.seconds = 599
    keeper.after_pass()
    assert dropped() is not None and keeper.full_collections == 0
    clock.seconds = 600
    keeper.after_pass()
    assert dropped() is None, "the due full collection did not reclaim the frozen cycle"
    assert keeper.full_collections == 1
    assert gc.get_freeze_count() > 0, "after the full collection the heap is frozen again"
