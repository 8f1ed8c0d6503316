"""The operator's CRDs, generated from the pydantic models in `controller.kube.resources`.

Kubernetes wants a *structural* OpenAPI schema: every node typed, no `$ref`, no
types inside `anyOf`, `nullable` instead of `null` types. Pydantic's JSON Schema
is close; this module closes the gap. `stagectl crd generate` writes the CRDs
(StageRollout, StageApproval, StageCommand) to `manifests/crd/`, and a test
fails when the files and the models drift apart.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from controller.kube.resources import (
    API_VERSION,
    APPROVAL_KIND,
    APPROVAL_PLURAL,
    COMMAND_KIND,
    COMMAND_PLURAL,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    VERSION,
    StageApprovalSpec,
    StageCommandSpec,
    StageRolloutSpec,
    StageRolloutStatus,
)

_DROPPED = frozenset({"title", "default", "discriminator", "const", "examples"})


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON Schema turned into a Kubernetes structural schema."""
    definitions = schema.get("$defs", {})
    return _convert(schema, definitions)


def _convert(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        resolved = _convert(definitions[name], definitions)
        if "description" in node:
            resolved = {**resolved, "description": node["description"]}
        return resolved
    if "anyOf" in node:
        return _convert_union(node, definitions)
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key == "$defs":
            continue
        if key == "properties":
            converted[key] = {name: _convert(child, definitions) for name, child in value.items()}
        elif key == "items":
            converted[key] = _convert(value, definitions)
        elif key == "additionalProperties":
            # `false` is not allowed in a CRD: the API server prunes unknown fields instead.
            if isinstance(value, dict):
                converted[key] = _convert(value, definitions)
            elif value is True:
                converted[key] = value
        elif key == "format" and value not in (
            "date-time",
            "int32",
            "int64",
            "float",
            "double",
            "byte",
        ):
            continue
        else:
            # A copy: a list shared by two definitions would be written as a YAML alias.
            converted[key] = copy.deepcopy(value)
    if (
        converted.get("type") == "object"
        and not converted.get("properties")
        and "additionalProperties" not in converted
    ):
        converted["x-kubernetes-preserve-unknown-fields"] = True
    if converted.get("additionalProperties") is True:
        del converted["additionalProperties"]
        converted["x-kubernetes-preserve-unknown-fields"] = True
    return converted


def _convert_union(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    members = [m for m in node["anyOf"] if m.get("type") != "null"]
    nullable = len(members) != len(node["anyOf"])
    if len(members) == 1:
        converted = _convert(members[0], definitions)
    else:
        # A union of shapes cannot be structural; the operator validates it itself.
        converted = {"x-kubernetes-preserve-unknown-fields": True}
    if nullable:
        converted["nullable"] = True
    if "description" in node:
        converted["description"] = node["description"]
    return converted


def _crd(
    kind: str,
    plural: str,
    short_names: list[str],
    description: str,
    spec_schema: dict[str, Any],
    status_schema: dict[str, Any] | None,
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": spec_schema,
    }
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True}
    if status_schema is not None:
        # The operator writes status in parts (a condition alone for an invalid spec),
        # so nothing in it is required; the operator validates what it reads back.
        properties["status"] = _optional(status_schema)
        version["subresources"] = {"status": {}}
    # Age closes the default columns, as in kubectl; `-o wide` adds the priority ones after it.
    version["additionalPrinterColumns"] = [
        *(c for c in columns if not c.get("priority")),
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        *(c for c in columns if c.get("priority")),
    ]
    version["schema"] = {
        "openAPIV3Schema": {
            "type": "object",
            "description": f"{kind} ({API_VERSION}): {description}",
            "required": ["spec"],
            "properties": properties,
        }
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["stage-rollout"],
            },
            "versions": [version],
        },
    }


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "required"}


def _schema(model: type[Any]) -> dict[str, Any]:
    return structural(model.model_json_schema(by_alias=True, mode="serialization"))


def stagerollout_crd() -> dict[str, Any]:
    """The StageRollout CustomResourceDefinition."""
    return _crd(
        KIND,
        PLURAL,
        list(SHORT_NAMES),
        "one flag rollout walked through a plan.",
        _schema(StageRolloutSpec),
        _schema(StageRolloutStatus),
        [
            {"name": "Step", "type": "string", "jsonPath": ".status.step"},
            {"name": "State", "type": "string", "jsonPath": ".status.state"},
            {"name": "Percent", "type": "integer", "jsonPath": ".status.enforcementPercent"},
            # Shown by `kubectl get -o wide` only (priority 1).
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1},
            {
                "name": "Blocked By",
                "type": "string",
                "jsonPath": ".status.blockers[0]",
                "priority": 1,
            },
        ],
    )


def stageapproval_crd() -> dict[str, Any]:
    """The StageApproval CustomResourceDefinition: immutable records, no status."""
    return _crd(
        APPROVAL_KIND,
        APPROVAL_PLURAL,
        ["sra"],
        "an approval to promote one rollout out of one step of one plan version.",
        _schema(StageApprovalSpec),
        None,
        [
            {"name": "Rollout", "type": "string", "jsonPath": ".spec.rollout.name"},
            {"name": "Step", "type": "string", "jsonPath": ".spec.step"},
            {"name": "Approver", "type": "string", "jsonPath": ".spec.approver"},
        ],
    )


def stagecommand_crd() -> dict[str, Any]:
    """The StageCommand CustomResourceDefinition: pause, resume, retry, rollback, abort."""
    return _crd(
        COMMAND_KIND,
        COMMAND_PLURAL,
        ["src"],
        "an instruction to one rollout, recorded with who gave it and why.",
        _schema(StageCommandSpec),
        None,
        [
            {"name": "Rollout", "type": "string", "jsonPath": ".spec.rollout.name"},
            {"name": "Command", "type": "string", "jsonPath": ".spec.command"},
            {"name": "By", "type": "string", "jsonPath": ".spec.by"},
        ],
    )


CRDS = {
    "stagerollouts.yaml": stagerollout_crd,
    "stageapprovals.yaml": stageapproval_crd,
    "stagecommands.yaml": stagecommand_crd,
}


def render_crd(file_name: str) -> str:
    """One CRD manifest as YAML, with a header saying how it was made."""
    header = (
        "# Generated by `stagectl crd generate` from controller/kube/resources.py; do not edit.\n"
    )
    return header + yaml.safe_dump(CRDS[file_name](), sort_keys=False, width=100)
