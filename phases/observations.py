"""What the drivers observed for one tick, handed to `decide` as plain values.

The core never fetches anything: the operator reads Prometheus and Kubernetes,
`simulate` reads a scenario, `replay` reads a past Prometheus window, and each
hands over the same shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from phases.baselines import BaselineRecord
from phases.verdicts import Verdict

CommandKind = Literal["pause", "resume", "abort", "rollback", "retry"]


@dataclass(frozen=True, slots=True)
class Approval:
    """A person's approval to promote one rollout out of one step of one plan version."""

    id: str
    rollout_uid: str
    step: str
    plan_hash: str
    approver: str
    created_at: datetime
    expires_at: datetime | None = None
    reason: str = ""
    groups: tuple[str, ...] = ()
    """The approver's groups, as the API server recorded them at creation."""


@dataclass(frozen=True, slots=True)
class Command:
    """An operator's instruction (pause, resume, abort, rollback, retry), honoured once."""

    id: str
    kind: CommandKind
    issued_at: datetime
    by: str = ""
    reason: str = ""
    to: str | None = None


class JobPhase(StrEnum):
    """Where a job stands, as far as the core needs to know."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobObservation:
    """The state of one attempt of a plan job."""

    name: str
    attempt: int
    phase: JobPhase
    message: str = ""


@dataclass(frozen=True, slots=True)
class TargetState:
    """The target as seen now: which flags it holds and whether the workloads caught up.

    `flags_hash` is the hash of the flag keys currently in the ConfigMap (None when
    they are absent); `rolled_out` is true when every workload runs pods with those
    flags; `observed_mode` is the mode the app reports, where the plan reads it.
    """

    flags_hash: str | None = None
    rolled_out: bool = False
    rollout_problem: str | None = None
    observed_modes: tuple[str, ...] | None = None


_EMPTY: Mapping[str, Verdict] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Observations:
    """Everything one tick saw, for one rollout."""

    rollout_uid: str
    target: TargetState
    gates: Mapping[str, Verdict] = field(default_factory=lambda: _EMPTY)
    triggers: Mapping[str, Verdict] = field(default_factory=lambda: _EMPTY)
    baselines: Mapping[str, float | None] = field(default_factory=dict)
    approvals: Sequence[Approval] = ()
    commands: Sequence[Command] = ()
    jobs: Mapping[str, JobObservation] = field(default_factory=dict)
    requester: str = ""
    """Who created the rollout, as the API server recorded it; "" when unknown."""
    carried_baselines: tuple[BaselineRecord, ...] | None = None
    """Baselines the spec carries from another rollout, checked; None: not read this tick."""
