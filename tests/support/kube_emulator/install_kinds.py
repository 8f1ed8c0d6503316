"""Kinds an install creates that the operator itself never calls: stored, served, listed.

`kubectl apply -k manifests/base` creates ServiceAccounts, Services, RBAC objects and
a PodDisruptionBudget besides the kinds the operator uses. The emulator stores them
with the generic registry rules (metadata validation, resourceVersion, watches,
merge and strategic-merge patches) so that an install can be applied and read
back; it runs none of their kind-specific machinery (no cluster IPs, no token
Secrets, no eviction API).
"""

from __future__ import annotations

from .resources import ResourceType


def install_resource_types() -> list[ResourceType]:
    """ServiceAccounts, Services, the four RBAC kinds and PodDisruptionBudgets."""
    rbac = "rbac.authorization.k8s.io"
    return [
        ResourceType(
            "", ("v1",), "serviceaccounts", "serviceaccount", "ServiceAccount", True, ("sa",)
        ),
        ResourceType(
            "",
            ("v1",),
            "services",
            "service",
            "Service",
            True,
            ("svc",),
            categories=("all",),
            status_subresource=True,
        ),
        ResourceType(rbac, ("v1",), "roles", "role", "Role", True),
        ResourceType(rbac, ("v1",), "rolebindings", "rolebinding", "RoleBinding", True),
        ResourceType(rbac, ("v1",), "clusterroles", "clusterrole", "ClusterRole", False),
        ResourceType(
            rbac, ("v1",), "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", False
        ),
        ResourceType(
            "policy",
            ("v1",),
            "poddisruptionbudgets",
            "poddisruptionbudget",
            "PodDisruptionBudget",
            True,
            ("pdb",),
            status_subresource=True,
            generation="spec",
        ),
    ]


def add_install_types(types: list[ResourceType]) -> None:
    """Append the install kinds `types` does not serve yet (another module may own some)."""
    served = {(rtype.group, rtype.plural) for rtype in types}
    types.extend(t for t in install_resource_types() if (t.group, t.plural) not in served)
