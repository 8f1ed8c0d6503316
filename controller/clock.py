"""The only place that reads the wall clock.

Everything else receives `now` from a Clock, so a simulation can run thirty days
in a second and a replay can stand at any moment of the past.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


def on_grid(moment: datetime, step: timedelta) -> datetime:
    """The last multiple of `step` since the epoch at or before `moment`.

    The operator's passes stand on this grid, so that passes a whole number of
    resolution steps apart read Prometheus on the same evaluation times.
    """
    step_us = max(round(step.total_seconds() * 1_000_000), 1)
    since = moment - _EPOCH
    micros = (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds
    return _EPOCH + timedelta(microseconds=micros - micros % step_us)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
