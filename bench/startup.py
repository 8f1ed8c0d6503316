"""Benchmark: how long `stagectl --help` and `stagectl simulate` take, start-up included.

Runs each command many times as a user would (a new interpreter each time, the
installed `stagectl` script) and prints the median, the fastest and the slowest
wall time, the median CPU time of the child (user + system: on a shared machine
wall time follows the load, CPU time much less), then the import time of the CLI
module as `python -X importtime` reports it, and the load average. Targets (wall):
`--help` <= 0.15 s, `simulate` <= 0.4 s. Nothing is asserted.

    .venv/bin/python bench/startup.py [RUNS]
"""

from __future__ import annotations

import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

STAGECTL = Path(sys.executable).with_name("stagectl")
COMMANDS = ((("--help",), 0.15), (("simulate",), 0.4))
_IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)")


def run_times(arguments: tuple[str, ...], runs: int) -> tuple[list[float], list[float]]:
    """Wall and child CPU time of each of `runs` runs of stagectl with `arguments`."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([str(STAGECTL), *arguments], check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def import_milliseconds(module: str) -> float:
    """Cumulative import time of `module` in a fresh interpreter, in ms."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        check=True,
        capture_output=True,
        text=True,
    )
    for line in done.stderr.splitlines():
        found = _IMPORT_LINE.match(line)
        if found and found.group(2) == module:
            return int(found.group(1)) / 1000
    raise RuntimeError(f"no import time line for {module}")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    run_times(("--help",), 2)  # warm the page cache and the bytecode
    for arguments, target in COMMANDS:
        walls, cpus = run_times(arguments, runs)
        median = statistics.median(walls)
        print(
            f"stagectl {' '.join(arguments)}: median {median:.3f} s, fastest {min(walls):.3f} s, "
            f"slowest {max(walls):.3f} s over {runs} runs "
            f"(target <= {target} s: {'met' if median <= target else 'NOT met'}); "
            f"CPU median {statistics.median(cpus):.3f} s"
        )
    imports = [import_milliseconds("controller.cli.main") for _ in range(5)]
    print(
        f"import controller.cli.main: median {statistics.median(imports):.0f} ms "
        f"(range {min(imports):.0f}-{max(imports):.0f} ms over 5 runs)"
    )
    print(f"load average: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
