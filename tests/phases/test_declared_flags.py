"""Declared flags at run time, and the old plan shape that declares none.

The cache backend migration marks CACHE_BACKEND `approval_to_change`: like the
exposure percentage's rise, its change never reaches the target without a sign-off,
whatever path asks for it (a promotion, a plan edit). Going back needs nobody, as
lowering the percentage needs nobody. A plan without a `flags:` declaration is the
shape every plan had before: it gets the runbook's four flags and keeps its hash.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pytest

from controller.catalog import load_plan
from controller.kube.resources import StageRolloutStatus
from phases.actions import EventKind, SetFlags
from phases.documents import DocumentError
from phases.flag_types import LEGACY_FLAG_SET
from phases.plan import KNOWN_FLAGS, Plan
from phases.plan_checks import parse_plan
from phases.steps import steps_of
from tests.phases.rollout_driver import Driver
from tests.phases.test_safety_properties import TINY_PLAN_YAML

CACHE_TEXT = (resources.files("phases") / "plans" / "cache-backend-migration.yaml").read_text(
    encoding="utf-8"
)
CACHE = load_plan("cache-backend-migration")


def flags_set(driver: Driver) -> list[dict[str, str]]:
    assert driver.last is not None
    return [dict(a.flags) for a in driver.last.actions if isinstance(a, SetFlags)]


def test_a_plan_edit_that_changes_a_signed_flag_holds_until_it_is_approved() -> None:
    driver = Driver(CACHE)
    driver.walk_to("reads@100")
    assert driver.status.approved_flags == {"CACHE_BACKEND": "memcached"}
    edited = parse_plan(
        CACHE_TEXT.replace(
            "{id: reads@100, flags: {CACHE_READ_PERCENT: 100}}",
            "{id: reads@100, flags: {CACHE_READ_PERCENT: 100, CACHE_BACKEND: redis-cluster}}",
        ),
        source="edited",
    )
    driver.plan = edited
    driver.tick()
    assert flags_set(driver) == [], "the edit switched the backend with no sign-off"
    assert any(
        "changes CACHE_BACKEND (marked approval_to_change)" in b for b in driver.last.blockers
    ), driver.last.blockers
    driver.approve(approver="dana")
    driver.tick()
    assert [f["CACHE_BACKEND"] for f in flags_set(driver)] == ["redis-cluster"]
    assert driver.status.approved_flags == {"CACHE_BACKEND": "redis-cluster"}


def test_going_back_over_a_signed_change_needs_nobody() -> None:
    driver = Driver(CACHE)
    driver.walk_to("cutover")
    assert driver.status.approved_flags == {"CACHE_BACKEND": "redis-cluster"}
    driver.command("rollback", to="reads@100", reason="cluster incident")
    driver.tick()
    assert driver.status.step == "reads@100"
    assert [f["CACHE_BACKEND"] for f in flags_set(driver)] == ["memcached"]
    assert driver.status.approved_flags == {"CACHE_BACKEND": "memcached"}
    # Leaving again for the cutover is a new change: it waits for a new approval.
    assert driver.status.hold_for_approval


def test_an_unchecked_plan_cannot_promote_into_a_signed_change_without_approval() -> None:
    """The plan checks refuse such a plan; decide refuses it too if one slips past them."""
    import yaml

    document = yaml.safe_load(CACHE_TEXT)
    # reads@100 → cutover keeps 100 % but switches the backend; drop its approval.
    document["phases"][1]["steps"][3]["approval"] = {"required": False}
    with pytest.raises(DocumentError, match="changes CACHE_BACKEND"):
        parse_plan(yaml.safe_dump(document), source="unchecked")
    unchecked = Plan.model_validate(document)
    driver = Driver(unchecked)
    driver.walk_to("reads@100")
    driver.soak_to_gates()
    driver.tick()
    assert driver.status.step == "reads@100"
    assert any(
        "refusing to change CACHE_BACKEND (marked approval_to_change) without an approval" in b
        for b in driver.last.blockers
    ), driver.last.blockers
    driver.approve(approver="erin")
    driver.tick()
    assert driver.status.step == "cutover"


OLD_SHAPE = parse_plan(TINY_PLAN_YAML.format(description="an old plan"), source="old")


def test_an_old_shape_plan_gets_the_runbooks_four_flags() -> None:
    assert OLD_SHAPE.flags is None
    assert OLD_SHAPE.flag_set is LEGACY_FLAG_SET
    assert OLD_SHAPE.flag_set.names == KNOWN_FLAGS
    assert OLD_SHAPE.flag_set.exposure == "ENFORCEMENT_PERCENT"
    assert OLD_SHAPE.mode_flag == "STAGE_VALIDATION_MODE"
    for step in steps_of(OLD_SHAPE).steps:
        assert set(step.flags) == set(KNOWN_FLAGS)
        assert step.percent == int(step.flags["ENFORCEMENT_PERCENT"])
        assert step.mode == step.flags["STAGE_VALIDATION_MODE"]


def test_an_old_shape_plan_keeps_the_hash_it_had_before_declared_flags() -> None:
    """Approvals are bound to the plan hash: an upgrade must not orphan them."""
    dumped = OLD_SHAPE.model_dump(mode="json", by_alias=True)
    del dumped["flags"]
    del dumped["baselines"]  # also newer than the old shape, and empty here
    observed = dumped.get("observed_mode")
    if observed is not None:
        del observed["flag"]
    before = hashlib.sha256(
        json.dumps(dumped, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert OLD_SHAPE.content_hash == before


def test_an_old_shape_plan_still_refuses_a_fifth_key() -> None:
    text = TINY_PLAN_YAML.format(description="old").replace(
        "ENFORCEMENT_PERCENT: 5\n", "ENFORCEMENT_PERCENT: 5\n      CACHE_BACKEND: redis\n", 1
    )
    with pytest.raises(DocumentError) as raised:
        parse_plan(text, source="old.yaml")
    assert "unknown flag 'CACHE_BACKEND'; known flags are STAGE_VALIDATION_MODE, " in str(
        raised.value
    )


def test_a_status_written_before_declared_flags_still_reads() -> None:
    status = StageRolloutStatus.model_validate(
        {
            "planHash": "a" * 64,
            "step": "3@10",
            "state": "soaking",
            "stepEnteredAt": "2026-03-02T09:00:00Z",
            "deadlineFrom": "2026-03-02T09:00:00Z",
            "approvedPercent": 10,
        }
    )
    assert status.approved_flags == {}
    assert status.approved_percent == 10


def test_write_enforcement_off_is_refused_for_a_plan_without_that_flag() -> None:
    driver = Driver(CACHE)
    driver.walk_to("reads@25")
    driver.command("rollback", to="write-enforcement-off", reason="runbook scenario 2")
    driver.tick()
    assert driver.status.step == "reads@25"
    assert driver.last is not None
    rejected = [e.message for e in driver.last.events if e.kind is EventKind.COMMAND_REJECTED]
    assert any("this plan declares no ENFORCE_WRITE_ONLY flag" in m for m in rejected), rejected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 60_000, "nests too deeply to be read as JSON"),
        ('{"k": "' + "x" * 70_000 + '"}', "is larger than 65536 bytes as JSON"),
        ("[1, 2]", "must be a JSON object, not a list"),
        ('{"k": NaN}', "holds a value JSON cannot carry"),
    ],
)
def test_a_hostile_json_object_value_is_a_one_line_error(text: str, reason: str) -> None:
    flag = CACHE.flag_set.declared["CACHE_CLIENT_OPTIONS"]
    with pytest.raises(ValueError, match="CACHE_CLIENT_OPTIONS") as raised:
        flag.normalise("CACHE_CLIENT_OPTIONS", text)
    assert reason in str(raised.value)
    assert "\n" not in str(raised.value)


def test_observed_mode_must_name_its_flag_when_the_plan_has_no_stage_validation_mode() -> None:
    text = CACHE_TEXT.replace("  flag: CACHE_BACKEND\n", "", 1)
    with pytest.raises(DocumentError) as raised:
        parse_plan(text, source="cache.yaml")
    # The flag left out is reported where observed_mode is written.
    line = text.splitlines().index("observed_mode:") + 1
    assert (
        f"observed_mode.flag, line {line}: observed_mode reads flag 'STAGE_VALIDATION_MODE', "
        "which is not declared; name the enum flag"
    ) in str(raised.value)


def test_observed_mode_needs_a_value_for_each_value_of_its_flag() -> None:
    text = CACHE_TEXT.replace("values: {memcached: 0, redis-cluster: 1}", "values: {memcached: 0}")
    with pytest.raises(DocumentError, match="no signal value for CACHE_BACKEND=redis-cluster"):
        parse_plan(text, source="cache.yaml")


def test_without_observed_mode_or_a_mode_flag_a_step_has_no_mode() -> None:
    text = CACHE_TEXT.replace(
        "observed_mode:\n  signal: primary_backend\n  flag: CACHE_BACKEND\n"
        "  values: {memcached: 0, redis-cluster: 1}\n",
        "",
    )
    plan = parse_plan(text, source="cache.yaml")
    assert plan.mode_flag is None
    assert {step.mode for step in steps_of(plan).steps} == {""}
    assert {step.percent for step in steps_of(plan).steps} == {0, 5, 25, 50, 100}
