"""The strict reader and the exchange's small rules, without a server.

The server-backed cases are in test_hostile_answers.py; these pin the rules whose
inputs a real Prometheus cannot be made to send on demand.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import pytest

from controller.prometheus.answers import RangeAsked, UnusableAnswer, read_instant, read_range
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
