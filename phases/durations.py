"""Durations as plans write them (`90s`, `30m`, `24h`, `2d`, `1h30m`).

Plans and scenarios are read by people first, so durations are short strings;
inside the core they are plain `timedelta`s.

A duration is a whole number of seconds, at most `MAX_DURATION` (ten years), in
ASCII digits. Whole seconds because the content hash renders durations back to
this notation: two plans that differed only below a second would share a hash,
and an approval for one would count for the other. Nothing in a rollout is timed
below a second (ticks, windows and resolutions are seconds at the least).
"""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from phases.numbers import short

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,9})?)([smhdw])")
MAX_DURATION = timedelta(days=3660)
_MAX_TEXT = 64


def parse_duration(text: str) -> timedelta:
    """Parse `30m`, `24h`, `2d`, `1h30m` into a timedelta; raise ValueError otherwise."""
    cleaned = text.strip()
    if not cleaned:
        raise ValueError("empty duration; write e.g. 30m, 24h or 2d")
    position = 0
    seconds = Fraction(0)
    for match in _PART.finditer(cleaned[: _MAX_TEXT + 1]):
        if match.start() != position:
            break
        seconds += Fraction(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(cleaned):
        raise ValueError(
            f"invalid duration {short(text)}; write a number and a unit s, m, h, d or w "
            "(e.g. 30m, 24h, 2d), in ASCII digits"
        )
    if seconds.denominator != 1:
        raise ValueError(f"duration {short(text)} is not a whole number of seconds")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {short(text)} is longer than the 3660d (ten years) allowed")
    return timedelta(seconds=int(seconds))


@lru_cache(maxsize=4096)
def format_duration(value: timedelta) -> str:
    """Render a timedelta the way plans write it, largest units first (`2d`, `1h30m`)."""
    remaining = int(value.total_seconds())
    if remaining == 0:
        return "0s"
    sign = "-" if remaining < 0 else ""
    remaining = abs(remaining)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def _coerce(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool):
        raise ValueError("a duration is a string such as 30m, not a boolean")
    if isinstance(value, int | float):
        raise ValueError(
            f"a duration needs a unit: write {value:.6g}s, {value:.6g}m or {value:.6g}h"
        )
    if isinstance(value, timedelta):
        return _checked(value)
    raise ValueError("a duration is a string such as 30m")


def _checked(value: timedelta) -> timedelta:
    if value.microseconds:
        raise ValueError(f"duration {value} is not a whole number of seconds")
    if abs(value) > MAX_DURATION:
        raise ValueError("duration is longer than the 3660d (ten years) allowed")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A pydantic field type: accepts `30m`-style strings, serialises back to them."""
