"""Build a local Prometheus with days of the reference app's history, then replay it.

`stagectl replay` asks what the controller would have done over a past window of a
real Prometheus. To try it without a production Prometheus, this script writes the
series the reference app exports (`examples/reference_app`) for the last N days as
OpenMetrics, turns them into TSDB blocks with `promtool tsdb create-blocks-from
openmetrics`, starts Debian's `prometheus` on them and prints the replay command.
An optional error spike shows a rollback.

The history and backfill helpers are the tests' own (`tests/prometheus/history.py`,
`tests/support/backfill.py`, `tests/support/prometheus.py`), imported rather than
copied so that the recipe and the tests cannot drift apart: run it from the
repository root.

    python -m examples.replay_history.build --days 3 --dir /tmp/replay-history
    python -m examples.replay_history.build --days 4 --error-spike-at 3d2h --replay
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

from controller.clock import SystemClock
from phases.durations import format_duration, parse_duration

STAGECTL = [sys.executable, "-c", "from controller.cli.main import run; run()"]
MAX_DAYS = 30


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    from tests.prometheus.history import Shape, backfill_in_chunks, reference_app_history, spike
    from tests.support.prometheus import (
        PrometheusBinaries,
        PrometheusNotInstalled,
        PrometheusServer,
    )

    try:
        binaries = PrometheusBinaries.locate()
    except PrometheusNotInstalled as error:
        return _fail(f"{error} (Debian: apt-get install prometheus)")
    end = SystemClock().now().replace(second=0, microsecond=0)
    start = end - timedelta(days=args.days)
    shape = Shape()
    if args.error_spike_at is not None:
        spike_start = (start + args.error_spike_at).timestamp()
        shape = Shape(
            error_ratio=spike(
                0.0004, args.spike_ratio, spike_start, spike_start + args.spike_for.total_seconds()
            )
        )
    server = PrometheusServer(args.dir, binaries=binaries, port=args.port)
    print(
        f"writing {args.days} days of the reference app's history ({start:%Y-%m-%d %H:%M} .. {end:%H:%M} UTC) into {args.dir / 'tsdb'}",
        flush=True,
    )
    blocks = backfill_in_chunks(
        server, reference_app_history(start=start.timestamp(), end=end.timestamp(), shape=shape)
    )
    server.start()
    try:
        print(f"Prometheus with {len(blocks)} blocks is ready at {server.url}", flush=True)
        if args.replay:
            return _replay(server.url, start, end, args.tick)
        print(
            "try:\n" + _replay_command(server.url, start, args.tick) + "\nCtrl-C stops Prometheus.",
            flush=True,
        )
        _wait_for_interrupt()
        return 0
    finally:
        server.close()


def _replay(url: str, start: datetime, end: datetime, tick: timedelta) -> int:
    """Check the plan's signals against the history, then replay the whole window."""
    checked = subprocess.run(
        [*STAGECTL, "plan", "validate", "stage-validation-v3", "--prometheus", url], check=False
    )
    if checked.returncode != 0:
        return checked.returncode
    window = [
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
        "--tick",
        format_duration(tick),
    ]
    return subprocess.run(
        [*STAGECTL, "replay", "--prometheus", url, *window], check=False
    ).returncode


def _replay_command(url: str, start: datetime, tick: timedelta) -> str:
    return f"  stagectl replay --prometheus {url} --start {start.isoformat().replace('+00:00', 'Z')} --tick {format_duration(tick)}"


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.replay_history.build", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--days", type=int, default=3, help=f"days of history, ending now (1-{MAX_DAYS})"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("replay-history"),
        help="an absent or empty directory for the TSDB",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="Prometheus port (default: a free one)"
    )
    parser.add_argument(
        "--error-spike-at",
        type=_duration,
        default=None,
        help="offset from the start of an error spike, e.g. 3d2h",
    )
    parser.add_argument(
        "--spike-for",
        type=_duration,
        default=timedelta(minutes=15),
        help="how long the spike lasts",
    )
    parser.add_argument(
        "--spike-ratio",
        type=float,
        default=0.08,
        help="error ratio during the spike (the plan rolls back above 0.05)",
    )
    parser.add_argument("--tick", type=_duration, default=timedelta(minutes=10), help="replay tick")
    parser.add_argument(
        "--replay", action="store_true", help="run the replay, print it and stop Prometheus"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.days <= MAX_DAYS:
        parser.error(f"--days {args.days}: give 1 to {MAX_DAYS}")
    if args.error_spike_at is not None and args.error_spike_at >= timedelta(days=args.days):
        parser.error(
            f"--error-spike-at {format_duration(args.error_spike_at)} is after the end of the history"
        )
    if not 0 < args.spike_ratio <= 1:
        parser.error(f"--spike-ratio {args.spike_ratio}: a ratio in (0, 1]")
    if args.dir.exists() and (not args.dir.is_dir() or any(args.dir.iterdir())):
        parser.error(f"--dir {args.dir}: not an empty directory; give a new one")
    return args


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _fail(message: str) -> int:
    print(f"build: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
