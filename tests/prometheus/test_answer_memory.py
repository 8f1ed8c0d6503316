"""The operator's memory while every rollout's Prometheus answers with the worst.

Issue 9: "A 50 MB answer took the operator past 1 GB of RSS (the Deployment's limit
is 256 Mi)". Here 32 rollouts, each with a Prometheus of its own, read 8 windows
each at once, and every Prometheus answers with one of the worst answers: 50 MB
streamed, a gzip bomb, a body that trickles, or a valid answer just under the
size cap (the one that costs the most memory because it is read whole). The
reader runs in a child process that imports the operator, so its peak RSS is the
operator's own. The figure is printed; the assertion is the Deployment's limit.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.support.hostile_http import HostileServer, Reply, Request

ROLLOUTS = 32
WINDOWS = 8
REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, sys, threading
    from datetime import UTC, datetime, timedelta

    import controller.operator  # noqa: F401 - the operator's own footprint counts
    from controller.ports import WindowRequest
    from controller.prometheus.source import PrometheusSettings, PrometheusSource

    url, rollouts, windows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    at = datetime(2026, 11, 20, tzinfo=UTC)
    sources = [
        PrometheusSource(
            PrometheusSettings(url=f"{url}/r{i}", timeout="10s", retries=0), timedelta(seconds=1)
        )
        for i in range(rollouts)
    ]
    requests = [WindowRequest(f"q{k}", timedelta(hours=24)) for k in range(windows)]
    threads = [
        threading.Thread(target=source.prefetch, args=(requests, at)) for source in sources
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summaries = [source.summarize("s", r.query, r.window, at) for source in sources for r in requests]
    print(json.dumps({
        # VmHWM is this address space's peak: getrusage's ru_maxrss would carry the
        # peak of the pytest process it was forked from across the exec.
        "peak_rss_kib": next(
            int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")
        ),
        "read": sum(1 for s in summaries if s.error is None),
        "errors": sorted({(s.error or "")[:40] for s in summaries if s.error}),
    }))
    """
)


@cache
def bomb() -> bytes:
    return gzip.compress(b" " * (100 * 1024 * 1024), compresslevel=6)


@cache
def just_under_the_cap(start: float, step: float) -> bytes:
    """A valid matrix answer on the asked grid, as large as the cap allows."""
    values, size, index = [], 120, 0
    while size < 0.95 * 1024 * 1024:
        point = [round(start + index * step, 3), f"{0.000412 + index * 1e-9:.9f}"]
        values.append(point)
        size += len(json.dumps(point)) + 2
        index += 1
    answer = {
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]},
    }
    return json.dumps(answer).encode()


def worst(request: Request) -> Reply:
    rollout = int(request.path.split("/")[1].removeprefix("r"))
    kind = rollout % 4
    if kind == 0:
        chunk = b"[" * (1024 * 1024)
        return Reply(200, {}, chunks=lambda: (chunk for _ in range(50)))
    if kind == 1:
        return Reply(200, {"Content-Encoding": "gzip"}, bomb())
    if kind == 2:
        return Reply(200, {}, b'{"status": "success", "data": ' * 2, pause_seconds=0.05)
    body = just_under_the_cap(
        float(request.params["start"]), float(request.params["step"].rstrip("s"))
    )
    return Reply(200, {"Content-Type": "application/json"}, body)


def deployment_limit_kib() -> int:
    deployment = yaml.safe_load((REPO / "manifests/base/deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi"), limit
    return int(limit.removesuffix("Mi")) * 1024


def test_every_prometheus_answering_the_worst_keeps_the_operator_under_its_memory_limit() -> None:
    with HostileServer(rule=worst) as server:
        child = subprocess.run(
            [sys.executable, "-c", CHILD, server.url, str(ROLLOUTS), str(WINDOWS)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
    assert child.returncode == 0, child.stderr[-2000:]
    found = json.loads(child.stdout.strip().splitlines()[-1])
    peak, limit = found["peak_rss_kib"], deployment_limit_kib()
    print(
        f"peak RSS {peak / 1024:.0f} MiB for {ROLLOUTS} rollouts × {WINDOWS} worst answers; limit {limit / 1024:.0f} MiB"
    )
    assert peak < limit, found
    # The answers just under the cap that fit the budget were read, and none of the garbage.
    assert 0 < found["read"] <= ROLLOUTS * WINDOWS // 4, found


pytestmark = pytest.mark.prometheus
