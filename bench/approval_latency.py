"""Benchmark: from `stagectl approve` to the promotion, with a 30 s pass interval.

The operator runs against the API-server emulator. Each round brings a fresh
rollout of a one-second plan to "awaiting approval", sets the pass interval to
30 s, records an approval and measures until the status shows the next step:
only the watch on approvals can make that fast. Target: under 1 s.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.kube.operator_world import approve_when_ready, quick_operator  # noqa: E402
from tests.support.kube_emulator import KubeEmulator  # noqa: E402

ROUNDS = 5


def one_round() -> float:
    with (
        KubeEmulator(rollout_delay=0.05) as emulator,
        quick_operator(emulator) as (world, operator),
    ):
        return approve_when_ready(world, operator, pass_seconds=30, timeout=10)


def main() -> None:
    latencies = [one_round() for _ in range(ROUNDS)]
    median = statistics.median(latencies)
    print(
        f"approval to promotion with a 30 s pass interval, {ROUNDS} rounds: median {median * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms (target < 1 s: {'met' if max(latencies) < 1 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
