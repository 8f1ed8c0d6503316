"""What `decide` asks the world to do, and what it reports happened.

Actions are idempotent requests: applying one twice has the effect of applying it
once (flags are compared before writing, restarts are keyed by the flags' hash,
jobs by name and attempt). Events are what people and other systems are told.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from phases.baselines import BaselineRecord


@dataclass(frozen=True, slots=True)
class SetFlags:
    """Write these flag values into the target's ConfigMap, leaving other keys alone."""

    flags: Mapping[str, str]
    flags_hash: str


@dataclass(frozen=True, slots=True)
class RestartWorkloads:
    """Roll the target's workloads onto `flags_hash`; a no-op where they already run it."""

    flags_hash: str


@dataclass(frozen=True, slots=True)
class StartJob:
    """Create one attempt of a plan job, unless that attempt already exists."""

    name: str
    step: str
    attempt: int
    template: str | None
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecordBaseline:
    """Tell the world about the baselines captured when a step was left (one record each)."""

    records: tuple[BaselineRecord, ...]

    @property
    def values(self) -> Mapping[str, float]:
        return {record.signal: record.value for record in self.records}


Action = SetFlags | RestartWorkloads | StartJob | RecordBaseline


class EventKind(StrEnum):
    """What kind of thing happened, for Events, metrics and notifications."""

    TRANSITION = "transition"
    ROLLBACK = "rollback"
    STALLED = "stalled"
    PAUSED = "paused"
    COMPLETED = "completed"
    JOB_FAILED = "job_failed"
    APPROVAL_NEEDED = "approval_needed"
    APPROVAL_IGNORED = "approval_ignored"
    COMMAND_REJECTED = "command_rejected"
    ROLLOUT_PROBLEM = "rollout_problem"
    FLAGS_DRIFTED = "flags_drifted"
    PERCENT_RAISED = "percent_raised"


@dataclass(frozen=True, slots=True)
class Event:
    """Something worth telling: a transition, a rollback, a stall, an ignored approval…"""

    kind: EventKind
    step: str
    message: str
    warning: bool = False
    details: Mapping[str, str] = field(default_factory=dict)
