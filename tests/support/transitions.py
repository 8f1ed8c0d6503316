"""The transition record the telemetry and dashboard tests feed their operators."""

from __future__ import annotations

from datetime import datetime

from phases.status import StepState, TransitionRecord


def rollback_50_to_25(at: datetime) -> TransitionRecord:
    """A rollback from 3@50 (soaking) to 3@25 for errors, at `at`."""
    return TransitionRecord(
        at=at,
        from_step="3@50",
        from_state=StepState.SOAKING,
        to_step="3@25",
        to_state=StepState.ROLLING_BACK,
        trigger="rollback",
        reason="errors",
    )
