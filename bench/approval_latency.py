"""Benchmark: from `stagectl approve` to the promotion, with a 30 s pass interval.

The operator runs against the API-server emulator. Each round brings a fresh
rollout of a one-second plan to "awaiting approval", sets the pass interval to
30 s, records an approval and measures until the status shows the next step:
only the watch on approvals can make that fast. Target: under 1 s.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from controller.kube_api import KubeApi  # noqa: E402
from controller.operator import Operator, OperatorSettings  # noqa: E402
from controller.scenario import parse_scenario  # noqa: E402
from controller.scripted_metrics import ScriptedMetrics  # noqa: E402
from phases.plan_checks import parse_plan  # noqa: E402
from tests.kube.operator_world import OPERATOR_USER, make_world  # noqa: E402
from tests.kube.test_operator_runtime import QUICK_PLAN  # noqa: E402
from tests.support.kube_emulator import KubeEmulator  # noqa: E402

ROUNDS = 5


def one_round() -> float:
    with KubeEmulator(rollout_delay=0.05) as emulator:
        world = make_world(emulator, plan={"inline": QUICK_PLAN})
        world.plan = parse_plan(yaml.safe_dump(QUICK_PLAN), source="quick")
        start = datetime.now(UTC) - timedelta(hours=1)
        healthy = ScriptedMetrics(
            parse_scenario(
                f"name: q\nstart: {start.isoformat()}\nsignals:\n  error_ratio: [{{at: 0s, value: 0.001}}]\n",
                source="q",
            ),
            timedelta(seconds=1),
        )
        operator = Operator(
            KubeApi(emulator.api_client(user=OPERATOR_USER)),
            OperatorSettings(
                namespace=world.namespace,
                interval=timedelta(seconds=1),
                granularity=timedelta(seconds=1),
                metrics_port=0,
            ),
            metrics_for=lambda _spec, _plan: healthy,
        )
        runner = threading.Thread(target=operator.run, daemon=True)
        runner.start()
        try:
            while world.status().get("state") != "awaiting_approval":
                time.sleep(0.05)
            operator.scheduler.reschedule_job("tick-all", trigger="interval", seconds=30)
            time.sleep(0.5)
            approved = time.perf_counter()
            world.approve("a")
            while world.status().get("step") != "b":
                time.sleep(0.005)
            return time.perf_counter() - approved
        finally:
            operator.stop.set()
            runner.join(timeout=10)


def main() -> None:
    latencies = [one_round() for _ in range(ROUNDS)]
    median = statistics.median(latencies)
    print(
        f"approval to promotion with a 30 s pass interval, {ROUNDS} rounds: median {median * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms (target < 1 s: {'met' if max(latencies) < 1 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
