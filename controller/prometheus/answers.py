"""The strict reader of Prometheus answers: what a query asked for, or why not.

A Prometheus (or whatever answers at its address) is trusted with answers and
nothing more. Every rule about what a usable answer looks like lives here, so that
no caller indexes into JSON it has not checked: the envelope (`status`, `data`,
`resultType`), the shape of every series, timestamps (finite, strictly increasing,
inside the asked window, on the asked resolution grid, or exactly the asked
instant) and values (numbers in Prometheus's own spelling). Anything else raises
`UnusableAnswer` with a sentence a person can act on; the source turns that into
`unknown`, never a pass and never a firing trigger.

Prometheus spells `NaN`, `+Inf` and `-Inf` as sample values when a ratio divides
by zero; those are read as the floats they are and the verdict rules judge them
`unknown`. Everything else that is not an ASCII decimal number is refused here.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import islice, repeat
from typing import Any

# Timestamps travel as seconds with millisecond precision: allow half a millisecond.
_TOLERANCE = 0.0005
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SPECIAL = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf, "Inf": math.inf}
# Every value of a series at once, joined by newlines: only finite decimal numbers. The
# repeat is possessive: a plain one keeps a backtracking point per line (27 MiB of
# regex stack for a 1 MiB answer), and a line admits one split only anyway.
_FINITE_LINES = re.compile(f"(?:{_NUMBER.pattern})(?:\n(?:{_NUMBER.pattern}))*+")
_STAMP_TYPES = frozenset({int, float})
_EXCERPT = 60


class UnusableAnswer(ValueError):
    """An answer that cannot be used, with the reason in words."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of an instant vector: its labels and its one value."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a range answer: its labels and its (timestamp, value) points."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class RangeAsked:
    """What a range query asked for: the window's ends and the step, in Unix seconds."""

    start: float
    end: float
    step: float


def excerpt(value: Any) -> str:
    """A short quotation of a hostile value: never the whole of it."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _EXCERPT else f"{text[:_EXCERPT]}… ({len(text)} characters)"


def parse_json(body: bytes) -> Any:
    """The answer's JSON, or UnusableAnswer saying where it stopped making sense."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise UnusableAnswer(
            f"Prometheus answered bytes that are not UTF-8 (at byte {error.start})"
        ) from None
    except RecursionError:
        raise UnusableAnswer("Prometheus answered JSON nested too deeply to be an answer") from None
    except ValueError as error:
        raise UnusableAnswer(f"Prometheus answered something that is not JSON: {error}") from None


def read_instant(payload: Any, *, at: float) -> list[Sample]:
    """The samples of an instant query evaluated at `at`: a vector, each at that instant."""
    result = _result(payload, "vector")
    samples = [_instant_sample(item, index, at) for index, item in enumerate(result)]
    _distinct(sample.labels for sample in samples)
    return samples


def read_range(payload: Any, asked: RangeAsked) -> list[Series]:
    """The series of a range query: a matrix whose points lie on the asked grid."""
    result = _result(payload, "matrix")
    series = [_range_series(item, index, asked) for index, item in enumerate(result)]
    _distinct(one.labels for one in series)
    return series


def read_error(payload: Any) -> str | None:
    """Prometheus's own words from an error envelope, if the payload is one."""
    if not isinstance(payload, dict) or payload.get("status") != "error":
        return None
    kind, message = payload.get("errorType"), payload.get("error")
    kind_text = excerpt(kind) if isinstance(kind, str) else "error"
    message_text = excerpt(message) if isinstance(message, str) else "(no message)"
    if kind == "bad_data":
        return f"Prometheus rejected the query (bad_data): {message_text}"
    return f"Prometheus answered status error ({kind_text}): {message_text}"


_KIND_WORDS = {
    "vector": "an instant vector",
    "matrix": "a matrix (range vector)",
    "scalar": "a scalar",
    "string": "a string",
}


def _result(payload: Any, expected: str) -> list[Any]:
    if not isinstance(payload, dict):
        raise UnusableAnswer(
            f"Prometheus answered {_kind_of(payload)} where an object was expected"
        )
    status = payload.get("status")
    if status != "success":
        raise UnusableAnswer(
            read_error(payload) or f"Prometheus answered status {excerpt(status)}, not success"
        )
    data = payload.get("data")
    if not isinstance(data, dict):
        found = "no data" if data is None else _kind_of(data)
        raise UnusableAnswer(f"Prometheus answered success with {found} instead of a data object")
    kind = data.get("resultType")
    if kind != expected:
        found = (
            _KIND_WORDS.get(kind, f"resultType {excerpt(kind)}")
            if isinstance(kind, str)
            else ("no resultType")
        )
        raise UnusableAnswer(
            f"Prometheus answered {found} where {_KIND_WORDS[expected]} was expected"
        )
    result = data.get("result")
    if not isinstance(result, list):
        raise UnusableAnswer(f"Prometheus answered a {expected} whose result is {_kind_of(result)}")
    return result


def _instant_sample(item: Any, index: int, at: float) -> Sample:
    where = f"series {index + 1}"
    labels = _labels(item, where)
    if "histogram" in item:
        raise UnusableAnswer(f"{where} is a native histogram where a number was expected")
    timestamp, value = _pair(item.get("value"), where)
    if abs(timestamp - at) > _TOLERANCE:
        raise UnusableAnswer(
            f"{where}: the sample is stamped {timestamp:.3f}, not the asked instant {at:.3f}"
        )
    return Sample(labels, value)


def _range_series(item: Any, index: int, asked: RangeAsked) -> Series:
    where = f"series {index + 1}"
    labels = _labels(item, where)
    if "histograms" in item:
        raise UnusableAnswer(f"{where} holds native histograms where numbers were expected")
    values = item.get("values")
    if not isinstance(values, list):
        raise UnusableAnswer(f"{where} has {_kind_of(values)} where a list of points was expected")
    points = points_in_bulk(values, asked)
    if points is None:
        # Something is off (or merely unusual, such as NaN): the point-by-point reader
        # names what is wrong, or accepts what the bulk check was too cautious to.
        points = points_one_by_one(values, asked, where)
    return Series(labels, points)


def points_one_by_one(
    values: list[Any], asked: RangeAsked, where: str
) -> tuple[tuple[float, float], ...]:
    """A series' points, each checked on its own; UnusableAnswer names the first bad one."""
    points = tuple(_pair(pair, f"{where}, point {n + 1}") for n, pair in enumerate(values))
    _check_grid(points, asked, where)
    return points


def points_in_bulk(values: list[Any], asked: RangeAsked) -> tuple[tuple[float, float], ...] | None:
    """A series' points checked list by list, without a Python step per point.

    It accepts only what `points_one_by_one` accepts, with the same numbers; on
    anything else (a wrong type, NaN, a point off the grid) it answers None and the
    point-by-point reader decides, with its precise words.
    """
    if not values:
        return ()
    if set(map(type, values)) != {list} or set(map(len, values)) != {2}:
        return None
    stamps, texts = zip(*values, strict=True)
    if not set(map(type, stamps)) <= _STAMP_TYPES or set(map(type, texts)) != {str}:
        return None
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1 or not _FINITE_LINES.fullmatch(joined):
        return None
    try:
        moments = list(map(float, stamps))
    except OverflowError:
        return None
    try:
        numbers = list(map(float, texts))
    except ValueError:  # pragma: no cover - the pattern admits only what float() reads
        return None
    if not all(map(math.isfinite, moments)) or not all(map(math.isfinite, numbers)):
        return None
    if not _on_grid(moments, asked):
        return None
    return tuple(zip(moments, numbers, strict=True))


def _on_grid(moments: list[float], asked: RangeAsked) -> bool:
    """`_check_grid`'s three rules over finite moments, without a Python step per point."""
    if not all(map(operator.lt, moments, islice(moments, 1, None))):
        return False
    if moments[0] < asked.start - _TOLERANCE or moments[-1] > asked.end + _TOLERANCE:
        return False
    offsets = list(
        map(operator.truediv, map(operator.sub, moments, repeat(asked.start)), repeat(asked.step))
    )
    worst = max(map(abs, map(operator.sub, offsets, map(round, offsets))))
    return bool(worst * asked.step <= _TOLERANCE)


def _labels(item: Any, where: str) -> dict[str, str]:
    if not isinstance(item, dict):
        raise UnusableAnswer(f"{where} is {_kind_of(item)} where an object was expected")
    metric = item.get("metric")
    if not isinstance(metric, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metric.items()
    ):
        raise UnusableAnswer(f"{where} has labels that are not a mapping of strings")
    return metric


def _pair(pair: Any, where: str) -> tuple[float, float]:
    if not isinstance(pair, list) or len(pair) != 2:
        raise UnusableAnswer(
            f"{where} is {excerpt(pair)} where a [timestamp, value] pair was expected"
        )
    timestamp, value = pair
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise UnusableAnswer(f"{where} has the timestamp {_quoted(timestamp)}, not a number")
    try:
        moment = float(timestamp)
    except OverflowError:
        moment = math.inf
    if not math.isfinite(moment):
        raise UnusableAnswer(f"{where} has the timestamp {excerpt(timestamp)}, not a finite time")
    return moment, _value(value, where)


def _value(value: Any, where: str) -> float:
    if not isinstance(value, str):
        raise UnusableAnswer(f"{where} has the value {_quoted(value)}, not a number in quotes")
    if value in _SPECIAL:
        return _SPECIAL[value]
    if not _NUMBER.fullmatch(value):
        raise UnusableAnswer(f"{where} has the value {_quoted(value)}, not a number")
    number = float(value)
    if not math.isfinite(number):
        raise UnusableAnswer(f"{where} has the value {_quoted(value)}, beyond any finite number")
    return number


def _check_grid(points: Sequence[tuple[float, float]], asked: RangeAsked, where: str) -> None:
    previous = -math.inf
    for number, (timestamp, _value) in enumerate(points, start=1):
        if timestamp <= previous:
            raise UnusableAnswer(f"{where}: point {number} is not later than the one before it")
        if timestamp < asked.start - _TOLERANCE or timestamp > asked.end + _TOLERANCE:
            raise UnusableAnswer(
                f"{where}: point {number} at {timestamp:.3f} lies outside the asked window "
                f"{asked.start:.3f} .. {asked.end:.3f}"
            )
        offset = (timestamp - asked.start) / asked.step
        if abs(offset - round(offset)) * asked.step > _TOLERANCE:
            raise UnusableAnswer(
                f"{where}: point {number} at {timestamp:.3f} is off the asked "
                f"{asked.step:g}s resolution grid"
            )
        previous = timestamp


def _distinct(label_sets: Any) -> None:
    seen: set[tuple[tuple[str, str], ...]] = set()
    for labels in label_sets:
        key = tuple(sorted(labels.items()))
        if key in seen:
            raise UnusableAnswer(f"Prometheus answered the series {excerpt(dict(key))} twice")
        seen.add(key)


def _quoted(value: Any) -> str:
    return repr(excerpt(value)) if isinstance(value, str) else excerpt(value)


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {excerpt(value)}"
    return f"the string {excerpt(value)}"
