"""Benchmark: 30 days of the bundled plan at a one-minute tick, and the CLI's start-up.

Prints ticks per second, engine time, peak memory and the wall time of
`stagectl simulate` for happy-path (start-up included). Targets: the month in
≤ 1 s of engine time; the happy-path command in < 2 s.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from controller.catalog import load_plan, load_scenario
from controller.sim.simulation import simulate

HERE = Path(__file__).parent


def main() -> None:
    plan = load_plan()
    scenario = load_scenario(str(HERE / "month.yaml"))
    simulate(plan, scenario)  # warm caches as a long-running process would have them
    runs, cpu = [], []
    for _ in range(5):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = simulate(plan, scenario)
        runs.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    wall_engine = statistics.median(runs)
    engine = statistics.median(cpu)
    tracemalloc.start()
    simulate(plan, scenario)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"month: {result.ticks} ticks, final {result.final.step} {result.final.state}, "
        f"{len(result.transitions)} transitions"
    )
    print(
        f"engine time, CPU (median of 5): {engine:.3f} s  -> {result.ticks / engine:,.0f} ticks/s "
        f"(target: 43,200 ticks in <= 1 s: {'met' if engine <= 1.0 else 'NOT met'})"
    )
    print(
        f"engine time, wall (median of 5): {wall_engine:.3f} s (differs from CPU when the machine is busy)"
    )
    print(
        f"peak memory: {traced_peak / 2**20:.1f} MiB allocated during a run, {rss_mib:.0f} MiB process RSS"
    )

    walls = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "from controller.cli.main import run; run()", "simulate"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        walls.append(time.perf_counter() - started)
    wall = statistics.median(walls)
    print(
        f"stagectl simulate (happy-path) wall time, start-up included (median of 3): {wall:.2f} s "
        f"(target < 2 s: {'met' if wall < 2 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
