"""Per-endpoint modes: the runbook's `endpointMode`, as the bundled plan sets it and the app reads it.

The runbook's production configuration carries "'/api/portfolio/strategies': 'enforce',
// Phase 3" and "'/api/monte-carlo/simulate': 'warn', // Phase 4". The bundled plan
writes them as one JSON object under STAGE_VALIDATION_ENDPOINT_MODES; these tests
pin down that a request to an overridden endpoint is validated in that endpoint's
mode, through the flags of each bundled step and over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from controller.catalog import load_plan
from examples.reference_app.server import ReferenceApp
from examples.reference_app.validation import (
    ENDPOINT_MODES_ENV,
    AppConfig,
    ConfigError,
    enforcement_applies,
    judge,
)
from phases.steps import steps_of

IDS = [f"request-{n}" for n in range(2000)]
HTTP = httpx.Client(timeout=5)
SIMULATE = "/api/monte-carlo/simulate"
COMPANIES = "/api/funds/:fundId/companies"
STRATEGIES = "/api/portfolio/strategies"
INVALID = {"fundId": 1, "stageDistribution": [{"stage": "invalid", "weight": 1.0}]}


def rejected_share(config: AppConfig, operation: str, endpoint: str) -> float:
    verdicts = [
        judge(config, operation=operation, request_id=rid, stages=["invalid"], endpoint=endpoint)  # type: ignore[arg-type]
        for rid in IDS
    ]
    return sum(v.rejected for v in verdicts) / len(IDS)


def step_config(step_id: str) -> AppConfig:
    return AppConfig.from_env(dict(steps_of(load_plan()).get(step_id).flags))


def test_each_bundled_step_validates_the_overridden_endpoints_in_their_own_mode() -> None:
    """Share of invalid requests rejected per step: (simulate reads, company reads, strategy writes)."""
    expected = {
        "2.1": (0.0, 0.0, 0.0),
        "2.4": (0.0, 0.0, 0.0),
        "2.5": (0.0, 0.0, 1.0),
        "2.7": (0.0, 0.0, 1.0),
        # Phase 3: the simulation stays in warn while other reads follow the percentage.
        "3@10": (0.0, 0.10, 1.0),
        "3@25": (0.0, 0.25, 1.0),
        "3@50": (0.0, 0.50, 1.0),
        "3@100": (0.0, 1.0, 1.0),
        # Phase 4: no override left, the simulation is enforced with everything else.
        "4": (1.0, 1.0, 1.0),
    }
    for step_id, (simulate, companies, strategies) in expected.items():
        config = step_config(step_id)
        assert rejected_share(config, "read", SIMULATE) == simulate, step_id
        assert rejected_share(config, "read", COMPANIES) == pytest.approx(companies, abs=0.04)
        assert rejected_share(config, "write", STRATEGIES) == strategies, step_id


def test_an_override_is_the_whole_mode_of_its_endpoint() -> None:
    # Enforce on an endpoint while the global mode is off, and warn on a write
    # endpoint despite write enforcement: the override decides alone.
    config = AppConfig.from_env(
        {
            "STAGE_VALIDATION_MODE": "off",
            "ENFORCE_WRITE_ONLY": "true",
            ENDPOINT_MODES_ENV: json.dumps({STRATEGIES: "enforce", "/api/allocations": "warn"}),
        }
    )
    assert rejected_share(config, "write", STRATEGIES) == 1.0
    assert rejected_share(config, "write", "/api/allocations") == 0.0
    assert {
        judge(
            config, operation="write", request_id=rid, stages=["x"], endpoint="/api/allocations"
        ).result
        for rid in IDS[:50]
    } == {"warn"}
    # Endpoints without an override follow the global flags: off validates nothing.
    assert (
        judge(config, operation="read", request_id="r", stages=["x"], endpoint=COMPANIES).result
        is None
    )


def test_dry_run_shadows_an_endpoint_kept_in_warn() -> None:
    config = AppConfig.from_env(
        {"STAGE_VALIDATION_MODE": "enforce", "STAGE_VALIDATION_DRY_RUN": "true",
         ENDPOINT_MODES_ENV: json.dumps({SIMULATE: "warn"})}
    )  # fmt: skip
    results = {
        judge(config, operation="read", request_id=rid, stages=["x"], endpoint=SIMULATE).result
        for rid in IDS[:50]
    }
    assert results == {"would_reject"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "STAGE_VALIDATION_ENDPOINT_MODES is not valid JSON"),
        ('["/api/allocations"]', "must be a JSON object of endpoint to mode"),
        ('{"/api/allocations": "strict"}', "/api/allocations must be one of off, warn, enforce"),
        ('{"/api/allocations": 2}', "/api/allocations must be a mode, not 2"),
    ],
)
def test_a_bad_override_is_refused_naming_the_variable(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match="STAGE_VALIDATION_ENDPOINT_MODES") as raised:
        AppConfig.from_env({ENDPOINT_MODES_ENV: text})
    assert reason in str(raised.value)


def test_the_overrides_survive_the_environment_round_trip() -> None:
    config = step_config("3@25")
    assert config.endpoint_mode(SIMULATE) == "warn"
    assert config.endpoint_mode(STRATEGIES) == "enforce"
    assert config.endpoint_mode(COMPANIES) is None
    assert AppConfig.from_env(config.to_env()) == config
    # The app writes the same canonical JSON the controller puts in the ConfigMap.
    flags = steps_of(load_plan()).get("3@25").flags
    assert config.to_env()[ENDPOINT_MODES_ENV] == flags[ENDPOINT_MODES_ENV]


def test_the_server_validates_an_overridden_endpoint_in_its_mode(
    reference_app: Callable[..., ReferenceApp],
) -> None:
    app = reference_app(step_config("3@50"))
    ids = IDS[:60]
    simulate = [
        HTTP.post(app.url + SIMULATE, json=INVALID, headers={"X-Request-Id": rid}) for rid in ids
    ]
    companies = [
        HTTP.get(
            app.url + "/api/funds/7/companies",
            params={"stage": "invalid"},
            headers={"X-Request-Id": rid},
        )
        for rid in ids
    ]
    assert {r.status_code for r in simulate} == {200}
    assert {r.json()["mode"] for r in simulate} == {"warn"}
    assert [r.status_code == 400 for r in companies] == [enforcement_applies(r, 50) for r in ids]
    # Phase 4's flags through the admin endpoint, as a JSON object: the simulation is enforced.
    changed = HTTP.post(app.url + "/admin/config", json={ENDPOINT_MODES_ENV: {}})
    assert changed.status_code == 200
    assert changed.json()[ENDPOINT_MODES_ENV] == "{}"
    answer = HTTP.post(app.url + SIMULATE, json=INVALID, headers={"X-Request-Id": ids[0]})
    assert answer.status_code == (400 if enforcement_applies(ids[0], 50) else 200)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"/api/nowhere": "enforce"}, "'/api/nowhere', which is not an endpoint of the app"),
        ({SIMULATE: "strict"}, "must be one of off, warn, enforce"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_the_server_refuses_a_bad_override_and_keeps_its_flags(
    reference_app: Callable[..., ReferenceApp], overrides: object, reason: str
) -> None:
    app = reference_app(step_config("3@10"))
    before = app.config
    refused = HTTP.post(app.url + "/admin/config", json={ENDPOINT_MODES_ENV: overrides})
    assert refused.status_code == 400
    assert reason in refused.text
    assert app.config == before


def test_a_deeply_nested_override_is_refused_not_a_crash() -> None:
    with pytest.raises(ConfigError, match="is not valid JSON"):
        AppConfig.from_env({ENDPOINT_MODES_ENV: "[" * 100_000})
