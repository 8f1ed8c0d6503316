"""The baselines a StageRollout carries from another one (`spec.baselines`).

Either `from: {rollout: NAME}`, a rollout of the same namespace read with the
rollout's own account (so a namespace user cannot carry what that account may not
read), or `document:`, the text `stagectl baseline export` printed, pasted inline.
Both are checked by `phases.baselines.check_carried`: anything refused holds the
rollout with a condition naming the problem, nothing applied.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from controller.kube.api import ROLLOUTS, KubeApi
from controller.kube.resources import BaselinesSpec
from controller.kube.tenancy import Refused
from phases.baselines import (
    BaselineRecord,
    ExportRefused,
    check_carried,
    check_export,
    migrate_records,
    read_export,
)
from phases.plan import Plan
from phases.status import RolloutStatus

REFUSED = "BaselinesRefused"


def carried_baselines(
    spec: BaselinesSpec | None,
    plan: Plan,
    api: KubeApi,
    namespace: str,
    holding: RolloutStatus,
    *,
    rollout: str,
) -> tuple[tuple[BaselineRecord, ...] | None, list[str]]:
    """The checked records to carry and warnings; None when nothing was read this tick.

    `rollout` is the carrying rollout's own name: it may not carry from itself.

    A source rollout that is gone, or has no status yet, keeps what the status
    already carries; with nothing carried yet, it is refused.
    """
    if spec is None:
        return (), []
    try:
        if spec.document is not None:
            records, warnings = check_export(
                plan, read_export(spec.document, source="spec.baselines.document")
            )
            return tuple(records), warnings
        assert spec.from_ is not None
        if spec.from_.rollout == rollout:
            raise ExportRefused(f"from: names rollout {rollout} itself")
        return _from_rollout(spec.from_.rollout, plan, api, namespace, holding)
    except ExportRefused as refusal:
        raise Refused(REFUSED, f"spec.baselines: {refusal}") from None


def _from_rollout(
    name: str, plan: Plan, api: KubeApi, namespace: str, holding: RolloutStatus
) -> tuple[tuple[BaselineRecord, ...] | None, list[str]]:
    source = api.get(ROLLOUTS, namespace, name)
    raw: Any = (source or {}).get("status") or {}
    if not isinstance(raw, dict) or not raw.get("baselines"):
        if any(r.source == "carried" for r in holding.baselines.values()):
            return None, []
        why = "not found" if source is None else "has no baselines yet"
        raise ExportRefused(f"from: rollout {name} of namespace {namespace} {why}")
    try:
        baselines = migrate_records(raw["baselines"])
        if not isinstance(baselines, dict):
            raise ExportRefused(f"from: rollout {name}: status.baselines is not a mapping")
        records = [BaselineRecord.model_validate(record) for record in baselines.values()]
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ExportRefused(
            f"from: rollout {name}: unreadable baseline ({where}: {first['msg']})"
        ) from None
    plan_hash = str(raw.get("planHash") or "")
    found, warnings = check_carried(plan, records, rollout=name, plan_hash=plan_hash)
    return tuple(found), warnings
