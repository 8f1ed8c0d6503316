"""The permissions the RBAC manifests grant, as (apiGroup, resource, verb) triples, and
their objects, to load into the API-server emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
RBAC_FILE = REPO / "manifests" / "base" / "rbac.yaml"
EXAMPLE_ROLE_FILE = REPO / "manifests" / "examples" / "rollout-rbac.yaml"
ROLES_FILE = REPO / "manifests" / "base" / "roles.yaml"


def rbac_objects(path: Path = RBAC_FILE) -> list[dict[str, Any]]:
    """The objects of one manifest file (roles, bindings, service accounts)."""
    return [obj for obj in yaml.safe_load_all(path.read_text(encoding="utf-8")) if obj]


def granted_rules(path: Path = RBAC_FILE) -> set[tuple[str, str, str]]:
    """Every rule of the ClusterRole and Roles, expanded to triples."""
    rules = []
    for obj in rbac_objects(path):
        if obj["kind"] in ("ClusterRole", "Role"):
            rules += obj["rules"]
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
