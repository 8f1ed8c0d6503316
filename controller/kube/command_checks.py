"""Why a command cannot be done now, decided before it is recorded.

`stagectl` refuses an impossible command (exit 2, the reason) instead of recording
it for the operator to reject later as a Warning Event nobody reads. The rules are
the decision core's own (`phases.decide` applies the same ones when it handles a
command); this module only asks them of the status the caller just read. The
operator still has the last word: the status may move between this check and the
next tick, and what it rejects then is kept in `status.commandsRejected`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from phases.decide import WRITE_ENFORCEMENT_OFF, expected_flags
from phases.machine import machines_for
from phases.plan import WRITE_ONLY_FLAG, Plan
from phases.status import RolloutStatus
from phases.steps import Step, StepTable, steps_of


def refusal(
    plan: Plan, status: RolloutStatus, kind: str, *, to: str | None, failed_jobs: list[str]
) -> str | None:
    """The reason `kind` (pause, resume, retry, rollback, abort) is impossible now, or None."""
    table = steps_of(plan)
    if status.plan_hash != plan.content_hash or status.step not in table.by_id:
        return None  # the plan changed under the rollout: only the operator can tell
    machines = machines_for(plan)
    trigger = "rollback" if kind == "rollback" else kind
    if kind != "retry" and not machines.may(status.state, trigger):
        return f"{kind} is not possible while step {status.step} is {status.state.value}"
    if kind == "retry":
        if not failed_jobs:
            return f"no failed job in step {status.step} to retry"
        return None
    if kind == "rollback":
        return _rollback_refusal(table, table.get(status.step), status, to)
    return None


def _rollback_refusal(
    table: StepTable, current: Step, status: RolloutStatus, to: str | None
) -> str | None:
    if to in (None, "", "previous", "warn"):
        if table.before(current) is None:
            return f"{current.id} is the first step; there is nothing to roll back to"
        return None
    if to == WRITE_ENFORCEMENT_OFF:
        flags, _hash = expected_flags(current, status)
        if WRITE_ONLY_FLAG not in flags:
            return f"this plan declares no {WRITE_ONLY_FLAG} flag"
        if flags.get(WRITE_ONLY_FLAG) != "true":
            return f"write enforcement is already off at step {current.id}"
        return None
    found = table.by_id.get(to or "")
    if found is None:
        return None  # an unknown step is reported with the plan's steps by the caller
    if found.index >= current.index:
        later = "the current step" if found.index == current.index else "after the current step"
        return f"--to {found.id} is {later} {current.id}; a rollback goes to an earlier step"
    return None


def has_pending_commands(
    items: Iterable[Mapping[str, Any]], rollout_uid: str, status: RolloutStatus
) -> bool:
    """True when a recorded command of this rollout is not handled yet.

    The operator handles commands in order, so the state a new command meets is not
    the state read now: the pre-check stands aside and the operator decides.
    """
    handled = set(status.commands_handled)
    until = status.commands_handled_until
    for item in items:
        metadata = item.get("metadata") or {}
        if ((item.get("spec") or {}).get("rollout") or {}).get("uid") != rollout_uid:
            continue
        if f"{metadata.get('name')}/{metadata.get('uid', '')}" in handled:
            continue
        created = str(metadata.get("creationTimestamp") or "")
        if until is not None and created and _parse(created) <= until:
            continue
        return True
    return False


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
