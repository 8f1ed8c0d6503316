"""The install as a user does it: the real kubectl applies the base and reads rollouts back.

`kubectl apply -k manifests/base` runs against the API-server emulator (discovery of
every kind in the base, client-side apply, Table answers). `--validate=false`: the
emulator serves no OpenAPI documents (kubectl asks for /openapi/v3 and /openapi/v2 to
validate client-side), and the same objects are validated against the real 1.30
schemas in tests/controller/test_manifests.py.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.kube.api import ROLLOUTS, KubeApi
from tests.support.kube_emulator import KubeEmulator
from tests.support.kube_emulator.tables import TABLE_CONTENT_TYPE, human_duration
from tests.support.kubectl import kustomize, run, write_kubeconfig

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "manifests" / "base"
EXAMPLE = REPO / "manifests" / "examples" / "stagerollout.yaml"
ADMIN = "install-admin-token"
PLURALS = {
    "Namespace": "namespaces",
    "CustomResourceDefinition": "customresourcedefinitions",
    "ServiceAccount": "serviceaccounts",
    "Role": "roles",
    "ClusterRole": "clusterroles",
    "RoleBinding": "rolebindings",
    "ClusterRoleBinding": "clusterrolebindings",
    "Service": "services",
    "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}


@pytest.fixture
def kubeconfig(kube: KubeEmulator, tmp_path: Path) -> Path:
    kube.add_token(ADMIN, "cluster-admin", ("system:masters",))
    return write_kubeconfig(kube, tmp_path / "kubeconfig", ADMIN, "default")


def stored_versions(kube: KubeEmulator, built: list[dict[str, Any]]) -> dict[str, str]:
    """Each built object's stored resourceVersion (the Deployment's generation: the
    emulator's Deployment controller writes its status meanwhile)."""
    versions = {}
    for obj in built:
        metadata = obj["metadata"]
        stored = kube.get_object(
            PLURALS[obj["kind"]],
            metadata.get("namespace"),
            metadata["name"],
            group=obj["apiVersion"].rpartition("/")[0],
        )
        assert stored is not None, f"{obj['kind']}/{metadata['name']} was not created"
        assert stored["metadata"]["labels"].items() >= metadata["labels"].items()
        key = "generation" if obj["kind"] == "Deployment" else "resourceVersion"
        versions[f"{obj['kind']}/{metadata['name']}"] = str(stored["metadata"][key])
    return versions


def apply_base(kubeconfig: Path) -> list[str]:
    done = run(kubeconfig, "apply", "--validate=false", "-k", str(BASE))
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_kubectl_apply_k_installs_every_object_and_a_second_apply_changes_nothing(
    kube: KubeEmulator, kubeconfig: Path
) -> None:
    built = kustomize(BASE)
    created = apply_base(kubeconfig)
    assert len(created) == len(built) and all(line.endswith(" created") for line in created)
    before = stored_versions(kube, built)
    again = apply_base(kubeconfig)
    # kubectl always sends a PodDisruptionBudget's selector (its patch strategy is
    # "replace") and says "configured"; the server finds nothing to change.
    quirk = "poddisruptionbudget.policy/stage-rollout-controller configured"
    assert all(line.endswith(" unchanged") or line == quirk for line in again), again
    assert stored_versions(kube, built) == before


def test_kubectl_get_stagerollouts_prints_the_crd_printer_columns(
    kube: KubeEmulator, kubeconfig: Path
) -> None:
    apply_base(kubeconfig)
    done = run(kubeconfig, "apply", "--validate=false", "-f", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    name, namespace = example["metadata"]["name"], example["metadata"]["namespace"]
    api = KubeApi(kube.api_client(ADMIN))
    rollout = api.get(ROLLOUTS, namespace, name)
    assert rollout is not None
    status = {"step": "3@25", "state": "soaking", "enforcementPercent": 25}
    api.replace_status(ROLLOUTS, namespace, name, {**rollout, "status": status})

    listed = run(kubeconfig, "get", "stagerollouts", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "STEP", "STATE", "PERCENT", "AGE"]
    assert row.split()[:4] == [name, "3@25", "soaking", "25"]
    assert row.split()[4].endswith("s")  # an age such as 0s, not a timestamp

    everywhere = run(kubeconfig, "get", "sro", "-A")
    assert everywhere.returncode == 0, everywhere.stderr
    assert everywhere.stdout.splitlines()[1].split()[:2] == [namespace, name]
    fresh = run(kubeconfig, "get", "stagerollouts", "-n", "default")
    assert fresh.stdout == "" and "No resources found" in fresh.stderr


def get_raw(kube: KubeEmulator, path: str, accept: str) -> tuple[str, dict[str, Any]]:
    request = urllib.request.Request(
        kube.url + path, headers={"Accept": accept, "Authorization": f"Bearer {ADMIN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.headers["Content-Type"], json.loads(answer.read())


def test_a_table_is_given_only_to_a_client_that_asks_for_the_v1_table(
    kube: KubeEmulator, kubeconfig: Path
) -> None:
    apply_base(kubeconfig)
    path = "/apis/stage.rollout.dev/v1alpha1/stagerollouts"
    plain_type, plain = get_raw(kube, path, "application/json")
    assert plain_type == "application/json" and plain["kind"] == "StageRolloutList"
    # v1beta1 Tables are not served: the next acceptable type, plain JSON, is the answer.
    beta = "application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json"
    assert get_raw(kube, path, beta)[1]["kind"] == "StageRolloutList"
    table_type, table = get_raw(kube, path, "application/json;as=Table;v=v1;g=meta.k8s.io")
    assert table_type == TABLE_CONTENT_TYPE and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Step",
        "State",
        "Percent",
        "Age",
        "Phase",
        "Blocked By",
    ]


@pytest.mark.parametrize(
    ("seconds", "age"),
    [
        (0, "0s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 300, "3h5m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 7200, "3d2h"),
        (400 * 86400, "400d"),
        (-5, "<invalid>"),
    ],
)
def test_ages_read_as_kubectl_prints_them(seconds: float, age: str) -> None:
    assert human_duration(seconds) == age
