"""Benchmark: 30 days of the bundled plan with both engines, a year, and the CLI's start-up.

Prints, side by side for the tick engine (decides at every one-minute tick) and
the event engine (decides only where an input can change): decisions, engine CPU
and wall time (medians of 5 after a warm-up run), peak memory. Then 365 days of
the bundled plan: bench/year.yaml (busy: monthly outages and error bursts) with the event engine
and its load time, the quiet approval-withheld scenario run for a year, the busy
year with the tick engine once (slow: about 20 s), the time to load a year of
two-hourly points; and the wall time of
`stagectl simulate` for happy-path (start-up included). Targets: the month in
<= 1 s of engine time, the year in <= 0.1 s with the event engine, the
happy-path command in < 2 s. For the year it also prints the CPU spent inside
`phases.decide` (a separate run), the part no engine can skip per decision.
Nothing is asserted.

    .venv/bin/python bench/simulate_month.py
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

from controller import driving
from controller.catalog import load_plan, load_scenario
from controller.sim.scenario import parse_scenario
from controller.sim.simulation import Engine, SimulationResult, simulate
from phases.decide import Decision, decide

HERE = Path(__file__).parent
YEAR = timedelta(days=365)


def timed(
    run: Callable[[], SimulationResult], repeat: int
) -> tuple[SimulationResult, float, float]:
    """The result and the median CPU and wall seconds of `repeat` runs."""
    cpu, wall = [], []
    result = run()
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = run()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return result, statistics.median(cpu), statistics.median(wall)


def traced_peak_mib(run: Callable[[], SimulationResult]) -> float:
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def decide_seconds(run: Callable[[], SimulationResult]) -> float:
    """CPU spent inside the decision core during one run (the rest is the engine's own)."""
    spent = 0.0

    def timed_decide(*args: Any, **kwargs: Any) -> Decision:
        nonlocal spent
        started = time.process_time()
        try:
            return decide(*args, **kwargs)
        finally:
            spent += time.process_time() - started

    with patch.object(driving, "decide", timed_decide):
        run()
    return spent


def noisy_year_text() -> str:
    """A scenario whose five signals change every two hours for a year (0.75 MB: a
    scenario file may hold at most 1 MiB, so hourly points for a year no longer fit)."""
    lines = ["name: noisy-year", "duration: 365d", "signals:"]
    for signal, base in (
        ("error_ratio", 0.0004),
        ("p99_latency_seconds", 0.0006),
        ("unknown_stage_ratio", 0.001),
        ("would_reject_ratio", 0.002),
        ("invalid_write_ratio", 0.0001),
    ):
        lines.append(f"  {signal}:")
        lines += [
            f"    - {{at: {hour}h, value: {base * (1 + (hour * 7919 % 100) / 200):.6g}}}"
            for hour in range(0, 365 * 24, 2)
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    plan = load_plan()
    month = load_scenario(str(HERE / "month.yaml"), plan)
    print(f"{'30 days, 1m tick':<22} {'decisions':>10} {'CPU':>9} {'wall':>9} {'peak MiB':>9}")
    for engine in ("ticks", "events"):

        def run(engine: Engine = engine) -> SimulationResult:
            return simulate(plan, month, engine=engine)

        result, cpu, wall = timed(run, 5)
        print(
            f"{engine + ' engine':<22} {result.decisions:>10,} {cpu:>8.3f}s {wall:>8.3f}s "
            f"{traced_peak_mib(run):>9.1f}"
        )
    print(
        f"  both: {result.ticks:,} ticks covered, final {result.final.step} {result.final.state}, "
        f"{len(result.transitions)} transitions (target: month <= 1 s of engine CPU)"
    )

    started = time.process_time()
    year = load_scenario(str(HERE / "year.yaml"), plan)
    loading = time.process_time() - started
    busy, cpu, wall = timed(lambda: simulate(plan, year), 5)
    result = busy
    print(
        f"365 days (year.yaml), event engine: {cpu:.3f} s CPU, {wall:.3f} s wall (median of 5), "
        f"{result.decisions:,} decisions for {result.ticks:,} ticks, {len(result.transitions)} "
        f"transitions (target <= 0.1 s: {'met' if cpu <= 0.1 else 'NOT met'}); loading it {loading:.3f} s"
    )
    deciding = decide_seconds(lambda: simulate(plan, year))
    print(
        f"  of which phases.decide alone: {deciding:.3f} s CPU "
        f"({deciding / busy.decisions * 1e6:.0f} us a decision; a separate timed run)"
    )
    quiet = load_scenario("approval-withheld", plan).model_copy(update={"duration": YEAR})
    result, cpu, wall = timed(lambda: simulate(plan, quiet), 5)
    print(
        f"365 days of approval-withheld (waits at {result.final.step} from day 9), event engine: "
        f"{cpu:.4f} s CPU, {result.decisions:,} decisions "
        f"(target <= 0.1 s: {'met' if cpu <= 0.1 else 'NOT met'})"
    )
    started = time.process_time()
    ticking = simulate(plan, year, engine="ticks")
    print(
        f"365 days of year.yaml, tick engine (once): {time.process_time() - started:.1f} s CPU; "
        f"same transitions as the event engine: {ticking.transitions == busy.transitions}"
    )
    started = time.process_time()
    noisy = parse_scenario(noisy_year_text(), source="noisy year", known_signals=set(plan.signals))
    print(
        f"loading a year of two-hourly points ({sum(len(p) for p in noisy.signals.values()):,} points, "
        f"5 signals): {time.process_time() - started:.2f} s CPU"
    )
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS: {rss_mib:.0f} MiB")

    walls = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "from controller.cli.main import run; run()", "simulate"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        walls.append(time.perf_counter() - started)
    print(
        f"stagectl simulate (happy-path) wall, start-up included: median {statistics.median(walls):.2f} s, "
        f"range {min(walls):.2f}-{max(walls):.2f} s over 5 (target < 2 s)"
    )
    print(f"load average: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
