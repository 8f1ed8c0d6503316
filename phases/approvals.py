"""Which approvals count towards promoting out of the current step.

An approval is bound to one rollout (its uid), one step, one plan version, and is
used once. It must also be newer than the step's entry, so that an approval given
before a rollback cannot promote the step again after it. The plan's approval
policy says who counts: service accounts only where it allows them, never the
rollout's requester where it asks for that, only members of its groups.

Two things need a sign-off: leaving a step (promotion) and raising
ENFORCEMENT_PERCENT by any other path (a plan edit, a first step above 0 %, a
resume, a rollback to a higher percentage). `raise_policy` says which policy
guards the second.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from phases.observations import Approval
from phases.plan import ApprovalPolicy
from phases.steps import Step, StepTable

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
SERVICE_ACCOUNT_GROUP = "system:serviceaccounts"
_ANY = ApprovalPolicy(service_accounts=True)


@dataclass(frozen=True, slots=True)
class ApprovalCount:
    """The approvals that count now, and the ones ignored with the reason why."""

    counted: tuple[Approval, ...]
    ignored: tuple[tuple[Approval, str], ...]

    @property
    def approvers(self) -> frozenset[str]:
        return frozenset(approval.approver for approval in self.counted)


def count_approvals(
    approvals: Iterable[Approval],
    *,
    rollout_uid: str,
    step: str,
    plan_hash: str,
    entered_at: datetime,
    consumed: Sequence[str],
    now: datetime,
    policy: ApprovalPolicy = _ANY,
    requester: str = "",
) -> ApprovalCount:
    """Sort approvals into those that count for this step now and those that never will."""
    counted: list[Approval] = []
    ignored: list[tuple[Approval, str]] = []
    seen_approvers: set[str] = set()
    seen_ids: set[str] = set()
    for approval in sorted(approvals, key=lambda a: (a.created_at, a.id)):
        if approval.id in seen_ids:
            ignored.append(
                (approval, f"approval {approval.id} appears twice; one record counts once")
            )
            continue
        seen_ids.add(approval.id)
        reason = _why_not(approval, rollout_uid, step, plan_hash, entered_at, consumed, now)
        if reason is None:
            reason = who_does_not_count(approval, policy, requester)
        if reason is None and approval.approver in seen_approvers:
            continue
        if reason is None:
            counted.append(approval)
            seen_approvers.add(approval.approver)
        elif reason != "":
            ignored.append((approval, reason))
    return ApprovalCount(tuple(counted), tuple(ignored))


def _why_not(
    approval: Approval,
    rollout_uid: str,
    step: str,
    plan_hash: str,
    entered_at: datetime,
    consumed: Sequence[str],
    now: datetime,
) -> str | None:
    """None when the approval counts; "" when it is simply used up; else why it never will."""
    if approval.id in consumed:
        return ""
    if approval.rollout_uid != rollout_uid:
        return f"approval {approval.id} is for another rollout (uid {approval.rollout_uid})"
    if approval.plan_hash != plan_hash:
        return f"approval {approval.id} was given for plan version {approval.plan_hash[:12]}, not {plan_hash[:12]}"
    if approval.step != step:
        return f"approval {approval.id} is for step {approval.step}, the rollout is at {step}"
    if approval.created_at < entered_at:
        return f"approval {approval.id} predates the current entry into step {step}"
    if approval.expires_at is not None and approval.expires_at <= now:
        return f"approval {approval.id} by {approval.approver} expired at {approval.expires_at.isoformat()}"
    if not approval.approver:
        return f"approval {approval.id} names no approver"
    return None


def who_does_not_count(approval: Approval, policy: ApprovalPolicy, requester: str) -> str | None:
    """Why the plan's approval policy refuses this approver, or None when they count."""
    who = approval.approver
    if not policy.service_accounts and is_service_account(who, approval.groups):
        return (
            f"approval {approval.id}: {who} is a service account, and the plan does not count those"
        )
    if policy.distinct_from_requester:
        if not requester:
            return f"approval {approval.id}: the rollout records no requester, and the plan wants approvers other than the requester"
        if who == requester:
            return f"approval {approval.id}: {who} created the rollout, and the plan wants another person to approve it"
    if policy.groups and not set(policy.groups) & set(approval.groups):
        return f"approval {approval.id}: {who} is in none of the groups {', '.join(policy.groups)}"
    return None


def is_service_account(username: str, groups: Sequence[str]) -> bool:
    return username.startswith(SERVICE_ACCOUNT_PREFIX) or SERVICE_ACCOUNT_GROUP in groups


def raise_policy(table: StepTable, step: Step) -> ApprovalPolicy:
    """The policy that guards entering `step`: the previous step's when it requires approval."""
    before = table.before(step)
    if before is not None and before.approval.required:
        return before.approval
    return step.approval
