"""Which approvals and commands are spent, so that old records stop costing anything.

Approvals and commands are immutable and people keep creating them; left alone,
every pass would parse every record a rollout ever had. A record is *spent* when
it can never change a decision again, judged from the rollout's own status:

* an approval consumed by a promotion, already reported as ignored, expired, for
  another incarnation of the rollout (uid), or created before the rollout's
  current entry into its step (`phases.approvals` never counts those);
* a command the status lists as handled, or issued at or before the status's
  handled watermark (commands name the rollout, not its uid: that is all).

Spent records are left out of each tick (`live_records`), and the operator
deletes those older than the retention period (`spent_records`). Nothing of the
audit trail is lost by deleting them: each transition in `status.history` names
who moved the rollout (`by`) and the approvals it consumed (`approvals`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

DEFAULT_RETENTION = timedelta(days=7)
"""How long a spent record stays readable by `kubectl get` before the operator deletes it."""

Records = tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _id(item: Mapping[str, Any]) -> str:
    metadata = item.get("metadata") or {}
    return f"{metadata.get('name', '')}/{metadata.get('uid', '')}"


class SpentRule:
    """What the status of one rollout says is spent."""

    def __init__(self, rollout: Mapping[str, Any], now: datetime) -> None:
        status = rollout.get("status") or {}
        self.uid = str((rollout.get("metadata") or {}).get("uid", ""))
        self.now = now
        self.started = bool(status.get("step"))
        self.step = status.get("step")
        self.plan_hash = status.get("planHash")
        self.entered = _time(status.get("stepEnteredAt"))
        self.approvals_done = set(status.get("approvalsConsumed") or ()) | set(
            status.get("approvalsIgnored") or ()
        )
        self.commands_done = set(status.get("commandsHandled") or ())
        self.commands_until = _time(status.get("commandsHandledUntil"))

    def predates(self, item: Mapping[str, Any]) -> bool:
        """Created before the rollout last entered its step: it can never count again."""
        created = _time((item.get("metadata") or {}).get("creationTimestamp"))
        return created is not None and self.entered is not None and created < self.entered

    def approval_spent(self, item: Mapping[str, Any]) -> bool:
        if not self.started:
            return False
        if _id(item) in self.approvals_done:
            return True
        spec = item.get("spec") or {}
        if (spec.get("rollout") or {}).get("uid") != self.uid:
            return True
        expires = _time(spec.get("expiresAt"))
        return self.predates(item) or (expires is not None and expires <= self.now)

    def command_spent(self, item: Mapping[str, Any]) -> bool:
        if not self.started:
            return False
        if _id(item) in self.commands_done:
            return True
        issued = _time((item.get("metadata") or {}).get("creationTimestamp"))
        return (
            issued is not None and self.commands_until is not None and issued <= self.commands_until
        )


def live_records(
    rollout: Mapping[str, Any],
    approvals: Sequence[Mapping[str, Any]],
    commands: Sequence[Mapping[str, Any]],
    now: datetime,
) -> Records:
    """The records that can still change a decision: those a tick needs to read.

    Left out: consumed or already reported approvals, approvals created before the
    rollout's current entry into its step (they never count again; one given for a
    past step is then not reported as ignored once more), and handled commands. An
    approval that may yet count, or be reported, is handed on."""
    rule = SpentRule(rollout, now)
    if not rule.started:
        return list(approvals), list(commands)
    return (
        [a for a in approvals if _id(a) not in rule.approvals_done and not rule.predates(a)],
        [c for c in commands if not rule.command_spent(c)],
    )


def spent_records(
    rollout: Mapping[str, Any],
    approvals: Sequence[Mapping[str, Any]],
    commands: Sequence[Mapping[str, Any]],
    now: datetime,
    retention: timedelta,
) -> list[Mapping[str, Any]]:
    """The rollout's spent records created more than `retention` ago: to delete."""
    rule = SpentRule(rollout, now)

    def old(item: Mapping[str, Any]) -> bool:
        created = _time((item.get("metadata") or {}).get("creationTimestamp"))
        return created is not None and now - created >= retention

    return [a for a in approvals if old(a) and rule.approval_spent(a)] + [
        c for c in commands if old(c) and rule.command_spent(c)
    ]
