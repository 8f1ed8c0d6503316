"""The load generator: bounded runs, endpoint and stage mix, live setters, its command."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from examples.reference_app.load import LoadGenerator
from examples.reference_app.server import ENDPOINTS, ReferenceApp
from examples.reference_app.validation import AppConfig
from tests.support import REPO_ROOT

MakeApp = Callable[..., ReferenceApp]


def total(app: ReferenceApp, name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include `labels`."""
    return sum(
        s.value
        for family in app.registry.collect()
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def test_a_run_ends_by_itself_after_its_request_count(reference_app: MakeApp) -> None:
    app = reference_app()
    stats = LoadGenerator(app.url, rate=500, max_requests=120, seed=1).run()
    assert stats.sent == 120
    assert stats.answered == 120
    assert stats.transport_errors == 0 and stats.dropped == 0
    assert total(app, "http_requests_total") == 120


def test_a_run_ends_by_itself_after_its_duration(reference_app: MakeApp) -> None:
    app = reference_app()
    load = LoadGenerator(app.url, rate=50, duration=1.0, seed=2).start()
    assert load.wait(timeout=5)
    stats = load.stats()
    assert not load.running
    assert 0.9 <= stats.elapsed_seconds < 1.5
    assert 35 <= stats.sent <= 60


def test_requests_cover_all_four_endpoints_with_fresh_ids(reference_app: MakeApp) -> None:
    app = reference_app()
    LoadGenerator(app.url, rate=1000, max_requests=200, seed=3).run()
    for endpoint in ENDPOINTS:
        assert total(app, "http_requests_total", endpoint=endpoint) > 20, endpoint
    assert total(app, "stage_validation_validations_total", operation="write") > 50
    assert total(app, "stage_validation_validations_total", operation="read") > 50


def test_invalid_and_unknown_fractions_shape_what_enforcement_rejects(
    reference_app: MakeApp,
) -> None:
    app = reference_app(AppConfig(mode="enforce"))
    # App and generator share one interpreter here: 250/s leaves headroom on a busy
    # two-core machine, so every one of the 1,000 requests is sent and answered.
    stats = LoadGenerator(
        app.url, rate=250, max_requests=1000, invalid_fraction=0.2, unknown_fraction=0.1, seed=4
    ).run()
    assert stats.dropped == 0
    rejected = stats.responses.get(400, 0)
    assert 240 <= rejected <= 360
    unknown = total(app, "stage_warn_unknown_total")
    assert 60 <= unknown <= 140


def test_rate_and_fractions_change_while_running(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="enforce"))
    load = LoadGenerator(app.url, rate=20, duration=10, seed=5).start()
    try:
        time.sleep(1.0)
        slow = load.stats().sent
        assert total(app, "stage_validation_validations_total", result="reject") == 0
        load.set_rate(300)
        load.set_invalid_fraction(1.0)
        time.sleep(1.0)
        fast = load.stats().sent - slow
    finally:
        stats = load.stop()
    assert slow <= 30
    assert fast >= 150
    assert total(app, "stage_validation_validations_total", result="reject") >= 100
    assert stats.elapsed_seconds < 5


def test_setters_are_safe_to_call_from_many_threads(reference_app: MakeApp) -> None:
    app = reference_app()
    load = LoadGenerator(app.url, rate=200, duration=5, seed=6).start()

    def twiddle(n: int) -> None:
        for step in range(100):
            load.set_rate(100 + (n * step) % 200)
            load.set_fractions(invalid=(step % 5) / 10, unknown=(n % 3) / 10)

    threads = [threading.Thread(target=twiddle, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = load.stop()
    assert stats.transport_errors == 0
    assert not load.running


def test_injected_latency_is_set_on_the_app(reference_app: MakeApp) -> None:
    app = reference_app()
    load = LoadGenerator(app.url, rate=10, max_requests=1)
    assert load.set_injected_latency(0.003)["latency_seconds"] == 0.003
    assert app.faults.latency_seconds == 0.003


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 10}, "give a duration or max_requests"),
        ({"rate": -1, "duration": 1}, "rate must not be negative"),
        (
            {"rate": 1, "duration": 1, "invalid_fraction": 1.5},
            "invalid_fraction must be from 0 to 1",
        ),
        ({"rate": 1, "duration": 1, "invalid_fraction": 0.6, "unknown_fraction": 0.6}, "at most 1"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadGenerator("http://127.0.0.1:1", **options)  # type: ignore[arg-type]


def test_an_unreachable_app_counts_transport_errors_and_still_ends() -> None:
    stats = LoadGenerator("http://127.0.0.1:1", rate=100, max_requests=10, timeout=1).run()
    assert stats.transport_errors == 10
    assert stats.answered == 0


def test_the_command_runs_a_bounded_load_and_prints_totals(reference_app: MakeApp) -> None:
    app = reference_app(AppConfig(mode="enforce"))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.reference_app.load",
            f"--url={app.url}",
            "--rate=100",
            "--invalid-fraction=0.5",
            "--duration=1",
            "--latency=0.001",
            "--seed=7",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout)
    assert summary["sent"] >= 80
    assert summary["responses"]["400"] > 20
    assert app.faults.latency_seconds == 0.001
