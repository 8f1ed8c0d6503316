"""Each hostile answer of issue 9, through a hostile server in front of a real Prometheus.

ARCHITECTURE, the trust boundary: Prometheus is trusted with "answers, nothing
more", enforced by "a strict reader: shape, finite values, deadlines, size caps,
no redirects; garbage is `unknown`". Every case here is one the issue saw pass,
fire, crash or hang; each must now be `unknown` with a reason, in bounded time.
"""

from __future__ import annotations

import gzip
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from phases.verdicts import Outcome
from tests.prometheus.hostile import (
    RESOLUTION,
    WINDOW,
    gate_verdict,
    now,
    source_for,
    trigger_verdict,
)
from tests.support.hostile_http import HostileServer, Reply, Request, json_reply, mutate_json
from tests.support.prometheus import PrometheusBinaries, PrometheusServer

pytestmark = pytest.mark.prometheus

OPEN: list[Any] = []


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: PrometheusBinaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(
        tmp_path_factory.mktemp("hostile-prometheus"), binaries=prometheus_binary
    )
    server.start()
    yield server
    server.close()


@pytest.fixture
def hostile(prometheus: PrometheusServer) -> Iterator[HostileServer]:
    server = HostileServer(prometheus.url)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def close_sources() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def source(server: HostileServer, **settings: Any) -> Any:
    made = source_for(server.url, **settings)
    OPEN.append(made)
    return made


def each_series(change: Callable[[dict[str, Any], Request], None]) -> Callable[[Any, Request], Any]:
    def mutate(answer: Any, request: Request) -> Any:
        for series in answer["data"]["result"]:
            change(series, request)
        return answer

    return mutate


def test_forwarded_answers_give_the_real_verdicts(hostile: HostileServer) -> None:
    """The control: through the server untouched, the gate fails and the trigger holds."""
    reader = source(hostile)
    at = now()
    assert gate_verdict(reader, at).outcome is Outcome.FAIL
    assert trigger_verdict(reader, at).outcome is Outcome.PASS
    assert reader.modes("vector(1)", at) == (1.0,)


def test_a_nan_timestamp_never_passes_a_failing_gate_nor_fires_a_trigger(
    hostile: HostileServer,
) -> None:
    """The issue: a NaN timestamp made a failing gate pass ("held for 30m"); with value 1 it fired."""

    def nan_stamps(value: str) -> Callable[[Any, Request], Any]:
        def change(series: dict[str, Any], _request: Request) -> None:
            series["values"] = [[math.nan, value] for _point in series["values"]]

        return each_series(change)

    hostile.rule = mutate_json(nan_stamps("0"))
    gate = gate_verdict(source(hostile), now())
    assert gate.outcome is Outcome.UNKNOWN, gate
    assert "timestamp nan, not a finite time" in gate.reason

    hostile.rule = mutate_json(nan_stamps("1"))
    trigger = trigger_verdict(source(hostile), now())
    assert trigger.outcome is Outcome.UNKNOWN, trigger


def test_thousands_of_points_off_the_resolution_grid_are_unknown(hostile: HostileServer) -> None:
    def off_grid(answer: Any, request: Request) -> Any:
        start, end = float(request.params["start"]), float(request.params["end"])
        points = [[start + 0.5 + index * 0.035, "0"] for index in range(3000)]
        assert points[-1][0] < end  # every point inside the window: only the grid is wrong
        answer["data"]["result"][0]["values"] = points
        return answer

    hostile.rule = mutate_json(off_grid)
    verdict = gate_verdict(source(hostile), now())
    assert verdict.outcome is Outcome.UNKNOWN, verdict
    assert f"off the asked {RESOLUTION.total_seconds():g}s resolution grid" in verdict.reason


def test_points_outside_the_window_or_out_of_order_are_unknown(hostile: HostileServer) -> None:
    def early(series: dict[str, Any], _request: Request) -> None:
        series["values"] = [[ts - WINDOW.total_seconds() * 2, "0"] for ts, _ in series["values"]]

    def reversed_points(series: dict[str, Any], _request: Request) -> None:
        series["values"] = [[ts, "0"] for ts, _ in reversed(series["values"])]

    hostile.rule = mutate_json(each_series(early))
    assert "outside the asked window" in gate_verdict(source(hostile), now()).reason
    hostile.rule = mutate_json(each_series(reversed_points))
    assert "not later than the one before" in gate_verdict(source(hostile), now()).reason


def test_a_matrix_where_an_instant_vector_was_expected_leaves_no_alert_gate_passing(
    hostile: HostileServer,
) -> None:
    """The issue: a `matrix` for the ALERTS query left an alert gate passing."""

    def as_matrix(request: Request) -> Reply | None:
        if request.path != "/api/v1/query":
            return None
        return json_reply({"status": "success", "data": {"resultType": "matrix", "result": []}})

    hostile.rule = as_matrix
    reading = source(hostile).firing_alerts(["StageValidationHighErrorRate"], now())
    assert reading.firing is None
    assert reading.error is not None
    assert "Prometheus answered a matrix (range vector) where an instant vector was expected" in (
        reading.error
    )


def test_a_redirect_to_another_port_is_refused_and_the_other_server_never_asked(
    hostile: HostileServer,
) -> None:
    """The issue: a 302 to another port was followed, and every verdict came from there."""
    with HostileServer(
        rule=lambda _request: json_reply(
            {"status": "success", "data": {"resultType": "matrix", "result": []}}
        )
    ) as elsewhere:
        hostile.rule = lambda request: Reply(
            302, {"Location": f"{elsewhere.url}{request.path}"}, b""
        )
        verdict = gate_verdict(source(hostile), now())
        assert verdict.outcome is Outcome.UNKNOWN
        assert "redirect (HTTP 302 to http://127.0.0.1:" in verdict.reason
        assert "redirects are not followed" in verdict.reason
        assert elsewhere.seen == []


GARBAGE: dict[str, tuple[Any, str]] = {
    "empty-list": ([], "Prometheus answered an empty list where an object was expected"),
    "null": (None, "Prometheus answered null where an object was expected"),
    "no-data": ({"status": "success"}, "Prometheus answered success with no data"),
    "status-error-with-200": (
        {"status": "error", "errorType": "execution", "error": "query timed out"},
        "Prometheus answered status error (execution): query timed out",
    ),
    "scalar-result": (
        {"status": "success", "data": {"resultType": "scalar", "result": [1, "0"]}},
        "Prometheus answered a scalar where",
    ),
}


def _range_points(request: Request, point: Callable[[float], Any]) -> Reply:
    start, end, step = (float(request.params[k].rstrip("s")) for k in ("start", "end", "step"))
    count = int((end - start) / step) + 1
    values = [point(start + index * step) for index in range(count)]
    return json_reply(
        {
            "status": "success",
            "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]},
        }
    )


POINTS: dict[str, tuple[Callable[[float], Any], str]] = {
    "non-numeric-value": (lambda ts: [ts, "zero"], "has the value 'zero', not a number"),
    "unquoted-value": (lambda ts: [ts, 0], "has the value 0, not a number in quotes"),
    "arabic-digits": (lambda ts: [ts, "٠"], "not a number"),
    "short-pair": (lambda ts: [ts], "where a [timestamp, value] pair was expected"),
    "infinite-timestamp": (lambda ts: [math.inf, "0"], "timestamp inf, not a finite time"),
    "string-timestamp": (lambda ts: [str(ts), "0"], "not a number"),
    "huge-value": (lambda ts: [ts, "1e400"], "beyond any finite number"),
}


@pytest.mark.parametrize("case", list(GARBAGE), ids=list(GARBAGE))
def test_garbage_envelopes_are_unknown_with_a_reason_never_an_exception(
    hostile: HostileServer, case: str
) -> None:
    """The issue: each of these escaped a tick as TypeError, KeyError, ValueError or OverflowError."""
    payload, reason = GARBAGE[case]
    hostile.rule = lambda _request: json_reply(payload)
    reader = source(hostile)
    at = now()
    verdict = gate_verdict(reader, at, query="vector(0)")  # the real answer would pass
    assert verdict.outcome is Outcome.UNKNOWN, verdict
    assert reason in verdict.reason, verdict.reason
    assert trigger_verdict(reader, at, query="vector(1)").outcome is Outcome.UNKNOWN
    assert reader.modes("vector(1)", at) is None
    alerts = reader.firing_alerts(["StageValidationHighErrorRate"], at)
    assert alerts.firing is None and alerts.error is not None and reason in alerts.error


@pytest.mark.parametrize("case", list(POINTS), ids=list(POINTS))
def test_garbage_points_are_unknown_with_a_reason_never_an_exception(
    hostile: HostileServer, case: str
) -> None:
    point, reason = POINTS[case]
    hostile.rule = lambda request: _range_points(request, point)
    reader = source(hostile)
    at = now()
    verdict = gate_verdict(reader, at, query="vector(0)")
    assert verdict.outcome is Outcome.UNKNOWN, verdict
    assert reason in verdict.reason, verdict.reason
    assert trigger_verdict(reader, at, query="vector(1)").outcome is Outcome.UNKNOWN


def test_a_trickling_body_is_cut_at_the_query_deadline(hostile: HostileServer) -> None:
    """The issue: headers, then one byte every 2 s, held a query for minutes."""
    body = b'{"status": "success", "data": {"resultType": "matrix", "result": []}}' * 20
    hostile.rule = lambda _request: Reply(200, {}, body, pause_seconds=0.2)
    reader = source(hostile, timeout="2s", retries=2)
    started = time.monotonic()
    verdict = gate_verdict(reader, now())
    elapsed = time.monotonic() - started
    assert verdict.outcome is Outcome.UNKNOWN
    assert "within the query timeout" in verdict.reason
    assert 1.8 <= elapsed < 2.6, elapsed


def test_a_429_asking_to_retry_after_60s_ends_at_once_not_after_a_minute(
    hostile: HostileServer,
) -> None:
    """The issue: a 429 with Retry-After: 60 cost 120 s for one query."""
    hostile.rule = lambda _request: Reply(429, {"Retry-After": "60"}, b"slow down")
    reader = source(hostile, timeout="5s", retries=2)
    started = time.monotonic()
    verdict = gate_verdict(reader, now())
    assert time.monotonic() - started < 2
    assert verdict.outcome is Outcome.UNKNOWN
    assert (
        "asked to retry after 60" in verdict.reason
        and "past the query's deadline" in verdict.reason
    )
    assert len(hostile.seen) == 1


def test_a_short_retry_after_within_the_deadline_is_honoured(hostile: HostileServer) -> None:
    answered: list[int] = []

    def once_busy(_request: Request) -> Reply | None:
        answered.append(1)
        return Reply(429, {"Retry-After": "1"}, b"") if len(answered) == 1 else None

    hostile.rule = once_busy
    reader = source(hostile, timeout="5s", retries=2)
    started = time.monotonic()
    verdict = gate_verdict(reader, now())
    assert 0.9 <= time.monotonic() - started < 4
    assert verdict.outcome is Outcome.FAIL  # the real answer, after one wait
    assert len(answered) == 2


def test_a_50_mb_answer_is_refused_at_the_cap(hostile: HostileServer) -> None:
    """The issue: a 50 MB answer took the operator past 1 GB of RSS."""
    chunk = b" " * (1024 * 1024)
    hostile.rule = lambda _request: Reply(200, {}, chunks=lambda: (chunk for _ in range(50)))
    started = time.monotonic()
    verdict = gate_verdict(source(hostile), now())
    assert time.monotonic() - started < 5
    assert verdict.outcome is Outcome.UNKNOWN
    assert "more than the 1 MiB cap" in verdict.reason


def test_a_gzip_bomb_is_refused_as_it_expands(hostile: HostileServer, tmp_path: Path) -> None:
    """The issue: a gzip answer of 1 MB on the wire expanded to hundreds of MB."""
    bomb = gzip.compress(b" " * (200 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 1024 * 1024
    hostile.rule = lambda _request: Reply(200, {"Content-Encoding": "gzip"}, bomb)
    verdict = gate_verdict(source(hostile), now())
    assert verdict.outcome is Outcome.UNKNOWN
    assert "expands past the 1 MiB cap" in verdict.reason


def test_a_gzip_answer_within_the_cap_is_read(hostile: HostileServer) -> None:
    def compressed(request: Request) -> Reply:
        _status, body = request.forward()
        return Reply(200, {"Content-Encoding": "gzip"}, gzip.compress(body))

    hostile.rule = compressed
    assert gate_verdict(source(hostile), now()).outcome is Outcome.FAIL
