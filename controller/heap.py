"""Keeps CPython's cycle collector away from what the operator holds for its whole life.

The caches keep every watched object, and a full collection walks all of them: with
10,000 rollouts the collector's oldest generation is most of the process, and its
collections came every second or third pass, in the middle of one. After each pass,
`HeapKeeper.after_pass` freezes what survived it (`gc.freeze`: the objects leave the
collector's generations; reference counting still frees them), so the collections
that run during passes see only what the pass made. A cycle among frozen objects is
never found by those, so once every `full_every` the keeper unfreezes everything and
runs one full collection, between two passes. `close` unfreezes for good.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from datetime import timedelta

log = logging.getLogger(__name__)

FULL_EVERY = timedelta(minutes=10)


class HeapKeeper:
    """Freezes the heap after each pass and collects it whole every `full_every`."""

    def __init__(
        self,
        full_every: timedelta = FULL_EVERY,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.full_every = full_every
        self._monotonic = monotonic
        self._last_full = monotonic()
        self.full_collections = 0

    def after_pass(self) -> None:
        """Freeze what the pass left; first collect everything when a full collection is due."""
        now = self._monotonic()
        if now - self._last_full >= self.full_every.total_seconds():
            found, seconds = collect_whole()
            self._last_full = now
            self.full_collections += 1
            log.debug("full collection: %d unreachable in %.3f s", found, seconds)
        gc.freeze()

    def close(self) -> None:
        """Hand every frozen object back to the collector (the operator stops)."""
        gc.unfreeze()


def collect_whole() -> tuple[int, float]:
    """Unfreeze and collect the whole heap: the unreachable objects found, and the seconds."""
    started = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    return found, time.perf_counter() - started
