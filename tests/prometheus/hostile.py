"""What the hostile-answer tests share: a gate and a trigger judged as `observe` does.

The gate `vector(0.5) < 0.001` fails on Prometheus's real answer and the trigger
`vector(0) > 0.05` does not fire, so a garbage answer that made the gate pass or
the trigger fire shows as exactly that.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.catalog import load_plan
from controller.prometheus.source import PrometheusSettings, PrometheusSource
from phases.needs import AlertReading, Needs, WindowCheck, judge
from phases.plan import SignalGate, SignalTrigger
from phases.status import initial_status
from phases.verdicts import Verdict

PLAN = load_plan()
STATUS = initial_status(PLAN.content_hash, "3@10", datetime(2026, 1, 5, tzinfo=UTC))
RESOLUTION = timedelta(seconds=15)
WINDOW = timedelta(minutes=2)
FAILING_QUERY = "vector(0.5)"
QUIET_QUERY = "vector(0)"
GATE = SignalGate(name="g", signal="error_ratio", comparator="<", threshold=0.001, window=WINDOW)
TRIGGER = SignalTrigger.model_validate(
    {"name": "t", "signal": "error_ratio", "comparator": ">", "threshold": 0.05, "for": "2m"}
)


def now() -> datetime:
    return datetime.fromtimestamp(int(datetime.now(UTC).timestamp()), UTC)


def source_for(url: str, **settings: Any) -> PrometheusSource:
    return PrometheusSource(PrometheusSettings(url=url, **settings), RESOLUTION)


def gate_verdict(source: PrometheusSource, at: datetime, query: str = FAILING_QUERY) -> Verdict:
    check = WindowCheck("gate", "g", "error_ratio", query, WINDOW, GATE)
    return _judged(source, check, at)


def trigger_verdict(source: PrometheusSource, at: datetime, query: str = QUIET_QUERY) -> Verdict:
    check = WindowCheck("trigger", "t", "error_ratio", query, WINDOW, TRIGGER)
    return _judged(source, check, at)


def _judged(source: PrometheusSource, check: WindowCheck, at: datetime) -> Verdict:
    summary = source.summarize(check.signal, check.query, check.window, at)
    gates, triggers = judge(
        PLAN,
        STATUS,
        Needs(windows=(check,)),
        {(check.query, check.window): summary},
        AlertReading(frozenset()),
    )
    return {**gates, **triggers}[check.key]
