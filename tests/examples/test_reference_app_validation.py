"""The reference app's request decisions: flags, stage classification, enforcement choice."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from examples.reference_app.validation import (
    CANONICAL_STAGES,
    AppConfig,
    ConfigError,
    classify_stage,
    effective_mode,
    enforcement_applies,
    enforcement_bucket,
    judge,
)


def test_unset_flags_mean_warn_without_write_only_or_dry_run() -> None:
    assert AppConfig.from_env({}) == AppConfig(
        mode="warn", enforce_write_only=False, enforcement_percent=100, dry_run=False
    )


def test_flags_are_read_like_the_controller_writes_them() -> None:
    env = {
        "STAGE_VALIDATION_MODE": "Enforce",
        "ENFORCE_WRITE_ONLY": "TRUE",
        "ENFORCEMENT_PERCENT": " 25 ",
        "STAGE_VALIDATION_DRY_RUN": "false",
    }
    config = AppConfig.from_env(env)
    assert config == AppConfig(mode="enforce", enforce_write_only=True, enforcement_percent=25)
    assert AppConfig.from_env(config.to_env()) == config


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "STAGE_VALIDATION_MODE",
            "strict",
            "STAGE_VALIDATION_MODE must be one of off, warn, enforce",
        ),
        ("ENFORCE_WRITE_ONLY", "yes", "ENFORCE_WRITE_ONLY must be true or false"),
        ("ENFORCEMENT_PERCENT", "101", "ENFORCEMENT_PERCENT must be from 0 to 100"),
        ("ENFORCEMENT_PERCENT", "ten", "ENFORCEMENT_PERCENT must be a whole number"),
        ("STAGE_VALIDATION_DRY_RUN", "1", "STAGE_VALIDATION_DRY_RUN must be true or false"),
    ],
)
def test_a_bad_flag_is_refused_with_its_name_and_value(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        AppConfig.from_env({name: value})
    assert message in str(raised.value)
    assert repr(value) in str(raised.value)


@pytest.mark.parametrize("stage", CANONICAL_STAGES)
def test_canonical_stages_are_canonical(stage: str) -> None:
    check = classify_stage(stage)
    assert (check.status, check.canonical) == ("canonical", stage)


@pytest.mark.parametrize(
    ("stage", "meaning"),
    [
        ("late-stage", "series-c+"),
        ("growth", "series-c+"),
        ("Series A", "series-a"),
        ("series_b", "series-b"),
        ("Seed", "seed"),
        ("preseed", "pre-seed"),
        ("Series C+", "series-c+"),
    ],
)
def test_deprecated_variants_normalise_to_the_stage_they_mean(stage: str, meaning: str) -> None:
    check = classify_stage(stage)
    assert (check.status, check.canonical) == ("deprecated", meaning)


@pytest.mark.parametrize("stage", ["invalid", "series-z", "", "seed round", "5"])
def test_anything_else_is_unknown(stage: str) -> None:
    check = classify_stage(stage)
    assert (check.status, check.canonical) == ("unknown", None)


@pytest.mark.parametrize(
    ("config", "operation", "mode"),
    [
        (AppConfig(mode="off", enforce_write_only=True), "write", "off"),
        (AppConfig(mode="warn"), "write", "warn"),
        (
            AppConfig(mode="warn", enforce_write_only=True, enforcement_percent=0),
            "write",
            "enforce",
        ),
        (AppConfig(mode="warn", enforce_write_only=True), "read", "warn"),
        (AppConfig(mode="enforce", enforce_write_only=True, enforcement_percent=0), "read", "warn"),
        (AppConfig(mode="enforce", enforcement_percent=100), "read", "enforce"),
        (AppConfig(mode="enforce", enforcement_percent=0), "write", "warn"),
    ],
)
def test_effective_mode_follows_mode_write_only_and_percent(
    config: AppConfig, operation: str, mode: str
) -> None:
    assert effective_mode(config, operation, "request-1") == mode  # type: ignore[arg-type]


def test_the_same_request_id_always_gets_the_same_decision() -> None:
    ids = [uuid.uuid4().hex for _ in range(200)]
    first = [enforcement_applies(request_id, 50) for request_id in ids]
    again = [enforcement_applies(request_id, 50) for request_id in ids]
    assert first == again
    assert 0 < sum(first) < len(ids)


def test_the_bucket_is_the_sha256_of_the_request_id() -> None:
    digest = hashlib.sha256(b"request-1").digest()
    assert enforcement_bucket("request-1") == int.from_bytes(digest[:8], "big") % 100


@pytest.mark.parametrize("percent", [10, 25, 50])
def test_the_enforced_share_is_close_to_the_percentage(percent: int) -> None:
    ids = [f"req-{n}" for n in range(20_000)]
    share = sum(enforcement_applies(request_id, percent) for request_id in ids) / len(ids)
    assert abs(share - percent / 100) < 0.015


def test_zero_percent_enforces_nothing_and_a_hundred_everything() -> None:
    ids = [f"req-{n}" for n in range(5_000)]
    assert not any(enforcement_applies(request_id, 0) for request_id in ids)
    assert all(enforcement_applies(request_id, 100) for request_id in ids)


def test_a_higher_percentage_keeps_every_request_already_enforced() -> None:
    ids = [f"req-{n}" for n in range(2_000)]
    at_10 = {i for i in ids if enforcement_applies(i, 10)}
    at_25 = {i for i in ids if enforcement_applies(i, 25)}
    assert at_10 < at_25


@pytest.mark.parametrize(
    ("config", "operation", "stages", "result"),
    [
        (AppConfig(mode="off"), "write", ["junk"], None),
        (AppConfig(mode="warn"), "write", ["seed", "series-a"], "ok"),
        (AppConfig(mode="warn"), "write", ["late-stage"], "warn"),
        (AppConfig(mode="enforce"), "read", ["late-stage"], "reject"),
        (AppConfig(mode="enforce"), "read", ["series-c+"], "ok"),
        (AppConfig(mode="warn", dry_run=True), "read", ["growth"], "would_reject"),
        # Shadow mode does not lift write enforcement (phase 2.7 after 2.5).
        (AppConfig(mode="warn", enforce_write_only=True, dry_run=True), "write", ["x"], "reject"),
        (
            AppConfig(mode="warn", enforce_write_only=True, dry_run=True),
            "read",
            ["x"],
            "would_reject",
        ),
        (AppConfig(mode="warn"), "read", [], "ok"),
    ],
)
def test_judge_gives_the_runbook_outcome(
    config: AppConfig, operation: str, stages: list[str], result: str | None
) -> None:
    verdict = judge(
        config,
        operation=operation,  # type: ignore[arg-type]
        request_id="r",
        stages=stages,
    )
    assert verdict.result == result
