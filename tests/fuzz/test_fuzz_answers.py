"""Fuzzing Prometheus answers: no garbage answer ever passes a gate or fires a trigger.

Each example takes the real Prometheus's answer through the hostile server, makes
it say what would pass the gate (every value 0) or fire the trigger (every value
1), then breaks it in one way a strict reader must catch. The verdict must be
`unknown`, never `pass` and never a firing trigger, and reading must not raise.
CI replays the same examples (derandomized); STAGE_HYPOTHESIS_EXPLORE=1 explores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phases.verdicts import Outcome
from tests.prometheus.hostile import gate_verdict, now, source_for, trigger_verdict
from tests.support.hostile_http import HostileServer, Request, mutate_json
from tests.support.prometheus import PrometheusBinaries, PrometheusServer

pytestmark = pytest.mark.prometheus

FUZZ = settings(
    max_examples=int(os.environ.get("STAGE_FUZZ_EXAMPLES", "40")),
    deadline=None,
    database=None,
    derandomize=not os.environ.get("STAGE_HYPOTHESIS_EXPLORE"),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

Break = Callable[[Any, int], Any]

BAD_TIMESTAMPS: list[Callable[[float, float], Any]] = [
    lambda ts, _step: math.nan,
    lambda ts, _step: math.inf,
    lambda ts, _step: -math.inf,
    lambda ts, _step: str(ts),
    lambda ts, _step: None,
    lambda ts, _step: True,
    lambda ts, step: ts + step / 3,  # off the grid
    lambda ts, step: ts - 1000 * step,  # before the window
    lambda ts, step: ts + 1000 * step,  # after the window
    lambda ts, _step: 10**400,
]
BAD_VALUES: list[Any] = ["zero", 0, 0.0, None, "٠", "1e400", "0x0", "", [], {}, True, "0 ", "½"]
BAD_PAIRS: list[Callable[[list[Any]], Any]] = [
    lambda pair: pair[:1],
    lambda pair: [*pair, "0"],
    lambda pair: [],
    lambda pair: {"t": pair[0], "v": pair[1]},
    lambda pair: f"{pair[0]},{pair[1]}",
    lambda pair: None,
]


def _points(answer: Any) -> list[Any]:
    return answer["data"]["result"][0]["values"]


def _step(answer: Any) -> float:
    points = _points(answer)
    return points[1][0] - points[0][0] if len(points) > 1 else 15.0


def break_timestamp(choice: int) -> Break:
    def apply(answer: Any, index: int) -> Any:
        points = _points(answer)
        point = points[index % len(points)]
        point[0] = BAD_TIMESTAMPS[choice](point[0], _step(answer))
        return answer

    return apply


def break_value(choice: int) -> Break:
    def apply(answer: Any, index: int) -> Any:
        points = _points(answer)
        points[index % len(points)][1] = BAD_VALUES[choice]
        return answer

    return apply


def break_pair(choice: int) -> Break:
    def apply(answer: Any, index: int) -> Any:
        points = _points(answer)
        position = index % len(points)
        points[position] = BAD_PAIRS[choice](points[position])
        return answer

    return apply


def _set(path: tuple[str, ...], value: Any) -> Break:
    def apply(answer: Any, _index: int) -> Any:
        node = answer
        for key in path[:-1]:
            node = node[key]
        if value is _DELETE:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
        return answer

    return apply


_DELETE = object()
ENVELOPES: list[Break] = [
    _set(("status",), "error"),
    _set(("status",), None),
    _set(("status",), _DELETE),
    _set(("data",), _DELETE),
    _set(("data",), []),
    _set(("data",), "matrix"),
    _set(("data", "resultType"), "vector"),
    _set(("data", "resultType"), "scalar"),
    _set(("data", "resultType"), _DELETE),
    _set(("data", "result"), None),
    _set(("data", "result"), {}),
    lambda answer, _i: [answer],
    lambda answer, _i: None,
    lambda answer, _i: "success",
    lambda answer, _i: {
        **answer,
        "data": {**answer["data"], "result": answer["data"]["result"] * 2},
    },
    lambda answer, _i: _with_labels(answer, ["a"]),
    lambda answer, _i: _with_labels(answer, {"a": 1}),
    lambda answer, _i: _reversed(answer),
    lambda answer, _i: _duplicated_point(answer),
]


def _with_labels(answer: Any, labels: Any) -> Any:
    answer["data"]["result"][0]["metric"] = labels
    return answer


def _reversed(answer: Any) -> Any:
    answer["data"]["result"][0]["values"].reverse()
    return answer


def _duplicated_point(answer: Any) -> Any:
    points = _points(answer)
    points.insert(1, list(points[0]))
    return answer


breaks = st.one_of(
    st.integers(0, len(BAD_TIMESTAMPS) - 1).map(break_timestamp),
    st.integers(0, len(BAD_VALUES) - 1).map(break_value),
    st.integers(0, len(BAD_PAIRS) - 1).map(break_pair),
    st.sampled_from(ENVELOPES),
)


def dressed(value: str, broken: Break | None, index: int) -> Callable[[Any, Request], Any]:
    """The real answer with every value set to `value`, then broken (unless None)."""

    def change(answer: Any, _request: Request) -> Any:
        for series in answer["data"]["result"]:
            series["values"] = [[ts, value] for ts, _ in series["values"]]
        return broken(answer, index) if broken is not None else answer

    return change


@pytest.fixture(scope="module")
def hostile(
    prometheus_binary: PrometheusBinaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostileServer]:
    server = PrometheusServer(
        tmp_path_factory.mktemp("fuzz-prometheus"), binaries=prometheus_binary
    )
    server.start()
    with HostileServer(server.url) as front:
        yield front
    server.close()


def test_the_dressed_answers_alone_would_pass_the_gate_and_fire_the_trigger(
    hostile: HostileServer,
) -> None:
    """The control: without the breakage, the fuzzed answers *would* pass and fire."""
    reader = source_for(hostile.url)
    try:
        hostile.rule = mutate_json(dressed("0", None, 0))
        assert gate_verdict(reader, now()).outcome is Outcome.PASS
        hostile.rule = mutate_json(dressed("1", None, 0))
        assert trigger_verdict(reader, now()).outcome is Outcome.FAIL
    finally:
        reader.close()


@FUZZ
@given(broken=breaks, index=st.integers(0, 20))
def test_no_garbage_answer_passes_a_gate_or_fires_a_trigger(
    hostile: HostileServer, broken: Break, index: int
) -> None:
    reader = source_for(hostile.url, timeout="5s")
    try:
        hostile.rule = mutate_json(dressed("0", broken, index))
        gate = gate_verdict(reader, now())
        assert gate.outcome is Outcome.UNKNOWN, gate
        assert gate.reason
        hostile.rule = mutate_json(dressed("1", broken, index))
        trigger = trigger_verdict(reader, now())
        assert trigger.outcome is Outcome.UNKNOWN, trigger
    finally:
        reader.close()
