"""Synthetic history of the reference app's series, for replays over past days.

`reference_app_history` writes, at a fixed step (one minute by default), the
series the bundled plan's signals read, with the names and labels the reference
app exports:

- ``stage_validation_validations_total{endpoint,operation,mode,result}``: reads
  (ok, would_reject) and writes (ok only, so that phase 2.5's "no new invalid
  writes" gate holds at exactly 0);
- ``stage_validation_errors_total{endpoint,reason}``;
- the histogram ``stage_validation_duration_seconds`` (``_bucket{le}``, ``_count``,
  ``_sum``), with a p99 well under a millisecond;
- ``stage_warn_unknown_total{endpoint}`` and ``http_requests_total{endpoint,method,code}``;
- the one-hot gauge ``stage_validation_mode{mode}``.

Every ratio is a function of time, so a test can put an error spike exactly where
it wants one. Counters are exact (no noise): with the default shape the error
ratio is 0.04 %, the unknown-stage ratio 0.1 %, the would-reject ratio 0.2 % and
p99 about 0.25 ms (0.1 ms + (0.99 - 0.6) / (0.995 - 0.6) x 0.15 ms) at every minute.

`backfill_in_chunks` loads such a history faster than one promtool run: promtool
2.42 reads its whole input once per 2-hour block it writes, so 16 days of one
file (193 blocks) take about 40 s, while day-sized files aligned to the 2-hour
block grid take about half a second each and run two at a time.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.support.backfill import (
    Series,
    counter_samples,
    create_blocks_from_openmetrics,
    move_blocks,
    write_openmetrics,
)
from tests.support.prometheus import PrometheusServer

Ratio = float | Callable[[float], float]

JOB = {"job": "stage-app", "instance": "127.0.0.1:3333"}
ENDPOINT = "/api/monte-carlo/simulate"
WRITE_ENDPOINT = "/api/allocations"
# Upper bounds (seconds) and the share of validations at or under each: p99 falls
# in (0.1 ms, 0.25 ms], p99.9 in (0.25 ms, 0.5 ms].
LATENCY_BUCKETS: tuple[tuple[str, float], ...] = (
    ("0.0001", 0.6),
    ("0.00025", 0.995),
    ("0.0005", 0.9995),
    ("0.001", 1.0),
    ("0.005", 1.0),
    ("0.05", 1.0),
    ("+Inf", 1.0),
)
MEAN_LATENCY_SECONDS = 0.00011


@dataclass(frozen=True)
class Shape:
    """Traffic and ratios of a history; each ratio may be a function of unix time."""

    validations_per_second: float = 20.0
    write_share: float = 0.25
    error_ratio: Ratio = 0.0004
    unknown_ratio: Ratio = 0.001
    would_reject_ratio: Ratio = 0.002


def _at(ratio: Ratio, t: float) -> float:
    return ratio(t) if callable(ratio) else float(ratio)


def spike(base: float, value: float, start: float, end: float) -> Callable[[float], float]:
    """A ratio that is `value` on (start, end] and `base` elsewhere (counter increments
    land at the end of each step, so a step ending inside the spike counts as spiked)."""
    return lambda t: value if start < t <= end else base


def reference_app_history(
    *,
    start: float,
    end: float,
    step: float = 60.0,
    shape: Shape | None = None,
    job: str = JOB["job"],
) -> list[Series]:
    """The reference app's series from `start` to `end` (unix seconds) at `step`.

    Every series carries ``job`` and ``instance`` labels as if scraped; give each
    app its own `job` to put several apps in one Prometheus.
    """
    shape = shape or Shape()
    target = {**JOB, "job": job}
    total = shape.validations_per_second
    writes = total * shape.write_share

    def counter(name: str, labels: dict[str, str], per_second: Callable[[float], float]) -> Series:
        samples = counter_samples(start=start, end=end, step=step, per_second=per_second)
        return Series(name, {**target, **labels}, samples, "counter")

    def validations(
        operation: str, result: str, endpoint: str, rate: Callable[[float], float]
    ) -> Series:
        labels = {"endpoint": endpoint, "operation": operation, "mode": "warn", "result": result}
        return counter("stage_validation_validations_total", labels, rate)

    series = [
        validations(
            "read",
            "ok",
            ENDPOINT,
            lambda t: (total - writes) - total * _at(shape.would_reject_ratio, t),
        ),
        validations(
            "read",
            "would_reject",
            ENDPOINT,
            lambda t: total * _at(shape.would_reject_ratio, t),
        ),
        validations("write", "ok", WRITE_ENDPOINT, lambda _t: writes),
        counter(
            "stage_validation_errors_total",
            {"endpoint": ENDPOINT, "reason": "internal"},
            lambda t: total * _at(shape.error_ratio, t),
        ),
        counter(
            "stage_warn_unknown_total",
            {"endpoint": ENDPOINT},
            lambda t: total * _at(shape.unknown_ratio, t),
        ),
        counter(
            "http_requests_total",
            {"endpoint": ENDPOINT, "method": "POST", "code": "200"},
            lambda _t: total,
        ),
    ]
    for le, share in LATENCY_BUCKETS:
        samples = counter_samples(start=start, end=end, step=step, per_second=total * share)
        series.append(
            Series(
                "stage_validation_duration_seconds_bucket",
                {**target, "le": le},
                samples,
                "histogram",
            )
        )
    for suffix, per_second in (("_count", total), ("_sum", total * MEAN_LATENCY_SECONDS)):
        samples = counter_samples(start=start, end=end, step=step, per_second=per_second)
        series.append(
            Series(f"stage_validation_duration_seconds{suffix}", target, samples, "histogram")
        )
    times = counter_samples(start=start, end=end, step=step, per_second=0.0)
    for mode in ("off", "warn", "enforce"):
        value = 1.0 if mode == "warn" else 0.0
        series.append(
            Series(
                "stage_validation_mode", {**target, "mode": mode}, [(t, value) for t, _ in times]
            )
        )
    return series


BLOCK_SECONDS = 7200  # promtool's block range: blocks start at multiples of 2h


def backfill_in_chunks(
    server: PrometheusServer,
    series: Sequence[Series],
    *,
    chunk_seconds: int = 86_400,
    workers: int = 2,
) -> list[str]:
    """Backfill `series` into a stopped server's TSDB, one promtool run per chunk of time.

    Chunks are aligned to the 2-hour block grid, so no two runs write overlapping
    blocks. Returns the ids of the blocks moved into the server's TSDB.
    """
    if server.running:
        raise RuntimeError("backfill a stopped server: it loads the blocks when it starts")
    if chunk_seconds % BLOCK_SECONDS:
        raise ValueError(f"chunk_seconds must be a multiple of {BLOCK_SECONDS}")
    times = [t for one in series for t, _ in one.samples]
    first = int(min(times)) // BLOCK_SECONDS * BLOCK_SECONDS
    last = max(times)
    bounds = [(lo, lo + chunk_seconds) for lo in range(first, int(last) + 1, chunk_seconds)]
    staging = server.work_dir / "chunked-staging"
    shutil.rmtree(staging, ignore_errors=True)

    def one_chunk(index: int) -> Path:
        lo, hi = bounds[index]
        part = [
            Series(s.name, s.labels, [(t, v) for t, v in s.samples if lo <= t < hi], s.kind)
            for s in series
        ]
        directory = staging / f"chunk-{index:03d}"
        directory.mkdir(parents=True)
        source = write_openmetrics([p for p in part if p.samples], directory / "history.om")
        create_blocks_from_openmetrics(server.binaries.promtool, source, directory / "blocks")
        source.unlink()
        return directory / "blocks"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        outputs = list(pool.map(one_chunk, range(len(bounds))))
    moved = [block for output in outputs for block in move_blocks(output, server.tsdb_path)]
    shutil.rmtree(staging, ignore_errors=True)
    return moved
