"""A rollout's plan reference is a bundled name or an inline plan, never a path.

ARCHITECTURE, the trust boundary: a namespace owner may touch what their service
account may touch, with "no paths on the operator's disk". A plan name is written
by a namespace user, so a path given as one must not be read (and quoted back in
an error) from the operator's file system.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.kube.plan_sources import PlanSources
from controller.kube.resources import PlanSource
from controller.kube.tenancy import Refused
from phases.documents import DocumentError
from phases.plan import Plan


def load_plan_source(source: PlanSource) -> Plan:
    """Bundled and inline plans need no API connection: none is given, so none is used."""
    return PlanSources().resolve(source, namespace="team-a", api=None)  # type: ignore[arg-type]


def test_a_bundled_plan_is_found_by_name() -> None:
    plan = load_plan_source(PlanSource(name="stage-validation-v3"))
    assert plan.name == "stage-validation-v3"


@pytest.mark.parametrize("name", ["/etc/hostname", "../../etc/passwd", "plan.yaml"])
def test_a_path_given_as_a_plan_name_is_not_read(name: str, tmp_path: Path) -> None:
    # The CRD and the model refuse such names already; the resolver must refuse them too.
    secret = tmp_path / "plan.yaml"
    secret.write_text("token: s3cret-value\n")
    reference = str(secret) if name == "plan.yaml" else name
    with pytest.raises(Refused) as raised:
        load_plan_source(
            PlanSource.model_construct(name=reference, inline=None, config_map_ref=None)
        )
    assert "is not a bundled plan" in raised.value.message
    assert "s3cret" not in raised.value.message


def test_an_inline_plan_nested_too_deep_is_a_document_error() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(2000):
        node["k"] = {}
        node = node["k"]  # type: ignore[assignment]
    with pytest.raises((DocumentError, Refused)):
        load_plan_source(PlanSource(inline={"name": "x", "deep": deep}))
