"""The points of each window's last read, so that the next tick asks only for what can change.

Consecutive ticks read almost the same window: a 48h window at a 1m resolution
read one minute later shares 2,879 of its 2,880 evaluation times with the last
read. A range query's point at time T depends only on T and the data, not on the
range it was asked in (the one exception, `@ start()` / `@ end()`, and negative
offsets, which read past T, are never reused), so a point read once can serve
again when the new window's evaluation grid (start + k * step) goes through it.

What may still change, and therefore what is asked again each tick:

- **The horizon** (default 10m before the `at` of the last read): points that
  young are never taken from the cache. Their data can still arrive: a scrape
  is stamped when it starts and appended when it ends (up to its timeout, at
  most its interval), rules are evaluated up to an interval late, a staleness
  marker is written at the scrape that failed, and a remote-write or federated
  sender runs some seconds to minutes behind. Ten minutes covers two missed
  intervals of a 5m scrape or rule interval, twice the plan's `gap_tolerance`.
- **The check** (default the 20m before the horizon): read again too, and it must
  come back exactly as cached, bit for bit, with the same series. Anything else
  (a Prometheus that restarted on other or no data, a sender more than the
  horizon late, a clock skew past the horizon) means the cache no longer tells
  what Prometheus holds, and the whole window is read, as without a cache.
- **The refresh** (default every 10m of `at`): a window is read whole again, so
  that changes deep in the past that no check can see (retention deleting the
  oldest blocks, history backfilled or deleted) count within ten minutes.

Anything off the happy path reads the whole window: no cache yet, a query not
reusable, a new `at` off the cached grid or before the last one, a window start
earlier than the cached one, an answer with more than one series or other labels,
a read that failed. Only answers the strict reader accepted are kept. A source
keys its windows by `grid_phase` too, so ticks on two grids (30s apart on a 1m
step) each continue their own window. A cache
holds at most `max_points` points (16 bytes each), and all the caches of the
process together at most `PROCESS_POINTS`: the operator keeps one source per
distinct Prometheus setting, which namespace users choose, so no number of
sources can take it past its memory limit through their caches.
"""

from __future__ import annotations

import re
import threading
import weakref
from array import array
from bisect import bisect_left
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from controller.prometheus.answers import RangeAsked, Series

__all__ = [
    "PROCESS_POINTS",
    "KeptWindow",
    "PointBudget",
    "Reread",
    "WindowCache",
    "WindowReuse",
    "grid_phase",
    "reusable",
]

# `@` evaluates at the range's ends (or a fixed time), a negative offset reads data
# after T: either makes a point depend on more than its own time and the data.
_RANGE_DEPENDENT = re.compile(r"@|offset\s*-", re.IGNORECASE)


def reusable(query: str) -> bool:
    """Whether each point of `query`'s range answer depends only on its own time."""
    return _RANGE_DEPENDENT.search(query) is None


def grid_phase(asked: RangeAsked) -> int:
    """Where in its step a range's evaluation grid lies (ms): reads of one phase share points."""
    return _ms(asked.start) % max(_ms(asked.step), 1)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(frozen=True, slots=True)
class WindowReuse:
    """How much of a window's last read a source reuses (see the module docstring)."""

    horizon: timedelta = timedelta(minutes=10)
    check: timedelta = timedelta(minutes=20)
    refresh: timedelta = timedelta(minutes=10)
    max_points: int = 500_000


@dataclass(frozen=True, slots=True)
class KeptWindow:
    """One window's single series as last read, on the grid of that read."""

    labels: Mapping[str, str]
    start_ms: int
    step_ms: int
    stamps: array[float]
    values: array[float]
    read_at_ms: int
    full_at_ms: int


@dataclass(frozen=True, slots=True)
class Reread:
    """What to ask for instead of a whole window, and which cached points it completes.

    Cached points `[reused, checked)` are taken as they are; `[checked, horizon)`
    must come back unchanged at the start of the answer to `asked`.
    """

    asked: RangeAsked
    kept: KeptWindow
    window_start_ms: int
    reused: int
    checked: int
    horizon: int
    horizon_ms: int


class PointBudget:
    """The points every live window cache of the process may hold together (16 MB)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._caches: weakref.WeakSet[WindowCache] = weakref.WeakSet()
        self._lock = threading.Lock()

    def join(self, cache: WindowCache) -> None:
        with self._lock:
            self._caches.add(cache)

    def room_for(self, count: int) -> bool:
        """Whether `count` more points fit; a cache gone with its source holds none."""
        with self._lock:
            held = sum(cache.held for cache in list(self._caches))
        return held + count <= self.limit


PROCESS_POINTS = PointBudget(1_000_000)


class WindowCache:
    """The last read of every window a source was asked for, shared by its threads."""

    def __init__(self, reuse: WindowReuse, budget: PointBudget = PROCESS_POINTS) -> None:
        self.reuse = reuse
        self._budget = budget
        self._lock = threading.Lock()
        self._kept: dict[Hashable, KeptWindow] = {}
        self._points = 0
        budget.join(self)

    @property
    def held(self) -> int:
        """The points held, read without the lock (an int: the budget's sum may lag)."""
        return self._points

    @property
    def points(self) -> int:
        with self._lock:
            return self._points

    def plan(self, key: Hashable, asked: RangeAsked) -> Reread | None:
        """What to read again of the window `asked`, or None to read all of it."""
        with self._lock:
            kept = self._kept.get(key)
        if kept is None:
            return None
        start_ms, end_ms, step_ms = _ms(asked.start), _ms(asked.end), _ms(asked.step)
        if (
            step_ms != kept.step_ms
            or start_ms < kept.start_ms
            or (start_ms - kept.start_ms) % step_ms
            or end_ms < kept.read_at_ms
            or end_ms - kept.full_at_ms > _ms(self.reuse.refresh.total_seconds())
        ):
            return None
        horizon_ms = kept.read_at_ms - _ms(self.reuse.horizon.total_seconds())
        check_ms = max(start_ms, horizon_ms - _ms(self.reuse.check.total_seconds()))
        # The first time of the new grid at or after the check's start.
        first_ms = start_ms - (start_ms - check_ms) // step_ms * step_ms
        reused = _index(kept.stamps, start_ms)
        checked = _index(kept.stamps, first_ms)
        if checked == reused:
            return None
        return Reread(
            asked=RangeAsked(start=first_ms / 1000, end=asked.end, step=asked.step),
            kept=kept,
            window_start_ms=start_ms,
            reused=reused,
            checked=checked,
            horizon=_index(kept.stamps, horizon_ms),
            horizon_ms=horizon_ms,
        )

    def complete(self, key: Hashable, reread: Reread, answer: list[Series]) -> Series | None:
        """The whole window from the cache and the answer to `reread.asked`, or None when
        the answer does not continue the cache (then the whole window must be read)."""
        kept = reread.kept
        if len(answer) > 1 or (answer and answer[0].labels != kept.labels):
            self.forget(key)
            return None
        points = answer[0].points if answer else ()
        stamps = array("d", (stamp for stamp, _value in points))
        values = array("d", (value for _stamp, value in points))
        again = _index(stamps, reread.horizon_ms)
        if (
            stamps[:again].tobytes() != kept.stamps[reread.checked : reread.horizon].tobytes()
            or values[:again].tobytes() != kept.values[reread.checked : reread.horizon].tobytes()
        ):
            self.forget(key)
            return None
        cached = slice(reread.reused, reread.checked)
        old_stamps, old_values = kept.stamps[cached], kept.values[cached]
        self._keep(
            key,
            KeptWindow(
                labels=kept.labels,
                start_ms=reread.window_start_ms,
                step_ms=kept.step_ms,
                stamps=old_stamps + stamps,
                values=old_values + values,
                read_at_ms=_ms(reread.asked.end),
                full_at_ms=kept.full_at_ms,
            ),
        )
        return Series(kept.labels, tuple(zip(old_stamps, old_values, strict=True)) + points)

    def keep_whole(self, key: Hashable, asked: RangeAsked, answer: list[Series]) -> None:
        """Remember a whole window's answer, when it is one series with points."""
        if len(answer) != 1 or not answer[0].points:
            self.forget(key)
            return
        points = answer[0].points
        self._keep(
            key,
            KeptWindow(
                labels=answer[0].labels,
                start_ms=_ms(asked.start),
                step_ms=_ms(asked.step),
                stamps=array("d", (stamp for stamp, _value in points)),
                values=array("d", (value for _stamp, value in points)),
                read_at_ms=_ms(asked.end),
                full_at_ms=_ms(asked.end),
            ),
        )

    def clear(self) -> None:
        with self._lock:
            self._kept, self._points = {}, 0

    def forget(self, key: Hashable) -> None:
        with self._lock:
            gone = self._kept.pop(key, None)
            if gone is not None:
                self._points -= len(gone.stamps)

    def prune(self, at_seconds: float) -> None:
        """Drop the windows not read within a refresh of `at` (they would be read whole)."""
        at_ms, limit = _ms(at_seconds), _ms(self.reuse.refresh.total_seconds())
        with self._lock:
            stale = [k for k, kept in self._kept.items() if abs(at_ms - kept.read_at_ms) > limit]
            for key in stale:
                self._points -= len(self._kept.pop(key).stamps)

    def _keep(self, key: Hashable, kept: KeptWindow) -> None:
        with self._lock:
            gone = self._kept.pop(key, None)
            if gone is not None:
                self._points -= len(gone.stamps)
            count = len(kept.stamps)
            if self._points + count <= self.reuse.max_points and self._budget.room_for(count):
                self._kept[key] = kept
                self._points += count


def _index(stamps: array[float], ms: int) -> int:
    """The index of the first stamp at or after `ms` (stamps lie on whole milliseconds)."""
    return bisect_left(stamps, (ms - 0.5) / 1000)
