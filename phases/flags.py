"""The four runbook flags: their allowed values, canonical text and hash.

Flags end up as strings in a ConfigMap and as a pod-template annotation, so they
are normalised here once (`true`, `10`, `warn`) and hashed in one way everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from phases.numbers import short
from phases.plan import (
    DRY_RUN_FLAG,
    KNOWN_FLAGS,
    MODE_FLAG,
    MODES,
    PERCENT_FLAG,
    WRITE_ONLY_FLAG,
    FlagValue,
)

_BOOLEAN_FLAGS = (WRITE_ONLY_FLAG, DRY_RUN_FLAG)

WARN_FLAGS: Mapping[str, str] = {
    MODE_FLAG: "warn",
    WRITE_ONLY_FLAG: "false",
    PERCENT_FLAG: "0",
    DRY_RUN_FLAG: "false",
}
"""The runbook's full rollback (scenario 3): warn, no write enforcement, 0 %."""


def normalise_flag(name: str, value: FlagValue) -> str:
    """Return the ConfigMap text for one flag, or raise ValueError naming the problem."""
    if name not in KNOWN_FLAGS:
        raise ValueError(f"unknown flag {name!r}; known flags are {', '.join(KNOWN_FLAGS)}")
    if name == MODE_FLAG:
        if isinstance(value, bool):
            raise ValueError(
                f'{name} must be one of {", ".join(MODES)}; YAML reads a bare off/on as a boolean, so quote it: "off"'
            )
        text = str(value).strip().lower()
        if text not in MODES:
            raise ValueError(f"{name} must be one of {', '.join(MODES)}, not {value!r}")
        return text
    if name in _BOOLEAN_FLAGS:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower()
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return str(parse_percent(value))


def parse_percent(value: FlagValue) -> int:
    """An enforcement percentage: a whole number from 0 to 100, in ASCII digits."""
    wrong = f"{PERCENT_FLAG} must be a whole number from 0 to 100"
    if isinstance(value, bool):
        raise ValueError(f"{wrong}, not {value!r}")
    if isinstance(value, int):
        if not 0 <= value <= 100:
            shown = str(value) if abs(value) < 10**9 else "a number that large"
            raise ValueError(f"{PERCENT_FLAG} must be from 0 to 100, not {shown}")
        return value
    text = str(value).strip()
    # int() alone would read non-ASCII digits: '٣٠' as 30.
    if not (text.isascii() and text.isdigit() and len(text) <= 3):
        raise ValueError(f"{wrong}, not {short(text)}")
    percent = int(text)
    if percent > 100:
        raise ValueError(f"{PERCENT_FLAG} must be from 0 to 100, not {percent}")
    return percent


def hash_flags(flags: Mapping[str, str]) -> str:
    """A short, stable hash of a full flag set; the same flags always give the same hash."""
    text = "\n".join(f"{key}={flags[key]}" for key in sorted(flags))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
