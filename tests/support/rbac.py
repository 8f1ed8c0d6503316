"""The permissions `manifests/base/rbac.yaml` grants, as (apiGroup, resource, verb) triples."""

from __future__ import annotations

from pathlib import Path

import yaml

RBAC_FILE = Path(__file__).resolve().parents[2] / "manifests" / "base" / "rbac.yaml"


def granted_rules(path: Path = RBAC_FILE) -> set[tuple[str, str, str]]:
    """Every rule of the ClusterRole and Roles, expanded to triples."""
    rules = []
    for obj in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if obj and obj["kind"] in ("ClusterRole", "Role"):
            rules += obj["rules"]
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
