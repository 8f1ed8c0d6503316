"""A rollout's plan reference is a bundled name or an inline plan, never a path.

ARCHITECTURE, the trust boundary: a namespace owner may touch what their service
account may touch, with "no paths on the operator's disk". A plan name is written
by a namespace user, so a path given as one must not be read (and quoted back in
an error) from the operator's file system.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.catalog import NotFound, load_plan_source
from controller.kube.resources import PlanSource
from phases.documents import DocumentError


def test_a_bundled_plan_is_found_by_name() -> None:
    plan = load_plan_source(PlanSource(name="stage-validation-v3"), where="spec.plan")
    assert plan.name == "stage-validation-v3"


@pytest.mark.parametrize("name", ["/etc/hostname", "../../etc/passwd", "plan.yaml"])
def test_a_path_given_as_a_plan_name_is_not_read(name: str, tmp_path: Path) -> None:
    secret = tmp_path / "plan.yaml"
    secret.write_text("token: s3cret-value\n")
    reference = str(secret) if name == "plan.yaml" else name
    with pytest.raises(NotFound) as raised:
        load_plan_source(PlanSource(name=reference), where="spec.plan")
    assert "no bundled plan called" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_an_inline_plan_nested_too_deep_is_a_document_error() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(2000):
        node["k"] = {}
        node = node["k"]  # type: ignore[assignment]
    with pytest.raises((DocumentError, NotFound)):
        load_plan_source(PlanSource(inline={"name": "x", "deep": deep}), where="spec.plan.inline")
