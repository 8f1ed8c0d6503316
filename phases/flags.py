"""Flag values as ConfigMap text, and the one hash of a full flag set.

Flags end up as strings in a ConfigMap and as a pod-template annotation, so they
are normalised once (`true`, `10`, `warn`, canonical JSON) by the plan's declared
types (`phases.flag_types`) and hashed in one way everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from phases.flag_types import LEGACY_FLAG_SET, FlagSet, FlagValue

WARN_FLAGS: Mapping[str, str] = LEGACY_FLAG_SET.safe or {}
"""The runbook's full rollback (scenario 3): warn, no write enforcement, 0 %."""


def normalise_flag(name: str, value: FlagValue, flags: FlagSet = LEGACY_FLAG_SET) -> str:
    """Return the ConfigMap text for one flag of `flags`, or raise ValueError naming the problem."""
    return flags.normalise(name, value)


def hash_flags(flags: Mapping[str, str]) -> str:
    """A short, stable hash of a full flag set; the same flags always give the same hash."""
    text = "\n".join(f"{key}={flags[key]}" for key in sorted(flags))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
