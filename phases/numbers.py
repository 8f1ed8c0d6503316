"""Numbers as plans and scenarios write them: finite, in range, ASCII digits only.

Python (and pydantic in lax mode) reads `'٣٠'` as 30 and `1e400` as infinity, and
YAML spells infinity and NaN `.inf` and `.nan`. A threshold of infinity is a gate
that always passes or a trigger that never fires, so every number a document gives
goes through `FiniteNumber`: a YAML number or an ASCII decimal string, finite, and
no larger in size than `NUMBER_LIMIT`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

NUMBER_LIMIT = 1e15
ASCII_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
_EXCERPT = 40


def short(text: str) -> str:
    """At most a short excerpt of a bad value, quoted, for an error message."""
    if len(text) <= _EXCERPT:
        return repr(text)
    return f"{text[:_EXCERPT]!r}… ({len(text)} characters)"


def finite_number(value: Any) -> float:
    """A finite number within ±NUMBER_LIMIT; ValueError naming what is wrong otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    if isinstance(value, str):
        if not ASCII_NUMBER.match(value.strip()):
            raise ValueError(
                "Input should be a valid number, unable to parse string as a number, "
                f"not {short(value)} (only ASCII digits are read)"
            )
        value = float(value)
    if isinstance(value, int):
        if abs(value) > NUMBER_LIMIT:
            raise ValueError(f"{value:.3g} is out of range (at most {NUMBER_LIMIT:g} in size)")
        return float(value)
    if not isinstance(value, float):
        raise ValueError("expected a number")
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number (.inf, .nan and 1e400 are refused)")
    if abs(value) > NUMBER_LIMIT:
        raise ValueError(f"{value:.3g} is out of range (at most {NUMBER_LIMIT:g} in size)")
    return value


def whole_number(value: Any) -> int:
    """A whole number written as a YAML integer or in ASCII digits."""
    if isinstance(value, bool):
        raise ValueError("expected a whole number, not true/false")
    if isinstance(value, str):
        digits = value.strip()
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 15):
            raise ValueError(f"{short(value)} is not a whole number in ASCII digits")
        value = int(digits)
    if not isinstance(value, int):
        raise ValueError("expected a whole number in ASCII digits")
    if abs(value) > NUMBER_LIMIT:
        raise ValueError(f"{value:.3g} is out of range")
    return value


FiniteNumber = Annotated[float, BeforeValidator(finite_number)]
"""A pydantic field type for every number a plan or scenario gives."""

WholeNumber = Annotated[int, BeforeValidator(whole_number)]
"""A pydantic field type for counts."""
