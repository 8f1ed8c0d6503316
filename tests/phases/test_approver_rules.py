"""Who counts as an approver: the plan's approval policy, applied by `count_approvals`.

The runbook asks for a "Team Approval: Manual sign-off required before each
percentage increase"; a plan can make that mean another person than the one who
started the rollout, a member of a named group, and never a robot unless it says so.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from phases.approvals import count_approvals
from phases.observations import Approval
from phases.plan import ApprovalPolicy

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CI_BOT = "system:serviceaccount:ci:deployer"


def _approval(approval_id: str, approver: str, *groups: str) -> Approval:
    return Approval(approval_id, "uid-1", "3@10", "h" * 64, approver, T0, None, "", groups)


def _count(approvals: list[Approval], policy: ApprovalPolicy, requester: str = "carol") -> set[str]:
    count = count_approvals(
        approvals,
        rollout_uid="uid-1",
        step="3@10",
        plan_hash="h" * 64,
        entered_at=T0 - timedelta(minutes=1),
        consumed=(),
        now=T0 + timedelta(minutes=1),
        policy=policy,
        requester=requester,
    )
    return set(count.approvers)


def test_a_service_account_is_no_second_approver_unless_the_plan_allows_it() -> None:
    approvals = [_approval("a", "alice"), _approval("b", CI_BOT, "system:serviceaccounts")]
    assert _count(approvals, ApprovalPolicy(approvers=2)) == {"alice"}
    allowed = ApprovalPolicy(approvers=2, service_accounts=True)
    assert _count(approvals, allowed) == {"alice", CI_BOT}


def test_a_user_in_the_service_accounts_group_is_a_service_account() -> None:
    approvals = [_approval("a", "robot", "system:serviceaccounts")]
    assert _count(approvals, ApprovalPolicy()) == set()


def test_the_requester_does_not_approve_their_own_rollout_when_the_plan_says_so() -> None:
    approvals = [_approval("a", "carol"), _approval("b", "alice")]
    assert _count(approvals, ApprovalPolicy()) == {"carol", "alice"}
    assert _count(approvals, ApprovalPolicy(distinct_from_requester=True)) == {"alice"}


def test_an_unknown_requester_fails_closed_when_the_plan_wants_them_excluded() -> None:
    approvals = [_approval("a", "alice")]
    assert _count(approvals, ApprovalPolicy(distinct_from_requester=True), requester="") == set()


def test_only_members_of_the_named_groups_count() -> None:
    approvals = [_approval("a", "alice", "sre"), _approval("b", "bob", "dev")]
    policy = ApprovalPolicy(approvers=2, groups=["sre", "release-managers"])
    assert _count(approvals, policy) == {"alice"}


def test_one_person_twice_is_one_approver() -> None:
    approvals = [_approval("a", "alice", "sre"), _approval("b", "alice", "sre")]
    assert _count(approvals, ApprovalPolicy(approvers=2)) == {"alice"}
