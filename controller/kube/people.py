"""The People port over Kubernetes: StageApproval and StageCommand records.

Records are read for one rollout (by name; the uid inside each record binds it to
one incarnation of the rollout, which `decide` checks). A record whose spec does
not validate is skipped and reported, never allowed to stop a tick.

Records are only as true as the admission policy that vetted them: while
`admission_check` finds it missing or changed, no record is handed on, and a
record older than the installed policy (created before it was put back) is
skipped as never vetted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from pydantic import ValidationError

from controller.kube.admission_check import Trust
from controller.kube.api import APPROVALS, COMMANDS, KubeApi
from controller.kube.resources import StageApprovalSpec, StageCommandSpec
from phases.observations import Approval, Command

_PARSED_LIMIT = 8_192
_parsed: dict[tuple[str, str], tuple[str, Any]] = {}
"""What each record was read as, by (kind, uid), for its resourceVersion: records are
immutable (the admission policy refuses updates), so a record read again each pass
is validated and converted once. Small, and cleared when full: a cached pass hands
on only live records (`retention.live_records`), and kept for every spent record
this was most of what an old approval cost (about 2 KB each)."""


def _once(item: Mapping[str, Any], kind: str, make: Callable[[], Any]) -> Any:
    metadata = item.get("metadata") or {}
    uid, version = str(metadata.get("uid", "")), str(metadata.get("resourceVersion", ""))
    if not uid or not version:
        return make()
    kept = _parsed.get((kind, uid))
    if kept is not None and kept[0] == version:
        return kept[1]
    found = make()
    if len(_parsed) >= _PARSED_LIMIT:
        _parsed.clear()
    _parsed[(kind, uid)] = (version, found)
    return found


def _created(item: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(item["metadata"]["creationTimestamp"]).replace("Z", "+00:00"))


def _record_id(item: Mapping[str, Any]) -> str:
    """name/uid: readable in history, and never the same for two records (uids are not reused)."""
    metadata = item["metadata"]
    return f"{metadata['name']}/{metadata.get('uid', '')}"


class KubePeople:
    """The approvals and commands given for one rollout."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        rollout_name: str,
        *,
        on_invalid: Callable[[str], None] | None = None,
        listed: tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]] | None = None,
        trust: Trust | None = None,
    ) -> None:
        self._trust = trust
        self._listed = listed
        self._api = api
        self._namespace = namespace
        self._rollout = rollout_name
        self._on_invalid = on_invalid or (lambda _message: None)

    def approvals(self, at: datetime) -> Sequence[Approval]:
        found: list[Approval] = []
        items = (
            self._listed[0]
            if self._listed is not None
            else self._api.list(APPROVALS, self._namespace)[0]
        )
        for item, spec in self._records(items, APPROVALS.name, StageApprovalSpec):
            found.append(_once(item, "observed approval", partial(_approval, item, spec)))
        return found

    def commands(self, at: datetime) -> Sequence[Command]:
        found: list[Command] = []
        items = (
            self._listed[1]
            if self._listed is not None
            else self._api.list(COMMANDS, self._namespace)[0]
        )
        for item, spec in self._records(items, COMMANDS.name, StageCommandSpec):
            found.append(_once(item, "observed command", partial(_command, item, spec)))
        return found

    def _records(
        self, items: Sequence[Mapping[str, Any]], kind: str, model: type[Any]
    ) -> list[tuple[Mapping[str, Any], Any]]:
        records: list[tuple[Mapping[str, Any], Any]] = []
        trust = self._trust
        if trust is not None and not trust.trusted:
            return records
        for item in items:
            raw = item.get("spec") or {}
            if (raw.get("rollout") or {}).get("name") != self._rollout:
                continue
            if trust is not None and trust.vetted_since and _created(item) < trust.vetted_since:
                continue
            try:
                records.append((item, _once(item, kind, partial(model.model_validate, raw))))
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                self._on_invalid(
                    f"{kind} {item['metadata']['name']} ignored: spec.{where}: {first['msg']}"
                )
        return records


def _approval(item: Mapping[str, Any], spec: StageApprovalSpec) -> Approval:
    return Approval(
        id=_record_id(item),
        rollout_uid=spec.rollout.uid,
        step=spec.step,
        plan_hash=spec.plan_hash,
        approver=spec.approver,
        created_at=_created(item),
        expires_at=spec.expires_at,
        reason=spec.reason,
        groups=tuple(spec.approver_groups),
    )


def _command(item: Mapping[str, Any], spec: StageCommandSpec) -> Command:
    return Command(
        id=_record_id(item),
        kind=spec.command,
        issued_at=_created(item),
        by=spec.by,
        reason=spec.reason,
        to=spec.to,
    )
