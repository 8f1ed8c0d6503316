"""Which environment each step runs in, as the plan says.

The runbook runs phase 2.1 elsewhere than the rest: "Phase 2.1: Baseline Bootstrap
(24-48h staging)". The bundled plan says so with `environments` and a phase's
`environment`; a plan without them runs every step in one `default` environment.
"""

from __future__ import annotations

from importlib import resources

import pytest

from phases.documents import DocumentError
from phases.plan_checks import parse_plan
from phases.steps import steps_of

PLAN_TEXT = resources.files("phases").joinpath("plans", "stage-validation-v3.yaml").read_text()


def test_the_bundled_plan_runs_the_baseline_bootstrap_in_staging_and_the_rest_in_production() -> (
    None
):
    plan = parse_plan(PLAN_TEXT, source="bundled")
    where = {step.id: step.environment for step in steps_of(plan).steps}
    assert where.pop("2.1") == "staging"
    assert set(where.values()) == {"production"}


def test_a_plan_without_environments_runs_every_step_in_the_default_one() -> None:
    lines = [
        line
        for line in PLAN_TEXT.splitlines()
        if not line.strip().startswith(("environment:", "environments:"))
    ]
    plan = parse_plan("\n".join(lines), source="old")
    assert plan.environments == ["default"]
    assert {step.environment for step in steps_of(plan).steps} == {"default"}


def test_a_phase_naming_an_environment_the_plan_lacks_is_refused_with_its_path() -> None:
    text = PLAN_TEXT.replace("    environment: staging\n", "    environment: stagin\n", 1)
    with pytest.raises(DocumentError) as caught:
        parse_plan(text, source="typo.yaml")
    message = str(caught.value)
    assert "phases[0].environment" in message or "phases.0.environment" in message
    assert "'stagin' is not one of the plan's environments (staging, production)" in message


@pytest.mark.parametrize(
    ("environments", "reason"),
    [
        ("[staging, staging]", "distinct"),
        ("[Staging]", "not a valid name"),
        ("[]", "at least 1"),
    ],
)
def test_malformed_environment_lists_are_refused(environments: str, reason: str) -> None:
    text = PLAN_TEXT.replace(
        "environments: [staging, production]", f"environments: {environments}", 1
    )
    with pytest.raises(DocumentError, match=reason):
        parse_plan(text, source="bad.yaml")
