"""The strict reader and the exchange's small rules, without a server.

The server-backed cases are in test_hostile_answers.py; these pin the rules whose
inputs a real Prometheus cannot be made to send on demand.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.prometheus.answers import (
    RangeAsked,
    UnusableAnswer,
    points_in_bulk,
    points_one_by_one,
    read_instant,
    read_range,
)
from controller.prometheus.transport import AnswerBudget, QueryFailed, retry_after_seconds

ASKED = RangeAsked(start=1000.0, end=1060.0, step=15.0)


def matrix(*series: dict[str, object]) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "matrix", "result": list(series)}}


def test_points_exactly_on_the_grid_are_read() -> None:
    points = [[1000 + 15 * k, f"{k}"] for k in range(5)]
    [series] = read_range(matrix({"metric": {"job": "a"}, "values": points}), ASKED)
    assert series.points == tuple((1000.0 + 15 * k, float(k)) for k in range(5))
    assert series.labels == {"job": "a"}


@pytest.mark.parametrize(
    ("series", "reason"),
    [
        ({"metric": {}, "values": [[10**400, "1"]]}, "not a finite time"),
        ({"metric": {}, "values": [[True, "1"]]}, "the timestamp True, not a number"),
        ({"metric": {}, "values": [[1000, "1"]], "histograms": []}, "native histograms"),
        ({"metric": {"a": 1}, "values": []}, "labels that are not a mapping of strings"),
    ],
)
def test_what_no_prometheus_sends_is_refused(series: dict[str, object], reason: str) -> None:
    with pytest.raises(UnusableAnswer, match=reason):
        read_range(matrix(series), ASKED)


def test_the_same_series_twice_is_refused() -> None:
    one = {"metric": {"job": "a"}, "values": [[1000, "1"]]}
    with pytest.raises(UnusableAnswer, match="twice"):
        read_range(matrix(one, dict(one)), ASKED)


def test_an_instant_sample_must_be_stamped_at_the_asked_instant() -> None:
    answer = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [999.0, "1"]}]},
    }
    with pytest.raises(UnusableAnswer, match=r"not the asked instant 1000\.000"):
        read_instant(answer, at=1000.0)
    assert read_instant(answer, at=999.0)[0].value == 1.0


def test_retry_after_reads_seconds_and_http_dates_and_ignores_garbage() -> None:
    assert retry_after_seconds("60") == 60.0
    later = datetime.now(UTC) + timedelta(seconds=120)
    assert 100 < (retry_after_seconds(email.utils.format_datetime(later)) or 0) <= 120
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("٦٠") is None
    assert retry_after_seconds(None) is None


def test_the_answer_budget_refuses_past_its_limit_and_frees_what_is_given_back() -> None:
    budget = AnswerBudget(100)
    budget.take(60)
    with pytest.raises(QueryFailed, match="budget"):
        budget.take(50)
    budget.give(60)
    budget.take(100)


def test_a_value_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(UnusableAnswer, match="not a number"):
        read_range(matrix({"metric": {}, "values": [[1000, "1\n"]]}), ASKED)


GRID = RangeAsked(start=1000.0, end=1000.0 + 60 * 40, step=60.0)
HOSTILE_STAMPS = st.sampled_from([True, None, "1060", 10**400, math.nan, math.inf, -math.inf])
# Moved by these, a stamp stays in order but may leave the grid (0.0004 is within tolerance).
NUDGES = st.sampled_from([0.3, -0.3, 0.0004, -0.0004, 0.0006, -0.0006, 30, 60.0])
HOSTILE_VALUES = st.sampled_from(
    [
        "NaN",
        "+Inf",
        "-Inf",
        "Inf",
        "1e400",
        "nan",
        "inf",
        " 1",
        "1\n",
        "\n1",
        "1\n2",
        "1_0",
        "٠",
        "",
        1,
    ]
)
ORDINARY_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["0", "0.0004", ".5", "5.", "+1e-3", "-2E+4"]),
)


@st.composite
def grid_points(draw: st.DrawFn) -> list[Any]:
    """Points on GRID's steps, in order, some left out; stamps as ints or floats."""
    steps = sorted(draw(st.sets(st.integers(0, 40), max_size=41)))
    stamp = st.sampled_from([int, float])
    return [[draw(stamp)(1000 + 60 * k), draw(ORDINARY_VALUES)] for k in steps]


@st.composite
def broken_points(draw: st.DrawFn) -> list[Any]:
    """Grid points with a few of their stamps, values or pairs made hostile."""
    points = draw(grid_points())
    for _ in range(draw(st.integers(1, 3)) if points else 0):
        index = draw(st.integers(0, len(points) - 1))
        part = draw(st.sampled_from(["stamp", "nudge", "value", "pair", "swap", "outside"]))
        if not (isinstance(points[index], list) and len(points[index]) == 2):
            continue
        if part == "stamp":
            points[index][0] = draw(HOSTILE_STAMPS)
        elif part == "nudge":
            points[index][0] = float(points[index][0]) + draw(NUDGES)
        elif part == "value":
            points[index][1] = draw(HOSTILE_VALUES)
        elif part == "pair":
            points[index] = draw(st.sampled_from([[], [1000], [1000, "1", "2"], {}, "1000,1"]))
        elif part == "swap":
            points.insert(index, list(points[index]))
        elif draw(st.booleans()):
            points.insert(0, [GRID.start - 60, "0"])
        else:
            points.append([GRID.end + 60, "0"])
    return points


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(grid_points())
def test_ordinary_series_are_read_in_bulk_with_the_numbers_read_one_by_one(
    values: list[Any],
) -> None:
    assert points_in_bulk(values, GRID) == points_one_by_one(values, GRID, "series 1")


@settings(max_examples=500, deadline=None, database=None, derandomize=True)
@given(broken_points())
def test_the_bulk_reader_accepts_nothing_the_point_by_point_reader_refuses(
    values: list[Any],
) -> None:
    bulk = points_in_bulk(values, GRID)
    try:
        one_by_one = points_one_by_one(values, GRID, "series 1")
    except UnusableAnswer:
        assert bulk is None
    else:
        assert bulk is None or bulk == one_by_one
