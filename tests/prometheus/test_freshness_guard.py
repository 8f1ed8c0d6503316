"""The bundled plan's freshness guard goes `unknown` exactly when its former form did.

The former guard, ``time() - max(timestamp(counter)) < 120``, made a 48h range
query thirty times slower than the query it guarded. Its replacement must be no
less safe, so each test runs both guards on one real Prometheus over the same
moments and compares where each has a value: history that simply ends (a
Prometheus that stopped scraping writes no staleness markers), and a live target
of the test's own whose series disappear and which then stops answering (both
leave staleness markers).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest

from controller.catalog import load_plan
from tests.support.backfill import Series
from tests.support.prometheus import PrometheusServer
from tests.support.scrape_target import Exposition, serving

MakeServer = Callable[..., PrometheusServer]
COUNTER = "stage_validation_validations_total"
FORMER_GUARD = f"and on() (time() - max(timestamp({COUNTER})) < 120)"
_GUARD_START = re.compile(r"\s+and on\(\) \(")


def bundled_queries() -> dict[str, str]:
    plan = load_plan()
    return {
        name: signal.query
        for name, signal in plan.signals.items()
        if COUNTER in signal.query and name != "observed_mode"
    }


def split_guard(query: str) -> tuple[str, str]:
    """A signal's query as (what it measures, its freshness guard)."""
    starts = list(_GUARD_START.finditer(query))
    assert starts, f"no freshness guard in {query!r}"
    cut = starts[-1].start()
    return query[:cut], query[cut:].strip()


def presence(server: PrometheusServer, expr: str, start: float, end: float, step: float) -> set:
    """The evaluation times (ms) at which `expr` has a value."""
    found = server.query_range(expr, start=start, end=end, step=step)
    return {round(float(t) * 1000) for series in found for t, _v in series["values"]}


def test_every_ratio_signal_of_the_bundled_plan_carries_the_cheap_guard() -> None:
    queries = bundled_queries()
    assert len(queries) == 5
    guards = {split_guard(query)[1] for query in queries.values()}
    assert len(guards) == 1
    (guard,) = guards
    assert "timestamp(" not in guard
    assert "count_over_time" in guard


# --- a Prometheus that stopped scraping: history ends, no staleness markers ----------


def test_history_that_ends_loses_its_value_at_the_same_moment_under_both_guards(
    prometheus_server: MakeServer,
) -> None:
    """Runbook guard rationale (plan comment): a Prometheus that stopped scraping writes
    no staleness markers, so only the age of the newest sample can close the gate.

    Samples come at uneven sub-second offsets, with a 100s pause (shorter than the
    120s limit), a 130s pause (longer) and a final stop; the queries are evaluated
    every 250ms, so every boundary is crossed between two evaluations.
    """
    base = 1_700_000_000.0
    times: list[float] = []
    t = base
    for pause_after, pause in ((40, 100.0), (80, 130.0), (120, 0.0)):
        while len(times) < pause_after:
            times.append(round(t, 3))
            t += 15.0 + (len(times) % 7) * 0.137
        t += pause
    history = [
        Series(COUNTER, {"job": "app", "operation": op, "result": "ok"}, samples, "counter")
        for op, samples in (
            ("read", [(x, 10.0 * i) for i, x in enumerate(times)]),
            ("write", [(x + 0.4, 2.0 * i) for i, x in enumerate(times)]),
        )
    ]
    server = prometheus_server(history=history)
    first, last = times[0], times[-1] + 0.4
    queries = bundled_queries()
    guard = split_guard(next(iter(queries.values())))[1]
    start, end = first - 10, last + 200
    new = presence(server, f"vector(1) {guard}", start, end, 0.25)
    old = presence(server, f"vector(1) {FORMER_GUARD}", start, end, 0.25)
    assert new == old
    assert old and len(old) < (end - start) / 0.25  # both open and closed moments occur
    assert max(old) < (last + 120) * 1000 <= max(old) + 250
    # At the millisecond: a sample is fresh while it is younger than 120s, not at 120s.
    for before_pause in (times[79] + 0.4, last):  # the pauses longer than 120s
        for offset, fresh in ((119.999, True), (120.0, False)):
            at = before_pause + offset
            assert bool(server.query(f"vector(1) {guard}", at)) is fresh, (at, guard)
            assert bool(server.query(f"vector(1) {FORMER_GUARD}", at)) is fresh, at
    for name, query in queries.items():
        measured, _ = split_guard(query)
        assert presence(server, query, start, end, 1.0) == presence(
            server, f"{measured} {FORMER_GUARD}", start, end, 1.0
        ), name


# --- a live target: series that vanish leave staleness markers ------------------------


@pytest.fixture
def target() -> Iterator[tuple[Exposition, str]]:
    exposition = Exposition(COUNTER, step=1)
    with serving(exposition) as address:
        yield exposition, address


def test_staleness_markers_close_both_guards_at_the_same_moment(
    prometheus_server: MakeServer, target: tuple[Exposition, str]
) -> None:
    """ARCHITECTURE: `unknown` (no data, NaN, Prometheus down, stale samples) never promotes.

    One series vanishing (the other stays: still fresh), both vanishing while the
    target answers, both coming back, then the target failing its scrapes: each
    leaves staleness markers, and both guards must open and close together.
    """
    exposition, address = target
    server = prometheus_server(scrape_targets={"app": [address]})
    server.wait_for(f"count({COUNTER})", lambda n: n == 2, timeout=30)
    began = time.time()
    for series, down in ((("read",), False), ((), False), (("read", "write"), False), ((), True)):
        time.sleep(4)
        exposition.series, exposition.down = series, down
    time.sleep(4)
    ended = time.time()
    guard = split_guard(next(iter(bundled_queries().values())))[1]
    new = presence(server, f"vector(1) {guard}", began, ended, 0.1)
    old = presence(server, f"vector(1) {FORMER_GUARD}", began, ended, 0.1)
    assert new == old
    steps = int((ended - began) / 0.1)
    # Open while a series is scraped (about 12 of 20 s), closed while none is.
    assert 0.3 * steps < len(old) < 0.8 * steps
