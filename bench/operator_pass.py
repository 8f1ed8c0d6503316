"""Benchmark: one replica reconciles 1,000 StageRollouts in one pass.

The API server is the emulator (in a child process, so that the CPU and memory
printed are the operator's own) and Prometheus is Debian's, on loopback, with a
few hours of backfilled history. Each rollout has its own ConfigMap and
Deployment in one of ten namespaces. Passes 1 and 2 bring every rollout into
effect; pass 3 is the steady state (gates and triggers read each pass, every
distinct query sent once for all rollouts). Prints wall time, CPU per rollout
and peak RSS for each pass. Targets: <= 10 s for a pass, <= 200 MB RSS.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controller.clock import SystemClock  # noqa: E402
from controller.kube.api import DEPLOYMENTS, ROLLOUTS, KubeApi  # noqa: E402
from controller.operator import Operator, OperatorSettings  # noqa: E402
from tests.kube.operator_world import crds  # noqa: E402
from tests.support.backfill import Series, counter_samples  # noqa: E402
from tests.support.prometheus import PrometheusBinaries, PrometheusServer, free_port  # noqa: E402

ROLLOUTS_COUNT = 1000
NAMESPACES = 10
EMULATOR = """
import sys, time
sys.path.insert(0, {repo!r})
from tests.support.kube_emulator import KubeEmulator
from tests.kube.operator_world import install_admission_policies
emulator = KubeEmulator(port={port}, rollout_delay=0.5, history_size=200000).start()
install_admission_policies(emulator)
print("ready", flush=True)
time.sleep(3600)
"""


def history(now: float) -> list[Series]:
    start, step = now - 6 * 3600, 60
    labels = {"job": "api"}
    total = counter_samples(start=start, end=now, step=step, per_second=100.0)
    return [
        Series(
            "stage_validation_validations_total",
            {**labels, "result": "ok", "operation": "read"},
            total,
            kind="counter",
        ),
        Series(
            "stage_validation_errors_total",
            {**labels, "reason": "rejected"},
            counter_samples(start=start, end=now, step=step, per_second=0.04),
            kind="counter",
        ),
        Series("http_requests_total", labels, total, kind="counter"),
        Series(
            "stage_warn_unknown_total",
            labels,
            counter_samples(start=start, end=now, step=step, per_second=0.1),
            kind="counter",
        ),
        *(
            Series(
                "stage_validation_mode",
                {**labels, "mode": mode},
                [(t, value) for t, _ in total],
                kind="gauge",
            )
            for mode, value in (("off", 0.0), ("warn", 1.0), ("enforce", 0.0))
        ),
    ]


def main() -> None:
    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-c", EMULATOR.format(repo=str(REPO), port=port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert emulator.stdout is not None and emulator.stdout.readline().strip() == "ready"
    with tempfile.TemporaryDirectory() as work:
        prometheus = PrometheusServer(Path(work), binaries=PrometheusBinaries.locate())
        prometheus.backfill(history(time.time()))
        prometheus.start()
        try:
            run(port, prometheus.url, emulator.pid)
        finally:
            prometheus.close()
            emulator.terminate()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(port: int, prometheus_url: str, emulator_pid: int) -> None:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    setup = KubeApi(client.ApiClient(configuration))
    for crd in crds():
        setup._call("POST", _CRDS, None, None, body=crd)
    time.sleep(0.5)
    for index in range(ROLLOUTS_COUNT):
        namespace = f"team-{index % NAMESPACES}"
        name = f"svc-{index}"
        setup.create(
            DEPLOYMENTS,
            namespace,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "c", "image": "pause"}]},
                    },
                },
            },
        )
        setup.create(
            ROLLOUTS,
            namespace,
            {
                "apiVersion": ROLLOUTS.api_version,
                "kind": ROLLOUTS.name,
                "metadata": {"name": name},
                "spec": {
                    "plan": {"name": "stage-validation-v3"},
                    "target": {"configMap": f"{name}-flags", "deployments": [name]},
                    "serviceAccountName": "stage-rollout",
                    "prometheus": {"endpoint": "default"},
                },
            },
        )
    operator = Operator(
        KubeApi(client.ApiClient(configuration)),
        OperatorSettings(
            interval=timedelta(seconds=1),
            granularity=timedelta(seconds=1),
            workers=16,
            prometheus_url=prometheus_url,
            default_service_account="stage-rollout",
        ),
        clock=SystemClock(),
    )
    print(
        f"{ROLLOUTS_COUNT} rollouts in {NAMESPACES} namespaces; emulator in a child process; Prometheus {prometheus_url}"
    )
    for number in (1, 2, 3):
        if number > 1:
            time.sleep(1.2)
        sources_before = operator.endpoints.queries_sent
        wall, cpu, served = time.perf_counter(), time.process_time(), cpu_seconds(emulator_pid)
        outcomes = operator.tick_all()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        served = cpu_seconds(emulator_pid) - served
        sent = operator.endpoints.queries_sent - sources_before
        problems = [o.problem for o in outcomes if o.problem]
        states: dict[str, int] = {}
        for outcome in outcomes:
            if outcome.decision is not None:
                key = f"{outcome.decision.status.step}/{outcome.decision.status.state}"
                states[key] = states.get(key, 0) + 1
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"pass {number}: {len(outcomes)} rollouts in {wall:.2f} s wall (target <= 10 s: "
            f"{'met' if wall <= 10 else 'NOT met'}), {cpu / max(len(outcomes), 1) * 1000:.2f} ms CPU per rollout, "
            f"emulator CPU {served:.1f} s, {sent} Prometheus queries, peak RSS {rss:.0f} MiB (target <= 200 MB: {'met' if rss <= 200 else 'NOT met'}); "
            f"states {states}; {len(problems)} problems{': ' + problems[0] if problems else ''}"
        )
    print(f"finished at {datetime.now(UTC).isoformat()}")


from controller.kube.api import Kind  # noqa: E402

_CRDS = Kind(
    "CustomResourceDefinition",
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    namespaced=False,
)

if __name__ == "__main__":
    main()
