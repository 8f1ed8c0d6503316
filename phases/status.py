"""The status of one rollout: everything `decide` needs to remember between ticks.

The status is the only memory of a rollout. It is persisted before any action is
taken, so it holds timestamps rather than counters (a soak clock is "in effect
since", never "minutes soaked so far"): a crash between two ticks loses nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from phases.baselines import BaselineRecord, migrate_records

_ZERO = timedelta(0)
HISTORY_LIMIT = 100
HANDLED_LIMIT = 200


class StepState(StrEnum):
    """The life of the current step."""

    APPLYING = "applying"
    VERIFYING = "verifying"
    SOAKING = "soaking"
    AWAITING_APPROVAL = "awaiting_approval"
    ROLLING_BACK = "rolling_back"
    PAUSED = "paused"
    STALLED = "stalled"
    COMPLETED = "completed"
    ABORTED = "aborted"


TERMINAL_STATES = frozenset({StepState.COMPLETED, StepState.ABORTED})
IN_EFFECT_STATES = frozenset(
    {StepState.SOAKING, StepState.AWAITING_APPROVAL, StepState.STALLED, StepState.PAUSED}
)


_STATUS_CONFIG = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)
"""Status is stored in Kubernetes objects, whose fields are camelCase by convention."""


class TransitionRecord(BaseModel):
    """One change of step or state, with why it happened."""

    model_config = _STATUS_CONFIG

    at: datetime
    from_step: str
    from_state: StepState
    to_step: str
    to_state: StepState
    trigger: str
    reason: str
    by: str = ""
    approvals: list[str] = Field(default_factory=list)
    environment: str = Field(
        default="", description="the plan environment to_step runs in (empty in older records)"
    )


class JobRecord(BaseModel):
    """A plan job the rollout started: which attempt, since when, with resume arguments or not."""

    model_config = _STATUS_CONFIG

    step: str
    attempt: int = 1
    started_at: datetime
    resume: bool = False


class RolloutStatus(BaseModel):
    """Where a rollout is and what it has earned so far (soak time, approvals, baselines)."""

    model_config = _STATUS_CONFIG

    plan_hash: str
    step: str
    state: StepState
    reason: str = ""
    step_entered_at: datetime
    flags_applied_at: datetime | None = None
    in_effect_at: datetime | None = None
    paused_at: datetime | None = None
    soak_paused: timedelta = timedelta(0)
    deadline_from: datetime
    deadline_paused: timedelta = timedelta(0)
    hold_for_approval: bool = Field(
        default=False, description="set by a rollback: the step needs a new approval to promote"
    )
    flag_overrides: dict[str, str] = Field(default_factory=dict)
    triggers_cleared_at: dict[str, datetime] = Field(
        default_factory=dict,
        description="on a step restored by a rollback: when each trigger was first seen clear",
    )
    approved_percent: int = Field(
        default=0,
        description="the exposure percentage last signed off: asked flags never exceed it",
    )
    approved_flags: dict[str, str] = Field(
        default_factory=dict,
        description="per flag marked approval_to_change, the value last signed off (absent: "
        "the first step's); asked flags never differ from it without a new approval",
    )
    approvals_consumed: list[str] = Field(default_factory=list)
    approvals_ignored: list[str] = Field(default_factory=list)
    commands_handled: list[str] = Field(default_factory=list)
    commands_handled_until: datetime | None = Field(
        default=None,
        description="every command issued up to this time is handled (older ids forgotten)",
    )
    baselines: dict[str, BaselineRecord] = Field(
        default_factory=dict,
        description="per signal, the baseline adaptive thresholds use (captured, pinned, carried)",
    )
    jobs: dict[str, JobRecord] = Field(default_factory=dict)
    warnings_reported: list[str] = Field(
        default_factory=list, description="warnings already sent as events in this step"
    )
    history: list[TransitionRecord] = Field(default_factory=list)
    rollbacks: int = 0

    _migrate_baselines = field_validator("baselines", mode="before")(migrate_records)

    def soak_elapsed(self, now: datetime) -> timedelta:
        """Time the step's flags have been in effect, pauses excluded."""
        if self.in_effect_at is None:
            return _ZERO
        elapsed = (self.paused_at or now) - self.in_effect_at - self.soak_paused
        return elapsed if elapsed > _ZERO else _ZERO

    def deadline_elapsed(self, now: datetime) -> timedelta:
        """Time counted against the step's max duration, pauses excluded."""
        elapsed = (self.paused_at or now) - self.deadline_from - self.deadline_paused
        return elapsed if elapsed > _ZERO else _ZERO


def initial_status(plan_hash: str, first_step: str, now: datetime) -> RolloutStatus:
    """A new rollout: the first step, about to apply its flags."""
    return RolloutStatus(
        plan_hash=plan_hash,
        step=first_step,
        state=StepState.APPLYING,
        reason="rollout created",
        step_entered_at=now,
        deadline_from=now,
    )
