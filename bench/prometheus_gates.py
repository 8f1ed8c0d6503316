"""Benchmark: one tick of 1,000 gate evaluations against a real Prometheus.

A real ``prometheus`` (Debian's package) is started on loopback with 49 hours of
backfilled history for 10 apps (the reference app's series, one ``job`` each). 100
rollouts, 10 per app, each need the phase-3 style gates of the bundled plan's five
ratio/latency signals over 30m and 48h, scoped to their app's job: 10 gates per
rollout, 1,000 evaluations sharing 100 distinct (query, window) pairs, each pair
needed by 10 rollouts.

One tick is `source.prefetch(every request, at)` (the distinct windows read once,
concurrently), then `summarize` + `phases.needs.judge` for every rollout. Ticks
come one minute apart, like consecutive operator passes: the first reads every
window whole, the steady ones after it read only each window's newest part and
complete it from the source's window cache, and once the cache's refresh period
has passed a tick reads every window whole again. Each is printed apart. It
prints the wall time (target for the steady ticks: <= 0.5 s), the number of
queries sent (target: exactly 100 a tick), and the CPU the tick cost this process
and the Prometheus server: on a shared machine wall time follows the load, while
the CPU seconds say what the tick would take on two idle cores (at best their sum
over two). After each tick (untimed), every summary is compared with a second
source's read of the whole window; a difference is printed. Nothing is asserted.

    .venv/bin/python bench/prometheus_gates.py
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from controller.catalog import load_plan  # noqa: E402
from controller.ports import WindowRequest  # noqa: E402
from controller.prometheus.source import PrometheusSettings, PrometheusSource  # noqa: E402
from phases.needs import AlertReading, Needs, WindowCheck, judge  # noqa: E402
from phases.plan import Plan, SignalGate  # noqa: E402
from phases.status import RolloutStatus, initial_status  # noqa: E402
from phases.verdicts import Outcome, WindowSummary  # noqa: E402
from tests.prometheus.history import backfill_in_chunks, reference_app_history  # noqa: E402
from tests.support.prometheus import PrometheusBinaries, PrometheusServer  # noqa: E402

APPS = 10
ROLLOUTS_PER_APP = 10
SIGNALS = (
    ("error_ratio", 0.001),
    ("p99_latency_seconds", 0.001),
    ("unknown_stage_ratio", 0.005),
    ("would_reject_ratio", 0.005),
    ("invalid_write_ratio", 0.0001),
)
WINDOWS = (timedelta(minutes=30), timedelta(hours=48))
HISTORY = timedelta(hours=49)
# One a minute for 13 minutes: past the window cache's 10m refresh, so one tick
# reads every window whole again, as the operator's would.
TICKS = 13
METRICS = re.compile(
    r"\b(stage_validation_validations_total|stage_validation_errors_total"
    r"|stage_validation_duration_seconds_bucket|stage_warn_unknown_total|http_requests_total)"
    r"(\{([^}]*)\})?"
)


def scoped(query: str, job: str) -> str:
    """The query with every selector narrowed to one app's job."""

    def narrow(match: re.Match[str]) -> str:
        inner = match.group(3)
        matchers = f'job="{job}"' + (f",{inner}" if inner else "")
        return f"{match.group(1)}{{{matchers}}}"

    return METRICS.sub(narrow, query)


def time_queries_alone(
    url: str, requests: list[WindowRequest], at: datetime, resolution: timedelta
) -> list[float]:
    """Each distinct range query sent alone over plain HTTP: what Prometheus itself costs."""
    step = f"{max(resolution.total_seconds(), 1):g}s"
    walls = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for request in dict.fromkeys(requests):
            params = {
                "query": request.query,
                "start": f"{(at - request.window).timestamp():.3f}",
                "end": f"{at.timestamp():.3f}",
                "step": step,
            }
            started = time.perf_counter()
            http.get("/api/v1/query_range", params=params).raise_for_status()
            walls.append(time.perf_counter() - started)
    return walls


def main() -> None:
    plan = load_plan()
    binaries = PrometheusBinaries.locate()
    end_ts = int(time.time()) // 60 * 60 - 3600
    start_ts = end_ts - int(HISTORY.total_seconds())
    at = datetime.fromtimestamp(end_ts, UTC)
    status = initial_status(plan.content_hash, "3@10", at)

    with tempfile.TemporaryDirectory(prefix="prometheus-gates-") as work:
        server = PrometheusServer(Path(work), binaries=binaries)
        started = time.perf_counter()
        history = [
            series
            for app in range(APPS)
            for series in reference_app_history(
                start=start_ts, end=end_ts, step=60.0, job=f"app-{app:02d}"
            )
        ]
        blocks = backfill_in_chunks(server, history, chunk_seconds=6 * 3600)
        server.start()
        samples = sum(len(series.samples) for series in history)
        print(
            f"history: {APPS} apps, {len(history)} series, {samples:,} samples over "
            f"{HISTORY}, {len(blocks)} blocks; backfill + start {time.perf_counter() - started:.1f} s"
        )
        print(f"prometheus: {binaries.version} at {server.url}")

        # Each app's 10 gates: 5 signals x (30m, 48h), scoped to its job.
        gates_of_app: list[list[WindowCheck]] = []
        for app in range(APPS):
            checks = []
            for signal, threshold in SIGNALS:
                query = scoped(plan.signals[signal].query, f"app-{app:02d}")
                for window in WINDOWS:
                    gate = SignalGate(
                        name=f"{signal}-{int(window.total_seconds())}s",
                        signal=signal,
                        comparator="<",
                        threshold=threshold,
                        window=window,
                    )
                    checks.append(WindowCheck("gate", gate.key, signal, query, window, gate))
            gates_of_app.append(checks)
        rollouts = [
            Needs(windows=tuple(gates_of_app[app]))
            for app in range(APPS)
            for _ in range(ROLLOUTS_PER_APP)
        ]
        requests = [WindowRequest(c.query, c.window) for needs in rollouts for c in needs.windows]
        distinct = len({(r.query, r.window) for r in requests})
        print(
            f"tick: {len(rollouts)} rollouts, {len(requests)} gate evaluations, "
            f"{distinct} distinct (query, window) pairs"
        )

        settings = PrometheusSettings(url=server.url)
        source = PrometheusSource(settings, plan.evaluation.resolution)
        whole = PrometheusSource(settings, plan.evaluation.resolution, reuse=None)
        ticks: list[Tick] = []
        try:
            for tick in range(TICKS):
                when = at - timedelta(minutes=TICKS - 1 - tick)
                ticks.append(one_tick(source, server, plan, status, rollouts, requests, when))
                print(f"tick {tick + 1}: {ticks[-1].line(distinct, len(requests))}")
                differ = differing_windows(source, whole, requests, when)
                if differ:
                    print(f"  {differ} summaries differ from whole-window reads")
            server_side = time_queries_alone(server.url, requests, at, plan.evaluation.resolution)
        finally:
            source.close()
            whole.close()
            server.close()
    print(
        f"the same 100 queries one after another, raw HTTP: {sum(server_side):.3f} s in all, "
        f"slowest {max(server_side) * 1000:.1f} ms, median {statistics.median(server_side) * 1000:.1f} ms"
    )
    report(ticks)


@dataclass(frozen=True)
class Tick:
    """What one tick cost and found."""

    wall: float
    prefetch: float
    client_cpu: float
    server_cpu: float
    queries: int
    partial: int
    outcomes: Counter[str]

    def line(self, distinct: int, evaluations: int) -> str:
        met = "met" if self.queries == distinct == 100 else "NOT met"
        note = "" if self.outcomes[Outcome.PASS.value] == evaluations else " (not all passed)"
        return (
            f"{self.wall:.3f} s wall ({self.prefetch:.3f} s prefetch, "
            f"{self.wall - self.prefetch:.3f} s summarize+judge), CPU {self.client_cpu:.3f} s "
            f"here + {self.server_cpu:.2f} s Prometheus, {self.queries} queries sent "
            f"(target 100: {met}), {self.partial} windows read in part, "
            f"verdicts {dict(self.outcomes)}{note}"
        )


def one_tick(
    source: PrometheusSource,
    server: PrometheusServer,
    plan: Plan,
    status: RolloutStatus,
    rollouts: list[Needs],
    requests: list[WindowRequest],
    when: datetime,
) -> Tick:
    """Prefetch every window, then summarize and judge every rollout's gates."""
    sent, partial = source.queries_sent, source.windows_completed
    cpu_before, server_before = time.process_time(), server.cpu_seconds()
    started = time.perf_counter()
    source.prefetch(requests, when)
    fetched = time.perf_counter()
    outcomes: Counter[str] = Counter()
    for needs in rollouts:
        summaries: dict[tuple[str, timedelta], WindowSummary] = {}
        for check in needs.windows:
            key = (check.query, check.window)
            if key not in summaries:
                summaries[key] = source.summarize(check.signal, check.query, check.window, when)
        gates, _ = judge(plan, status, needs, summaries, AlertReading(frozenset()))
        outcomes.update(verdict.outcome.value for verdict in gates.values())
    wall = time.perf_counter() - started
    return Tick(
        wall=wall,
        prefetch=fetched - started,
        client_cpu=time.process_time() - cpu_before,
        server_cpu=server.cpu_seconds() - server_before,
        queries=source.queries_sent - sent,
        partial=source.windows_completed - partial,
        outcomes=outcomes,
    )


def differing_windows(
    source: PrometheusSource,
    whole: PrometheusSource,
    requests: list[WindowRequest],
    when: datetime,
) -> int:
    """How many of this tick's summaries differ from a read of the whole window (untimed)."""
    differ = 0
    for request in dict.fromkeys(requests):
        mine = source.summarize("", request.query, request.window, when)
        full = whole.summarize("", request.query, request.window, when)
        differ += repr(mine) != repr(full)
    return differ


def report(ticks: list[Tick]) -> None:
    """The first tick, the steady ticks and the refreshes (every window read whole), apart."""
    first = ticks[0]
    steady = [tick for tick in ticks[1:] if tick.partial]
    refreshes = [tick for tick in ticks[1:] if not tick.partial]
    median = statistics.median(tick.wall for tick in steady)
    print(
        f"first tick (whole windows): {first.wall:.3f} s; {len(steady)} steady ticks: median "
        f"{median:.3f} s, {min(t.wall for t in steady):.3f}-{max(t.wall for t in steady):.3f} s "
        f"for {sum(first.outcomes.values())} evaluations "
        f"(target <= 0.5 s: {'met' if median <= 0.5 else 'NOT met'})"
    )
    after = ticks[1:]
    print(
        f"refresh ticks (whole windows again): {', '.join(f'{t.wall:.3f} s' for t in refreshes)}; "
        f"mean of every tick after the first {statistics.mean(t.wall for t in after):.3f} s"
    )
    here = statistics.median(t.client_cpu for t in steady)
    there = statistics.median(t.server_cpu for t in steady)
    print(
        f"CPU: first tick {first.client_cpu:.3f} s here + {first.server_cpu:.2f} s Prometheus; "
        f"steady median {here:.3f} s here + {there:.2f} s Prometheus "
        f"(on two idle cores at best {(here + there) / 2:.3f} s wall); load {load_average()}"
    )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (Linux)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
