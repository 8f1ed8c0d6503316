"""What people do to a rollout from the CLI: read its status, approve, command.

The approver and the issuer of a command are never taken from a flag: they are
who the API server says the caller is (a SelfSubjectReview), and the admission
policy in `manifests/` refuses any record that names someone else. Each action
checks the rollout first and says exactly why it cannot be done.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from controller.kube.api import APPROVALS, COMMANDS, ROLLOUTS, KubeApi, KubeError
from controller.kube.command_checks import has_pending_commands, refusal
from controller.kube.resources import StageRolloutSpec, StageRolloutStatus
from phases.decide import WRITE_ENFORCEMENT_OFF, expected_flags, signed_changes
from phases.durations import format_duration
from phases.plan import Plan
from phases.status import StepState
from phases.steps import steps_of

ROLES = {
    APPROVALS.plural: "stage-rollout-approver",
    COMMANDS.plural: "stage-rollout-operator",
}
_TERMINAL = {StepState.COMPLETED.value, StepState.ABORTED.value}


class RecordError(Exception):
    """An action that cannot be done, with the reason in one sentence."""


def rollout_of(api: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    """The rollout, or a RecordError listing the rollouts that do exist there."""
    found = api.get(ROLLOUTS, namespace, name)
    if found is not None:
        return found
    items, _ = api.list(ROLLOUTS, namespace)
    known = ", ".join(sorted(i["metadata"]["name"] for i in items)) or "none"
    raise RecordError(
        f"no StageRollout {name!r} in namespace {namespace} (rollouts there: {known})"
    )


def whoami(api: KubeApi) -> str:
    """The caller's user name, as the API server knows it."""
    return who_and_groups(api)[0]


def who_and_groups(api: KubeApi) -> tuple[str, list[str]]:
    """The caller's user name and groups, as the API server knows them."""
    try:
        info = api.who_am_i()
        user = info.get("username", "")
    except KubeError as error:
        raise RecordError(
            f"cannot learn who you are from the API server (SelfSubjectReview): {error}"
        ) from None
    if not user:
        raise RecordError(
            "the API server did not name the caller; approvals need an authenticated user"
        )
    groups = info.get("groups") or []
    return str(user), [str(g) for g in groups] if isinstance(groups, list) else []


def approve(
    api: KubeApi, namespace: str, name: str, *, step: str | None, reason: str, now: datetime
) -> dict[str, Any]:
    """Create an approval for promoting the rollout out of its current step."""
    if not reason.strip():
        raise RecordError("--reason is required: say why the promotion is safe")
    rollout = rollout_of(api, namespace, name)
    status = _status(rollout)
    current = status.step
    if step is not None and step != current:
        raise RecordError(
            f"rollout {name} is at step {current}, not {step}; approvals are for the step the rollout is at"
        )
    if status.state.value in _TERMINAL:
        raise RecordError(f"rollout {name} is {status.state.value}; there is nothing to approve")
    plan = plan_of(api, rollout)
    needs = (
        steps_of(plan).get(current).approval.required
        or status.hold_for_approval
        or _raise_waits(plan, status)
    )
    if not needs:
        raise RecordError(f"step {current} of rollout {name} needs no approval to be left")
    user, groups = who_and_groups(api)
    existing, _ = api.list(APPROVALS, namespace)
    for item in existing:
        spec = item.get("spec") or {}
        created = _time(item["metadata"].get("creationTimestamp"))
        if (
            (spec.get("rollout") or {}).get("uid") == rollout["metadata"]["uid"]
            and spec.get("step") == current
            and spec.get("planHash") == plan.content_hash
            and spec.get("approver") == user
            and created is not None
            and created >= status.step_entered_at
            and not any(
                c.startswith(f"{item['metadata']['name']}/") for c in status.approvals_consumed
            )
        ):
            raise RecordError(
                f"{user} already approved leaving {current} ({item['metadata']['name']}); one approval per person counts"
            )
    return _create(
        api,
        APPROVALS,
        namespace,
        rollout,
        _record_name(name, current),
        {
            "step": current,
            "planHash": plan.content_hash,
            "approver": user,
            "reason": reason,
            **({"approverGroups": groups} if groups else {}),
        },
    )


def _raise_waits(plan: Plan, status: StageRolloutStatus) -> bool:
    """Whether the step's flags wait for a sign-off (a plan edit, a first step above 0 %,
    a changed flag marked approval_to_change)."""
    step = steps_of(plan).get(status.step)
    flags, _hash = expected_flags(step, status)
    if plan.flag_set.percent(flags) > status.approved_percent:
        return True
    return bool(signed_changes(plan, flags, status.approved_flags))


def command(
    api: KubeApi, namespace: str, name: str, kind: str, *, reason: str, to: str | None = None
) -> dict[str, Any]:
    """Record a pause, resume, retry, rollback or abort; the next tick honours it."""
    rollout = rollout_of(api, namespace, name)
    status = rollout.get("status") or {}
    if status.get("state") in _TERMINAL:
        raise RecordError(f"rollout {name} is {status['state']}; it takes no more commands")
    plan = functools.cache(lambda: plan_of(api, rollout))  # read at most once, when needed
    if to is not None and to not in ("warn", WRITE_ENFORCEMENT_OFF):
        steps = [s.id for s in steps_of(plan()).steps]
        if to not in steps:
            raise RecordError(
                f"--to {to!r} is not a step of the plan ({', '.join(steps)}) nor warn"
            )
    recorded, _ = api.list(COMMANDS, namespace)
    if status.get("step") and not has_pending_commands(
        recorded, rollout["metadata"]["uid"], current := _status(rollout)
    ):
        problem = refusal(plan(), current, kind, to=to, failed_jobs=list(current.failed_jobs))
        if problem:
            raise RecordError(f"{kind} of {name} refused, nothing recorded: {problem}")
    return _create(
        api,
        COMMANDS,
        namespace,
        rollout,
        _record_name(name, kind),
        {"command": kind, "by": whoami(api), "reason": reason, **({"to": to} if to else {})},
    )


def describe(rollout: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """What `stagectl status` shows of one rollout."""
    raw = rollout.get("status") or {}
    metadata = rollout["metadata"]
    if not raw.get("step"):
        return {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "state": "not started",
            "blockers": [],
        }
    status = _status(rollout)
    in_step = now - status.step_entered_at
    return {
        "name": metadata["name"],
        "namespace": metadata["namespace"],
        "step": status.step,
        "environment": status.environment,
        "state": status.state.value,
        "percent": status.enforcement_percent,
        "timeInStep": format_duration(in_step),
        "reason": status.reason,
        "blockers": list(status.blockers),
        "verdicts": [v.model_dump(mode="json", by_alias=True) for v in status.last_verdicts],
        "conditions": [
            c.model_dump(mode="json", by_alias=True)
            for c in status.conditions
            if c.status == "True" or c.type == "Valid"
        ],
        "transitions": [t.model_dump(mode="json", by_alias=True) for t in status.history[-5:]],
        "stepEnteredAt": status.step_entered_at.isoformat(),
        "inEffectAt": status.in_effect_at.isoformat() if status.in_effect_at else None,
        "lastTickAt": status.last_tick_at.isoformat() if status.last_tick_at else None,
        "failedJobs": list(status.failed_jobs),
        "commandsRejected": [
            c.model_dump(mode="json", by_alias=True)
            for c in status.commands_rejected
            if c.at >= status.step_entered_at
        ],
        "baselines": _baselines(status),
    }


def _baselines(status: StageRolloutStatus) -> list[dict[str, Any]]:
    return [
        record.model_dump(mode="json", by_alias=True, exclude_none=True)
        for _, record in sorted(status.baselines.items())
    ]


def baseline_export(api: KubeApi, namespace: str, name: str, now: datetime) -> dict[str, Any]:
    """The document `stagectl baseline export` prints: the rollout's baselines and plan."""
    from phases.baselines import export_document

    rollout = rollout_of(api, namespace, name)
    status = _status(rollout)
    if not status.baselines:
        raise RecordError(
            f"rollout {name} holds no baselines yet (none captured, pinned or carried)"
        )
    plan = plan_of(api, rollout)
    document = export_document(plan, status, rollout=name, namespace=namespace, now=now)
    return document.model_dump(mode="json", by_alias=True, exclude_none=True)


def history(api: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    """Transitions, approvals with their approvers, and commands with who gave them."""
    rollout = rollout_of(api, namespace, name)
    status = rollout.get("status") or {}
    uid = rollout["metadata"]["uid"]
    approvals, _ = api.list(APPROVALS, namespace)
    commands, _ = api.list(COMMANDS, namespace)

    def mine(item: Mapping[str, Any]) -> bool:
        return bool(((item.get("spec") or {}).get("rollout") or {}).get("uid") == uid)

    return {
        "name": name,
        "baselines": _baselines(_status(rollout)) if status.get("step") else [],
        "transitions": status.get("history", []),
        "commandsRejected": status.get("commandsRejected", []),
        "approvals": [
            {
                "name": a["metadata"]["name"],
                "at": a["metadata"].get("creationTimestamp"),
                **a["spec"],
            }
            for a in approvals
            if mine(a)
        ],
        "commands": [
            {
                "name": c["metadata"]["name"],
                "at": c["metadata"].get("creationTimestamp"),
                **c["spec"],
            }
            for c in commands
            if mine(c)
        ],
    }


def _create(
    api: KubeApi,
    kind: Any,
    namespace: str,
    rollout: Mapping[str, Any],
    name: str,
    spec: Mapping[str, Any],
) -> dict[str, Any]:
    """A record of `kind` for the rollout, bound to its uid, in the rollout's namespace."""
    meta = rollout["metadata"]
    body = {
        "apiVersion": kind.api_version,
        "kind": kind.name,
        "metadata": {
            "name": name,
            "labels": {"stage.rollout.dev/rollout": meta["name"]},
            # Deleted with the rollout by the garbage collector (no blockOwnerDeletion:
            # that would need a right on the rollout's finalizers).
            "ownerReferences": [
                {
                    "apiVersion": rollout.get("apiVersion") or ROLLOUTS.api_version,
                    "kind": ROLLOUTS.name,
                    "name": meta["name"],
                    "uid": meta["uid"],
                }
            ],
        },
        "spec": {"rollout": {"name": meta["name"], "uid": meta["uid"]}, **spec},
    }
    try:
        return api.create(kind, namespace, body)
    except KubeError as error:
        if error.status == 403:
            raise RecordError(
                f"forbidden: creating {kind.plural} in {namespace} needs the {ROLES[kind.plural]} role "
                f"(manifests/base/roles.yaml); the API server said: {error}"
            ) from None
        raise RecordError(str(error)) from None


def _status(rollout: Mapping[str, Any]) -> StageRolloutStatus:
    raw = rollout.get("status") or {}
    if not raw.get("step"):
        raise RecordError(f"rollout {rollout['metadata']['name']} has not started yet (no status)")
    try:
        return StageRolloutStatus.model_validate(raw)
    except ValidationError as error:
        raise RecordError(
            f"rollout {rollout['metadata']['name']} has an unreadable status: {error.errors()[0]['msg']}"
        ) from None


def plan_of(api: KubeApi, rollout: Mapping[str, Any]) -> Plan:
    """The rollout's plan as the caller can read it (a ConfigMap plan needs `get` on it)."""
    from controller.kube.plan_sources import PlanSources
    from controller.kube.tenancy import Refused

    spec = StageRolloutSpec.model_validate(rollout.get("spec") or {})
    namespace = str(rollout["metadata"].get("namespace", ""))
    try:
        return PlanSources().resolve(spec.plan, namespace=namespace, api=api)
    except Refused as refusal:
        raise RecordError(refusal.message) from None


def _record_name(rollout: str, what: str) -> str:
    base = re.sub(r"[^a-z0-9-]", "-", f"{rollout}-{what}".lower()).strip("-")[:50].rstrip("-")
    return f"{base}-{uuid.uuid4().hex[:6]}"


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
