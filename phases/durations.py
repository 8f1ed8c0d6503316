"""Durations as plans write them (`90s`, `30m`, `24h`, `2d`, `1h30m`).

Plans and scenarios are read by people first, so durations are short strings;
inside the core they are plain `timedelta`s.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """Parse `30m`, `24h`, `2d`, `1h30m` into a timedelta; raise ValueError otherwise."""
    cleaned = text.strip()
    if not cleaned:
        raise ValueError("empty duration; write e.g. 30m, 24h or 2d")
    position = 0
    seconds = 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(cleaned):
        raise ValueError(
            f"invalid duration {text!r}; write a number and a unit s, m, h, d or w (e.g. 30m, 24h, 2d)"
        )
    return timedelta(seconds=seconds)


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
        raise ValueError(f"a duration needs a unit: write {value}s, {value}m or {value}h")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A pydantic field type: accepts `30m`-style strings, serialises back to them."""
