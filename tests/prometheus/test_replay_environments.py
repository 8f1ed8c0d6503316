"""`stagectl replay` with a Prometheus per environment: staging's history judges the
staging step, production's the production steps ("Compute baseline from staging metrics";
later phases are judged where they run)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli.main import app
from tests.kube.test_environments import ENV_PLAN
from tests.support.backfill import Series
from tests.support.prometheus import PrometheusServer

START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def history(prometheus: Callable[..., PrometheusServer], value: float) -> PrometheusServer:
    first = (START - timedelta(hours=1)).timestamp()
    samples = [(first + 15 * n, value) for n in range(4 * 60 * 5)]
    return prometheus(history=[Series("app_error_ratio", {"job": "app"}, samples)])


def replay(plan: Path, *prometheus: str) -> tuple[int, str]:
    arguments = ["replay", "--plan", str(plan), "--tick", "1m", "-o", "json"]
    arguments += ["--start", START.isoformat(), "--end", (START + timedelta(hours=3)).isoformat()]
    for value in prometheus:
        arguments += ["--prometheus", value]
    result = CliRunner().invoke(app, arguments)
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "two-places.yaml"
    path.write_text(ENV_PLAN, encoding="utf-8")
    return path


def test_each_environment_is_replayed_against_its_own_prometheus(
    prometheus_server: Callable[..., PrometheusServer], plan: Path
) -> None:
    staging, production = history(prometheus_server, 0.001), history(prometheus_server, 0.2)
    code, out = replay(plan, f"staging={staging.url}", f"production={production.url}")
    assert code == 0, out
    document = json.loads(out)
    assert document["prometheus"] == {"staging": staging.url, "production": production.url}
    moves = [(t["trigger"], t["from"], t["to"], t["environment"]) for t in document["transitions"]]
    assert ("promote", "warm", "e@50", "production") in moves
    assert ("rollback", "e@50", "warm", "staging") in moves

    # The control: staging's clean history for both, and production is never rolled back.
    code, out = replay(plan, staging.url)
    assert code == 0, out
    assert all(t["trigger"] != "rollback" for t in json.loads(out)["transitions"])


def test_one_url_and_overrides_combine_and_unknown_environments_are_refused(
    prometheus_server: Callable[..., PrometheusServer], plan: Path
) -> None:
    staging, production = history(prometheus_server, 0.001), history(prometheus_server, 0.2)
    code, out = replay(plan, staging.url, f"production={production.url}")
    assert code == 0, out
    assert any(t["trigger"] == "rollback" for t in json.loads(out)["transitions"])

    code, out = replay(plan, f"qa={staging.url}")
    assert code != 0 and "plan two-places has no environment qa" in out
    code, out = replay(plan, f"staging={staging.url}")
    assert code != 0 and "no URL for environment production" in out
