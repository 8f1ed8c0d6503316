"""How baselines read in `stagectl plan show`, `status` and `history`, and the spec's
`baselines` field refused when it names two sources or none."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from controller.catalog import read_plan
from controller.kube.resources import StageRolloutSpec
from controller.rendering import baseline_line, plan_table
from phases.baselines import BaselineRecord
from phases.plan_checks import parse_plan


def dumped(**fields: Any) -> dict[str, Any]:
    return BaselineRecord(signal="error_ratio", value=0.002, **fields).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )


def test_each_source_of_a_baseline_reads_as_one_line() -> None:
    captured = dumped(
        environment="staging",
        step="2.1",
        window_from="2026-11-28T00:00:00Z",
        window_to="2026-11-29T00:00:00Z",
    )
    assert baseline_line(captured) == (
        "baseline error_ratio = 0.002  captured in staging step 2.1, averaged over "
        "2026-11-28T00:00:00Z → 2026-11-29T00:00:00Z"
    )
    pinned = dumped(source="pinned", reason="staging, week 48")
    assert (
        baseline_line(pinned)
        == "baseline error_ratio = 0.002  pinned in the plan: staging, week 48"
    )
    carried = dumped(source="carried", carried_from="api-staging", environment="staging")
    assert baseline_line(carried) == (
        "baseline error_ratio = 0.002  carried from rollout api-staging in staging"
    )
    migrated = dumped(reason="recorded before baselines were records")
    assert baseline_line(migrated) == (
        "baseline error_ratio = 0.002  captured (recorded before baselines were records)"
    )


def test_plan_show_lists_the_plans_pinned_and_carried_baselines() -> None:
    data = yaml.safe_load(read_plan("stage-validation-v3")[0])
    data["baselines"] = {
        "error_ratio": {"value": 0.002, "reason": "week 48"},
        "p99_latency_seconds": {"carried": True, "reason": "from staging"},
    }
    lines = plan_table(parse_plan(yaml.safe_dump(data), source="pinned")).splitlines()
    assert lines[1:3] == [
        "baseline error_ratio: pinned at 0.002 (week 48)",
        "baseline p99_latency_seconds: carried from another rollout (from staging)",
    ]


SPEC = {"plan": {"name": "stage-validation-v3"}, "target": {"configMap": "flags"}}


@pytest.mark.parametrize(
    "baselines",
    [
        {},
        {"from": {"rollout": "a"}, "document": {"kind": "BaselineExport"}},
        {"from": {"rollout": "../other-namespace"}},
        {"from": {"rollout": "a", "namespace": "elsewhere"}},
    ],
)
def test_a_spec_naming_two_baseline_sources_none_or_another_namespace_is_refused(
    baselines: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        StageRolloutSpec.model_validate({**SPEC, "baselines": baselines})
    assert StageRolloutSpec.model_validate({**SPEC, "baselines": {"from": {"rollout": "a"}}})
