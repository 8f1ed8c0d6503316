"""The four rollout flags together, as the reference app reads them at every step of the plan.

The runbook sets the flags one phase at a time; its production configuration shows
them together ("enforceWriteOnly: true, // Toggle via ENFORCE_WRITE_ONLY env" beside
"enforcementPercent: 10, // 10% → 25% → 50% → 100%"). These tests pin down what the
app does with each combination the bundled plan writes.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import httpx
import pytest

from controller.catalog import load_plan
from examples.reference_app.server import ReferenceApp
from examples.reference_app.validation import AppConfig, enforcement_applies, judge
from phases.steps import steps_of

IDS = [f"request-{n}" for n in range(2000)]
HTTP = httpx.Client(timeout=5)


def config_of(flags: dict[str, str]) -> AppConfig:
    return AppConfig.from_env(flags)


def results(config: AppConfig, operation: str) -> list[str | None]:
    return [
        judge(config, operation=operation, request_id=rid, stages=["invalid"]).result  # type: ignore[arg-type]
        for rid in IDS
    ]


@pytest.mark.parametrize("percent", [0, 10, 25, 50, 100])
@pytest.mark.parametrize("dry_run", [False, True])
def test_write_enforcement_is_never_thinned_out_by_the_percentage(
    percent: int, dry_run: bool
) -> None:
    # Runbook 2.5: "WRITE operations: `enforce` mode (reject invalid stages)"; the
    # production configuration keeps `enforceWriteOnly: true` beside the percentage.
    for mode in ("warn", "enforce"):
        config = AppConfig(
            mode=mode, enforce_write_only=True, enforcement_percent=percent, dry_run=dry_run
        )
        assert set(results(config, "write")) == {"reject"}, (mode, percent)


@pytest.mark.parametrize("percent", [10, 25, 50])
def test_enforce_with_write_enforcement_enforces_reads_at_the_percentage(percent: int) -> None:
    # Runbook phase 3: "Enforce on increasing percentage of traffic (10% → 100%)".
    config = AppConfig(mode="enforce", enforce_write_only=True, enforcement_percent=percent)
    read = results(config, "read")
    expected = ["reject" if enforcement_applies(rid, percent) else "warn" for rid in IDS]
    assert read == expected
    assert abs(read.count("reject") / len(IDS) - percent / 100) < 0.04


def test_warn_mode_never_enforces_reads_whatever_the_percentage() -> None:
    # Runbook 2.5: "READ operations: `warn` mode (allow with headers)".
    for write_only, percent in product([False, True], [0, 10, 100]):
        config = AppConfig(mode="warn", enforce_write_only=write_only, enforcement_percent=percent)
        assert set(results(config, "read")) == {"warn"}


def test_off_ignores_every_other_flag() -> None:
    for write_only, percent, dry_run in product([False, True], [0, 100], [False, True]):
        config = AppConfig(
            mode="off", enforce_write_only=write_only, enforcement_percent=percent, dry_run=dry_run
        )
        assert set(results(config, "write")) | set(results(config, "read")) == {None}


def test_each_bundled_step_enforces_what_its_phase_says() -> None:
    """Per step of the bundled plan: the share of invalid writes and reads rejected."""
    expected = {
        "2.1": (0.0, 0.0),
        "2.4": (0.0, 0.0),
        "2.5": (1.0, 0.0),  # "Enforce writes, warn reads"
        "2.7": (1.0, 0.0),  # shadow mode keeps 2.5's write enforcement
        "3@10": (1.0, 0.10),
        "3@25": (1.0, 0.25),
        "3@50": (1.0, 0.50),
        "3@100": (1.0, 1.0),
        "4": (1.0, 1.0),
    }
    seen = {}
    for step in steps_of(load_plan()).steps:
        config = config_of(dict(step.flags))
        writes, reads = results(config, "write"), results(config, "read")
        seen[step.id] = (writes.count("reject") / len(IDS), reads.count("reject") / len(IDS))
    assert seen.keys() == expected.keys()
    for step_id, (writes, reads) in expected.items():
        assert seen[step_id][0] == writes, step_id
        assert seen[step_id][1] == pytest.approx(reads, abs=0.04), step_id


def test_the_server_rejects_every_invalid_write_at_enforce_10(
    reference_app: Callable[..., ReferenceApp],
) -> None:
    app = reference_app(AppConfig(mode="enforce", enforce_write_only=True, enforcement_percent=10))
    body = {"fundId": 1, "stageDistribution": [{"stage": "invalid", "weight": 1.0}]}
    ids = IDS[:60]
    writes = [
        HTTP.post(app.url + "/api/allocations", json=body, headers={"X-Request-Id": rid})
        for rid in ids
    ]
    reads = [
        HTTP.post(app.url + "/api/monte-carlo/simulate", json=body, headers={"X-Request-Id": rid})
        for rid in ids
    ]
    assert {r.status_code for r in writes} == {400}
    assert [r.status_code == 400 for r in reads] == [enforcement_applies(rid, 10) for rid in ids]
