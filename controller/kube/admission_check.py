"""Whether the admission policies that make approvals and commands mean anything are in place.

`spec.approver`, `spec.by`, `spec.approverGroups` and `spec.requestedBy` are only
true because the ValidatingAdmissionPolicies of `manifests/base/approval-policy.yaml`
refuse any record that lies about its author. Without them (a cluster before 1.30,
a policy deleted, a binding switched to Audit, an expression loosened) anyone who
may create a record can sign as anyone. The operator therefore compares, at start
and on every pass, the installed objects with the digests of what it ships, and
trusts no record while they differ; `--unsafe-trust-records-without-policy`
overrides that on clusters that cannot run the policy.

A digest is the sha256 of an object's canonical `spec`, after removing the values
the API server fills in by default (listed in `_SERVER_DEFAULTS`); any other
difference, an added field included, counts as a change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.kube.api import ADMISSION_BINDINGS, ADMISSION_POLICIES, KubeApi, KubeError

SHIPPED: Mapping[tuple[str, str], str] = {
    (
        "ValidatingAdmissionPolicy",
        "stageapprovals.stage.rollout.dev",
    ): "42a3a049762e5f35c78816fb63beea6effd0637b07c5076add9559a073d92b2e",
    (
        "ValidatingAdmissionPolicy",
        "stagecommands.stage.rollout.dev",
    ): "17a27fda8c73198c35ea3c4e4213c858d8946069fae33347b73415963855ae96",
    (
        "ValidatingAdmissionPolicy",
        "stagerollouts.stage.rollout.dev",
    ): "21bff60ce8dc8a9056a7f06e8cab085e21a6df85cc2284945788a271a4b6b76e",
    (
        "ValidatingAdmissionPolicyBinding",
        "stageapprovals.stage.rollout.dev",
    ): "ec7bd29a8e525a6640bd8198337fc50f3e5e8b077af9276c1fd87cb1966ee6ca",
    (
        "ValidatingAdmissionPolicyBinding",
        "stagecommands.stage.rollout.dev",
    ): "8e63e683ccd59c5b944567442edb970ea0e1898ad99041d0b441e3b8ca3ca339",
    (
        "ValidatingAdmissionPolicyBinding",
        "stagerollouts.stage.rollout.dev",
    ): "db3bfedc0737e479c9ffa62257140d7a77f53f7451c8cdb3b13282b5e5049ef7",
}
"""Digest of each shipped object's spec; tests/kube/test_admission_check.py keeps it fresh."""

_SERVER_DEFAULTS: Mapping[str, Any] = {
    "matchPolicy": "Equivalent",
    "namespaceSelector": {},
    "objectSelector": {},
    "scope": "*",
}
"""Fields the API server adds to a policy or binding when they are left out."""


@dataclass(frozen=True, slots=True)
class Trust:
    """Whether people's records can be believed now, and since when they were vetted."""

    trusted: bool
    reason: str
    message: str
    vetted_since: datetime | None = None
    """Records created before the newest policy object were not vetted by it."""


def spec_digest(spec: Mapping[str, Any]) -> str:
    canonical = json.dumps(_without_defaults(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def digests_of(documents: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """The digest of every policy and binding among `documents`, keyed by (kind, name)."""
    return {
        (str(doc["kind"]), str(doc["metadata"]["name"])): spec_digest(doc.get("spec") or {})
        for doc in documents
        if doc.get("kind") in (ADMISSION_POLICIES.name, ADMISSION_BINDINGS.name)
    }


def check_admission(
    api: KubeApi, *, shipped: Mapping[tuple[str, str], str] = SHIPPED, unsafe_trust: bool = False
) -> Trust:
    """Read the installed policies and bindings and say whether records can be trusted."""
    if unsafe_trust:
        return Trust(
            True,
            "TrustedUnsafely",
            "the operator runs with --unsafe-trust-records-without-policy: approvers and "
            "command authors are believed as written",
        )
    try:
        installed = _installed(api)
    except KubeError as error:
        return Trust(False, "PolicyUnreadable", f"cannot read the admission policies: {error}")
    problems: list[str] = []
    created: list[datetime] = []
    for (kind, name), digest in sorted(shipped.items()):
        found = installed.get((kind, name))
        if found is None:
            problems.append(f"{kind} {name} is not installed")
            continue
        if spec_digest(found.get("spec") or {}) != digest:
            problems.append(f"{kind} {name} differs from the one the operator ships")
        stamp = (found.get("metadata") or {}).get("creationTimestamp")
        if stamp:
            created.append(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")))
    if problems:
        message = (
            "approvals and commands are not counted: "
            + "; ".join(problems)
            + " (kubectl apply -k manifests/base restores them)"
        )
        reason = "PolicyMissing" if all("not installed" in p for p in problems) else "PolicyChanged"
        return Trust(False, reason, message)
    return Trust(True, "PolicyInstalled", "", max(created) if created else None)


def _installed(api: KubeApi) -> dict[tuple[str, str], Mapping[str, Any]]:
    policies, _version = api.list(ADMISSION_POLICIES, None)
    bindings, _version = api.list(ADMISSION_BINDINGS, None)
    found: dict[tuple[str, str], Mapping[str, Any]] = {}
    for kind, items in ((ADMISSION_POLICIES, policies), (ADMISSION_BINDINGS, bindings)):
        for item in items:
            found[(kind.name, str((item.get("metadata") or {}).get("name", "")))] = item
    return found


def _without_defaults(node: Any) -> Any:
    if isinstance(node, Mapping):
        kept = {
            key: _without_defaults(value)
            for key, value in node.items()
            if not (key in _SERVER_DEFAULTS and value == _SERVER_DEFAULTS[key])
        }
        return {key: value for key, value in kept.items() if value != {} or key == "spec"}
    if isinstance(node, list):
        return [_without_defaults(item) for item in node]
    return node
