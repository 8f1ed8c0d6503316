"""The StageRollout CRD, generated from the pydantic models in `controller.resources`.

Kubernetes wants a *structural* OpenAPI schema: every node typed, no `$ref`, no
types inside `anyOf`, `nullable` instead of `null` types. Pydantic's JSON Schema
is close; this module closes the gap. `stagectl crd generate` writes the result
to `manifests/crd/` and a test fails when the file and the models drift apart.
"""

from __future__ import annotations

from typing import Any

import yaml

from controller.resources import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    VERSION,
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
            converted[key] = value
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


def stagerollout_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition document."""
    spec_schema = structural(
        StageRolloutSpec.model_json_schema(by_alias=True, mode="serialization")
    )
    status_schema = structural(
        StageRolloutStatus.model_json_schema(by_alias=True, mode="serialization")
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": list(SHORT_NAMES),
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Step", "type": "string", "jsonPath": ".status.step"},
                        {"name": "State", "type": "string", "jsonPath": ".status.state"},
                        {
                            "name": "Percent",
                            "type": "integer",
                            "jsonPath": ".status.enforcementPercent",
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": f"{KIND} ({API_VERSION}): one flag rollout walked through a plan.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crds() -> str:
    """The CRD manifest as YAML, with a header saying how it was made."""
    header = "# Generated by `stagectl crd generate` from controller/resources.py; do not edit.\n"
    return header + yaml.safe_dump(stagerollout_crd(), sort_keys=False, width=100)
