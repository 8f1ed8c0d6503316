"""The `StageRollout` custom resource: its spec and status as pydantic models.

These models are the single source of the CRD's schema (`controller.kube.crd` turns
them into `manifests/crd/`), and the operator validates every object it reads
with them, so a bad spec is reported as a condition naming the field, never as a
crash.
"""

from __future__ import annotations

import re
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


BUNDLED_PLAN_NAME = r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"
"""A bundled plan's name: never a path (no slash, no leading dot), so nothing on disk is named."""
DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONFIG_MAP_KEY = r"^[-._a-zA-Z0-9]+$"


class ConfigMapKeyRef(BaseModel):
    """One key of a ConfigMap in the rollout's own namespace."""

    model_config = _CAMEL

    name: str = Field(min_length=1, max_length=253, pattern=DNS_NAME)
    key: str = Field(min_length=1, max_length=253, pattern=CONFIG_MAP_KEY)


class PlanSource(BaseModel):
    """Which plan the rollout follows: a bundled plan's name, a plan inline, or a ConfigMap key.

    Each of these is something the rollout's author owns or the operator ships; no
    form of it names a file on the operator's disk.
    """

    model_config = _CAMEL

    name: str | None = Field(
        default=None,
        max_length=63,
        pattern=BUNDLED_PLAN_NAME,
        description="name of a plan bundled with the operator (a name, never a path)",
    )
    inline: dict[str, Any] | None = Field(
        default=None, description="a whole plan document, validated by the operator"
    )
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None,
        description="a plan document in a key of a ConfigMap in the rollout's namespace, read as the rollout's service account",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PlanSource:
        given = [self.name, self.inline, self.config_map_ref]
        if sum(item is not None for item in given) != 1:
            raise ValueError("give exactly one of plan.name, plan.inline or plan.configMapRef")
        return self


class TargetSpec(BaseModel):
    """The ConfigMap holding the flags and the Deployments that read them."""

    model_config = _CAMEL

    config_map: str = Field(min_length=1, description="ConfigMap whose flag keys the rollout owns")
    deployments: list[str] = Field(
        default_factory=list, description="Deployments restarted on new flags"
    )
    namespace: str | None = Field(
        default=None,
        description="in spec.target, the rollout's own namespace or nothing (any other is refused); in spec.environments, the environment's namespace, where the acting account needs a Role",
    )


class SecretRef(BaseModel):
    """A Secret in the rollout's own namespace holding Prometheus credentials.

    Keys: `token` (a bearer token), or `username` and `password` (basic auth).
    """

    model_config = _CAMEL

    name: str = Field(min_length=1, max_length=253, pattern=DNS_NAME)


class PrometheusSpec(BaseModel):
    """Where the rollout's signals are read: an endpoint the operator was started with, or
    an http(s) URL with credentials from a Secret in the rollout's namespace.

    Absent, the operator's default endpoint is used. No form names a file on the
    operator's disk: token files and CA bundles are the cluster admin's, configured
    on the operator (`stagectl run --prometheus-endpoints`).
    """

    model_config = _CAMEL

    endpoint: str | None = Field(
        default=None,
        max_length=63,
        pattern=BUNDLED_PLAN_NAME,
        description="name of a Prometheus endpoint configured on the operator",
    )
    url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="an http or https URL; with credentialsSecret for its credentials",
    )
    credentials_secret: SecretRef | None = Field(
        default=None,
        description="Secret in the rollout's namespace with `token`, or `username` and `password`",
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="per-query timeout for url; a named endpoint has its own",
    )

    @model_validator(mode="after")
    def _endpoint_or_url(self) -> PrometheusSpec:
        if (self.endpoint is None) == (self.url is None):
            raise ValueError("give exactly one of prometheus.endpoint or prometheus.url")
        if self.endpoint is not None and self.credentials_secret is not None:
            raise ValueError(
                "prometheus.credentialsSecret goes with prometheus.url; a named endpoint has the operator's credentials"
            )
        return self


class CarriedFrom(BaseModel):
    """Another StageRollout of the same namespace whose status holds the baselines."""

    model_config = _CAMEL

    rollout: str = Field(min_length=1, max_length=253, pattern=DNS_NAME)


class BaselinesSpec(BaseModel):
    """Baselines carried from another rollout: read from it, or given as its exported document."""

    model_config = _CAMEL

    from_: CarriedFrom | None = Field(
        default=None,
        alias="from",
        description="a rollout of this namespace, read as this rollout's service account",
    )
    document: dict[str, Any] | None = Field(
        default=None, description="the document `stagectl baseline export` printed"
    )

    @model_validator(mode="after")
    def _one_source(self) -> BaselinesSpec:
        if (self.from_ is None) == (self.document is None):
            raise ValueError("give either from (a rollout) or document (an export), not both")
        return self


class KubeconfigRef(BaseModel):
    """A key of a Secret in the rollout's namespace holding a kubeconfig for another cluster.

    The kubeconfig is the namespace user's: only inline credentials (a token, a CA
    bundle as data) are used; exec and auth-provider plugins and file paths are refused.
    """

    model_config = _CAMEL

    name: str = Field(min_length=1, max_length=253, pattern=DNS_NAME)
    key: str = Field(default="kubeconfig", min_length=1, max_length=253, pattern=CONFIG_MAP_KEY)


class EnvironmentSpec(BaseModel):
    """Where one plan environment (staging, production...) lives, maybe in another cluster."""

    model_config = _CAMEL

    target: TargetSpec
    prometheus: PrometheusSpec | None = Field(
        default=None,
        description="the environment's Prometheus; the rollout's spec.prometheus when absent",
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_NAME,
        description="ServiceAccount of the rollout's namespace acting on this environment's target; the rollout's when absent",
    )
    kubeconfig_secret: KubeconfigRef | None = Field(
        default=None,
        description="another cluster: a kubeconfig in a Secret of the rollout's namespace (read as the rollout's service account); its own credentials act there",
    )


ENVIRONMENT_NAME = r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$"


class StageRolloutSpec(BaseModel):
    """What a rollout should do: plan, target, service account, Prometheus, tick interval, job templates."""

    model_config = _CAMEL

    plan: PlanSource
    target: TargetSpec | None = Field(
        default=None,
        description="the target of every plan environment not in spec.environments",
    )
    environments: dict[str, EnvironmentSpec] = Field(
        default_factory=dict,
        max_length=16,
        description="per plan environment, its target and Prometheus; others use spec.target and spec.prometheus",
    )
    prometheus: PrometheusSpec | None = None
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_NAME,
        description="ServiceAccount of the rollout's namespace the operator acts as for every target read and write; the operator's --default-service-account when absent",
    )
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
    baselines: BaselinesSpec | None = Field(
        default=None, description="baselines carried from another rollout (staging to production)"
    )

    @model_validator(mode="after")
    def _some_target(self) -> StageRolloutSpec:
        if self.target is None and not self.environments:
            raise ValueError("give spec.target, or spec.environments with a target per environment")
        for name in self.environments:
            if re.fullmatch(ENVIRONMENT_NAME, name) is None or len(name) > 63:
                raise ValueError(f"environment name {name[:63]!r} is not a lowercase name")
        return self


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


class RejectedCommand(BaseModel):
    """A recorded command the operator could not honour, kept where its issuer can read it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    at: datetime
    step: str
    message: str


class StageRolloutStatus(RolloutStatus):
    """The decision core's status plus what Kubernetes users expect to read on an object."""

    observed_generation: int | None = None
    enforcement_percent: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    last_verdicts: list[VerdictRecord] = Field(default_factory=list)
    blockers: list[str] = Field(default_factory=list)
    last_tick_at: datetime | None = None
    phase: str = Field(default="", description="the runbook phase of the current step")
    environment: str = Field(default="", description="the plan environment of the current step")
    failed_jobs: list[str] = Field(
        default_factory=list, description="jobs of this step whose current attempt failed"
    )
    commands_rejected: list[RejectedCommand] = Field(
        default_factory=list, description="the latest commands the operator could not honour"
    )


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
