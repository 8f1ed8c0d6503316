"""History for Prometheus: OpenMetrics text, and days of backfilled data queried at past times."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.support import RULES_DIR
from tests.support.backfill import Series, counter_samples, render_openmetrics
from tests.support.prometheus import PrometheusServer

MakeServer = Callable[..., PrometheusServer]

DAY = 86_400.0
HOUR = 3_600.0
ERROR_RATIO = (
    "sum(rate(stage_validation_errors_total[5m]))"
    " / sum(rate(stage_validation_validations_total[5m]))"
)


def test_counters_are_written_as_total_samples_of_a_counter_family() -> None:
    text = render_openmetrics(
        [
            Series(
                "requests", {"job": "api", "path": '/a"b\\c'}, [(10.0, 1.0), (70.0, 3.0)], "counter"
            ),
            Series("requests_total", {"job": "web"}, [(10.0, 5.0)], "counter"),
            Series("mode", {}, [(10.5, float("nan"))]),
        ]
    )
    assert text.splitlines() == [
        "# TYPE requests counter",
        'requests_total{job="api",path="/a\\"b\\\\c"} 1.0 10.000',
        'requests_total{job="api",path="/a\\"b\\\\c"} 3.0 70.000',
        'requests_total{job="web"} 5.0 10.000',
        "# TYPE mode gauge",
        "mode NaN 10.500",
        "# EOF",
    ]


def test_histogram_series_share_their_family() -> None:
    text = render_openmetrics(
        [
            Series("latency_seconds_bucket", {"le": "0.001"}, [(1.0, 2.0)], "histogram"),
            Series("latency_seconds_count", {}, [(1.0, 2.0)], "histogram"),
        ]
    )
    assert text.count("# TYPE latency_seconds histogram") == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Series("x", {}, [(2.0, 1.0), (1.0, 2.0)]), "strictly increasing"),
        (lambda: Series("bad name", {}, []), "not a valid metric name"),
        (lambda: Series("x_bucket", {}, [], "histogram"), "needs an le label"),
        (lambda: Series("x", {"__name__": "y"}, []), "not a valid label name"),
    ],
)
def test_malformed_series_are_refused(make: Callable[[], Series], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_counter_samples_grow_at_the_given_rate() -> None:
    samples = counter_samples(
        start=0, end=180, step=60, per_second=lambda t: 1.0 if t <= 60 else 2.0
    )
    assert samples == [(0, 0.0), (60, 60.0), (120, 180.0), (180, 300.0)]


def three_days_of_history(now: float) -> list[Series]:
    """10 validations/s for 3 days; 1% of them fail on day one, 3% on days two and three."""
    start = now - 3 * DAY

    def errors_per_second(t: float) -> float:
        return 0.1 if t < start + DAY else 0.3

    labels = {"job": "api", "instance": "a", "endpoint": "/api/allocations"}
    common = {"start": start, "end": now - 10 * 60, "step": 60.0}
    return [
        Series(
            "stage_validation_validations_total",
            {**labels, "operation": "write", "mode": "warn", "result": "ok"},
            counter_samples(**common, per_second=10.0),
            "counter",
        ),
        Series(
            "stage_validation_errors_total",
            {**labels, "reason": "internal"},
            counter_samples(**common, per_second=errors_per_second),
            "counter",
        ),
        Series(
            "stage_validation_mode",
            {"job": "api", "instance": "a", "mode": "warn"},
            [(t, 1.0) for t, _ in counter_samples(**common, per_second=0)],
        ),
    ]


@pytest.mark.prometheus
def test_three_days_of_backfilled_history_are_queryable_at_past_times(
    prometheus_server: MakeServer,
) -> None:
    now = float(int(time.time() // 60 * 60))
    start = now - 3 * DAY
    server = prometheus_server(history=three_days_of_history(now))

    result = server.query_range(ERROR_RATIO, start=start + HOUR, end=now - HOUR, step=HOUR)
    assert len(result) == 1
    values = {float(t): float(v) for t, v in result[0]["values"]}
    assert len(values) == 71  # every hour from start + 1h to now - 1h, both included
    for at, ratio in values.items():
        expected = 0.01 if at <= start + DAY else 0.03
        # The hour straddling the change of pace mixes both days.
        if abs(at - (start + DAY)) > 600:
            assert ratio == pytest.approx(expected, rel=1e-6), at
    assert server.value('stage_validation_mode{mode="warn"}', at=start + 2.5 * DAY) == 1
    assert server.value('stage_validation_mode{mode="warn"}', at=start - HOUR) is None


@pytest.mark.prometheus
def test_recording_rules_and_baselines_backfill_over_the_history(
    prometheus_server: MakeServer,
) -> None:
    now = float(int(time.time() // 60 * 60))
    start = now - 3 * DAY
    server = prometheus_server(history=three_days_of_history(now))

    signal = "job:stage_validation_error_ratio:rate5m"
    baseline = "job:stage_validation_error_ratio:baseline24h"
    signal_blocks = server.backfill_rules(
        [RULES_DIR / "stage-validation-recording.rules.yml"],
        start=start,
        end=now,
        eval_interval="5m",
    )
    assert signal_blocks
    assert server.value(signal, at=start + 12 * HOUR) == pytest.approx(0.01)
    assert server.value(signal, at=start + 60 * HOUR) == pytest.approx(0.03)

    # The baselines read the signal, so they come in a second pass.
    server.backfill_rules(
        [RULES_DIR / "stage-validation-baselines.rules.yml"],
        start=start,
        end=now,
        eval_interval="5m",
    )
    assert server.value(baseline, at=start + 12 * HOUR) is None
    # Half a day at 1% and half a day at 3% in the window.
    assert server.value(baseline, at=start + 36 * HOUR) == pytest.approx(0.02, abs=0.0005)
    assert server.value(baseline, at=start + 60 * HOUR) == pytest.approx(0.03)
