"""The `StageRollout` custom resource: its spec and status as pydantic models.

These models are the single source of the CRD's schema (`controller.kube.crd` turns
them into `manifests/crd/`), and the operator validates every object it reads
with them, so a bad spec is reported as a condition naming the field, never as a
crash.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from phases.durations import Duration
from phases.status import RolloutStatus

GROUP = "stage.rollout.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "StageRollout"
PLURAL = "stagerollouts"
SHORT_NAMES = ("sro",)

_CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class PlanSource(BaseModel):
    """Which plan the rollout follows: a bundled plan's name, or a whole plan inline."""

    model_config = _CAMEL

    name: str | None = Field(default=None, description="name of a plan bundled with the operator")
    inline: dict[str, Any] | None = Field(
        default=None, description="a whole plan document, validated by the operator"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PlanSource:
        if (self.name is None) == (self.inline is None):
            raise ValueError("give exactly one of plan.name or plan.inline")
        return self


class TargetSpec(BaseModel):
    """The ConfigMap holding the flags and the Deployments that read them."""

    model_config = _CAMEL

    config_map: str = Field(min_length=1, description="ConfigMap whose flag keys the rollout owns")
    deployments: list[str] = Field(
        default_factory=list, description="Deployments restarted on new flags"
    )
    namespace: str | None = Field(default=None, description="defaults to the rollout's namespace")


class PrometheusSpec(BaseModel):
    """Where the rollout's signals are read; the operator's --prometheus-url when absent."""

    model_config = _CAMEL

    url: str = Field(min_length=1)
    timeout: Duration = timedelta(seconds=10)
    bearer_token_file: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False


class StageRolloutSpec(BaseModel):
    """What a rollout should do: plan, target, Prometheus, tick interval and job templates."""

    model_config = _CAMEL

    plan: PlanSource
    target: TargetSpec
    prometheus: PrometheusSpec | None = None
    interval: Duration | None = Field(
        default=None, description="time between ticks; the operator's --interval when absent"
    )
    job_templates: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="batch/v1 JobSpec per template name used by the plan's jobs",
    )
    requested_by: str | None = Field(
        default=None,
        description="who created the rollout; the admission policy binds it to the requesting user",
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(BaseModel):
    """A Kubernetes-style condition; lastTransitionTime moves only when status flips."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class VerdictRecord(BaseModel):
    """A gate's or trigger's last verdict with its evidence, as shown by `stagectl status`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    name: str
    role: Literal["gate", "trigger"]
    outcome: Literal["pass", "fail", "unknown"]
    reason: str
    query: str = ""
    window_seconds: float = 0
    observed: float | None = None
    threshold: float | None = None
    samples: int = 0


class StageRolloutStatus(RolloutStatus):
    """The decision core's status plus what Kubernetes users expect to read on an object."""

    observed_generation: int | None = None
    enforcement_percent: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    last_verdicts: list[VerdictRecord] = Field(default_factory=list)
    blockers: list[str] = Field(default_factory=list)
    last_tick_at: datetime | None = None


class RolloutRef(BaseModel):
    """The rollout an approval or command is for, bound to its uid (a re-created rollout is another)."""

    model_config = _CAMEL

    name: str = Field(min_length=1)
    uid: str = Field(min_length=1)


class StageApprovalSpec(BaseModel):
    """A person's approval to promote one rollout out of one step of one plan version."""

    model_config = _CAMEL

    rollout: RolloutRef
    step: str = Field(min_length=1, description="the step the promotion leaves")
    plan_hash: str = Field(min_length=1, description="the plan version approved")
    approver: str = Field(
        min_length=1, description="the requesting user, as the API server knows them"
    )
    reason: str = Field(min_length=1)
    expires_at: datetime | None = None
    approver_groups: list[str] = Field(
        default_factory=list,
        description="the requesting user's groups; the admission policy refuses any they lack",
    )


CommandName = Literal["pause", "resume", "abort", "rollback", "retry"]


class StageCommandSpec(BaseModel):
    """An operator's instruction to one rollout, recorded like an approval."""

    model_config = _CAMEL

    rollout: RolloutRef
    command: CommandName
    by: str = Field(min_length=1)
    reason: str = ""
    to: str | None = Field(
        default=None,
        description="rollback target: an earlier step id, warn, or write-enforcement-off",
    )


APPROVAL_KIND = "StageApproval"
APPROVAL_PLURAL = "stageapprovals"
COMMAND_KIND = "StageCommand"
COMMAND_PLURAL = "stagecommands"
