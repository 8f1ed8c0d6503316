"""The rollout plan: what a rollout walks through, as validated data.

A plan is declarative and versioned. It names signals (PromQL), phases and their
steps with the flag values each sets, the gates that must hold to promote, the
triggers that roll back, durations, approvals, promotion windows, baseline capture
and jobs. This module holds the pydantic shapes; `phases.plan_checks` holds the
rules that tie fields together, and `phases.steps` flattens phases into steps.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, time, timedelta
from functools import cached_property
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from phases.durations import Duration
from phases.flag_types import (
    LEGACY_FLAG_SET,
    MAX_FLAGS,
    FlagDeclaration,
    FlagSet,
    FlagValue,
)
from phases.numbers import FiniteNumber

Comparator = Literal["<", "<=", ">", ">="]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

MODE_FLAG = "STAGE_VALIDATION_MODE"
WRITE_ONLY_FLAG = "ENFORCE_WRITE_ONLY"
PERCENT_FLAG = "ENFORCEMENT_PERCENT"
DRY_RUN_FLAG = "STAGE_VALIDATION_DRY_RUN"
KNOWN_FLAGS = (MODE_FLAG, WRITE_ONLY_FLAG, PERCENT_FLAG, DRY_RUN_FLAG)
MODES = ("off", "warn", "enforce")
DEFAULT_ENVIRONMENT = "default"

_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
_STEP_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.@_-]*$")


class StrictModel(BaseModel):
    """Base of every plan shape: unknown fields are errors and values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Signal(StrictModel):
    """A named PromQL expression that yields one number (an SLI)."""

    query: str = Field(min_length=1)
    description: str = ""
    unit: str = ""


class AdaptiveThreshold(StrictModel):
    """`max(min, baseline × multiplier)`, the baseline captured earlier in the rollout."""

    min: FiniteNumber
    baseline: str = Field(min_length=1, description="signal whose captured baseline is used")
    multiplier: FiniteNumber = Field(gt=0)


Threshold = FiniteNumber | AdaptiveThreshold


def _check_name(value: str | None) -> str | None:
    if value is not None and not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid name: use lower-case letters, digits, - and _")
    return value


class SignalGate(StrictModel):
    """A signal compared with a threshold at every point of a sustained window."""

    name: str | None = None
    signal: str
    comparator: Comparator
    threshold: Threshold
    window: Duration = Field(description="how long the condition must hold, with no gap")

    _name = field_validator("name")(_check_name)

    @property
    def key(self) -> str:
        return self.name or f"{self.signal}{self.comparator}{_threshold_text(self.threshold)}"


class AlertsGate(StrictModel):
    """None of the named Prometheus alerts may be firing."""

    name: str | None = None
    no_firing_alerts: list[str] = Field(min_length=1)
    window: Duration | None = Field(
        default=None,
        description="none may have fired at any point of this window (read from the alert "
        "history, with the gap rules of signal gates); without it, only now counts",
    )

    _name = field_validator("name")(_check_name)

    @property
    def key(self) -> str:
        return self.name or "no-firing-alerts"


class JobGate(StrictModel):
    """A job declared by the phase must have succeeded."""

    name: str | None = None
    job_succeeded: str

    _name = field_validator("name")(_check_name)

    @property
    def key(self) -> str:
        return self.name or f"job-{self.job_succeeded}"


def _gate_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for field in ("signal", "no_firing_alerts", "job_succeeded"):
            if field in value:
                return f"{field}:kind"
        return None
    kinds: dict[type, str] = {
        SignalGate: "signal",
        AlertsGate: "no_firing_alerts",
        JobGate: "job_succeeded",
    }
    kind = kinds.get(type(value))
    return f"{kind}:kind" if kind else None


# Tags end in ':kind', which no plan key does, so error paths never mistake them for keys.


Gate = Annotated[
    Annotated[SignalGate, Tag("signal:kind")]
    | Annotated[AlertsGate, Tag("no_firing_alerts:kind")]
    | Annotated[JobGate, Tag("job_succeeded:kind")],
    Discriminator(
        _gate_kind,
        custom_error_type="gate_kind",
        custom_error_message="a gate needs one of the keys signal, no_firing_alerts or job_succeeded",
    ),
]

TriggerScope = Literal["step", "degradation_window"]


class SignalTrigger(StrictModel):
    """Positive evidence of degradation: the condition held for the whole `for` duration."""

    name: str | None = None
    signal: str
    comparator: Comparator
    threshold: Threshold
    sustained_for: Duration = Field(alias="for")
    scope: TriggerScope = "step"

    _name = field_validator("name")(_check_name)

    @property
    def key(self) -> str:
        return self.name or f"{self.signal}{self.comparator}{_threshold_text(self.threshold)}"


class AlertTrigger(StrictModel):
    """Degradation evidence from a firing Prometheus alert."""

    name: str | None = None
    alert_firing: str
    sustained_for: Duration | None = Field(
        default=None,
        alias="for",
        description="the alert rule's `for`: an alert already active before the step took "
        "effect counts once it stayed firing this long after; without it, it never does",
    )
    scope: TriggerScope = "step"

    _name = field_validator("name")(_check_name)

    @property
    def key(self) -> str:
        return self.name or f"alert-{self.alert_firing}"


def _trigger_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for field in ("signal", "alert_firing"):
            if field in value:
                return f"{field}:kind"
        return None
    kinds: dict[type, str] = {SignalTrigger: "signal", AlertTrigger: "alert_firing"}
    kind = kinds.get(type(value))
    return f"{kind}:kind" if kind else None


Trigger = Annotated[
    Annotated[SignalTrigger, Tag("signal:kind")]
    | Annotated[AlertTrigger, Tag("alert_firing:kind")],
    Discriminator(
        _trigger_kind,
        custom_error_type="trigger_kind",
        custom_error_message="a trigger needs one of the keys signal or alert_firing",
    ),
]


class ApprovalPolicy(StrictModel):
    """Whether promotion out of a step waits for people, and for how many."""

    required: bool = False
    approvers: int = Field(default=1, ge=1, le=100, description="distinct approvers needed")
    distinct_from_requester: bool = Field(
        default=False, description="the person who created the rollout does not count"
    )
    groups: list[str] = Field(
        default_factory=list,
        description="when given, only approvers in one of these groups count",
    )
    service_accounts: bool = Field(
        default=False, description="whether a Kubernetes service account counts as an approver"
    )


class Freeze(StrictModel):
    """A period in which no promotion happens, whatever the gates say."""

    start: datetime
    end: datetime
    reason: str = ""

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone offset, e.g. 2026-12-24T00:00:00Z")
        return value

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and value <= start:
            raise ValueError(
                f"freeze end {value.isoformat()} must be after its start {start.isoformat()}"
            )
        return value


class PromotionWindow(StrictModel):
    """When promotions may happen: weekdays and hours in a named time zone, minus freezes."""

    timezone: str = "UTC"
    weekdays: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    start: time = time(0, 0)
    end: time = time(23, 59, 59)
    freezes: list[Freeze] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin"
            ) from None
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted_time(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            hours, minutes = divmod(value, 60)
            raise ValueError(
                f"YAML read an unquoted time as the number {value}; quote it: '{hours:02d}:{minutes:02d}'"
            )
        return value

    @field_validator("start", "end")
    @classmethod
    def _naive(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError(
                "give a local time without an offset; the window's timezone field applies"
            )
        return value

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: time, info: ValidationInfo) -> time:
        start = info.data.get("start")
        if start is not None and value <= start:
            raise ValueError(
                f"promotion window end {value:%H:%M} must be after its start {start:%H:%M} on the same day"
            )
        return value


class BaselineCapture(StrictModel):
    """Signals averaged over the step's time in effect and stored when the step is left."""

    signals: list[str] = Field(min_length=1)


class JobSpec(StrictModel):
    """A Kubernetes Job a phase runs once its flags are in effect."""

    name: str
    description: str = ""
    template: str | None = Field(default=None, description="job template name in the rollout spec")
    args: list[str] = Field(default_factory=list)
    resume_args: list[str] = Field(default_factory=list)
    after: list[str] = Field(default_factory=list, description="jobs that must succeed first")

    _name = field_validator("name")(_check_name)


class StepSpec(StrictModel):
    """One concrete point of a phase; values left out come from the phase."""

    id: str
    flags: dict[str, FlagValue] = Field(default_factory=dict)
    min_duration: Duration | None = None
    max_duration: Duration | None = None
    approval: ApprovalPolicy | None = None
    gates: list[Gate] = Field(default_factory=list, description="added to the phase's gates")
    triggers: list[Trigger] = Field(default_factory=list, description="added to the phase's")

    @field_validator("id")
    @classmethod
    def _step_id(cls, value: str) -> str:
        if not _STEP_ID.match(value):
            raise ValueError(f"step id {value!r} may hold letters, digits, '.', '@', '_' and '-'")
        return value


Degradation = Literal["rollback", "pause"]


class Phase(StrictModel):
    """A runbook phase: shared flags, gates and triggers for one or more steps."""

    id: str
    name: str
    description: str = ""
    flags: dict[str, FlagValue] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(default_factory=list)
    min_duration: Duration = timedelta(0)
    max_duration: Duration | None = None
    approval: ApprovalPolicy = ApprovalPolicy()
    gates: list[Gate] = Field(default_factory=list)
    triggers: list[Trigger] = Field(default_factory=list)
    degradation_window: Duration = timedelta(0)
    on_degradation: Degradation = "rollback"
    baseline: BaselineCapture | None = None
    jobs: list[JobSpec] = Field(default_factory=list)
    environment: str | None = Field(
        default=None,
        description="the plan environment this phase runs in; without it, the plan's first",
    )

    _environment = field_validator("environment")(_check_name)

    @field_validator("id")
    @classmethod
    def _phase_id(cls, value: str) -> str:
        return StepSpec._step_id(value)


class ObservedMode(StrictModel):
    """A signal through which the app reports the value of one enum flag it really runs with."""

    signal: str
    flag: str = Field(default=MODE_FLAG, description="the enum flag whose value the app reports")
    values: dict[str, FiniteNumber] = Field(
        default_factory=lambda: {"off": 0.0, "warn": 1.0, "enforce": 2.0},
        description="the signal's value for each value of the flag",
    )


class Evaluation(StrictModel):
    """How sustained windows are sampled."""

    resolution: Duration = timedelta(minutes=1)
    gap_tolerance: Duration = timedelta(minutes=5)
    alert_coverage: str | None = Field(
        default=None,
        min_length=1,
        description="PromQL with a sample wherever Prometheus evaluated the alert rules; its "
        "gaps are gaps in the alert history that windowed alert gates and triggers read",
    )

    @field_validator("resolution")
    @classmethod
    def _resolution_positive(cls, value: timedelta) -> timedelta:
        # A zero step would ask Prometheus for infinitely many points.
        if value < timedelta(seconds=1):
            raise ValueError("resolution must be at least 1s")
        return value


class PlannedBaseline(StrictModel):
    """A baseline the plan gives instead of capturing it: a pinned value, or one carried.

    `value` pins the baseline (a person's number; it wins over any capture);
    `carried: true` says the rollout's spec brings it from another rollout
    (`spec.baselines`), so adaptive thresholds may use it with no capturing phase.
    """

    value: FiniteNumber | None = None
    carried: bool = False
    reason: str = Field(min_length=1, max_length=1024, description="why, for whoever reads it")

    @model_validator(mode="after")
    def _one_source(self) -> PlannedBaseline:
        if self.carried == (self.value is not None):
            raise ValueError("give either value (pinned) or carried: true, not both or neither")
        return self


class Plan(StrictModel):
    """A whole rollout plan. Its content hash binds approvals to this exact version."""

    name: str = Field(min_length=1, max_length=253)
    version: str = Field(min_length=1, max_length=63)
    description: str = ""
    signals: dict[str, Signal] = Field(min_length=1)
    observed_mode: ObservedMode | None = None
    evaluation: Evaluation = Evaluation()
    promotion_window: PromotionWindow | None = None
    environments: list[str] = Field(
        default_factory=lambda: [DEFAULT_ENVIRONMENT],
        min_length=1,
        max_length=16,
        description="where phases run (e.g. staging, production); a rollout maps each to a target",
    )
    phases: list[Phase] = Field(min_length=1)
    flags: dict[str, FlagDeclaration] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_FLAGS,
        description="the ConfigMap keys the plan sets and what each may hold; without it, "
        "the runbook's four (STAGE_VALIDATION_MODE, ENFORCE_WRITE_ONLY, ENFORCEMENT_PERCENT, "
        "STAGE_VALIDATION_DRY_RUN)",
    )

    @cached_property
    def flag_set(self) -> FlagSet:
        """The declared flags, or the runbook's four for a plan that declares none."""
        return FlagSet(self.flags) if self.flags is not None else LEGACY_FLAG_SET

    @property
    def mode_flag(self) -> str | None:
        """The enum flag a step's `mode` reads: the observed one, else STAGE_VALIDATION_MODE."""
        if self.observed_mode is not None:
            return self.observed_mode.flag
        return MODE_FLAG if MODE_FLAG in self.flag_set.names else None

    baselines: dict[str, PlannedBaseline] = Field(
        default_factory=dict,
        max_length=64,
        description="per signal, a baseline pinned by a person or carried from another rollout",
    )

    @field_validator("environments")
    @classmethod
    def _environment_names(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_name(name)
        if len(set(value)) != len(value):
            raise ValueError("environment names must be distinct")
        return value

    def environment_of(self, phase: Phase) -> str:
        """The environment a phase runs in: its own, or the plan's first."""
        return phase.environment or self.environments[0]

    @cached_property
    def content_hash(self) -> str:
        """The sha256 of the plan's canonical JSON form: formatting and comments do not count."""
        data = self.model_dump(mode="json", by_alias=True)
        # A plan in the shape before declared flags keeps its hash, and so its approvals.
        if self.flags is None:
            del data["flags"]
        if self.observed_mode is not None and self.observed_mode.flag == MODE_FLAG:
            del data["observed_mode"]["flag"]
        if not data["baselines"]:
            del data["baselines"]  # a plan without pins keeps the hash it had before they existed
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def short_hash(self) -> str:
        return self.content_hash[:12]


def _threshold_text(threshold: Threshold) -> str:
    if isinstance(threshold, AdaptiveThreshold):
        return f"max({threshold.min:g},{threshold.baseline}x{threshold.multiplier:g})"
    return f"{threshold:g}"
