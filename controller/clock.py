"""The only place that reads the wall clock.

Everything else receives `now` from a Clock, so a simulation can run thirty days
in a second and a replay can stand at any moment of the past.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where drivers get the time from."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()


class VirtualClock:
    """A clock that only moves when told to: simulations and replays."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a virtual clock needs a time-zone-aware start")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(timedelta(seconds=seconds))

    def advance(self, step: timedelta) -> None:
        self._now += step


def monotonic_seconds() -> float:
    """A monotonic reading for measuring how long work took (never for decisions)."""
    return time.monotonic()
