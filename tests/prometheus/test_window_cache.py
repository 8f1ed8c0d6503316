"""A window completed from the cache summarises exactly as a read of the whole window.

Each test reads the same windows at many ticks through two sources on one real
Prometheus: one with the window cache (reading only each window's newest part
when it can) and one without (`reuse=None`, every window read whole). Their
summaries must be identical, repr for repr, at every tick: through a target that
stops being scraped, staleness markers, counter resets, NaN, a second series
appearing, a Prometheus restarted on the same, changed or lost data, and an `at`
that jumps off the grid, backwards and past the refresh.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.catalog import load_plan
from controller.prometheus.answers import RangeAsked, Series
from controller.prometheus.source import DEFAULT_REUSE, PrometheusSettings, PrometheusSource
from controller.prometheus.window_cache import PointBudget, WindowCache, WindowReuse, reusable
from tests.support.backfill import Series as History
from tests.support.hostile_http import HostileServer, Request, json_reply
from tests.support.prometheus import PrometheusServer
from tests.support.scrape_target import Exposition, serving

pytestmark = pytest.mark.prometheus

MakeServer = Callable[..., PrometheusServer]
PLAN = load_plan()
COUNTER = "stage_validation_validations_total"
MINUTE = timedelta(minutes=1)
# The plan's error ratio (with its freshness guard), its alert coverage (timestamp()),
# a plain selector (staleness, resets, a second series) and a sum of rates.
QUERIES = (
    PLAN.signals["error_ratio"].query,
    PLAN.evaluation.alert_coverage or "",
    COUNTER,
    f"sum(rate({COUNTER}[5m]))",
)
WINDOWS = (timedelta(minutes=30), timedelta(hours=2))

_OPEN: list[PrometheusSource] = []


@pytest.fixture(autouse=True)
def close_sources() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def sources(
    url: str, resolution: timedelta, reuse: WindowReuse = DEFAULT_REUSE
) -> tuple[PrometheusSource, PrometheusSource]:
    """(a source with the window cache, one reading every window whole)."""
    settings = PrometheusSettings(url=url)
    made = (
        PrometheusSource(settings, resolution, reuse=reuse),
        PrometheusSource(settings, resolution, reuse=None),
    )
    _OPEN.extend(made)
    return made


def differences(
    cached: PrometheusSource,
    whole: PrometheusSource,
    queries: tuple[str, ...],
    windows: tuple[timedelta, ...],
    at: datetime,
) -> list[tuple[str, timedelta, str, str]]:
    """The windows whose summaries differ at `at` (repr: NaN equals NaN, floats exactly)."""
    found = []
    for query in queries:
        for window in windows:
            mine = cached.summarize("", query, window, at)
            full = whole.summarize("", query, window, at)
            if repr(mine) != repr(full):
                found.append((query[:40], window, repr(mine), repr(full)))
    return found


def stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --- history with every event, read tick after tick ---------------------------------


def eventful_history(base: int) -> list[History]:
    """Three hours at 15s: an error jump, a reset, a flat stretch (0/0), a stop, a second series."""
    minute = 60

    def reads(d: int) -> float:
        if d < 100 * minute:
            return 10.0 * d
        # Reset at 100m, flat from 130m to 140m (no validations: the error ratio is 0/0).
        return 10.0 * (min(d, 130 * minute) - 100 * minute + max(0, d - 140 * minute))

    def errors(d: int) -> float:
        grown = min(d, 130 * minute) + max(0, d - 140 * minute)
        return 0.01 * grown + (50.0 if d > 70 * minute else 0.0)

    times = range(0, 180 * minute + 1, 15)
    # From 150m to 165m the target is not scraped: no samples, no staleness marker.
    scraped = [d for d in times if not 150 * minute < d <= 165 * minute]
    writes = [(float(base + d), 2.0 * d) for d in range(110 * minute, 120 * minute, 15)]
    job = {"job": "app", "instance": "a"}
    return [
        History(
            COUNTER,
            {**job, "operation": "read"},
            [(float(base + d), reads(d)) for d in scraped],
            "counter",
        ),
        History(COUNTER, {**job, "operation": "write"}, writes, "counter"),
        History(
            "stage_validation_errors_total",
            job,
            [(float(base + d), errors(d)) for d in times],
            "counter",
        ),
    ]


@pytest.fixture
def eventful(prometheus_server: MakeServer) -> tuple[PrometheusServer, int]:
    base = int(time.time()) // 7200 * 7200 - 6 * 3600
    return prometheus_server(history=eventful_history(base)), base


def test_every_tick_of_an_eventful_history_summarises_as_the_whole_window(
    eventful: tuple[PrometheusServer, int],
) -> None:
    """Ticks a minute apart through a reset, 0/0, a stop and a second series, then an
    `at` that jumps: off the grid, back on it, backwards, forwards and past the refresh."""
    server, base = eventful
    cached, whole = sources(server.url, MINUTE)
    ticks = [base + 60 * (60 + k) for k in range(120)]
    jumps = [30, 90, 60, -180, 420, 60, 900, 60]
    for jump in jumps:
        ticks.append(ticks[-1] + jump)
    partial: list[bool] = []
    extra = 0
    for at in ticks:
        sent, completed = cached.queries_sent, cached.windows_completed
        assert differences(cached, whole, QUERIES, WINDOWS, stamp(at)) == [], stamp(at)
        extra += cached.queries_sent - sent - len(QUERIES) * len(WINDOWS)
        partial.append(cached.windows_completed > completed)
    # No history changed, so no check failed: the one second query is the plain
    # selector's 2h window at the tick its second series entered the newest part.
    assert extra == 1
    assert sum(partial[1:120]) > 0.8 * 119
    off_grid, back_on, after, backwards, forward, _, past_refresh, _ = partial[120:]
    # Off the cached grid, before the last read or a refresh past: whole windows.
    assert not any((off_grid, back_on, backwards, past_refresh))
    assert after and forward
    # The history does hold each event it is said to (read whole, at ticks it passed).
    ratio, coverage, plain, rates = QUERIES
    at_ = {m: stamp(base + m * 60) for m in (115, 135, 168)}
    assert whole.summarize("", ratio, WINDOWS[0], at_[135]).non_finite > 0  # 0/0
    assert whole.summarize("", plain, WINDOWS[1], at_[115]).series == 2
    assert whole.summarize("", rates, WINDOWS[0], at_[168]).largest_gap >= timedelta(minutes=9)
    assert whole.summarize("", coverage, WINDOWS[0], at_[168]).largest_gap >= timedelta(minutes=9)


def test_ticks_alternating_between_two_grids_each_continue_their_own_window(
    eventful: tuple[PrometheusServer, int],
) -> None:
    """An operator's 30s passes over a 1m resolution lie on two grids, every other pass
    on each: each grid keeps its own points, so a read one step after its grid's last
    is completed from the cache, and its summary is still the whole window's."""
    server, base = eventful
    cached, whole = sources(server.url, MINUTE)
    partial: list[bool] = []
    for k in range(16):
        completed = cached.windows_completed
        at = stamp(base + 60 * 100 + 30 * k)
        assert differences(cached, whole, QUERIES, WINDOWS, at) == [], at
        partial.append(cached.windows_completed > completed)
    # The first read on each grid is whole; after it, every 2h window of every tick is
    # completed (a 30m window is all horizon and check: always read whole).
    assert partial[:2] == [False, False]
    assert cached.windows_completed == 14 * len(QUERIES)


def test_a_restart_on_the_same_data_keeps_the_cache_and_changed_or_lost_data_is_read_whole(
    eventful: tuple[PrometheusServer, int],
) -> None:
    """Module docstring of window_cache: a change inside the check is seen at once, one
    older than the check at the refresh, and a Prometheus that lost its data at once."""
    server, base = eventful
    cached, whole = sources(server.url, MINUTE)
    at = base + 120 * 60
    windows = (timedelta(hours=2),)

    def tick(moment: int) -> tuple[list[Any], int, int]:
        sent, completed = cached.queries_sent, cached.windows_completed
        found = differences(cached, whole, QUERIES, windows, stamp(moment))
        return found, cached.queries_sent - sent, cached.windows_completed - completed

    assert tick(at) == ([], len(QUERIES), 0)
    assert tick(at + 60)[:2] == ([], len(QUERIES))
    server.restart()
    # Every window completed but the plain selector's, two series (not kept).
    assert tick(at + 120) == ([], len(QUERIES), len(QUERIES) - 1)

    # A series written inside the check (15-25 minutes before the last read).
    late = [(float(t), 1.0 * t) for t in range(at + 120 - 25 * 60, at + 120 - 15 * 60, 15)]
    server.backfill([History(COUNTER, {"job": "app", "instance": "late"}, late, "counter")])
    found, sent, _ = tick(at + 180)
    assert found == []
    assert sent > len(QUERIES)  # the windows that changed were read again, whole

    # A series written long before the check: no check sees it, the refresh does.
    old = [(float(t), 5.0 * t) for t in range(at - 90 * 60, at - 80 * 60, 15)]  # a new maximum
    server.backfill([History(COUNTER, {"job": "app", "instance": "old"}, old, "counter")])
    found, _, completed = tick(at + 240)
    assert completed and any(query.startswith("sum(rate(") for query, *_ in found)
    for minute in range(5, 14):
        tick(at + minute * 60)
    # The windows last read whole at minute 3 are read whole again: only the coverage
    # query's, refreshed at minute 11 and unchanged by the new series, is completed.
    assert tick(at + 14 * 60) == ([], len(QUERIES), 1)

    # The same Prometheus back on an empty TSDB: every window holds nothing now.
    server.stop()
    shutil.rmtree(server.tsdb_path)
    server.start()
    found, _, _ = tick(at + 15 * 60)
    assert found == []
    assert cached.summarize("", COUNTER, windows[0], stamp(at + 15 * 60)).series == 0


def test_data_arriving_late_within_the_horizon_is_read_again_not_taken_from_the_cache(
    eventful: tuple[PrometheusServer, int],
) -> None:
    """Module docstring of window_cache: points younger than the horizon when read can
    still change, so they are never taken from the cache (and their change is no
    failed check): samples of the last minutes written after a tick read them."""
    server, base = eventful
    cached, whole = sources(server.url, MINUTE)
    at, windows = base + 184 * 60, (timedelta(hours=2),)
    assert differences(cached, whole, QUERIES, windows, stamp(at)) == []
    late = [(float(t), 10.0 * (t - base)) for t in range(base + 180 * 60 + 15, at + 60, 15)]
    server.backfill(
        [History(COUNTER, {"job": "app", "instance": "a", "operation": "read"}, late, "counter")]
    )
    sent, completed = cached.queries_sent, cached.windows_completed
    assert differences(cached, whole, QUERIES, windows, stamp(at + 60)) == []
    assert cached.queries_sent - sent == len(QUERIES)
    assert cached.windows_completed - completed == len(QUERIES) - 1  # all but two series
    changed = cached.summarize("", COUNTER + '{operation="read"}', windows[0], stamp(at + 60))
    assert changed.last == 10.0 * (at + 45 - base)  # the newest late sample


# --- a live target: staleness markers, a reset, a target down -------------------------


@pytest.fixture
def target() -> Iterator[tuple[Exposition, str]]:
    exposition = Exposition(COUNTER, step=5)
    with serving(exposition) as address:
        yield exposition, address


def test_live_staleness_markers_resets_and_a_target_down_summarise_as_the_whole_window(
    prometheus_server: MakeServer, target: tuple[Exposition, str]
) -> None:
    """A second-by-second scrape: one series vanishes (a staleness marker), the counter
    resets, the target fails its scrapes (markers for every series) and comes back.
    Each tick reads at the last whole second but two, whose scrapes are all written."""
    exposition, address = target
    server = prometheus_server(scrape_targets={"app": [address]})
    server.wait_for(f"count({COUNTER})", lambda n: n == 2, timeout=30)
    second = timedelta(seconds=1)
    reuse = WindowReuse(horizon=2 * second, check=3 * second, refresh=timedelta(minutes=1))
    cached, whole = sources(server.url, second, reuse)
    queries = (
        COUNTER,
        f'{COUNTER}{{operation="read"}}',
        f"sum(rate({COUNTER}[3s]))",
        f"vector(1) and on() ({COUNTER} and count_over_time({COUNTER}[2999ms]))",
    )
    windows = (timedelta(seconds=15),)
    changes: dict[int, Callable[[], None]] = {
        5: lambda: setattr(exposition, "series", ("read",)),
        9: lambda: setattr(exposition, "count", 0),
        12: lambda: setattr(exposition, "down", True),
        16: lambda: setattr(exposition, "down", False),
        18: lambda: setattr(exposition, "series", ("read", "write")),
    }
    completed = 0
    for tick in range(24):
        changes.get(tick, lambda: None)()
        time.sleep(1 - time.time() % 1 + 0.3)
        at = stamp(math.floor(time.time()) - 2)
        before = cached.windows_completed
        assert differences(cached, whole, queries, windows, at) == [], (tick, at)
        completed += cached.windows_completed > before
    assert completed > 12  # most ticks completed cached windows


# --- hostile or odd answers to the newest part -------------------------------------


def test_an_odd_answer_to_the_newest_part_is_read_whole_or_unknown_never_merged(
    eventful: tuple[PrometheusServer, int],
) -> None:
    """The part's answer goes through the strict reader like any other; one with other
    labels or a second series sends the whole window's query, a refused one is unknown
    and the next read is of the whole window."""
    server, base = eventful
    query, window = f"sum(rate({COUNTER}[5m]))", timedelta(hours=2)
    change = {"part": "none"}
    starts: list[float] = []

    def rule(request: Request) -> Any:
        if request.path != "/api/v1/query_range":
            return None
        start, end = float(request.params["start"]), float(request.params["end"])
        starts.append(end - start)
        status, body = request.forward()
        answer = json.loads(body)
        result = answer["data"]["result"]
        if end - start < window.total_seconds():
            if change["part"] == "relabel":
                result[0]["metric"] = {"job": "elsewhere"}
            elif change["part"] == "second series":
                result.append({"metric": {"job": "other"}, "values": result[0]["values"]})
            elif change["part"] == "off the grid":
                result[0]["values"][0][0] += 0.25
        return json_reply(answer, status)

    hostile = HostileServer(server.url, rule)
    cached = PrometheusSource(PrometheusSettings(url=hostile.url), MINUTE)
    _, whole = sources(server.url, MINUTE)
    _OPEN.append(cached)
    try:
        at, full, part = base + 120 * 60, window.total_seconds(), 31 * 60.0
        expected = {
            "none": [full],
            "plain": [part],
            "relabel": [part, full],
            "second series": [part, full],
            "off the grid": [part],
        }
        for minute, case in enumerate(expected):
            change["part"] = "none" if case == "plain" else case
            starts.clear()
            moment = stamp(at + minute * 60)
            mine = cached.summarize("", query, window, moment)
            assert starts == expected[case], case
            if case == "off the grid":
                assert mine.error is not None and "off the asked 60s resolution grid" in mine.error
            else:
                assert repr(mine) == repr(whole.summarize("", query, window, moment)), case
        change["part"] = "none"
        starts.clear()
        cached.summarize("", query, window, stamp(at + 5 * 60))
        assert starts == [full]  # after a refused part, the whole window
    finally:
        hostile.close()


# --- the cache on its own ----------------------------------------------------------


def test_queries_whose_points_depend_on_the_range_are_never_reused() -> None:
    assert reusable(PLAN.signals["error_ratio"].query)
    assert reusable(f"rate({COUNTER}[5m] offset 1h)")
    assert not reusable(f"rate({COUNTER}[5m] @ end())")
    assert not reusable(f"{COUNTER} @ 1700000000")
    assert not reusable(f"rate({COUNTER}[5m] OFFSET -10m)")
    assert not reusable(f"rate({COUNTER}[5m] offset\n  -10m)")


def test_the_cache_holds_at_most_its_points_and_forgets_windows_not_read() -> None:
    cache = WindowCache(WindowReuse(max_points=100))
    asked = RangeAsked(start=0.0, end=3600.0, step=60.0)
    points = tuple((60.0 * n, 1.0) for n in range(61))
    cache.keep_whole("a", asked, [Series({}, points)])
    assert cache.points == 61
    cache.keep_whole("b", asked, [Series({}, points)])  # would pass the cap: not kept
    assert cache.points == 61
    assert cache.plan("b", RangeAsked(start=60.0, end=3660.0, step=60.0)) is None
    reread = cache.plan("a", RangeAsked(start=60.0, end=3660.0, step=60.0))
    assert reread is not None and reread.asked.start == 3600.0 - 30 * 60
    cache.prune(3600.0 + 11 * 60)
    assert cache.points == 0


def test_a_summary_completed_from_the_cache_keeps_the_whole_reads_fields() -> None:
    """The merged series goes through the same summariser: nothing is summed by hand."""
    cache = WindowCache(WindowReuse())
    asked = RangeAsked(start=0.0, end=7200.0, step=60.0)
    points = tuple((60.0 * n, float(n)) for n in range(121))
    cache.keep_whole("k", asked, [Series({"a": "b"}, points)])
    later = RangeAsked(start=60.0, end=7260.0, step=60.0)
    reread = cache.plan("k", later)
    assert reread is not None
    part = tuple(p for p in (*points, (7260.0, 121.0)) if p[0] >= reread.asked.start)
    merged = cache.complete("k", reread, [Series({"a": "b"}, part)])
    assert merged is not None
    assert merged.points == tuple((60.0 * n, float(n)) for n in range(1, 122))
    again = cache.plan("k", RangeAsked(start=120.0, end=7320.0, step=60.0))
    assert again is not None
    fresh = tuple(p for p in (*merged.points, (7320.0, 122.0)) if p[0] >= again.asked.start)
    first_checked = fresh[0][0]
    changed = tuple((t, v + 1.0 if t == first_checked else v) for t, v in fresh)
    assert cache.complete("k", again, [Series({"a": "b"}, changed)]) is None
    assert cache.plan("k", RangeAsked(start=120.0, end=7320.0, step=60.0)) is None


def test_all_the_caches_of_the_process_share_one_budget_of_points() -> None:
    """A namespace user choosing many Prometheus settings makes many sources: their
    caches together stay within the budget, and a cache gone frees its share."""
    budget = PointBudget(150)
    asked = RangeAsked(start=0.0, end=3600.0, step=60.0)
    points = tuple((60.0 * n, 1.0) for n in range(61))
    first, second = WindowCache(WindowReuse(), budget), WindowCache(WindowReuse(), budget)
    first.keep_whole("a", asked, [Series({}, points)])
    second.keep_whole("a", asked, [Series({}, points)])
    third = WindowCache(WindowReuse(), budget)
    third.keep_whole("a", asked, [Series({}, points)])  # 183 > 150: not kept
    assert (first.points, second.points, third.points) == (61, 61, 0)
    del first
    third.keep_whole("a", asked, [Series({}, points)])
    assert third.points == 61
