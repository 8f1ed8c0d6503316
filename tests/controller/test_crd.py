"""The StageRollout CRD: generated from the models, valid for Kubernetes, in step with the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from controller.kube.crd import CRDS, render_crd, stagerollout_crd
from controller.kube.resources import StageRolloutSpec
from tests.support.kubectl import kustomize

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "manifests" / "crd"
EXAMPLE = REPO / "manifests" / "examples" / "stagerollout.yaml"


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("name", sorted(CRDS))
def test_each_crd_file_matches_the_models(name: str) -> None:
    assert (CRD_DIR / name).read_text(encoding="utf-8") == render_crd(name), (
        f"manifests/crd/{name} is stale: run `stagectl crd generate -d manifests/crd`"
    )


@pytest.mark.parametrize("name", sorted(CRDS))
def test_each_crd_is_a_valid_kubernetes_object(name: str) -> None:
    kubernetes_validate.validate(
        yaml.safe_load((CRD_DIR / name).read_text(encoding="utf-8")), "1.30", strict=True
    )


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("name", sorted(CRDS))
def test_every_schema_is_structural(name: str) -> None:
    for path, node in walk(schema_of(CRDS[name]())):
        assert "$ref" not in node and "$defs" not in node, path
        assert "anyOf" not in node and "oneOf" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), (
            f"{path} has no type"
        )
        if "properties" in node:
            assert "additionalProperties" not in node, path


def test_printer_columns_show_step_state_percent_and_age() -> None:
    columns = stagerollout_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == [
        "Step",
        "State",
        "Percent",
        "Age",
        "Phase",
        "Blocked By",
    ]
    assert [c.get("priority", 0) for c in columns] == [0, 0, 0, 0, 1, 1]  # the last two: -o wide
    status = schema_of(stagerollout_crd())["properties"]["status"]["properties"]
    for column in [*columns[:3], *columns[4:]]:
        assert column["jsonPath"].removeprefix(".status.").removesuffix("[0]") in status


def test_the_example_rollout_satisfies_the_crd_schema_and_the_models() -> None:
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    jsonschema.validate(example, schema_of(stagerollout_crd()))
    spec = StageRolloutSpec.model_validate(example["spec"])
    assert spec.target is not None and spec.target.deployments == ["api-server"]


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [
        (
            {"plan": {}, "target": {"configMap": "f"}},
            "exactly one of plan.name, plan.inline or plan.configMapRef",
        ),
        ({"plan": {"name": "p"}, "target": {}}, "configMap"),
        ({"plan": {"name": "p"}, "target": {"configMap": "f"}, "interval": 30}, "needs a unit"),
        ({"plan": {"name": "p"}, "target": {"configMap": "f"}, "surprise": 1}, "surprise"),
    ],
)
def test_an_invalid_spec_is_rejected_naming_the_field(spec: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase):
        StageRolloutSpec.model_validate(spec)


def test_the_crd_directory_is_a_kustomization_of_exactly_the_generated_crds() -> None:
    """manifests/base includes ../crd as a directory; every *.yaml there is loaded as a CRD."""
    kustomization = yaml.safe_load((CRD_DIR / "kustomization.yml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == sorted(CRDS)
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(CRDS)
    built = {o["metadata"]["name"]: o for o in kustomize(CRD_DIR)}
    for name, make in CRDS.items():
        assert built[make()["metadata"]["name"]]["spec"] == make()["spec"], name


def test_the_environments_example_satisfies_the_crd_schema_and_the_models() -> None:
    path = REPO / "manifests" / "examples" / "stagerollout-environments.yaml"
    example = yaml.safe_load(path.read_text(encoding="utf-8"))
    jsonschema.validate(example, schema_of(stagerollout_crd()))
    spec = StageRolloutSpec.model_validate(example["spec"])
    assert spec.target is None and set(spec.environments) == {"staging", "production"}
    production = spec.environments["production"]
    assert production.kubeconfig_secret is not None
    assert production.kubeconfig_secret.key == "kubeconfig"


def test_a_spec_without_any_target_is_refused_by_the_models() -> None:
    with pytest.raises(ValidationError, match=r"give spec\.target, or spec\.environments"):
        StageRolloutSpec.model_validate({"plan": {"name": "p"}})
    with pytest.raises(ValidationError, match="is not a lowercase name"):
        StageRolloutSpec.model_validate(
            {"plan": {"name": "p"}, "environments": {"../x": {"target": {"configMap": "f"}}}}
        )
