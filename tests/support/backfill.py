"""Synthetic Prometheus history: OpenMetrics text and promtool's block creation.

Gates look back over hours and days (24h baselines, 48h soaks); a test cannot wait
that long. Instead it writes the history it wants as OpenMetrics text and lets
``promtool tsdb create-blocks-from openmetrics`` turn it into TSDB blocks, and it
evaluates recording rules over that history with ``promtool tsdb create-blocks-from
rules``. Both write blocks to a staging directory; `move_blocks` hands them to a
server's TSDB, which loads them when it (re)starts.

Observed with promtool 2.42: block creation from OpenMetrics takes an output
directory as its second argument, block creation from rules takes
``--output-dir`` (default ``data/`` in the working directory) and needs an explicit
``--end`` (the default is three hours ago). Rules that read other recording rules
see only what the server already has, so dependent rules need a second pass after
the first pass's blocks are loaded. Prometheus 2.42 accepts blocks that overlap in
time without any flag, and it finds new blocks on its own only at the next reload
(about once a minute), so the helpers restart it instead.
"""

from __future__ import annotations

import itertools
import math
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SeriesKind = Literal["counter", "gauge", "histogram", "unknown"]

_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


class PromtoolError(RuntimeError):
    """promtool exited with an error; the message carries its command and output."""


@dataclass(frozen=True)
class Series:
    """One time series of history: a metric name, its labels and (unix seconds, value) samples.

    A counter may be named with or without ``_total``: it is written as the
    family ``name`` of type counter with samples named ``name_total``. Histogram
    series are named ``<family>_bucket`` (with an ``le`` label), ``_count`` or
    ``_sum``.
    """

    name: str
    labels: Mapping[str, str]
    samples: Sequence[tuple[float, float]]
    kind: SeriesKind = "gauge"
    sample_name: str = field(init=False)
    family: str = field(init=False)

    def __post_init__(self) -> None:
        if not _METRIC_NAME.fullmatch(self.name):
            raise ValueError(f"{self.name!r} is not a valid metric name")
        for label in self.labels:
            if not _LABEL_NAME.fullmatch(label) or label == "__name__":
                raise ValueError(f"{label!r} is not a valid label name for {self.name}")
        times = [timestamp for timestamp, _ in self.samples]
        if any(later <= earlier for earlier, later in itertools.pairwise(times)):
            raise ValueError(f"samples of {self.name} must have strictly increasing timestamps")
        family, sample_name = self.name, self.name
        if self.kind == "counter":
            family = self.name.removesuffix("_total")
            sample_name = family + "_total"
        elif self.kind == "histogram":
            suffix = next((s for s in _HISTOGRAM_SUFFIXES if self.name.endswith(s)), None)
            if suffix is None:
                raise ValueError(f"histogram series {self.name} must end with _bucket/_count/_sum")
            if suffix == "_bucket" and "le" not in self.labels:
                raise ValueError(f"histogram bucket series {self.name} needs an le label")
            family = self.name.removesuffix(suffix)
        object.__setattr__(self, "family", family)
        object.__setattr__(self, "sample_name", sample_name)


def counter_samples(
    *, start: float, end: float, step: float, per_second: float | Callable[[float], float]
) -> list[tuple[float, float]]:
    """Samples of a counter from `start` to `end` (inclusive) growing at `per_second`.

    `per_second` may be a function of the time, for a rate that changes over the
    history; the counter then grows by ``per_second(t) * step`` up to each ``t``.
    """
    if step <= 0 or end < start:
        raise ValueError("need step > 0 and end >= start")
    rate = per_second if callable(per_second) else (lambda _t: float(per_second))
    samples: list[tuple[float, float]] = []
    total = 0.0
    count = int((end - start) // step)
    for n in range(count + 1):
        timestamp = start + n * step
        if n:
            total += rate(timestamp) * step
        samples.append((timestamp, total))
    return samples


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render_openmetrics(series: Iterable[Series]) -> str:
    """OpenMetrics text for promtool: one TYPE line per family, samples in time order, # EOF."""
    families: dict[str, list[Series]] = {}
    kinds: dict[str, SeriesKind] = {}
    for one in series:
        if kinds.setdefault(one.family, one.kind) != one.kind:
            raise ValueError(
                f"metric family {one.family} is given as both {kinds[one.family]} and {one.kind}"
            )
        families.setdefault(one.family, []).append(one)
    lines: list[str] = []
    for family, members in families.items():
        lines.append(f"# TYPE {family} {kinds[family]}")
        for one in members:
            labels = ",".join(
                f'{key}="{_escape(value)}"' for key, value in sorted(one.labels.items())
            )
            head = f"{one.sample_name}{{{labels}}}" if labels else one.sample_name
            lines.extend(
                f"{head} {_number(value)} {timestamp:.3f}" for timestamp, value in one.samples
            )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def write_openmetrics(series: Iterable[Series], path: Path) -> Path:
    path.write_text(render_openmetrics(series), encoding="utf-8")
    return path


def _run_promtool(arguments: Sequence[str], *, cwd: Path) -> str:
    completed = subprocess.run(
        list(arguments), cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    if completed.returncode != 0:
        raise PromtoolError(
            f"{' '.join(arguments)} exited with {completed.returncode}:\n"
            f"{completed.stdout}{completed.stderr}"
        )
    return completed.stdout + completed.stderr


def block_ids(directory: Path) -> list[str]:
    """The TSDB blocks (ULID-named directories with a meta.json) in `directory`."""
    if not directory.is_dir():
        return []
    return sorted(
        entry.name
        for entry in directory.iterdir()
        if _ULID.fullmatch(entry.name) and (entry / "meta.json").is_file()
    )


def create_blocks_from_openmetrics(promtool: Path, source: Path, output_dir: Path) -> list[str]:
    """Run ``promtool tsdb create-blocks-from openmetrics``; returns the ids of the new blocks."""
    output_dir.mkdir(parents=True, exist_ok=True)
    before = set(block_ids(output_dir))
    _run_promtool(
        [str(promtool), "tsdb", "create-blocks-from", "openmetrics", str(source), str(output_dir)],
        cwd=output_dir,
    )
    return sorted(set(block_ids(output_dir)) - before)


def create_blocks_from_rules(
    promtool: Path,
    *,
    url: str,
    rule_files: Sequence[Path],
    start: float,
    end: float,
    output_dir: Path,
    eval_interval: str = "60s",
) -> list[str]:
    """Evaluate recording rules over [start, end] against a running server into new blocks.

    Groups without their own ``interval`` are evaluated every `eval_interval`.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    before = set(block_ids(output_dir))
    _run_promtool(
        [
            str(promtool),
            "tsdb",
            "create-blocks-from",
            "rules",
            f"--url={url}",
            f"--start={int(start)}",
            f"--end={int(end)}",
            f"--output-dir={output_dir}",
            f"--eval-interval={eval_interval}",
            *(str(path) for path in rule_files),
        ],
        cwd=output_dir,
    )
    return sorted(set(block_ids(output_dir)) - before)


def move_blocks(source: Path, tsdb_path: Path) -> list[str]:
    """Move every block from `source` into a TSDB directory; returns the moved ids."""
    tsdb_path.mkdir(parents=True, exist_ok=True)
    moved = block_ids(source)
    for block in moved:
        shutil.move(str(source / block), str(tsdb_path / block))
    return moved
