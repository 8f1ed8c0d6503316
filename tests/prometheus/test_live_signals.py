"""The reference app under load, scraped by a real Prometheus: the signals move as injected.

Prometheus 2.42 hands static targets to its scrape loops on a 5-second cadence, so
the first scrape of each test comes about 5 seconds after the server starts.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from examples.reference_app.load import LoadGenerator
from examples.reference_app.server import Faults, ReferenceApp
from examples.reference_app.validation import AppConfig
from tests.support import RULES_DIR
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.prometheus

MakeServer = Callable[..., PrometheusServer]
MakeApp = Callable[..., ReferenceApp]

ERROR_RATIO = (
    "sum(rate(stage_validation_errors_total[5m]))"
    " / sum(rate(stage_validation_validations_total[5m]))"
)
P99 = "histogram_quantile(0.99, sum by (le) (rate(stage_validation_duration_seconds_bucket[1m])))"
# The controller's observed_mode signal: 0 off, 1 warn, 2 enforce.
OBSERVED_MODE = (
    '2 * stage_validation_mode{mode="enforce"} + ignoring(mode) stage_validation_mode{mode="warn"}'
)


def scraping(prometheus_server: MakeServer, app: ReferenceApp) -> PrometheusServer:
    return prometheus_server(
        scrape_targets={"stage-app": [f"127.0.0.1:{app.port}"]},
        rule_files=[RULES_DIR / "stage-validation-recording.rules.yml"],
    )


def test_the_scraped_error_ratio_reflects_the_injected_fault_fraction(
    prometheus_server: MakeServer, reference_app: MakeApp
) -> None:
    app = reference_app(AppConfig(mode="warn"), faults=Faults(internal_error_fraction=0.2), seed=11)
    server = scraping(prometheus_server, app)
    with LoadGenerator(
        app.url, rate=200, invalid_fraction=0.05, unknown_fraction=0.05, duration=60, seed=12
    ) as load:
        server.wait_for("sum(stage_validation_validations_total)", lambda n: n > 0, timeout=20)
        server.wait_for('count_over_time(up{job="stage-app"}[1m])', lambda n: n >= 6, timeout=20)
        ratio = server.value(ERROR_RATIO)
        recorded = server.wait_for('job:stage_validation_error_ratio:rate5m{job="stage-app"}')
        unknown = server.value('job:stage_warn_unknown_ratio:rate5m{job="stage-app"}')
        would_reject = server.value(
            'job:stage_validation_would_reject_ratio:rate5m{job="stage-app"}'
        )
        stats = load.stats()
    # About 1200 requests between the first and the last scrape: 4 standard deviations.
    assert ratio == pytest.approx(0.2, abs=0.05)
    assert recorded == pytest.approx(ratio, abs=0.02)
    assert unknown == pytest.approx(0.05, abs=0.025)
    assert would_reject == 0
    assert stats.transport_errors == 0
    assert stats.responses.get(500, 0) > 0


def test_flag_latency_and_mode_fetch_changes_reach_prometheus(
    prometheus_server: MakeServer, reference_app: MakeApp
) -> None:
    app = reference_app(AppConfig(mode="warn"))
    server = scraping(prometheus_server, app)
    assert server.wait_for(OBSERVED_MODE, timeout=20) == 1

    app.set_config(AppConfig(mode="enforce", enforcement_percent=25))
    server.wait_for(OBSERVED_MODE, lambda mode: mode == 2, timeout=10)
    assert server.wait_for("stage_validation_enforcement_percent", lambda p: p == 25) == 25

    with LoadGenerator(app.url, rate=100, duration=60, seed=13) as load:
        assert server.wait_for(P99, lambda p99: p99 < 0.001, timeout=15) < 0.001
        load.set_injected_latency(0.004)
        # 4 ms lands in the 2.5-5 ms bucket; interpolation may read up to the next bound.
        assert server.wait_for(P99, lambda p99: p99 > 0.003, timeout=15) < 0.0075

        app.update_faults(mode_fetch_failing=True)
        server.wait_for(
            "sum(increase(stage_validation_mode_fetch_errors_total[10s]))",
            lambda n: n > 0,
            timeout=10,
        )
