"""Benchmark: from a trigger's evidence being complete to the previous step's flags in the ConfigMap.

A real Prometheus scrapes, every second, a tiny exporter whose error ratio the
benchmark sets. The operator runs against the API-server emulator over one
rollout of a two-step plan whose second step has the trigger `errors > 0.05 for
20s` (resolution 5 s). Each round brings a fresh rollout to that step, sets the
pass interval (30 s or 5 m, at a random phase), turns the error ratio bad and
waits until the ConfigMap holds the first step's flags again.

"Evidence complete" is found afterwards, from Prometheus itself: the first
moment at which the trigger's window, read as the operator reads it, would be
all bad (a search to 10 ms). The wake-up margin is 1 s, the exporter's scrape
interval. Target (issue #13): within one scrape interval plus one second.
The last line runs the 30 s case with wake-ups off, for the ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from apscheduler.triggers.interval import IntervalTrigger  # noqa: E402

from controller.kube.api import KubeApi  # noqa: E402
from controller.operator import Operator, OperatorSettings  # noqa: E402
from controller.prometheus.source import PrometheusSettings, PrometheusSource  # noqa: E402
from phases.plan import SignalTrigger  # noqa: E402
from phases.plan_checks import parse_plan  # noqa: E402
from phases.verdicts import Outcome, judge_trigger  # noqa: E402
from tests.kube.operator_world import OPERATOR_USER, World, make_world  # noqa: E402
from tests.support.kube_emulator import KubeEmulator  # noqa: E402
from tests.support.prometheus import PrometheusBinaries, PrometheusServer  # noqa: E402

HEALTHY, BAD = 0.001, 0.2
SCRAPE = 1.0
MARGIN = timedelta(seconds=SCRAPE)
HEALTHY_SECONDS = 27.0
FLAGS = {"ENFORCE_WRITE_ONLY": False, "ENFORCEMENT_PERCENT": 0, "STAGE_VALIDATION_DRY_RUN": False}
PLAN: dict[str, Any] = {
    "name": "rollback-bench",
    "version": "1",
    "evaluation": {"resolution": "5s", "gap_tolerance": "10s"},
    "signals": {"errors": {"query": "bench_error_ratio"}},
    "phases": [
        {"id": "a", "name": "A", "flags": {"STAGE_VALIDATION_MODE": "warn", **FLAGS}},
        {
            "id": "b",
            "name": "B",
            "flags": {"STAGE_VALIDATION_MODE": "enforce", **FLAGS},
            "min_duration": "1h",
            "triggers": [
                {
                    "name": "errors-high",
                    "signal": "errors",
                    "comparator": ">",
                    "threshold": 0.05,
                    "for": "20s",
                }
            ],
        },
    ],
}


class Exporter:
    """`bench_error_ratio` on /metrics, set by the benchmark."""

    def __init__(self) -> None:
        self.value = HEALTHY
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"bench_error_ratio {exporter.value}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


class CountingOperator(Operator):
    """Counts the ticks of single rollouts (wake-ups and watch events)."""

    single_ticks = 0

    def tick_now(self, namespace: str, name: str) -> Any:
        self.single_ticks += 1
        return super().tick_now(namespace, name)


def evidence_complete(source: PrometheusSource, after: float, before: float) -> float:
    """The first moment (Unix seconds, to 10 ms) at which the trigger's window is all bad."""
    trigger = parse_plan(yaml.safe_dump(PLAN), source="bench").phases[1].triggers[0]
    assert isinstance(trigger, SignalTrigger)

    def failing(at: float) -> bool:
        moment = datetime.fromtimestamp(at, UTC)
        summary = source.summarize("errors", "bench_error_ratio", trigger.sustained_for, moment)
        return judge_trigger(trigger, summary, {}, timedelta(seconds=10)).outcome is Outcome.FAIL

    low, high = after, before
    assert failing(high), "the trigger never failed before the rollback"
    while high - low > 0.01:
        middle = (low + high) / 2
        low, high = (low, middle) if failing(middle) else (middle, high)
    return high


def one_round(
    prometheus: PrometheusServer, exporter: Exporter, pass_seconds: int, wakeups: bool
) -> tuple[float, int, float]:
    exporter.value = HEALTHY
    healthy_since = time.time()
    with KubeEmulator(rollout_delay=0.05) as emulator:
        world: World = make_world(emulator, plan={"inline": PLAN})
        operator = CountingOperator(
            KubeApi(emulator.api_client(user=OPERATOR_USER)),
            OperatorSettings(
                namespace=world.namespace,
                prometheus_url=prometheus.url,
                interval=timedelta(seconds=1),
                granularity=timedelta(seconds=1),
                metrics_port=0,
                wakeups=wakeups,
                wakeup_margin=MARGIN,
            ),
        )
        runner = threading.Thread(target=operator.run, daemon=True)
        runner.start()
        try:
            deadline = time.monotonic() + 60
            while not (
                world.status().get("step") == "b" and world.status().get("state") == "soaking"
            ):
                assert time.monotonic() < deadline, world.status().get("blockers")
                time.sleep(0.05)
            # A random phase of the pass: the next one comes anywhere within the interval.
            phase = random.uniform(0, pass_seconds)
            start = datetime.now(UTC) - timedelta(seconds=phase)
            operator.scheduler.reschedule_job(
                "tick-all", trigger=IntervalTrigger(seconds=pass_seconds, start_date=start)
            )
            # Healthy for longer than the trigger's window and a sample, so that the last
            # round's bad samples cannot complete this round's evidence.
            time.sleep(max(0.5, healthy_since + HEALTHY_SECONDS - time.time()))
            flipped = time.time()
            ticks_before = operator.single_ticks
            exporter.value = BAD
            while world.flags().get("STAGE_VALIDATION_MODE") != "warn":
                assert time.time() - flipped < pass_seconds + 60, "no rollback"
                time.sleep(0.005)
            landed = time.time()
            ticks = operator.single_ticks - ticks_before
        finally:
            operator.stop.set()
            runner.join(timeout=10)
    source = PrometheusSource(PrometheusSettings(url=prometheus.url), timedelta(seconds=5))
    try:
        complete = evidence_complete(source, flipped, landed)
    finally:
        source.close()
    return landed - complete, ticks, complete - flipped


def report(label: str, results: list[tuple[float, int, float]]) -> None:
    latencies = [latency for latency, _, _ in results]
    ticks = [count for _, count, _ in results]
    complete = [after for _, _, after in results]
    print(
        f"{label}, {len(results)} rounds: median {statistics.median(latencies):.2f} s, "
        f"min {min(latencies):.2f} s, max {max(latencies):.2f} s; single-rollout ticks per "
        f"round median {statistics.median(ticks):g}; evidence complete "
        f"{min(complete):.1f}-{max(complete):.1f} s after the flip (target <= {SCRAPE + 1:g} s: "
        f"{'met' if max(latencies) <= SCRAPE + 1 else 'NOT met'})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    random.seed(13)
    with tempfile.TemporaryDirectory() as work:
        exporter = Exporter()
        with PrometheusServer(
            Path(work),
            binaries=PrometheusBinaries.locate(),
            scrape_targets={"bench": [f"127.0.0.1:{exporter.port}"]},
            scrape_interval=f"{SCRAPE:g}s",
        ) as prometheus:
            prometheus.wait_for("bench_error_ratio", timeout=30)
            for pass_seconds, wakeups, label in (
                (30, True, "30 s pass interval"),
                (300, True, "5 m pass interval"),
                (30, False, "30 s pass interval, wake-ups off"),
            ):
                report(
                    f"evidence complete -> previous flags, {label}",
                    [
                        one_round(prometheus, exporter, pass_seconds, wakeups)
                        for _ in range(args.rounds)
                    ],
                )
    print(
        f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
    )


if __name__ == "__main__":
    main()
